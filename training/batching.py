"""Length-bucketed batching of variable-length examples (less padding, same results: models are
padding-invariant)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator, pool: int = 50
) -> Iterator[list[int]]:
    """Shuffled index batches: shuffle, sort pools of ``pool × batch_size`` by length, cut, shuffle."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    batches: list[list[int]] = []
    span = batch_size * pool
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    for b in torch.randperm(len(batches), generator=generator).tolist():
        yield batches[b]


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Deterministic evaluation batches of similar lengths (callers restore the original order)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class BucketedTraining:
    """``train_batches`` and ``num_train_batches`` of a task whose training examples are sequences
    (``training_sequences()``) that ``batch_tensors(split, indices)`` turns into a batch: shuffled batches
    of similar lengths (:func:`bucketed_batches`)."""

    def training_sequences(self) -> Sequence[Sequence[int]]:
        raise NotImplementedError

    def batch_tensors(self, split: str, indices: list[int]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def train_batches(self, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        lengths = [len(s) for s in self.training_sequences()]
        for indices in bucketed_batches(lengths, self.config.trainer.batch_size, generator):
            yield self.batch_tensors("train", indices)

    def num_train_batches(self) -> int:
        return -(-len(self.training_sequences()) // self.config.trainer.batch_size)


class SplitsTraining(BucketedTraining):
    """``BucketedTraining`` for a task that keeps each split as a tuple in ``self.splits`` whose first
    entry holds the examples' id sequences; dev and test are evaluated when they were read."""

    def training_sequences(self) -> Sequence[Sequence[int]]:
        return self.splits["train"][0]

    def eval_splits(self) -> list[str]:
        return [s for s in ("dev", "test") if s in self.splits]
