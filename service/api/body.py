"""Parses a JSON request body into a pydantic model with errors that name the problem, the field and the
limit.

FastAPI's own body parsing answers invalid UTF-8 with a bare "There was an error parsing the body";
this helper distinguishes invalid UTF-8, invalid JSON and field errors, and validates in pydantic's
Rust JSON parser in one pass. Routes declare their schema for OpenAPI with ``json_body_openapi``; the
app's OpenAPI document replaces it with the body's ``openapi_schema`` for that app's settings
(``service.api.openapi``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import fastapi.routing
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from service.api.schemas import REF_TEMPLATE, RequestBody, SchemaContext
from service.config import Settings
from service.errors import BadRequest, InvalidInput, LimitExceeded, ServiceError, field_path

M = TypeVar("M", bound=BaseModel)

# pydantic error types that break a size limit (code ``limit_exceeded``); the others are ``invalid_input``
_SIZE_ERRORS = {"string_too_long", "too_long"}
# where pydantic keeps the bound a value broke
_LIMIT_KEYS = ("max_length", "min_length", "le", "lt", "ge", "gt")


class InvalidJson(BadRequest):
    code = "invalid_json"


class InvalidUtf8(BadRequest):
    code = "invalid_utf8"


def validation_error(errors: Sequence[dict[str, Any]]) -> ServiceError:
    """The first of pydantic's errors as the service's error: 400 for a body that is not JSON, else 422
    naming the field, with the limit the value broke (``limit_exceeded`` for a string or list above its
    maximum length, ``invalid_input`` for the rest)."""
    first = errors[0] if errors else {"type": "invalid", "msg": "invalid request", "loc": ()}
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", first.get("msg", ""))
        return InvalidJson(f"request body is not valid JSON: {detail}", field="body")
    field = field_path(tuple(first.get("loc", ())))
    ctx = first.get("ctx") or {}
    limit = next((ctx[k] for k in _LIMIT_KEYS if isinstance(ctx.get(k), int | float)), None)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    kind = LimitExceeded if first.get("type") in _SIZE_ERRORS else InvalidInput
    return kind(f"{field}: {first.get('msg')}{more}", field=field, limit=limit)


async def read_json(request: Request, model: type[M]) -> M:
    body = await request.body()
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUtf8(f"request body is not valid UTF-8 (byte {exc.start})", field="body") from None
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False, include_input=False)) from None


class JsonBody(dict):
    """``openapi_extra`` declaring a JSON request body; it remembers its model and examples so the app's
    OpenAPI document can state the body's rules for the app's own settings."""

    def __init__(self, model: type[BaseModel], examples: dict[str, dict[str, Any]]):
        self.model = model
        self.examples = examples
        super().__init__(requestBody=self.request_body(None))

    def request_body(self, context: SchemaContext | None) -> dict[str, Any]:
        if issubclass(self.model, RequestBody):
            schema = self.model.openapi_schema(context or SchemaContext(Settings.model_construct()))
        else:
            schema = self.model.model_json_schema(ref_template=REF_TEMPLATE)
        return {
            "required": True,
            "content": {"application/json": {"schema": schema, "examples": self.examples}},
        }


def json_body_openapi(model: type[BaseModel], examples: dict[str, dict[str, Any]]) -> JsonBody:
    """``openapi_extra`` declaring ``model`` as the JSON request body, with named examples."""
    return JsonBody(model, examples)


class DirectRoute(APIRoute):
    """An ``APIRoute`` for hot endpoints of the form ``async def handler(request) -> Response``.

    OpenAPI is generated from the route's metadata as usual, but each request skips FastAPI's
    dependency solving and response-model serialisation: the handler parses its body with
    ``read_json`` and returns its own ``JSONResponse`` (declare ``response_model`` for the docs).
    """

    def get_route_handler(self):
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            return await endpoint(request)

        return handler


def iter_api_routes(routes: Sequence[Any]) -> Iterator[Any]:
    """Every API route of an app, included routers flattened (FastAPI >= 0.165 nests them; older
    versions list them): objects with ``path``, ``path_format``, ``methods`` and ``openapi_extra``."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    if iterate is None:
        yield from (route for route in routes if isinstance(route, APIRoute))
        return
    for context in iterate(routes):
        if isinstance(context.original_route, APIRoute):
            yield context
