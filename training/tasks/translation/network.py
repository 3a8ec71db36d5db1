"""Encoder-decoder with Luong ("general") attention for translation, and its two export graphs.

The encoder is the padding-invariant bidirectional :class:`~training.encoder.RNNEncoder`; a bridge
turns its final states into the decoder's initial state. The decoder runs its RNN first and attends with
the new top-layer output (Luong, no input feeding), so training runs the whole teacher-forced target in one
RNN call and serving runs the same code one step at a time. Decoder states are batch-first
``[B, layers, H]`` in the graphs, so the numpy search selects hypotheses along axis 0.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from training.encoder import RNNEncoder

NEG = -1e9


class Seq2Seq(nn.Module):
    def __init__(
        self,
        source_vocab: int,
        target_vocab: int,
        embedding_dim: int = 256,
        hidden_size: int = 256,
        cell: str = "gru",
        encoder_layers: int = 1,
        decoder_layers: int = 1,
        dropout: float = 0.2,
    ):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', not {cell!r}")
        self.cell, self.decoder_layers, self.hidden_size = cell, decoder_layers, hidden_size
        self.encoder = RNNEncoder(
            source_vocab,
            embedding_dim,
            hidden_size,
            cell,
            encoder_layers,
            bidirectional=True,
            dropout=dropout,
        )
        memory = self.encoder.output_size
        self.bridges = nn.ModuleList(
            nn.Linear(memory, decoder_layers * hidden_size) for _ in range(2 if cell == "lstm" else 1)
        )
        self.key = nn.Linear(memory, hidden_size, bias=False)
        self.embedding = nn.Embedding(target_vocab, embedding_dim, padding_idx=0)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(
            embedding_dim,
            hidden_size,
            decoder_layers,
            batch_first=True,
            dropout=dropout if decoder_layers > 1 else 0.0,
        )
        self.combine = nn.Linear(memory + hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, target_vocab)

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("hidden", "cell") if self.cell == "lstm" else ("hidden",)

    def encode(
        self, src_ids: torch.Tensor, src_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """(memory [B, S, 2H], keys [B, S, H], states: each [B, layers, H])."""
        out = self.encoder(src_ids, src_lengths)
        batch = src_ids.size(0)
        states = tuple(
            torch.tanh(bridge(out.final)).view(batch, self.decoder_layers, self.hidden_size)
            for bridge in self.bridges
        )
        return out.outputs, self.key(out.outputs), states

    def decode(
        self,
        prev_tokens: torch.Tensor,
        states: tuple[torch.Tensor, ...],
        memory: torch.Tensor,
        keys: torch.Tensor,
        src_lengths: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor]:
        """Teacher-forced (or one-step) decoding: (logits [B, T, V], new states, attention [B, T, S])."""
        x = self.dropout(self.embedding(prev_tokens))
        hx = tuple(s.transpose(0, 1).contiguous() for s in states)
        out, new = self.rnn(x, hx if self.cell == "lstm" else hx[0])
        new = new if self.cell == "lstm" else (new,)
        scores = torch.bmm(out, keys.transpose(1, 2))  # [B, T, S]
        positions = torch.arange(memory.size(1), device=memory.device)
        mask = (positions.unsqueeze(0) < src_lengths.unsqueeze(1)).unsqueeze(1)
        attention = torch.softmax(scores.masked_fill(~mask, NEG), dim=-1)
        context = torch.bmm(attention, memory.masked_fill(~mask.transpose(1, 2), 0.0))
        combined = self.dropout(torch.tanh(self.combine(torch.cat([out, context], dim=-1))))
        return self.output(combined), tuple(s.transpose(0, 1) for s in new), attention

    def forward(
        self, src_ids: torch.Tensor, src_lengths: torch.Tensor, prev_tokens: torch.Tensor
    ) -> torch.Tensor:
        memory, keys, states = self.encode(src_ids, src_lengths)
        logits, _, _ = self.decode(prev_tokens, states, memory, keys, src_lengths)
        return logits


class EncoderGraph(nn.Module):
    """``src_ids [B, S], src_lengths [B] -> memory, keys, hidden (, cell)``."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, src_ids: torch.Tensor, src_lengths: torch.Tensor):
        memory, keys, states = self.model.encode(src_ids, src_lengths)
        return (memory, keys, *states)


class StepGraph(nn.Module):
    """GRU step: ``prev_tokens [N], hidden [N, L, H], memory, keys, src_lengths -> log_probs, hidden, attn``.

    Named arguments (not ``*args``): the exporter maps dynamic shapes to argument names.
    """

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def run(self, prev_tokens, states, memory, keys, src_lengths):
        logits, new, attention = self.model.decode(
            prev_tokens.unsqueeze(1), states, memory, keys, src_lengths
        )
        return (F.log_softmax(logits[:, 0], dim=-1), *new, attention[:, 0])

    def forward(self, prev_tokens, hidden, memory, keys, src_lengths):
        return self.run(prev_tokens, (hidden,), memory, keys, src_lengths)


class LSTMStepGraph(StepGraph):
    """LSTM step: as :class:`StepGraph` with a ``cell`` state beside ``hidden``."""

    def forward(self, prev_tokens, hidden, cell, memory, keys, src_lengths):
        return self.run(prev_tokens, (hidden, cell), memory, keys, src_lengths)


def step_graph(model: Seq2Seq) -> StepGraph:
    return LSTMStepGraph(model) if model.cell == "lstm" else StepGraph(model)
