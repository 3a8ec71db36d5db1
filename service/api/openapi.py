"""The app's OpenAPI document: FastAPI's, completed with every rule this app enforces.

* Request bodies declared with ``json_body_openapi`` get their ``openapi_schema`` for the app's settings
  (text and list limits) and its loaded models (``/generate``'s prompt), not frozen constants.
* Answers every route can give (``413`` from the body limit, ``500``) are listed on every operation.
* With API keys: a bearer security scheme, ``security`` on every operation that needs a key (``[]`` on
  public ones) and its ``401`` with ``WWW-Authenticate``; when some key is limited to models, ``403`` on
  every protected operation that looks a model up (those that declare ``404``). Without keys, neither
  ``401`` nor ``403`` is listed.

The document is rebuilt on each call until the models have loaded, then kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from service.api.body import JsonBody, iter_api_routes
from service.api.schemas import ERROR_STATUSES, REF_TEMPLATE, ErrorResponse, SchemaContext
from service.auth import is_public_path
from service.config import Settings

if TYPE_CHECKING:
    from service.repository import ModelRepository

SECURITY_SCHEME = "apiKey"
_EVERY_ROUTE = (413, 500)


def install_openapi(
    app: FastAPI,
    settings: Settings,
    repository: ModelRepository,
    *,
    auth: bool = False,
    model_limits: bool = False,
) -> None:
    """Replaces ``app.openapi`` (what ``/openapi.json`` and ``/docs`` serve)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None and repository.loading_done:
            return app.openapi_schema
        app.openapi_schema = None
        document = FastAPI.openapi(app)  # FastAPI's own, from the routes
        app.openapi_schema = None
        context = SchemaContext(settings, repository)
        _request_bodies(document, app.routes, context)
        error_ref = _error_schema(document)
        _common_responses(document, settings, error_ref, auth=auth, model_limits=model_limits)
        if repository.loading_done:
            app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _operations(document: dict[str, Any]):
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in {"get", "put", "post", "delete", "options", "head", "patch", "trace"}:
                yield path, method, operation


def _hoist(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Moves a pydantic schema's ``$defs`` into ``components/schemas`` (where its refs point)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    return schema


def _request_bodies(document: dict[str, Any], routes: list[Any], context: SchemaContext) -> None:
    paths = document.get("paths", {})
    for route in iter_api_routes(routes):
        if not isinstance(route.openapi_extra, JsonBody):
            continue
        for method in route.methods or ():
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            body = route.openapi_extra.request_body(context)
            _hoist(document, body["content"]["application/json"]["schema"])
            operation["requestBody"] = body


def _error_schema(document: dict[str, Any]) -> dict[str, str]:
    """A reference to the components' schema of the service's error body (FastAPI names it
    ``ErrorResponse``, or by its module when another model has that name); added when no route uses it."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    qualified = ErrorResponse.__module__.replace(".", "__") + "__ErrorResponse"
    for name in ("ErrorResponse", qualified):
        if "request_id" in schemas.get(name, {}).get("properties", {}):
            return {"$ref": f"#/components/schemas/{name}"}
    name = qualified if "ErrorResponse" in schemas else "ErrorResponse"
    schemas[name] = _hoist(document, ErrorResponse.model_json_schema(ref_template=REF_TEMPLATE))
    return {"$ref": f"#/components/schemas/{name}"}


def _error(status: int, ref: dict[str, str]) -> dict[str, Any]:
    return {"description": ERROR_STATUSES[status], "content": {"application/json": {"schema": dict(ref)}}}


def _common_responses(
    document: dict[str, Any], settings: Settings, error_ref: dict[str, str], *, auth: bool, model_limits: bool
) -> None:
    if auth:
        schemes = document["components"].setdefault("securitySchemes", {})
        schemes[SECURITY_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "an API key from RNNSERVE_API_KEYS or RNNSERVE_API_KEYS_FILE",
        }
    for path, _method, operation in _operations(document):
        responses = operation.setdefault("responses", {})
        for status in _EVERY_ROUTE:
            responses.setdefault(str(status), _error(status, error_ref))
        public = operation.get("security") == [] or is_public_path(path, settings.public_paths)
        if auth and not public:
            operation["security"] = [{SECURITY_SCHEME: []}]
            unauthorized = _error(401, error_ref)
            unauthorized["headers"] = {
                "WWW-Authenticate": {
                    "description": 'how to authenticate: `Bearer realm="rnnserve"`',
                    "required": True,
                    "schema": {"type": "string"},
                }
            }
            responses["401"] = unauthorized
            if not model_limits:
                responses.pop("403", None)
            elif "404" in responses:  # a route that looks a model up (404) checks the key's models too
                responses.setdefault("403", _error(403, error_ref))
        else:
            if auth:
                operation["security"] = []
            responses.pop("401", None)
            responses.pop("403", None)
        unavailable = responses.get("503", {})
        if unavailable.get("content", {}).get("application/json", {}).get("schema") == error_ref:
            unavailable.setdefault("headers", {})["Retry-After"] = {
                "description": "seconds to wait before retrying (queue full, model loading)",
                "required": False,
                "schema": {"type": "string"},
            }
