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
from service.tasks.sentiment.contract import CHAR_IDS, CHARS_KEY, INPUT_IDS, LENGTHS
from service.text import Tokenizer, Vocab, build_tokenizer, char_ids_of, pad_batch, pad_nested


@dataclass(frozen=True, slots=True)
class SpelledIds:
    """A text's token ids and each token's character ids (a model that reads characters too)."""

    ids: list[int]
    chars: list[list[int]]

    def __len__(self) -> int:
        return len(self.ids)


Encoded = list[int] | SpelledIds


@dataclass(frozen=True)
class SentimentCodec:
    tokenizer: Tokenizer
    vocab: Vocab
    labels: tuple[str, ...]
    max_tokens: int = 512
    chars: Vocab | None = None  # the character vocabulary of a model that reads characters
    max_word_chars: int = 30

    def encode(self, text: str) -> Encoded:
        """Token ids of a text, truncated to ``max_tokens``; never empty (an empty text is one ``<unk>``).
        With ``chars``, also each token's first ``max_word_chars`` characters' ids."""
        words = self.tokenizer.words(text)[: self.max_tokens]
        ids = self.vocab.encode(words) or [self.vocab.unk_id]
        if self.chars is None:
            return ids
        return SpelledIds(ids, char_ids_of(self.chars, words, self.max_word_chars) or [[self.chars.unk_id]])

    def collate(self, encoded: Sequence[Encoded]) -> dict[str, np.ndarray]:
        if self.chars is None:
            ids, lengths = pad_batch(encoded, self.vocab.pad_id)
            return {INPUT_IDS: ids, LENGTHS: lengths}
        ids, lengths = pad_batch([e.ids for e in encoded], self.vocab.pad_id)
        chars, _ = pad_nested([e.chars for e in encoded], self.chars.pad_id)
        return {INPUT_IDS: ids, LENGTHS: lengths, CHAR_IDS: chars}

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
        files = manifest.files
        return cls(
            tokenizer=build_tokenizer(manifest.tokenizer, version_dir),
            vocab=Vocab.load(version_dir / files["vocab"]),
            labels=tuple(manifest.labels),
            max_tokens=int(manifest.task_options.get("max_tokens", 512)),
            chars=Vocab.load(version_dir / files[CHARS_KEY]) if CHARS_KEY in files else None,
            max_word_chars=int(manifest.task_options.get("max_word_chars", 30)),
        )
