"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse, summary="Liveness: the process answers")
async def health() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/ready",
    response_model=ReadyResponse,
    summary="Readiness: every task's default model is loaded and warmed up",
    responses={503: {"model": ReadyResponse, "description": "loading, or a default model failed"}},
)
async def ready(request: Request) -> JSONResponse:
    repository = request.app.state.repository
    ok, reasons = repository.readiness()
    body = ReadyResponse(ready=ok, defaults=repository.defaults, reasons=reasons)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
