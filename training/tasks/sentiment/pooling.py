"""Many-to-one pooling over encoder outputs; every kind ignores padded positions."""

from __future__ import annotations

import torch
from torch import nn

from training.encoder import EncoderOutput

POOLINGS = ("last", "mean", "max", "attention", "max_mean")


class Pooling(nn.Module):
    """``last``: final states; ``mean``/``max``: over real positions; ``attention``: a learned additive
    attention (softmax over real positions); ``max_mean``: max and mean concatenated (output 2×size)."""

    def __init__(self, kind: str, size: int):
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"unknown pooling {kind!r}; known: {POOLINGS}")
        self.kind = kind
        self.output_size = 2 * size if kind == "max_mean" else size
        if kind == "attention":
            self.attention = nn.Sequential(nn.Linear(size, size), nn.Tanh(), nn.Linear(size, 1, bias=False))

    def forward(self, encoded: EncoderOutput) -> torch.Tensor:
        if self.kind == "last":
            return encoded.final
        outputs, mask = encoded.outputs, encoded.mask.unsqueeze(-1)
        if self.kind == "attention":
            scores = self.attention(outputs).masked_fill(~mask, float("-inf"))
            return (torch.softmax(scores, dim=1) * outputs).sum(dim=1)
        pooled = []
        if self.kind in ("max", "max_mean"):
            pooled.append(outputs.masked_fill(~mask, float("-inf")).amax(dim=1))
        if self.kind in ("mean", "max_mean"):
            total = outputs.masked_fill(~mask, 0.0).sum(dim=1)
            pooled.append(total / mask.sum(dim=1).clamp(min=1).to(outputs.dtype))
        return torch.cat(pooled, dim=-1) if len(pooled) > 1 else pooled[0]
