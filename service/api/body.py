"""Parses a JSON request body into a pydantic model with errors that name the problem and the field.

FastAPI's own body parsing answers invalid UTF-8 with a bare "There was an error parsing the body";
this helper distinguishes invalid UTF-8, invalid JSON and field errors, and validates in pydantic's
Rust JSON parser in one pass. Routes declare their schema for OpenAPI with ``json_body_openapi``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from service.errors import BadRequest, InvalidInput, field_path

M = TypeVar("M", bound=BaseModel)


class InvalidJson(BadRequest):
    code = "invalid_json"


class InvalidUtf8(BadRequest):
    code = "invalid_utf8"


async def read_json(request: Request, model: type[M]) -> M:
    body = await request.body()
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUtf8(f"request body is not valid UTF-8 (byte {exc.start})", field="body") from None
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        if first["type"] == "json_invalid":
            detail = (first.get("ctx") or {}).get("error", first["msg"])
            raise InvalidJson(f"request body is not valid JSON: {detail}", field="body") from None
        field = field_path(tuple(first["loc"]))
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidInput(f"{field}: {first['msg']}{more}", field=field) from None


def json_body_openapi(model: type[BaseModel], examples: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the JSON request body, with named examples."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema, "examples": examples}},
        }
    }


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
