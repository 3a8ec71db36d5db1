"""The request path shared by the text-in endpoints (``/sentiment``, ``/tag``, ``/translate``)."""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request

from service.api.body import read_json
from service.api.responses import JsonAnswer
from service.api.schemas import TextsRequest
from service.api.streaming import disconnected
from service.errors import ClientDisconnected

T = TypeVar("T")


async def answer_texts(request: Request, task: str, schema: type[TextsRequest]) -> JsonAnswer:
    """Parse and check the body, pick the model, run every text through its batcher, answer in order."""
    payload = await read_json(request, schema)
    limits = request.app.state.settings.limits
    texts = payload.checked_texts(limits.max_texts, limits.max_text_chars)
    model = request.app.state.repository.resolve(task, payload.model)
    results = await unless_disconnected(request, model.infer_many(model.request_items(payload, texts)))
    return JsonAnswer({"model": model.name, "results": results})


#: a request answered sooner never starts a disconnect watcher (most answers at capacity come sooner); a
#: client that leaves earlier costs at most this much of its queued work
WATCH_AFTER_S = 0.02


class _LateStarts:
    """Calls each callback ``WATCH_AFTER_S`` after it was added, unless it was dropped first, from one timer
    per event loop: a timer started and cancelled per request costs ~2 µs here, an entry in a deque far
    less. The delay is the same for all, so the deque is in due order."""

    def __init__(self) -> None:
        # nothing here refers to the loop (not even its timer handle, which holds it): the loop is this
        # object's key in ``_late_starts``, and the entry must go with the loop
        self._due: deque[list] = deque()  # [due time, callback or None once dropped]
        self.armed = False

    def add(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> list:
        """Returns the entry; ``entry[1] = None`` drops it."""
        entry = [loop.time() + WATCH_AFTER_S, callback]
        self._due.append(entry)
        if not self.armed:
            self.armed = True
            loop.call_at(entry[0], self._run_due, loop)
        return entry

    def _run_due(self, loop: asyncio.AbstractEventLoop) -> None:
        self.armed = False
        now, due = loop.time(), self._due
        while due and (due[0][1] is None or due[0][0] <= now):
            callback = due.popleft()[1]
            if callback is not None:
                callback()
        if due:
            self.armed = True
            loop.call_at(due[0][0], self._run_due, loop)


_late_starts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LateStarts] = weakref.WeakKeyDictionary()


def _late_starts_of(loop: asyncio.AbstractEventLoop) -> _LateStarts:
    late = _late_starts.get(loop)
    if late is None:
        late = _late_starts[loop] = _LateStarts()
    return late


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``await work``, unless the client closes the connection first: then the work is cancelled (a
    batcher skips the texts still queued, so they are never computed) and ``ClientDisconnected`` (499)
    is raised. Call once the body has been read.

    The work runs in the handler's own task, which the disconnect watcher cancels. The watcher starts
    only once the work has taken ``WATCH_AFTER_S`` (``_LateStarts``): that costs less than a task started
    and cancelled on every request (this is on the path of every text request)."""
    handler = asyncio.current_task()
    assert handler is not None
    gone: asyncio.Future[None] | None = None
    left = finished = False

    def cancel_handler(watcher: asyncio.Future[None]) -> None:
        nonlocal left
        # ``finished``: a callback already scheduled when the work ended must not cancel what follows
        if not finished and not watcher.cancelled() and watcher.exception() is None:
            left = True
            handler.cancel()

    def watch() -> None:
        nonlocal gone
        if not finished:
            gone = asyncio.ensure_future(disconnected(request))
            gone.add_done_callback(cancel_handler)

    loop = asyncio.get_running_loop()
    late = _late_starts_of(loop).add(loop, watch)
    try:
        return await work
    except asyncio.CancelledError:
        if not left:  # cancelled from elsewhere (shutdown, a timeout around this call): not ours to turn
            raise
        handler.uncancel()
        raise ClientDisconnected("the client disconnected before the answer was ready") from None
    finally:
        finished = True
        late[1] = None
        if gone is not None:
            gone.cancel()
