"""``ServiceApp``: FastAPI with the service's own middleware outermost.

FastAPI builds its stack as ServerErrorMiddleware, its telemetry and body-limit middleware, then the
app's middleware, then the exception handlers and the router. The service's request-context middleware
already does what the three outer ones do for every request (an unhandled error becomes a JSON 500 with
the request id; the body limit is enforced before anything reads the body), and the hot routes
(``service.api.dispatch``) never reach the router, so for them those layers were three more coroutine
calls and two more ``send`` wrappers per request. Here the app's middleware wraps FastAPI's whole stack
instead: a task route is answered by the service's middleware alone, and every other route still passes
through FastAPI's layers, inside.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.types import ASGIApp

from service.api.responses import JsonAnswer
from service.errors import internal_error_body


async def internal_error(request: Request, exc: Exception) -> JsonAnswer:
    """The 500 that FastAPI's ServerErrorMiddleware sends for an error no handler answered: the service's
    JSON error (the request-context middleware outside it logs the traceback)."""
    return JsonAnswer(internal_error_body(), status_code=500)


class ServiceApp(FastAPI):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_exception_handler(Exception, internal_error)

    def build_middleware_stack(self) -> ASGIApp:
        own, self.user_middleware = self.user_middleware, []
        try:
            app = super().build_middleware_stack()
        finally:
            self.user_middleware = own
        for cls, args, kwargs in reversed(own):
            app = cls(app, *args, **kwargs)
        return app
