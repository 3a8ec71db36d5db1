"""The model repository extension of the Open Inference Protocol (Triton's): index, load and unload.

Registered whatever ``RNNSERVE_MODEL_CONTROL`` says. ``index`` answers in every mode; ``load`` and
``unload`` act with ``explicit`` and answer 409 otherwise (the request is well formed; the service is
configured not to take it). They need an API key when keys are configured, and a key limited to some
models may load and unload only those. The work is ``service.model_control``'s; errors answer
``{"error": "..."}`` as the rest of the protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.api.body import DirectRoute, JsonBody, read_json
from service.api.schemas import SchemaContext
from service.auth import authorize_model
from service.errors import ServiceError
from service.protocols.v2.errors import error_response
from service.protocols.v2.routes import NAME_PARAMETER, TAG
from service.protocols.v2.schemas import (
    RepositoryDone,
    RepositoryIndexEntry,
    RepositoryIndexRequest,
    RepositoryLoadRequest,
    RepositoryUnloadRequest,
    V2Error,
)

M = TypeVar("M", bound=BaseModel)

router = APIRouter(tags=[TAG], route_class=DirectRoute)


class OptionalJsonBody(JsonBody):
    """A JSON request body that may be left out (Triton's clients send none, or an empty one)."""

    def request_body(self, context: SchemaContext | None) -> dict[str, Any]:
        return {**super().request_body(context), "required": False}


async def _optional_body(request: Request, model: type[M]) -> M:
    if not (await request.body()).strip():
        return model()
    return await read_json(request, model)


def _errors(statuses: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": V2Error, "description": text} for status, text in statuses.items()}


_INVALID = "the body is not JSON, or has an unknown or mistyped field or parameter"
_CONTROL_ERRORS = {
    400: _INVALID + "; or the model failed to load (the version served before, if any, still is)",
    403: "the API key may not use this model (only when keys are limited to models)",
    404: "no such model in the repository (load) or loaded (unload)",
    409: "RNNSERVE_MODEL_CONTROL is not explicit",
}


@router.post(
    "/v2/repository/index",
    response_model=list[RepositoryIndexEntry],
    responses=_errors({400: _INVALID}),
    summary="Repository index: every model loaded or in the repository, its version, state and reason",
    description="Answers in every RNNSERVE_MODEL_CONTROL mode. `state` is READY, LOADING, UNLOADING or "
    "UNAVAILABLE (failed, unloaded, or in the repository but not loaded); `version` is the version "
    "served, absent when there is none.",
    openapi_extra=OptionalJsonBody(
        RepositoryIndexRequest, {"ready": {"summary": "ready models only", "value": {"ready": True}}}
    ),
)
async def repository_index(request: Request) -> JSONResponse:
    try:
        body = await _optional_body(request, RepositoryIndexRequest)
    except ServiceError as exc:
        return error_response(exc)
    return JSONResponse(await request.app.state.control.index(body.ready))


async def _load(request: Request) -> JSONResponse:
    return await _change(request, RepositoryLoadRequest, request.app.state.control.load)


async def _unload(request: Request) -> JSONResponse:
    return await _change(request, RepositoryUnloadRequest, request.app.state.control.unload)


async def _change(
    request: Request, body_model: type[BaseModel], action: Callable[[str], Awaitable[None]]
) -> JSONResponse:
    """A load or unload: the optional body checked, the API key's models checked, then ``action``."""
    name = request.path_params["model_name"]
    try:
        await _optional_body(request, body_model)
        authorize_model(name)
        await action(name)
    except ServiceError as exc:
        return error_response(exc)
    return JSONResponse({})


def _body(model: type[BaseModel]) -> OptionalJsonBody:
    body = OptionalJsonBody(model, {"empty": {"summary": "no parameters", "value": {}}})
    body["parameters"] = [NAME_PARAMETER]
    return body


router.add_api_route(
    "/v2/repository/models/{model_name}/load",
    _load,
    methods=["POST"],
    response_model=RepositoryDone,
    responses=_errors(_CONTROL_ERRORS),
    summary="Load or reload a model (RNNSERVE_MODEL_CONTROL=explicit)",
    description="Reads the model's folder again and loads the version to serve (the pinned one, else the "
    "newest): validated, loaded and warmed up, then switched in; the version served before drains and is "
    "unloaded. A failure leaves it serving (400). With several serving processes, every process loads "
    "it before the answer. Any other RNNSERVE_MODEL_CONTROL: 409.",
    openapi_extra=_body(RepositoryLoadRequest),
)
router.add_api_route(
    "/v2/repository/models/{model_name}/unload",
    _unload,
    methods=["POST"],
    response_model=RepositoryDone,
    responses=_errors(_CONTROL_ERRORS),
    summary="Unload a model (RNNSERVE_MODEL_CONTROL=explicit)",
    description="New requests for the model get 503 at once; the ones it admitted finish, then it is "
    "unloaded (and a task whose default it is is not ready). With several serving processes, every "
    "process unloads it before the answer. Any other RNNSERVE_MODEL_CONTROL: 409.",
    openapi_extra=_body(RepositoryUnloadRequest),
)
