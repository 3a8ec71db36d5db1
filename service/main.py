"""The app factory: ``create_app(settings) -> FastAPI``.

Start-up scans the model repository (cheap) and loads the models in a background task, so ``/health``
answers at once and ``/ready`` turns 200 when every task's default model is warm. Shutdown (uvicorn
stops accepting and waits for in-flight requests on SIGTERM) then drains every batcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import __version__
from service.api.errors import install_error_handlers
from service.api.routes import health, models
from service.config import Settings, get_settings
from service.metrics import Metrics
from service.middleware import RequestContextMiddleware
from service.plugin import TaskPlugin
from service.repository import ModelRepository
from service.ui import routes as ui

log = logging.getLogger(__name__)


async def _load(repository: ModelRepository, settings: Settings) -> None:
    await repository.load_all()
    if settings.gc_freeze:
        # Everything alive now (modules, sessions, vocabularies) lives as long as the process: moving it
        # out of the collector's generations keeps full collections, and the latency spikes they cause
        # under load, small.
        gc.collect()
        gc.freeze()


def create_app(settings: Settings | None = None, plugins: Sequence[TaskPlugin] | None = None) -> FastAPI:
    settings = settings or get_settings()
    if plugins is None:
        from service.registry import default_plugins

        plugins = default_plugins()
    metrics = Metrics()
    repository = ModelRepository(settings, plugins, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        repository.scan()
        app.state.loading = asyncio.create_task(_load(repository, settings), name="load-models")
        yield
        log.info("shutting down: draining batch queues")
        if not app.state.loading.done():
            app.state.loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await app.state.loading
        await repository.close(drain=True, timeout=settings.shutdown_timeout_s)
        log.info("shutdown complete")

    app = FastAPI(
        title="rnnserve",
        version=__version__,
        description="Serving RNN models exported to ONNX, with dynamic batching. See docs/service.md.",
        lifespan=lifespan,
        **_telemetry_options(settings.opentelemetry),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.repository = repository
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=metrics,
        max_body_bytes=settings.limits.max_body_bytes,
        access_log=settings.access_log,
    )
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(ui.router)
    for plugin in plugins:
        if plugin.router is not None:
            app.include_router(plugin.router)
    return app


def _telemetry_options(enabled: bool) -> dict[str, object]:
    """FastAPI >= 0.165 instruments every request with OpenTelemetry when a provider is configured, and
    looks the providers up per request to find out; ``telemetry`` switches that off at the source."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": enabled, "metrics": enabled, "logs": enabled}}
