"""Sentiment serving glue: the codec of ``service.tasks.sentiment`` around one ONNX session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.batching import split_by_length
from service.errors import InferenceError
from service.serving import BatchedModel, CodecModelBuilder
from service.tasks.sentiment.codec import SentimentCodec
from service.tasks.sentiment.contract import GRAPH, PROBABILITIES


@dataclass
class SentimentModel(BatchedModel):
    codec: SentimentCodec | None = field(default=None, kw_only=True)

    def predict_batch(self, items: list[str]) -> Sequence[Any]:
        """Encodes, groups by length (less padding), runs each group, and restores the input order."""
        session = self.sessions[GRAPH]
        encoded = [self.codec.encode(text) for text in items]
        results: list[Any] = [None] * len(items)
        for group in split_by_length([len(e) for e in encoded], self.batching.bucket_ratio):
            feeds = self.codec.collate([encoded[i] for i in group])
            (probabilities,) = session.run([PROBABILITIES], feeds)
            finite = np.isfinite(probabilities).all(axis=1).tolist()
            for i, answer, ok in zip(group, self.codec.decode_batch(probabilities), finite, strict=True):
                results[i] = answer if ok else InferenceError("the model produced non-finite probabilities")
        return results

    def warmup_items(self) -> list[str]:
        return ["good .", "a rather long warm-up sentence that exercises the recurrent graph " * 4]


build = CodecModelBuilder(SentimentModel, SentimentCodec.from_manifest)
