"""Server-Sent Events and client disconnects, shared by every streaming endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse


def sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class EventStream(StreamingResponse):
    """An SSE response over an async iterator of event dicts that closes the iterator however the
    response ends (the iterator's own ``finally`` frees what it holds).

    Under ASGI 2.4 servers (uvicorn) a disconnect surfaces as an error from ``send`` at the next event,
    which would leave the iterator unfinished until garbage collection.
    """

    def __init__(self, events: AsyncIterator[dict[str, Any]]):
        self.events = events
        super().__init__(
            (sse(event) async for event in events),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()
            await self.events.aclose()


async def disconnected(request: Request) -> None:
    """Returns when the client closes the connection (call once the body has been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
