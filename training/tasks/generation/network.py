"""Character-level recurrent language model (embedding -> stacked LSTM/GRU -> linear), its export graphs.

The layers are separate single-layer ``nn.LSTM``/``nn.GRU`` modules (the parameters of one multi-layer
module) so that the prefill graph can see every layer's output sequence: it needs each layer's state at each
sequence's *last real* position of a right-padded batch, without ``pack_padded_sequence``.

* GRU: the state is the layer's output, so it is gathered at ``lengths - 1``.
* LSTM: ``h`` is gathered the same way; the cell state obeys the linear recurrence
  ``c_t = f_t * c_{t-1} + i_t * g_t`` whose gates depend only on ``x_t`` and ``h_{t-1}`` (both known once the
  layer's outputs are), so ``c`` at ``lengths - 1`` is a gate-weighted sum,
  ``c_L = sum_{s<L} exp(sum_{s<r<L} log f_r) * i_s * g_s``, computed with a reverse cumulative sum of
  ``log f`` (the exponents are <= 0, so nothing overflows and recent terms are exact).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

Cell = Literal["lstm", "gru"]


class CharLM(nn.Module):
    """``forward(ids [B,T], state) -> (logits [B,T,V], state)``.

    The state is ``(h, c)`` for LSTM and ``(h,)`` for GRU, each ``[layers, B, hidden]``."""

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        hidden_size: int = 256,
        num_layers: int = 2,
        cell: Cell = "lstm",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.cell, self.num_layers, self.hidden_size = cell, num_layers, hidden_size
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.layers = nn.ModuleList(
            rnn(embed_dim if i == 0 else hidden_size, hidden_size, batch_first=True)
            for i in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h", "c") if self.cell == "lstm" else ("h",)

    def zero_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        shape = (self.num_layers, batch, self.hidden_size)
        return tuple(torch.zeros(shape) for _ in self.state_names)

    def forward(
        self, ids: torch.Tensor, state: tuple[torch.Tensor, ...] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        x = self.dropout(self.embedding(ids))
        new_state: list[list[torch.Tensor]] = [[] for _ in self.state_names]
        for i, layer in enumerate(self.layers):
            layer_state = None if state is None else tuple(s[i : i + 1] for s in state)
            if self.cell == "gru" and layer_state is not None:
                layer_state = layer_state[0]
            x, out_state = layer(x, layer_state)
            out_state = out_state if isinstance(out_state, tuple) else (out_state,)
            for store, s in zip(new_state, out_state, strict=True):
                store.append(s)
            x = self.dropout(x)
        return self.head(x), tuple(torch.cat(s, dim=0) for s in new_state)


def _lstm_cell_at(
    layer: nn.LSTM, x: torch.Tensor, y: torch.Tensor, last: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Cell state at position ``last[b]`` of one LSTM layer run from a zero state (see the module docstring).

    x: layer input [B,T,I]; y: layer output [B,T,H]; last: [B] int64; mask: [B,T] 1.0 where t <= last.
    """
    h_prev = torch.cat([torch.zeros_like(y[:, :1]), y[:, :-1]], dim=1)
    gates = x @ layer.weight_ih_l0.T + layer.bias_ih_l0 + h_prev @ layer.weight_hh_l0.T + layer.bias_hh_l0
    i, f, g, _ = gates.chunk(4, dim=-1)
    contribution = torch.sigmoid(i) * torch.tanh(g)
    log_f = F.logsigmoid(f) * mask.unsqueeze(-1)
    # exponent_s = sum_{r > s} log_f_r (reverse cumulative sum, excluding s itself); zero past `last`.
    suffix = torch.flip(torch.cumsum(torch.flip(log_f, dims=[1]), dim=1), dims=[1])
    exponent = suffix - log_f
    weights = torch.exp(exponent) * mask.unsqueeze(-1)
    return (weights * contribution).sum(dim=1)


class PrefillGraph(nn.Module):
    """``(input_ids [B,T], lengths [B]) -> (logits [B,V], *state)``: a right-padded prompt batch in one
    call, logits and state taken at each row's last real position (padding invariant)."""

    def __init__(self, model: CharLM):
        super().__init__()
        self.model = model.eval()
        self.eval()

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model = self.model
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        last = (lengths - 1).clamp(min=0)
        mask = (positions <= last.unsqueeze(1)).to(torch.float32)
        gather_index = last.view(-1, 1, 1).expand(-1, 1, model.hidden_size)
        x = model.embedding(input_ids)
        hs, cs = [], []
        for layer in model.layers:
            y, _ = layer(x)
            hs.append(torch.gather(y, 1, gather_index).squeeze(1))
            if model.cell == "lstm":
                cs.append(_lstm_cell_at(layer, x, y, last, mask))
            x = y
        logits = model.head(hs[-1])
        states = [torch.stack(hs, dim=0)]
        if model.cell == "lstm":
            states.append(torch.stack(cs, dim=0))
        return (logits, *states)


class StepGraph(nn.Module):
    """``(input_ids [B], *state) -> (logits [B,V], *new_state)``: one decoding step for a batch."""

    def __init__(self, model: CharLM):
        super().__init__()
        self.model = model.eval()
        self.eval()

    def forward(self, input_ids: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, new_state = self.model(input_ids.unsqueeze(1), tuple(state))
        return (logits[:, 0], *new_state)
