"""Held-out losses of the character language model in PyTorch (the generation task's dev metrics).

:func:`training.tasks.generation.export.onnx_losses` measures the same two figures on the exported graph.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from training.tasks.generation.data import CharCorpus, stream_segments
from training.tasks.generation.network import CharLM


@torch.no_grad()
def stream_loss(model: CharLM, corpus: CharCorpus, segments: int, chunk: int = 512) -> float:
    """Mean nats per character over the held-out text, each segment read from ``<bos>`` with its state
    carried through (how a served generation conditions on its whole history)."""
    model.eval()
    inputs, targets = stream_segments(corpus.val, min(segments, len(corpus.val)), corpus.codec.vocab.bos_id)
    state, total = None, 0.0
    for start in range(0, inputs.shape[1], chunk):
        logits, state = model(inputs[:, start : start + chunk], state)
        total += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets[:, start : start + chunk].reshape(-1),
            reduction="sum",
        ).item()
    return total / targets.numel()


@torch.no_grad()
def window_loss(model: CharLM, corpus: CharCorpus, seq_len: int, batch_size: int = 64) -> float:
    """Mean nats per character over non-overlapping held-out windows, each read from a zero state (the
    training objective; nanoGPT-style context of at most ``seq_len`` characters)."""
    model.eval()
    usable = (len(corpus.val) // seq_len) * seq_len
    targets_all = torch.from_numpy(corpus.val[:usable].reshape(-1, seq_len))
    bos = torch.full((targets_all.shape[0], 1), corpus.codec.vocab.bos_id, dtype=torch.int64)
    inputs_all = torch.cat([bos, targets_all[:, :-1]], dim=1)
    total = 0.0
    for start in range(0, len(inputs_all), batch_size):
        logits, _ = model(inputs_all[start : start + batch_size])
        total += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets_all[start : start + batch_size].reshape(-1),
            reduction="sum",
        ).item()
    return total / targets_all.numel()
