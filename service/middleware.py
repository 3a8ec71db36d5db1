"""One pure-ASGI middleware for every HTTP request: request id, body-size limit, metrics, access log.

Pure ASGI (not ``BaseHTTPMiddleware``) because it sits on the hot path of every request. The body limit
is enforced before anything parses the body: a ``Content-Length`` above the limit is answered 413 at
once, and a chunked body is cut off the moment it passes the limit.

A client's ``X-Request-ID`` is kept when it is 1 to 128 characters of ``A-Z a-z 0-9 . _ : -`` (so it
is safe in a log line and a header); any other value is replaced by a generated id. Either way the id
is sent back in ``X-Request-ID``, carried by every log line of the request and by error bodies.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.responses import render_json
from service.errors import BodyTooLarge, error_body, internal_error_body
from service.logs import request_id_var
from service.metrics import Metrics
from service.read_hold import hold_after_refusal

log = logging.getLogger("service.access")
REQUEST_ID_PATTERN = r"[A-Za-z0-9._:-]{1,128}"
_SAFE_ID = re.compile(REQUEST_ID_PATTERN)
# Generated ids: a random per-process prefix and a counter (unique, and cheaper than uuid4 per request).
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_body_bytes: int,
        access_log: bool = True,
        refused_connection_hold_s: float = 0.0,
    ):
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.refused_connection_hold_s = refused_connection_hold_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = (
            incoming if incoming and _SAFE_ID.fullmatch(incoming) else f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"
        )
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        response = _Response(send, (b"x-request-id", request_id.encode()))
        if self.refused_connection_hold_s > 0:
            response.hold = (scope, self.refused_connection_hold_s, self.metrics)
        try:
            await self._serve(scope, receive, response)
        finally:
            self._record(scope, response.status, time.perf_counter() - started)
            request_id_var.reset(token)

    async def _serve(self, scope: Scope, receive: Receive, response: _Response) -> None:
        """The app behind the body limit; a failure no handler answered becomes a 500 with the id."""
        limit = self.max_body_bytes
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(f"request body exceeds {limit} bytes", field="body", limit=limit)
            return message

        try:
            declared = _header(scope, b"content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                body = error_body("body_too_large", f"request body exceeds {limit} bytes", "body", limit)
                await send_json(response.send, 413, body)
            else:
                await self.app(scope, limited_receive, response.send)
        except Exception:
            log.exception("unhandled error")
            response.status = 500
            if not response.started:
                await send_json(response.send, 500, internal_error_body())

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        """Metrics by route template, and the access-log line."""
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        self.metrics.observe_request(endpoint, method, status, elapsed)
        if self.access_log:
            log.info(
                "%s %s %d %.1fms",
                method,
                scope.get("path", ""),
                status,
                elapsed * 1000,
                extra={"status": status, "duration_ms": round(elapsed * 1000, 3), "endpoint": endpoint},
            )


class _Response:
    """The app's ``send`` with the request-id header added; remembers the status sent, and asks the server
    to hold the connection after a refusal when ``hold`` (the scope, the longest hold, the metrics that
    count holds) is set (``service.read_hold``)."""

    hold: tuple[Scope, float, Metrics] | None = None

    def __init__(self, send: Send, id_header: tuple[bytes, bytes]):
        self._send, self._id_header = send, id_header
        self.status, self.started = 500, False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status, self.started = message["status"], True
            message["headers"] = [*message.get("headers", []), self._id_header]
            if self.hold is not None:
                scope, max_hold_s, metrics = self.hold
                if hold_after_refusal(scope, self.status, message["headers"], max_hold_s):
                    metrics.held_connections.inc()
        await self._send(message)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def send_json(
    send: Send, status: int, body: dict, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answers with a JSON body straight from a middleware (before any route ran)."""
    payload = render_json(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
