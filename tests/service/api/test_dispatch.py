"""The hot routes' direct dispatch: the same answers, labels and errors as through the router, which it
skips; everything it does not take still reaches the router."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.routing import Router

from service.api.body import DirectRoute
from service.api.dispatch import DirectDispatch, direct_posts
from service.api.errors import service_error_response
from service.errors import LimitExceeded

router = APIRouter(route_class=DirectRoute)


@router.post("/echo")
async def echo(request: Request) -> JSONResponse:
    body = await request.json()
    if body.get("too_long"):
        raise LimitExceeded("texts: too many", field="texts", limit=3)
    return JSONResponse({"echo": body, "route": request.scope["route"].path})


@router.post("/items/{name}")
async def named(request: Request) -> JSONResponse:
    return JSONResponse({"name": request.path_params["name"]})


@router.get("/echo-get")
async def echo_get(request: Request) -> JSONResponse:
    return JSONResponse({})


class _Behind:
    """The router's place: records what reaches it."""

    def __init__(self) -> None:
        self.reached: list[tuple[str, str]] = []
        self.router = Router(routes=router.routes)

    async def __call__(self, scope, receive, send) -> None:
        self.reached.append((scope["method"], scope["path"]))
        await self.router(scope, receive, send)


def _call(app, method: str, path: str, body: bytes = b"{}") -> tuple[int, bytes, dict]:
    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), scope


def test_only_fixed_path_direct_posts_are_dispatched():
    assert set(direct_posts(router.routes)) == {"/echo"}


def test_a_direct_post_skips_the_router_and_keeps_the_route_label():
    behind = _Behind()
    app = DirectDispatch(behind, router.routes, service_error_response)
    status, body, scope = _call(app, "POST", "/echo", b'{"a": 1}')
    assert status == 200 and body == b'{"echo":{"a":1},"route":"/echo"}'
    assert behind.reached == [] and scope["route"].path == "/echo"  # the metrics label


def test_a_service_error_is_the_same_answer_as_the_handlers_give():
    app = DirectDispatch(_Behind(), router.routes, service_error_response)
    status, body, _ = _call(app, "POST", "/echo", b'{"too_long": true}')
    assert status == 422
    assert b'"code":"limit_exceeded"' in body.replace(b" ", b"") and b'"limit":3' in body.replace(b" ", b"")


def test_everything_else_reaches_the_router():
    behind = _Behind()
    app = DirectDispatch(behind, router.routes, service_error_response)
    assert _call(app, "GET", "/echo")[0] == 405  # the router's answer for a wrong method
    assert _call(app, "POST", "/items/x")[1] == b'{"name":"x"}'
    assert _call(app, "GET", "/echo-get")[0] == 200
    assert behind.reached == [("GET", "/echo"), ("POST", "/items/x"), ("GET", "/echo-get")]
