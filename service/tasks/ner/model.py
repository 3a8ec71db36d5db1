"""NER serving glue: the codec of ``service.tasks.ner`` around one emission-score ONNX session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.batching import split_by_length
from service.errors import InferenceError
from service.serving import BatchedModel, CodecModelBuilder
from service.tasks.ner.codec import NerCodec
from service.tasks.ner.contract import EMISSIONS, GRAPH


@dataclass
class NerModel(BatchedModel):
    codec: NerCodec | None = field(default=None, kw_only=True)

    def predict_batch(self, items: list[str]) -> Sequence[Any]:
        """Encodes, groups by length, runs the emission graph, decodes each sentence in numpy."""
        session = self.sessions[GRAPH]
        encoded = [self.codec.encode(text) for text in items]
        results: list[Any] = [None] * len(items)
        nonempty = [i for i, e in enumerate(encoded) if e.tokens]
        for i in set(range(len(items))) - set(nonempty):
            results[i] = {"tokens": [], "entities": []}
        lengths = [len(encoded[i].tokens) for i in nonempty]
        for group in split_by_length(lengths, self.batching.bucket_ratio):
            members = [nonempty[g] for g in group]
            feeds = self.codec.collate(
                [encoded[i].word_ids for i in members], [encoded[i].char_ids for i in members]
            )
            (emissions,) = session.run([EMISSIONS], feeds)
            for row, i in enumerate(members):
                scores = emissions[row, : len(encoded[i].tokens)]
                if not np.isfinite(scores).all():
                    results[i] = InferenceError("the model produced non-finite emission scores")
                    continue
                results[i] = self.codec.decode(items[i], encoded[i], scores)
        return results

    def warmup_items(self) -> list[str]:
        return ["Peter Blackburn", "EU rejects German call to boycott British lamb and Welsh beef . " * 4]


build = CodecModelBuilder(NerModel, NerCodec.from_manifest)
