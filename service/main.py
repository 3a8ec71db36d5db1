"""The app factory: ``create_app(settings) -> FastAPI``.

Start-up scans the model repository (cheap) and loads the models in a background task, so ``/health``
answers at once and ``/ready`` turns 200 when every task's default model is warm (with
``listen_when_ready``, start-up waits for that task, and uvicorn opens the port only then); then the
model-control loop (``service.model_control``: poll the repository, or follow other processes' load and
unload orders) runs until shutdown. Shutdown (uvicorn stops accepting and waits for in-flight requests
on SIGTERM, once ``service.drain`` has let the admitted requests finish) stops that loop, then drains
every batcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service import __version__, priority
from service.admission import AdmissionMiddleware
from service.api.app import ServiceApp
from service.api.dispatch import DirectDispatch
from service.api.errors import install_error_handlers, service_error_response
from service.api.openapi import install_openapi
from service.api.routes import health, models
from service.auth import AuthMiddleware, limits_models, load_api_keys
from service.config import Settings, get_settings
from service.drain import Drain
from service.inference_process import InferenceProcess
from service.logs import configure_logging, flush_logs
from service.loop_watchdog import LoopWatchdog
from service.metrics import Metrics
from service.middleware import RequestContextMiddleware
from service.model_control import ModelControl
from service.plugin import TaskPlugin
from service.protocols.v2 import repository as v2_repository
from service.protocols.v2 import routes as v2
from service.read_hold import end_holds
from service.repository import ModelRepository
from service.ui import routes as ui
from service.workers import WorkerGroup, signal_when_parent_dies

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
    inference = InferenceProcess(settings) if settings.inference_process else None
    repository = ModelRepository(
        settings, plugins, metrics, WorkerGroup.from_env(settings.process_count), inference
    )
    api_keys = load_api_keys(settings)  # a missing or malformed keys file stops the start here

    def begin_drain() -> None:  # on the event loop, once SIGTERM starts the drain
        repository.begin_drain()
        end_holds()  # a retry waiting on a held connection is read now and refused as shutting down

    drain = Drain(settings.shutdown_timeout_s, on_start=begin_drain)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        priority.set_gil_switch_interval(settings.gil_switch_interval_ms)
        if inference is not None:
            inference.start()  # at the process's priority, as the model threads
        priority.lower_event_loop(settings.event_loop_nice)  # before any model thread starts
        repository.scan()
        await control.prepare()
        app.state.loading = asyncio.create_task(_load(repository, settings), name="load-models")
        if settings.listen_when_ready:  # uvicorn opens the port once this start-up returns
            await asyncio.shield(app.state.loading)
        app.state.controlling = asyncio.create_task(control.run(app.state.loading), name="model-control")
        app.state.watching = asyncio.create_task(repository.watch_faults(), name="watch-faults")
        # SIGTERM drains the admitted requests before uvicorn closes the port; not with listen_when_ready,
        # where the open port is the readiness signal (see service.drain), but the bound still counts from it
        drain.install(hold_back=not settings.listen_when_ready)
        watchdog = None  # a server's loop only: a test client's runs in a thread (service.loop_watchdog)
        if settings.event_loop_stall_s and threading.current_thread() is threading.main_thread():
            watchdog = LoopWatchdog(settings.event_loop_stall_s)
            watchdog.start(asyncio.get_running_loop())
        yield
        if watchdog is not None:
            watchdog.stop()
        drain.uninstall()
        log.info("shutting down: draining batch queues")
        for task in (app.state.watching, app.state.controlling, app.state.loading):
            await _cancel(task)
        repository.workers.withdraw()  # the other processes stop counting this one as ready
        await repository.close(drain=True, timeout=drain.remaining_s())  # one bound since SIGTERM
        if inference is not None:
            await asyncio.to_thread(inference.close)
        metrics.close()
        log.info("shutdown complete")
        flush_logs()  # uvicorn may end the process by re-raising SIGTERM, before any exit hook

    app = ServiceApp(
        title="rnnserve",
        version=__version__,
        description="Serving RNN models exported to ONNX, with dynamic batching. See docs/service.md.",
        lifespan=lifespan,
        **_telemetry_options(settings.opentelemetry),
    )
    control = ModelControl(repository, settings, on_change=lambda: setattr(app, "openapi_schema", None))
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.repository = repository
    app.state.control = control
    app.state.drain = drain
    install_error_handlers(app)
    task_routers = [r for p in plugins for r in (p.router, *p.routers) if r is not None]
    for router in (*task_routers, health.router, models.router, v2.router, v2_repository.router, ui.router):
        _add_routes(app, router)
    # Middleware added last runs first: request id, body limit and access log; CORS; API keys; admission;
    # the hot routes' direct dispatch.
    app.add_middleware(DirectDispatch, routes=app.router.routes, on_error=service_error_response)
    app.add_middleware(
        AdmissionMiddleware, repository=repository, task_paths=_task_paths(plugins), drain=drain
    )
    if api_keys:
        app.add_middleware(AuthMiddleware, keys=api_keys, public_paths=settings.public_paths)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "WWW-Authenticate"],
            max_age=600,
        )
    app.add_middleware(
        RequestContextMiddleware,
        metrics=metrics,
        max_body_bytes=settings.limits.max_body_bytes,
        access_log=settings.access_log,
        refused_connection_hold_s=settings.refused_connection_hold_s,
    )
    install_openapi(app, settings, repository, auth=bool(api_keys), model_limits=limits_models(api_keys))
    return app


def _add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes as the app's own, the task routes first. ``include_router`` keeps each router
    as a nested branch that is walked route by route on every request; flat, a task route matches in
    ~10 µs instead of ~100 µs. (A router's prefix, tags and dependencies are already on its routes.)"""
    app.router.routes.extend(router.routes)


async def _cancel(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_worker_app() -> FastAPI:
    """The app of one of several serving processes. A fresh interpreter: logging is set up here too, but
    SIGTERM stays uvicorn's (installed before the app is loaded), so the process drains before it exits."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, sigterm_flush=False)
    _exit_with_supervisor()
    return create_app(settings)


def _exit_with_supervisor() -> None:
    """Linux: this process gets SIGTERM (and drains) when its supervisor dies, even by SIGKILL, so no
    orphaned serving process keeps the port."""
    signal_when_parent_dies(signal.SIGTERM)
    if os.getppid() == 1:  # the supervisor was already gone
        os.kill(os.getpid(), signal.SIGTERM)


def _task_paths(plugins: Sequence[TaskPlugin]) -> dict[str, str]:
    """POST path -> task, for the task routes (their model is the task's default unless the body names
    another; protocol routes name theirs)."""
    return {
        route.path: plugin.task
        for plugin in plugins
        if plugin.router is not None
        for route in plugin.router.routes
        if "POST" in getattr(route, "methods", ())
    }


def _telemetry_options(enabled: bool) -> dict[str, object]:
    """FastAPI >= 0.165 instruments every request with OpenTelemetry when a provider is configured, and
    looks the providers up per request to find out; ``telemetry`` switches that off at the source."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": enabled, "metrics": enabled, "logs": enabled}}
