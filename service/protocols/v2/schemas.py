"""Request and response bodies of the Open Inference Protocol's REST API (JSON tensors only).

Requests are validated in one pass by pydantic's JSON parser (``read_json``); tensor ``data`` stays an
untyped JSON list (no model per element), checked by ``service.protocols.v2.tensors``. The response models
document the answers in OpenAPI; handlers build the answers as plain dicts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas import JsonInt

#: a parameter value: the protocol allows a string, a number or a boolean (``stop`` may also be a list)
Parameters = dict[str, Any]


class _Body(BaseModel):
    """Strict like the service's own bodies: unknown fields are errors, no value changes type."""

    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=())


class RequestInput(_Body):
    name: str = Field(description="the model's input tensor name (model metadata lists it)")
    shape: list[JsonInt] = Field(description="[N]: one string per text")
    datatype: str = Field(description="BYTES")
    parameters: Parameters | None = None
    data: list[Any] | None = Field(None, description="N strings, flat or nested")


class RequestOutput(_Body):
    name: str
    parameters: Parameters | None = Field(
        None,
        description="`binary_data` is accepted and answered as JSON; other output parameters are refused",
    )


class InferRequest(_Body):
    id: str | None = Field(None, description="returned unchanged in the answer")
    parameters: Parameters | None = Field(
        None, description="task options (model metadata lists them under parameters.request_parameters)"
    )
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = Field(None, description="the outputs to return; default: all")


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: Parameters | None = None
    data: list[Any]


class InferResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str
    id: str | None = Field(None, description="the request's id, when it gave one")
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 marks a variable dimension")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(
        description="task, labels where there are some, and the accepted request parameters"
    )


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class V2Error(BaseModel):
    """The protocol's error: ``error`` is the message. (Errors answered before a route runs, such as a
    path that names no route, a missing API key or a declared body above the limit, have the service's
    own shape, where ``error`` is an object.)"""

    error: str | dict[str, Any]


V2_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": V2Error, "description": text}
    for code, text in {
        400: "invalid JSON, a malformed tensor, an unknown or out-of-range parameter, a limit exceeded",
        403: "the API key may not use this model (only when keys are limited to models)",
        404: "unknown model, or a version that is not loaded",
        413: "request body too large",
        499: "the client left before the answer (its work was cancelled; nobody reads this)",
        500: "the model failed on this input, or an unexpected error",
        503: "model loading or failed, queue full or shutting down (Retry-After where waiting helps)",
        504: "request timed out",
    }.items()
}


# -- the model repository extension ------------------------------------------------------------------


class RepositoryIndexRequest(_Body):
    ready: bool = Field(False, description="true: only the models ready for inference")


class RepositoryIndexEntry(BaseModel):
    name: str
    version: str | None = Field(None, description="the version served or being loaded (absent when none)")
    state: Literal["READY", "LOADING", "UNLOADING", "UNAVAILABLE"]
    reason: str = Field(description="why the model is in this state (empty when ready)")


class LoadParameters(_Body):
    """None: Triton's ``config`` and ``file:<version>/<name>`` overrides are not supported (a model is
    loaded from the repository's files)."""


class RepositoryLoadRequest(_Body):
    parameters: LoadParameters | None = None


class UnloadParameters(_Body):
    unload_dependents: bool = Field(False, description="accepted; no model depends on another here")


class RepositoryUnloadRequest(_Body):
    parameters: UnloadParameters | None = None


class RepositoryDone(BaseModel):
    """A load or unload that succeeded: an empty object."""

    model_config = ConfigDict(extra="forbid")
