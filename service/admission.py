"""Refusal for free: a request to a task endpoint is answered 503 before its body is read when the model
that would answer it cannot admit more work (``ServedModel.refusal``: a full queue, or queued work that
would outlast ``max_queue_wait_s``).

It sits inside the request-context middleware (the refusal has a request id and counts in the metrics)
and after the API-key check, and it costs no parsing: under heavy overload most requests end here, so
the cores stay with the requests already admitted. A request that names a model other than the task's
default is checked by that model's own admission once its body is parsed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ServiceError, error_body
from service.middleware import send_json
from service.repository import ModelRepository

_V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer$")


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, repository: ModelRepository, task_paths: Mapping[str, str]):
        self.app = app
        self.repository = repository
        self.task_paths = dict(task_paths)  # POST path -> task

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            refusal = self._refusal(scope["path"])
            if refusal is not None:
                await _send(send, refusal)
                return
        await self.app(scope, receive, send)

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
