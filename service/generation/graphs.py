"""The two ONNX graphs of a recurrent language model behind a small numpy interface.

Contract (written by ``training/tasks/generation_export.py``; ``S`` = the ``state_names``, ``h, c`` for LSTM
and ``h`` for GRU, each ``[layers, B, hidden]``)::

    prefill: input_ids [B, T] int64, lengths [B] int64 -> logits [B, V], <s>_out for s in S
    step:    input_ids [B] int64, <s> for s in S       -> logits [B, V], <s>_out for s in S
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from service.tasks.text import pad_batch

State = tuple[np.ndarray, ...]


def output_name(state_name: str) -> str:
    return f"{state_name}_out"


@dataclass
class RecurrentGraphs:
    prefill_session: ort.InferenceSession
    step_session: ort.InferenceSession
    state_names: tuple[str, ...]

    def __post_init__(self) -> None:
        self._outputs = ["logits", *map(output_name, self.state_names)]
        shapes = {i.name: i.shape for i in self.step_session.get_inputs()}
        self._state_dims = [(shapes[n][0], shapes[n][2]) for n in self.state_names]  # (layers, hidden)

    def zero_state(self, batch: int) -> State:
        """The state before the first input (what the prefill graph starts from)."""
        return tuple(np.zeros((layers, batch, hidden), np.float32) for layers, hidden in self._state_dims)

    def prefill(self, prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, State]:
        """Whole (right-padded) prompts in one call -> logits after each prompt and the states there."""
        ids, lengths = pad_batch(prompts)
        logits, *states = self.prefill_session.run(self._outputs, {"input_ids": ids, "lengths": lengths})
        return logits, tuple(states)

    def step(self, tokens: np.ndarray, states: State) -> tuple[np.ndarray, State]:
        feeds = {"input_ids": tokens, **dict(zip(self.state_names, states, strict=True))}
        logits, *new_states = self.step_session.run(self._outputs, feeds)
        return logits, tuple(new_states)
