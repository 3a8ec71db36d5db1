"""The request path shared by the text-in endpoints (``/sentiment``, ``/tag``, ``/translate``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse

from service.api.body import read_json
from service.api.schemas import TextsRequest
from service.api.streaming import disconnected
from service.errors import ClientDisconnected

T = TypeVar("T")


async def answer_texts(request: Request, task: str, schema: type[TextsRequest]) -> JSONResponse:
    """Parse and check the body, pick the model, run every text through its batcher, answer in order."""
    payload = await read_json(request, schema)
    limits = request.app.state.settings.limits
    texts = payload.checked_texts(limits.max_texts, limits.max_text_chars)
    model = request.app.state.repository.resolve(task, payload.model)
    results = await unless_disconnected(request, model.infer_many(model.request_items(payload, texts)))
    return JSONResponse({"model": model.name, "results": results})


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``await work``, unless the client closes the connection first: then the work is cancelled (a
    batcher skips the texts still queued, so they are never computed) and ``ClientDisconnected`` (499)
    is raised. Call once the body has been read."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():  # the client left, or this handler was cancelled
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientDisconnected("the client disconnected before the answer was ready")
    return task.result()
