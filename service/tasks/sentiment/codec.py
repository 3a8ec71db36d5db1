"""Sentiment (many-to-one): text -> token ids -> class probabilities -> labelled answer.

The codec is the single place where a sentiment text becomes model input and model output becomes an
answer; training builds its tensors with ``encode``/``collate`` too, so served and trained inputs agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import service.subwords  # noqa: F401  (registers the word_pieces tokenizer type a manifest may name)
from service.manifest import ModelManifest
from service.tasks.sentiment.contract import INPUT_IDS, LENGTHS
from service.text import Tokenizer, Vocab, build_tokenizer, pad_batch


@dataclass(frozen=True)
class SentimentCodec:
    tokenizer: Tokenizer
    vocab: Vocab
    labels: tuple[str, ...]
    max_tokens: int = 512

    def encode(self, text: str) -> list[int]:
        """Token ids of a text, truncated to ``max_tokens``; never empty (an empty text is one ``<unk>``)."""
        ids = self.vocab.encode(self.tokenizer.words(text))[: self.max_tokens]
        return ids or [self.vocab.unk_id]

    def collate(self, encoded: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        ids, lengths = pad_batch(encoded, self.vocab.pad_id)
        return {INPUT_IDS: ids, LENGTHS: lengths}

    def decode(self, probabilities: np.ndarray) -> dict[str, Any]:
        """One row of class probabilities -> ``{"label", "score", "scores"}``."""
        best = int(np.argmax(probabilities))
        return {
            "label": self.labels[best],
            "score": float(probabilities[best]),
            "scores": {label: float(p) for label, p in zip(self.labels, probabilities, strict=True)},
        }

    def decode_batch(self, probabilities: np.ndarray) -> list[dict[str, Any]]:
        """``decode`` for every row of ``[B, C]`` probabilities (one conversion to Python floats, not B×C)."""
        best = probabilities.argmax(axis=1).tolist()
        rows = probabilities.tolist()
        return [
            {"label": self.labels[b], "score": row[b], "scores": dict(zip(self.labels, row, strict=True))}
            for b, row in zip(best, rows, strict=True)
        ]

    @classmethod
    def from_manifest(cls, manifest: ModelManifest, version_dir: Path) -> SentimentCodec:
        return cls(
            tokenizer=build_tokenizer(manifest.tokenizer, version_dir),
            vocab=Vocab.load(version_dir / manifest.files["vocab"]),
            labels=tuple(manifest.labels),
            max_tokens=int(manifest.task_options.get("max_tokens", 512)),
        )
