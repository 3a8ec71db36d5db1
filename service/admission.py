"""Refusal for free: a request to a task endpoint is answered 503 before its body is read when the model
that would answer it cannot admit more work (``ServedModel.refusal``: a full queue, or queued work that
would outlast ``max_queue_wait_s``).

It sits inside the request-context middleware (the refusal has a request id and counts in the metrics)
and after the API-key check, and it costs no parsing: under heavy overload most requests end here, so
the cores stay with the requests already admitted. A request that names a model other than the task's
default is checked by that model's own admission once its body is parsed.

While the process drains after SIGTERM (``service.drain``) every POST is refused here with 503
``shutting_down`` and ``Connection: close``, and the POSTs admitted before are counted until they end, so
the drain knows when the last one has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from service.drain import Drain
from service.errors import ServiceError, ShuttingDown, error_body
from service.middleware import send_json
from service.repository import ModelRepository

_V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer$")
_SHUTTING_DOWN = ShuttingDown(
    "the service is shutting down; retry on another replica",
    headers={"Retry-After": "1", "Connection": "close"},
)


class AdmissionMiddleware:
    def __init__(
        self, app: ASGIApp, repository: ModelRepository, task_paths: Mapping[str, str], drain: Drain
    ):
        self.app = app
        self.repository = repository
        self.task_paths = dict(task_paths)  # POST path -> task
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        refusal = _SHUTTING_DOWN if self.drain.draining else self._refusal(scope["path"])
        if refusal is not None:
            await _send(send, refusal)
            return
        self.drain.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.in_flight -= 1

    def _refusal(self, path: str) -> ServiceError | None:
        task = self.task_paths.get(path)
        if task is not None:
            return self.repository.refusal(task=task)
        match = _V2_INFER.match(path)
        return self.repository.refusal(name=match[1]) if match else None


async def _send(send: Send, error: ServiceError) -> None:
    body = error_body(error.code, error.message, error.field, error.limit)
    headers = [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send_json(send, error.status_code, body, headers)
