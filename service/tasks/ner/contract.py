"""The NER graph contract, written by the exporter and checked by the server.

One graph ``model`` (file ``model.onnx``): ``word_ids`` int64 ``[B, T]``, ``char_ids`` int64 ``[B, T, W]``
and ``lengths`` int64 ``[B]`` in, ``emissions`` float32 ``[B, T, K]`` out. The version folder holds the
word and character vocabularies and, for CRF models, the transition scores.
"""

TASK = "ner"
WORD_IDS, CHAR_IDS, LENGTHS, EMISSIONS = "word_ids", "char_ids", "lengths", "emissions"
GRAPH = "model"
#: graph key in the manifest -> file in the version folder
GRAPH_FILES = {GRAPH: "model.onnx"}
#: manifest ``files`` key -> file in the version folder (``transitions`` for CRF models only)
FILES = {"vocab": "vocab.json", "chars": "chars.json"}
TRANSITIONS_KEY, TRANSITIONS_FILE = "transitions", "transitions.json"
