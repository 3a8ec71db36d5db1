"""The RNN model zoo: a padding-invariant recurrent encoder plus task heads.

* :class:`~training.models.encoder.RNNEncoder`: embeddings, ``cell = rnn | lstm | gru``, ``bidirectional``,
  ``num_layers``, dropout; takes right-padded ``(input_ids [B, T], lengths [B])`` and never lets padding
  reach a real position (see its docstring for how, without ``pack_padded_sequence``).
* :class:`~training.models.pooling.Pooling`: many-to-one pooling (last state, mean, max, attention).
* :class:`~training.models.classifier.SequenceClassifier`: encoder + pooling + linear head.
"""

from training.models.classifier import SequenceClassifier
from training.models.encoder import CELLS, RNNEncoder
from training.models.pooling import POOLINGS, Pooling

__all__ = ["CELLS", "POOLINGS", "Pooling", "RNNEncoder", "SequenceClassifier"]
