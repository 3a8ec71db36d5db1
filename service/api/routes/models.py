"""Model listing and Prometheus metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request, Response

from service.api.schemas import ModelsResponse
from service.metrics import CONTENT_TYPE

router = APIRouter(tags=["models"])


@router.get(
    "/models",
    response_model=ModelsResponse,
    summary="Every model in the repository: state, version, provider, batching, counters and config",
)
async def models(request: Request) -> ModelsResponse:
    return ModelsResponse(pid=os.getpid(), models=request.app.state.repository.describe())


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
