"""``SentimentCodec.decode_batch`` answers exactly as ``decode`` row by row."""

from __future__ import annotations

import numpy as np

from service.tasks.sentiment.codec import SentimentCodec
from service.text import Vocab, WordTokenizer


def test_decode_batch_equals_decode_per_row():
    codec = SentimentCodec(WordTokenizer(), Vocab.build([["a"]]), ("negative", "positive"))
    probs = np.array([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]], dtype=np.float32)
    assert codec.decode_batch(probs) == [codec.decode(row) for row in probs]
    assert codec.decode_batch(probs)[1]["label"] == "negative"
