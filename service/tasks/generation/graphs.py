"""The two ONNX graphs of a recurrent language model (``contract``) as the scheduler's ``StepGraphs``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from service.scheduler import State
from service.tasks.generation.contract import INPUT_IDS, LENGTHS, LOGITS, state_output
from service.text import pad_batch


@dataclass
class RecurrentGraphs:
    prefill_session: ort.InferenceSession
    step_session: ort.InferenceSession
    state_names: tuple[str, ...]

    def __post_init__(self) -> None:
        self._outputs = [LOGITS, *map(state_output, self.state_names)]
        shapes = {i.name: i.shape for i in self.step_session.get_inputs()}
        self._state_dims = [(shapes[n][0], shapes[n][2]) for n in self.state_names]  # (layers, hidden)

    def zero_state(self, batch: int) -> State:
        """The state before the first input (what the prefill graph starts from)."""
        return tuple(np.zeros((layers, batch, hidden), np.float32) for layers, hidden in self._state_dims)

    def prefill(self, prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, State]:
        """Whole (right-padded) prompts in one call -> logits after each prompt and the states there."""
        ids, lengths = pad_batch(prompts)
        logits, *states = self.prefill_session.run(self._outputs, {INPUT_IDS: ids, LENGTHS: lengths})
        return logits, tuple(states)

    def step(self, tokens: np.ndarray, states: State) -> tuple[np.ndarray, State]:
        feeds = {INPUT_IDS: tokens, **dict(zip(self.state_names, states, strict=True))}
        logits, *new_states = self.step_session.run(self._outputs, feeds)
        return logits, tuple(new_states)
