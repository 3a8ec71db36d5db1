"""Graceful drain: on SIGTERM keep the port open, refuse new work, finish the admitted work, then stop.

uvicorn closes its listening socket the moment SIGTERM arrives. A client whose connection the kernel had
already accepted (it waits in the listen backlog) then gets a connection reset instead of an answer, and
so does one whose request uvicorn had accepted but not yet read. So while admitted requests are running,
this process drains first: every new POST is answered 503 ``shutting_down`` with
``Retry-After`` and ``Connection: close`` (``service.admission``), ``/ready`` turns 503, and only once no
admitted request is left (or ``RNNSERVE_SHUTDOWN_TIMEOUT_S`` has passed) does uvicorn get the signal: it
closes the port, ends idle connections and runs the lifespan's shutdown, which drains the batch queues.
The bound is one for the whole shutdown, counted from the first signal: uvicorn's wait for the requests
still running and the queues' drain get what the drain left of it (:meth:`Drain.remaining_s`), so a
deployment's grace period need only exceed the bound once.

With ``RNNSERVE_LISTEN_WHEN_READY`` the open port itself is the readiness signal, for a balancer without
readiness checks (nginx): the port opens once the models are warm, and closes at SIGTERM, so the balancer
retries new requests on another replica at once (a 503 it would pass on to the client); no drain then,
but the bound still counts from the signal.

The drain sits in front of uvicorn's own signal handler (installed before the app's start-up runs, in
the main thread) rather than in a ``uvicorn.Server`` subclass, so it works however uvicorn was started,
with one serving process or several. A second signal, or one that finds nothing running, goes straight
to uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger(__name__)
DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_POLL_S = 0.05

Handler = Callable[[int, FrameType | None], Any]


class Drain:
    """Whether this process is draining, and how many admitted requests it is still running."""

    def __init__(self, timeout_s: float, on_start: Callable[[], None] = lambda: None):
        self.timeout_s = timeout_s
        self.on_start = on_start
        self.draining = False
        self.in_flight = 0
        self._previous: dict[int, Handler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: asyncio.Task[None] | None = None
        self._handed_over = False
        self._signalled_at: float | None = None
        self._hold_back = True

    def install(self, hold_back: bool = True) -> bool:
        """Puts the drain in front of the current SIGTERM and SIGINT handlers (uvicorn's). Call from the
        running event loop; a no-op outside the main thread (a test client's portal), where no signal
        arrives, and for a signal whose handler is not a Python function. Without ``hold_back`` a signal
        goes straight through (no drain step) and only starts the bound's clock."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._hold_back = hold_back
        self._loop = asyncio.get_running_loop()
        for sig in DRAIN_SIGNALS:
            previous = signal.getsignal(sig)
            if callable(previous):
                self._previous[sig] = previous
                signal.signal(sig, self._on_signal)
        return bool(self._previous)

    def uninstall(self) -> None:
        """Gives the signals back to the handlers the drain stood in front of."""
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)
        self._previous.clear()

    def start(self) -> None:
        """From now on new work is refused; readiness says so (``on_start``)."""
        if not self.draining:
            self.draining = True
            self.on_start()

    def remaining_s(self) -> float:
        """What is left of the shutdown bound since the first signal (all of it before one)."""
        if self._signalled_at is None:
            return self.timeout_s
        return max(0.0, self.timeout_s - (time.monotonic() - self._signalled_at))

    async def wait_idle(self, timeout_s: float) -> bool:
        """True once no admitted request is running; False when ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
        return not self.in_flight

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum)
        if previous is None:  # uninstalled between the signal and this call
            return
        if self._signalled_at is None:
            self._signalled_at = time.monotonic()
        if not self._hold_back or self.draining or not self.in_flight or self._loop is None:
            self._handed_over = True
            previous(signum, frame)  # no drain step, a second signal, or nothing to finish: stop now
            return
        self._loop.call_soon_threadsafe(self._begin, signum, previous)

    def _begin(self, signum: int, previous: Handler) -> None:
        self.start()
        log.info(
            "%s: draining %d request(s) in flight (new ones get 503 shutting_down; bound %.0f s)",
            signal.Signals(signum).name,
            self.in_flight,
            self.timeout_s,
        )
        self._waiting = asyncio.create_task(self._hand_over(signum, previous), name="drain")

    async def _hand_over(self, signum: int, previous: Handler) -> None:
        try:
            if not await self.wait_idle(self.timeout_s):
                log.warning("drain bound reached with %d request(s) still running", self.in_flight)
        finally:
            if not self._handed_over:  # (a second signal already went to uvicorn)
                self._handed_over = True
                _limit_graceful_shutdown(previous, self.remaining_s())
                previous(signum, None)  # uvicorn: close the port, then the lifespan's shutdown


def _limit_graceful_shutdown(handler: Handler, seconds: float) -> None:
    """uvicorn waits up to its ``timeout_graceful_shutdown`` for the requests still running once it has
    the signal; after a drain, only what is left of the bound. ``handler`` is uvicorn's
    ``Server.handle_exit`` when the drain stands in front of a uvicorn server (any other is left alone)."""
    config = getattr(getattr(handler, "__self__", None), "config", None)
    if isinstance(config, uvicorn.Config):
        config.timeout_graceful_shutdown = seconds  # read when its shutdown starts
