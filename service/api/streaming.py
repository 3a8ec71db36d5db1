"""Server-Sent Events and client disconnects, shared by every streaming endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

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

    #: the last event of a stream the server stops waiting for (its graceful-shutdown bound ran out), so
    #: the client reads a clean end rather than a cut connection
    SHUTDOWN_EVENT: ClassVar[dict[str, Any]] = {
        "error": "the service is shutting down; the stream ends here",
        "error_type": "shutting_down",
    }

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
        except asyncio.CancelledError:
            # uvicorn cancels the responses still running when RNNSERVE_SHUTDOWN_TIMEOUT_S runs out
            try:
                await send(
                    {"type": "http.response.body", "body": sse(self.SHUTDOWN_EVENT), "more_body": False}
                )
            except Exception:
                raise asyncio.CancelledError from None  # no clean end possible: cancelled as asked
        finally:
            await self.body_iterator.aclose()
            await self.events.aclose()


async def disconnected(request: Request) -> None:
    """Returns when the client closes the connection (call once the body has been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
