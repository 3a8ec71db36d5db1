"""A recurrent encoder whose results never depend on padding, and that exports to native ONNX RNN ops.

Inputs are right-padded ids ``[B, T]`` with ``lengths [B]``. A forward-direction RNN is causal, so its
outputs at real positions cannot see the padding to their right. A backward direction would start in the
padding, so instead of ``bidirectional=True`` on one ``nn.LSTM`` every layer runs the backward direction as
a forward RNN over each row reversed *within its length* (a gather with index ``length-1-t`` for ``t <
length``, identity on the padding), then reverses its outputs back. ``pack_padded_sequence`` is not used,
because it does not survive ONNX export. Outputs at padded positions are garbage by design: consumers use
``mask`` (pooling) or ``lengths`` (last state). :class:`CharCNN` gives a token features from its
characters (padding-invariant too) for the encoder to read beside its embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
#: what a padded character position contributes before the max over a word's characters
_NOT_A_CHAR = -1e4


@dataclass
class EncoderOutput:
    outputs: torch.Tensor  # [B, T, D*H]; garbage where mask is False
    mask: torch.Tensor  # [B, T] bool, True at real tokens
    final: torch.Tensor  # [B, D*H]: forward state at the last real token, backward state at the first


def reverse_index(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, T]`` gather index that reverses each row's first ``length`` positions (an involution)."""
    steps = torch.arange(width, device=lengths.device).unsqueeze(0)
    lengths = lengths.unsqueeze(1)
    return torch.where(steps < lengths, lengths - 1 - steps, steps)


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class RNNEncoder(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 128,
        hidden_size: int = 128,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        word_dropout: float = 0.0,
        padding_idx: int = 0,
        unk_idx: int = 1,
        extra_dim: int = 0,
    ):
        """``extra_dim`` features per token (``forward``'s ``extra``, e.g. a :class:`CharCNN`'s) join the
        embeddings; ``embedding_dropout`` drops embedding features; ``word_dropout`` replaces whole tokens
        by ``<unk>`` during training (a regulariser for small data); ``dropout`` applies between layers and
        to outputs."""
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; known: {sorted(CELLS)}")
        self.cell, self.bidirectional, self.hidden_size = cell, bidirectional, hidden_size
        self.num_directions = 2 if bidirectional else 1
        self.padding_idx, self.unk_idx, self.word_dropout = padding_idx, unk_idx, word_dropout
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.dropout = nn.Dropout(dropout)
        rnn = CELLS[cell]
        self.layers = nn.ModuleList()
        for layer in range(num_layers):
            in_size = embedding_dim + extra_dim if layer == 0 else hidden_size * self.num_directions
            self.layers.append(
                nn.ModuleList(rnn(in_size, hidden_size, batch_first=True) for _ in range(self.num_directions))
            )

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.num_directions

    def forward(
        self, input_ids: torch.Tensor, lengths: torch.Tensor, extra: torch.Tensor | None = None
    ) -> EncoderOutput:
        lengths = lengths.clamp(min=1)
        width = input_ids.size(1)
        mask = torch.arange(width, device=input_ids.device).unsqueeze(0) < lengths.unsqueeze(1)
        if self.training and self.word_dropout > 0:
            drop = torch.rand(input_ids.shape, device=input_ids.device) < self.word_dropout
            input_ids = input_ids.masked_fill(drop & mask, self.unk_idx)
        x = self.embedding(input_ids)
        if extra is not None:
            x = torch.cat([x, extra], dim=-1)
        x = self.embedding_dropout(x)
        rev = reverse_index(lengths, width) if self.bidirectional else None
        last = (lengths - 1).view(-1, 1, 1)
        finals: list[torch.Tensor] = []
        for depth, directions in enumerate(self.layers):
            if depth > 0:
                x = self.dropout(x)
            forward_out, _ = directions[0](x)
            outs = [forward_out]
            if rev is not None:
                backward_out, _ = directions[1](_gather_time(x, rev))
                outs.append(_gather_time(backward_out, rev))
            x = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
            if depth == len(self.layers) - 1:
                finals.append(forward_out.gather(1, last.expand(-1, 1, self.hidden_size)).squeeze(1))
                if rev is not None:
                    finals.append(outs[1][:, 0])
        final = torch.cat(finals, dim=-1) if len(finals) > 1 else finals[0]
        return EncoderOutput(outputs=self.dropout(x), mask=mask, final=self.dropout(final))


class CharCNN(nn.Module):
    """Char embeddings -> 1-D convolution -> max over each word's real characters (padding-invariant)."""

    def __init__(self, num_chars: int, char_dim: int, filters: int, kernel: int, padding_idx: int = 0):
        super().__init__()
        self.padding_idx = padding_idx
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=padding_idx)
        self.conv = nn.Conv1d(char_dim, filters, kernel, padding=kernel // 2)
        self.output_size = filters

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        batch, steps, width = char_ids.shape
        flat = char_ids.reshape(batch * steps, width)
        x = self.embedding(flat).transpose(1, 2)  # [N, E, C]; padded chars embed to zeros
        h = self.conv(x)[:, :, :width]  # even kernels give one extra column
        real = (flat != self.padding_idx).unsqueeze(1)
        h = h.masked_fill(~real, _NOT_A_CHAR).amax(dim=2)
        h = torch.where(real.any(dim=2), h, torch.zeros_like(h))  # padded tokens: zeros
        return h.reshape(batch, steps, -1)
