"""Calls due a fixed delay after they were asked for, unless dropped first, from one timer per event loop.

Every text request wants two of them: its deadline (the batcher fails it at ``timeout_s``) and the late
start of its disconnect watcher (``service.api.texts``). Nearly all are dropped, because the answer comes
first. A timer started and cancelled per request costs ~2 µs here (``asyncio.timeout`` ~4 µs); an entry in
a deque far less. The entries wait in one deque per delay, so each deque is in due order; one timer is set
for the earliest due entry at their fronts, and dropped entries leave the fronts as new ones arrive and
whenever the timer fires.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections import deque
from collections.abc import Callable


class DelayedCalls:
    def __init__(self) -> None:
        # Nothing here refers to the loop, not even a timer handle (which holds it): the loop is this
        # object's key in ``_of_loop``, and the object must go with the loop.
        self._due: dict[float, deque[list]] = {}  # delay -> [due time, callback or None once dropped]
        self._armed_at = math.inf  # when the timer set last fires; later timers are stale

    def add(self, loop: asyncio.AbstractEventLoop, delay: float, callback: Callable[[], None]) -> list:
        """Calls ``callback`` ``delay`` seconds from now; returns its entry (``entry[1] = None`` drops it)."""
        entry = [loop.time() + delay, callback]
        queue = self._due.get(delay)
        if queue is None:
            queue = self._due[delay] = deque()
        while queue and queue[0][1] is None:
            queue.popleft()
        queue.append(entry)
        if entry[0] < self._armed_at:
            self._arm(loop, entry[0])
        return entry

    @property
    def pending(self) -> int:
        """Entries not yet called nor dropped."""
        return sum(entry[1] is not None for queue in self._due.values() for entry in queue)

    @property
    def armed(self) -> bool:
        return math.isfinite(self._armed_at)

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        self._armed_at = at
        loop.call_at(at, self._run_due, loop, at)

    def _run_due(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if at != self._armed_at:  # superseded by an earlier timer, which has run
            return
        self._armed_at = math.inf
        now = loop.time()
        for delay, queue in list(self._due.items()):
            while queue and (queue[0][1] is None or queue[0][0] <= now):
                callback = queue.popleft()[1]
                if callback is not None:
                    callback()
            if not queue:
                del self._due[delay]
        if self._due:
            self._arm(loop, min(queue[0][0] for queue in self._due.values()))


_of_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DelayedCalls] = weakref.WeakKeyDictionary()


def delayed_calls(loop: asyncio.AbstractEventLoop) -> DelayedCalls:
    """The loop's ``DelayedCalls``."""
    calls = _of_loop.get(loop)
    if calls is None:
        calls = _of_loop[loop] = DelayedCalls()
    return calls
