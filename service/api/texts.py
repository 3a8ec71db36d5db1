"""The request path shared by the text-in endpoints (``/sentiment``, ``/tag``, ``/translate``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from service.api.body import read_json
from service.api.responses import JsonAnswer
from service.api.schemas import TextsRequest
from service.api.streaming import disconnected
from service.errors import ClientDisconnected
from service.timers import delayed_calls

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


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``await work``, unless the client closes the connection first: then the work is cancelled (a
    batcher skips the texts still queued, so they are never computed) and ``ClientDisconnected`` (499)
    is raised. Call once the body has been read.

    The work runs in the handler's own task, which the disconnect watcher cancels. The watcher starts
    only once the work has taken ``WATCH_AFTER_S`` (``service.timers``): that costs less than a task
    started and cancelled on every request (this is on the path of every text request)."""
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
    late = delayed_calls(loop).add(loop, WATCH_AFTER_S, watch)
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
