"""The one error boundary: domain errors and the handlers that turn every failure into a JSON answer.

Every error body has the same shape::

    {"error": {"code": "...", "message": "...", "field": "texts[3]" | null, "limit": 5000 | null},
     "request_id": "..."}

Task plug-ins raise the ``ServiceError`` subclasses below (or their own subclasses); nothing else needs
to know about HTTP status codes. Any other exception becomes a 500 ``internal_error`` in
``service.middleware`` (logged with its traceback and the request id).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.logs import request_id_var

log = logging.getLogger(__name__)


class ServiceError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        limit: int | float | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.field = field
        self.limit = limit
        self.headers = headers or {}


class BadRequest(ServiceError):
    status_code, code = 400, "bad_request"


class InvalidInput(ServiceError):
    status_code, code = 422, "invalid_input"


class LimitExceeded(ServiceError):
    status_code, code = 422, "limit_exceeded"


class BodyTooLarge(ServiceError):
    status_code, code = 413, "body_too_large"


class ModelNotFound(ServiceError):
    status_code, code = 404, "model_not_found"


class ModelUnavailable(ServiceError):
    """The model exists but is loading or failed to load."""

    status_code, code = 503, "model_unavailable"


class QueueFull(ServiceError):
    status_code, code = 503, "queue_full"


class ShuttingDown(ServiceError):
    status_code, code = 503, "shutting_down"


class RequestTimeout(ServiceError):
    status_code, code = 504, "timeout"


class InferenceError(ServiceError):
    status_code, code = 500, "inference_error"


def error_body(code: str, message: str, field: str | None = None, limit: Any = None) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "field": field, "limit": limit},
        "request_id": request_id_var.get(),
    }


def error_response(
    status: int, code: str, message: str, field: str | None = None, limit: Any = None, headers=None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, field, limit), status_code=status, headers=headers)


def field_path(loc: tuple[Any, ...]) -> str:
    """``("body", "texts", 3)`` -> ``"texts[3]"``; the whole body is ``"body"``."""
    out = ""
    for part in (p for p in loc if p != "body"):
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    if exc.status_code >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    return error_response(exc.status_code, exc.code, exc.message, exc.field, exc.limit, exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"type": "invalid", "msg": "invalid request", "loc": ()}
    kind = first.get("type", "")
    if kind == "json_invalid":
        ctx = first.get("ctx") or {}
        detail = ctx.get("error", first.get("msg", ""))
        return error_response(400, "invalid_json", f"request body is not valid JSON: {detail}", "body")
    field = field_path(tuple(first.get("loc", ())))
    message = f"{field}: {first.get('msg')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return error_response(422, "invalid_input", message, field)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 413: "body_too_large"}
    return error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), headers=exc.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
