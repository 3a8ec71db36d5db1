"""A bare ASGI app for ``python -m loadtest.bench_http_floor``: HTTP and JSON only, no framework, no model.

Every POST has its body read and parsed as JSON, and is answered with the fixed body in
``RNNSERVE_FLOOR_ANSWER`` (a real ``/sentiment`` answer, so both servers write as many bytes); any GET is
answered 200 (the readiness check). What uvicorn and this app cost per request is what any Python ASGI
service pays before its own work.
"""

from __future__ import annotations

import json
import os
from typing import Any

ANSWER = os.environ.get("RNNSERVE_FLOOR_ANSWER", '{"label": "positive", "score": 1.0}').encode()
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(scope: dict[str, Any], receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    status = 200
    if scope["method"] == "POST":
        try:
            json.loads(body)
        except ValueError:
            status = 400
    await send({"type": "http.response.start", "status": status, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})
