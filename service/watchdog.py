"""Stuck inference calls: a model whose call runs past a bound is reported unready until it returns.

A thread blocked inside ONNX Runtime cannot be interrupted, so a hung call would otherwise hold the model's
worker while ``/ready`` kept saying 200 and every later request waited for its own 504. The batcher and
the step scheduler time each model call with a :class:`CallWatch`; once one has run longer than
``stall_after_s`` the watch reports a fault: the repository then marks the model unready with that reason
(``/ready``, ``/models``, the ``model_ready`` gauge), new requests for it get 503 with ``Retry-After``
when they are submitted, and the requests queued behind the call are failed at once instead of at their
deadlines. When the call returns, the fault clears and the model serves again.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator

from service.errors import ModelUnavailable


class CallWatch:
    """The start times of the model calls running now (several threads may call one model)."""

    def __init__(self, name: str, stall_after_s: float):
        self.name = name
        self.stall_after_s = stall_after_s
        self._running: dict[int, float] = {}  # thread id -> monotonic start of its current call

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        """Wraps one model call (in the thread that makes it)."""
        thread = threading.get_ident()
        self._running[thread] = time.monotonic()
        try:
            yield
        finally:
            self._running.pop(thread, None)

    def running_for(self) -> float:
        """How long the oldest call running now has run (0 when none runs)."""
        starts = list(self._running.values())  # a copy: other threads add and remove entries
        return time.monotonic() - min(starts) if starts else 0.0

    def fault(self) -> str | None:
        """Why the model is not ready, while a call runs past the bound; else None."""
        running = self.running_for()
        if running <= self.stall_after_s:
            return None
        return (
            f"an inference call has been running for {running:.0f} s "
            f"(more than stall_after_s = {self.stall_after_s:g} s)"
        )

    def refusal(self) -> ModelUnavailable | None:
        """The 503 for a new request while the model is stalled, retried after the bound once more."""
        fault = self.fault()
        return None if fault is None else self.unavailable(fault)

    def unavailable(self, fault: str) -> ModelUnavailable:
        return ModelUnavailable(
            f"model {self.name} is not ready: {fault}",
            field="model",
            limit=self.stall_after_s,
            headers={"Retry-After": str(max(1, math.ceil(self.stall_after_s)))},
        )
