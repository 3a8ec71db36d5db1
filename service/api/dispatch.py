"""The hot routes without Starlette's routing: a POST to a fixed-path ``DirectRoute`` goes straight to its
endpoint.

Between the service's own middleware and an endpoint, Starlette and FastAPI put an exception middleware,
an exit-stack middleware, the router (which tries routes in turn), the route's request/response wrapper
with two more exit stacks, and an exception wrapper: about a tenth of a serving process's CPU on small
requests. ``DirectRoute`` endpoints use none of it (no dependencies, no response model: they parse their
own body and return their own response), so this innermost middleware calls them directly, with the
same ``Request``, the same ``scope["route"]`` (metrics label by route) and the same error answers as the
app's exception handlers. Anything else (other methods, paths with parameters, every other route) goes
on to the router as before, so OpenAPI, 404 and 405 answers are unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.body import DirectRoute
from service.errors import ServiceError

ErrorHandler = Callable[[Request, ServiceError], Awaitable[Response]]


def direct_posts(routes: Iterable[Any]) -> dict[str, DirectRoute]:
    """Path -> route for every ``DirectRoute`` that takes POST on a path without parameters."""
    return {
        route.path: route
        for route in routes
        if isinstance(route, DirectRoute) and "POST" in route.methods and "{" not in route.path
    }


class DirectDispatch:
    def __init__(self, app: ASGIApp, routes: Iterable[Any], on_error: ErrorHandler):
        self.app = app
        self.routes = direct_posts(routes)
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope.setdefault("path_params", {})
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except ServiceError as exc:
            response = await self.on_error(request, exc)
        await response(scope, receive, send)
