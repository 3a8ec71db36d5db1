"""A serving process whose event loop stops running ends itself, so that a fresh one takes its place.

Short model calls run on the event loop's thread (``inline_max_ms``), and a call there that never returns
blocks the whole process: it answers nothing, ``/health`` included, while the kernel keeps giving it its
share of new connections (a socket per process, ``service.listener``). uvicorn's supervisor does not see
it: its health check is answered by a thread of its own, which a call that releases the GIL leaves free.
This is gunicorn's worker timeout for an event loop: a thread watches a heartbeat that the loop sets
every second, and once the loop has not run for ``RNNSERVE_EVENT_LOOP_STALL_S`` it logs where the loop is
stuck and ends the process at once (``os._exit``: nothing else in the process can be trusted to finish).
uvicorn's supervisor then starts a replacement; with one serving process, the process's own supervisor
(the container runtime, Kubernetes) restarts it. The requests that process held are lost either way:
they were stuck behind the call.

Only ``python -m service`` processes run it: the event loop must be the main thread's (a test client's
loop runs in a thread of its own, and a test's deliberate stall must not end the test run).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

from service.logs import flush_logs

log = logging.getLogger(__name__)
STALLED_EXIT_CODE = 70  # EX_SOFTWARE


def _end_process(stalled_s: float, stack: str) -> None:
    log.critical(
        "event loop has not run for %.0f s (RNNSERVE_EVENT_LOOP_STALL_S); ending this serving process so that"
        " a fresh one replaces it. The loop is here:\n%s",
        stalled_s,
        stack,
    )
    flush_logs()
    os._exit(STALLED_EXIT_CODE)


class LoopWatchdog:
    """Calls ``on_stall(seconds, stack of the loop's thread)`` once the loop has not run for ``stall_s``."""

    def __init__(
        self,
        stall_s: float,
        on_stall: Callable[[float, str], None] = _end_process,
        beat_s: float = 1.0,
    ):
        self.stall_s = stall_s
        self.beat_s = min(beat_s, stall_s / 4)
        self.on_stall = on_stall
        self._last_beat = time.monotonic()
        self._stop = threading.Event()
        self._handle: asyncio.TimerHandle | None = None
        self._loop_thread: int | None = None  # set by start, on the loop's thread

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """From the loop's own thread."""
        self._loop_thread = threading.get_ident()
        self._beat(loop)
        threading.Thread(target=self._watch, name="event-loop-watchdog", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        self._last_beat = time.monotonic()
        self._handle = loop.call_later(self.beat_s, self._beat, loop)

    def _watch(self) -> None:
        while not self._stop.wait(self.beat_s):
            stalled = time.monotonic() - self._last_beat
            if stalled >= self.stall_s:
                frame = sys._current_frames().get(self._loop_thread)
                stack = "".join(traceback.format_stack(frame)) if frame else "(no frame)"
                self.on_stall(stalled, stack)
                return
