"""Tiny-Shakespeare-style character data: a plain text, split by position (the last share held out),
encoded with the serving codec, served as random training windows and as validation streams."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from service.tasks.generation.codec import CharCodec
from service.text import Vocab


@dataclass(frozen=True)
class CharCorpus:
    train: np.ndarray  # int64 ids of the training text
    val: np.ndarray  # int64 ids of the held-out tail
    codec: CharCodec
    info: dict

    @classmethod
    def from_text(cls, text: str, val_fraction: float, source: str = "") -> CharCorpus:
        if not 0 < val_fraction < 1:
            raise ValueError("val_fraction must be in (0, 1)")
        cut = int(len(text) * (1 - val_fraction))
        train_text, val_text = text[:cut], text[cut:]
        codec = CharCodec(Vocab.build([train_text]))
        info = {
            "source": source,
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "train_chars": len(train_text),
            "val_chars": len(val_text),
            "split": f"first {1 - val_fraction:.0%} train, last {val_fraction:.0%} validation (by position)",
            "vocab_size": len(codec.vocab),
        }
        return cls(
            train=np.asarray(codec.vocab.encode(train_text), dtype=np.int64),
            val=np.asarray(codec.vocab.encode(val_text), dtype=np.int64),
            codec=codec,
            info=info,
        )

    @classmethod
    def from_file(cls, path: Path, val_fraction: float) -> CharCorpus:
        return cls.from_text(path.read_text(encoding="utf-8"), val_fraction, source=str(path))


def training_batch(
    ids: np.ndarray, batch_size: int, seq_len: int, generator: np.random.Generator, bos_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows, each read from a zero state starting with ``<bos>`` exactly as served prompts are:
    inputs ``[<bos>, c_s .. c_{s+T-2}]``, targets ``[c_s .. c_{s+T-1}]``."""
    starts = generator.integers(0, len(ids) - seq_len + 1, size=batch_size)
    targets = np.stack([ids[s : s + seq_len] for s in starts])
    inputs = np.concatenate([np.full((batch_size, 1), bos_id, dtype=np.int64), targets[:, :-1]], axis=1)
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def stream_segments(ids: np.ndarray, segments: int, bos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out text cut into ``segments`` contiguous parts read in parallel, each from ``<bos>``:
    every character is predicted once, with all the history of its segment."""
    length = len(ids) // segments
    targets = ids[: length * segments].reshape(segments, length)
    inputs = np.concatenate([np.full((segments, 1), bos_id, dtype=np.int64), targets[:, :-1]], axis=1)
    return torch.from_numpy(inputs), torch.from_numpy(targets)
