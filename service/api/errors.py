"""The one error boundary: the handlers that turn every failure into the JSON error answer."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.body import validation_error
from service.api.responses import JsonAnswer
from service.errors import ServiceError, error_body

log = logging.getLogger(__name__)


def error_response(
    status: int, code: str, message: str, field: str | None = None, limit: Any = None, headers=None
) -> JsonAnswer:
    return JsonAnswer(error_body(code, message, field, limit), status_code=status, headers=headers)


async def service_error_response(request: Request, exc: ServiceError) -> JsonAnswer:
    if exc.status_code >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    return error_response(exc.status_code, exc.code, exc.message, exc.field, exc.limit, exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JsonAnswer:
    return await service_error_response(request, validation_error(exc.errors()))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JsonAnswer:
    codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 413: "body_too_large"}
    return error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), headers=exc.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, service_error_response)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
