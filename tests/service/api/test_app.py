"""``ServiceApp``: the service's middleware outermost, FastAPI's own layers inside it."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.testclient import TestClient
from starlette.middleware.errors import ServerErrorMiddleware

from service.api.app import ServiceApp
from service.api.dispatch import DirectDispatch
from service.main import create_app
from service.metrics import Metrics
from service.middleware import RequestContextMiddleware
from tests.service.conftest import settings_for


def _layers(app) -> list[type]:
    layers, layer = [], app.build_middleware_stack()
    while hasattr(layer, "app"):
        layers.append(type(layer))
        layer = layer.app
    return layers


def test_the_service_middleware_wraps_fastapis_layers(tiny_repo):
    layers = _layers(create_app(settings_for(tiny_repo)))
    assert layers[0] is RequestContextMiddleware
    # a task route is answered by DirectDispatch, before any of FastAPI's own layers
    assert layers.index(DirectDispatch) < layers.index(ServerErrorMiddleware)


def test_an_error_in_a_route_behind_fastapis_layers_is_a_json_500_with_the_request_id():
    router = APIRouter()

    @router.get("/broken")
    async def broken() -> dict:
        raise KeyError("bug")

    app = ServiceApp()
    app.include_router(router)
    app.add_middleware(RequestContextMiddleware, metrics=Metrics(), max_body_bytes=1024, access_log=False)
    with TestClient(app) as client:
        r = client.get("/broken", headers={"X-Request-ID": "bug-2"})
    assert r.status_code == 500 and r.headers["x-request-id"] == "bug-2"
    assert r.json() == {
        "error": {"code": "internal_error", "message": "internal server error", "field": None, "limit": None},
        "request_id": "bug-2",
    }
