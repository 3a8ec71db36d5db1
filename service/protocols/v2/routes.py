"""The Open Inference Protocol's REST endpoints (KServe v2 / Triton), beside the task routes.

Every model of the repository answers by name, through the same model objects as the task routes: the
texts of a request join the model's dynamic batcher (``infer_many``) or generation's step scheduler. The
task-specific part (input name, parameters, output tensors) is the task's adapter (``TaskPlugin.v2``,
``service/tasks/<task>/v2.py``). Only the loaded version of a model can be named; any other is a 404.
Errors answer ``{"error": "..."}`` (``service.protocols.v2.errors``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service import __version__
from service.api.body import DirectRoute, json_body_openapi, read_json
from service.api.responses import JsonAnswer
from service.errors import BadRequest, ModelNotFound, ModelUnavailable, ServiceError, public_message
from service.protocols.v2.adapter import V2Adapter
from service.protocols.v2.errors import BinaryDataUnsupported, error_response
from service.protocols.v2.schemas import (
    V2_ERRORS,
    InferRequest,
    InferResponse,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
)

TAG = "Open Inference Protocol (v2)"
SERVER_NAME = "rnnserve"
#: Triton's name for request parameters beyond the protocol's (the task options)
EXTENSIONS = ["parameters"]
#: Triton's name for the repository routes (``service.protocols.v2.repository``), reported when they can
#: load and unload (``RNNSERVE_MODEL_CONTROL=explicit``)
MODEL_REPOSITORY = "model_repository"

router = APIRouter(tags=[TAG], route_class=DirectRoute)

# a model's name follows the manifest's rule; a version is a version folder's number
NAME_PARAMETER = {
    "name": "model_name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_.-]*$"},
}
_VERSION = {
    "name": "model_version",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_EXAMPLES = {
    "sentiment": {
        "summary": "two texts to a sentiment model",
        "value": {
            "id": "42",
            "inputs": [
                {
                    "name": "text",
                    "shape": [2],
                    "datatype": "BYTES",
                    "data": ["a gripping , beautifully acted film .", "dull and far too long ."],
                }
            ],
        },
    },
    "translation": {
        "summary": "a translation model, greedy, translation output only",
        "value": {
            "parameters": {"beam_size": 1},
            "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["A dog runs."]}],
            "outputs": [{"name": "translation"}],
        },
    },
    "generation": {
        "summary": "a generation model, seeded",
        "value": {
            "parameters": {"max_new_tokens": 60, "temperature": 0.8, "seed": 1},
            "inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["ROMEO:"]}],
        },
    },
}


def _path(*parameters: dict[str, Any]) -> dict[str, Any]:
    return {"parameters": list(parameters)}


def _body(*parameters: dict[str, Any]) -> dict[str, Any]:
    """The inference body's ``openapi_extra`` (the app's document completes it) with path parameters."""
    body = json_body_openapi(InferRequest, _EXAMPLES)
    body.update(_path(*parameters))
    return body


def _lookup(request: Request) -> tuple[Any, V2Adapter]:
    """The repository entry and task adapter the path names; 404 for an unknown model or version."""
    repository = request.app.state.repository
    path = request.path_params
    name = path["model_name"]
    entry = repository.entries.get(name)
    if entry is None:
        raise ModelNotFound(f"unknown model '{name}'; models: {sorted(repository.entries)}")
    plugin = repository.plugins.get(entry.task) if entry.task else None
    if entry.manifest is None or plugin is None:
        raise ModelUnavailable(f"model '{name}' failed to load: {entry.error}")
    if plugin.v2 is None:
        raise BadRequest(f"model '{name}' (task {entry.task}) is not served over the v2 protocol")
    version = path.get("model_version")
    if version is not None and version != str(entry.version):
        loaded = "none" if entry.version is None else f"'{entry.version}'"
        raise ModelNotFound(
            f"model '{name}' has no version '{version}' loaded (loaded version: {loaded}; "
            "RNNSERVE_PINNED_VERSIONS picks another)"
        )
    return entry, plugin.v2


@router.get("/v2", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata(request: Request) -> JSONResponse:
    explicit = request.app.state.settings.model_control == "explicit"
    extensions = [*EXTENSIONS, MODEL_REPOSITORY] if explicit else EXTENSIONS
    return JSONResponse({"name": SERVER_NAME, "version": __version__, "extensions": extensions})


@router.get("/v2/health/live", response_model=ServerLive, summary="Server liveness")
async def server_live(request: Request) -> JSONResponse:
    return JSONResponse({"live": True})


@router.get(
    "/v2/health/ready",
    response_model=ServerReady,
    responses={503: {"model": ServerReady, "description": "loading, or a task's default model failed"}},
    summary="Server readiness: every task's default model is loaded and warm (as GET /ready)",
)
async def server_ready(request: Request) -> JSONResponse:
    ready, reasons = request.app.state.repository.readiness()
    if ready:
        return JSONResponse({"ready": True})
    why = "; ".join(f"{task}: {reason}" for task, reason in reasons.items())
    return JSONResponse({"ready": False, "error": public_message(why)}, status_code=503)


async def _model_ready(request: Request) -> JSONResponse:
    try:
        entry, _ = _lookup(request)
        request.app.state.repository.resolve(entry.task, entry.name)
    except ModelUnavailable as exc:
        name = request.path_params["model_name"]
        body = {"name": name, "ready": False, "error": public_message(exc.message)}
        return JSONResponse(body, 503, exc.headers or None)
    except ServiceError as exc:
        return error_response(exc)
    return JSONResponse({"name": entry.name, "ready": True})


async def _model_metadata(request: Request) -> JSONResponse:
    try:
        entry, adapter = _lookup(request)
    except ServiceError as exc:
        return error_response(exc)
    return JSONResponse(adapter.metadata(entry.manifest, entry.version))


async def _infer(request: Request) -> JSONResponse:
    try:
        if "inference-header-content-length" in request.headers:
            raise BinaryDataUnsupported("request")
        entry, adapter = _lookup(request)
        state = request.app.state
        model = state.repository.resolve(entry.task, entry.name)  # refusals before the body is read
        body = await read_json(request, InferRequest)
        if "model_version" not in request.path_params:
            # no version named: the one loaded when the body has arrived answers, not one switched out
            # (and draining) while it was arriving
            model = state.repository.resolve(entry.task, entry.name)
        texts = adapter.texts(body.inputs, state.settings.limits)
        options = adapter.options(body.parameters)
        names = adapter.output_names(body.outputs, options, model.manifest)
        options = adapter.with_outputs(options, names)
        results = await adapter.run(model, texts, options, request)
        outputs = [adapter.encode(name, results, model) for name in names]
    except ServiceError as exc:
        return error_response(exc)
    answer: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version)}
    if body.id is not None:
        answer["id"] = body.id
    answer["outputs"] = outputs
    return JsonAnswer(answer)


_READY_DOC = {
    "response_model": ModelReady,
    "responses": {
        403: V2_ERRORS[403],
        404: V2_ERRORS[404],
        503: {"model": ModelReady, "description": "loading or failed"},
    },
}
_METADATA_DOC = {
    "response_model": ModelMetadata,
    "responses": {status: V2_ERRORS[status] for status in (403, 404, 503)},
}
_INFER_DOC = {"response_model": InferResponse, "responses": V2_ERRORS}

router.add_api_route(
    "/v2/models/{model_name}",
    _model_metadata,
    methods=["GET"],
    summary="Model metadata: versions, platform, input and output tensors, parameters",
    openapi_extra=_path(NAME_PARAMETER),
    **_METADATA_DOC,
)
router.add_api_route(
    "/v2/models/{model_name}/versions/{model_version}",
    _model_metadata,
    methods=["GET"],
    summary="Model metadata of the loaded version",
    openapi_extra=_path(NAME_PARAMETER, _VERSION),
    **_METADATA_DOC,
)
router.add_api_route(
    "/v2/models/{model_name}/ready",
    _model_ready,
    methods=["GET"],
    summary="Model readiness",
    openapi_extra=_path(NAME_PARAMETER),
    **_READY_DOC,
)
router.add_api_route(
    "/v2/models/{model_name}/versions/{model_version}/ready",
    _model_ready,
    methods=["GET"],
    summary="Model readiness of the loaded version",
    openapi_extra=_path(NAME_PARAMETER, _VERSION),
    **_READY_DOC,
)
router.add_api_route(
    "/v2/models/{model_name}/infer",
    _infer,
    methods=["POST"],
    summary="Inference: BYTES text tensor in, typed output tensors out",
    openapi_extra=_body(NAME_PARAMETER),
    **_INFER_DOC,
)
router.add_api_route(
    "/v2/models/{model_name}/versions/{model_version}/infer",
    _infer,
    methods=["POST"],
    summary="Inference on the loaded version",
    openapi_extra=_body(NAME_PARAMETER, _VERSION),
    **_INFER_DOC,
)
