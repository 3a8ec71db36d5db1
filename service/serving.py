"""The task plug-in contract: what a task provides so the core can load, batch, serve and report it.

Adding a task (NER, translation, ...) takes three pieces, none of which touches the core:

1. A ``ServedModel`` subclass that wraps the task codec (``service/tasks/<task>.py``) and the ONNX
   sessions: ``predict_batch(items) -> results`` (run in a worker thread by a ``DynamicBatcher``; one
   result or exception per item) and ``warmup_items()``.
2. A router (``service/api/routes/<task>.py``) whose handlers call
   ``request.app.state.repository.resolve(task, name)`` and then ``model.infer_many(items)``.
3. A ``TaskPlugin(task=..., build=..., router=...)`` added to ``service/plugins/__init__.py``; most tasks
   build with ``codec_model_builder(ModelClass, Codec.from_manifest)``.

Models whose serving is not "one item in, one result out" (step-level generation) override
``start``/``close``/``infer_many`` with their own scheduler and keep the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import onnxruntime as ort
from fastapi import APIRouter

from service.batching import DynamicBatcher
from service.config import BatchingConfig, Settings
from service.errors import InferenceError, ServiceError
from service.manifest import ModelManifest
from service.metrics import BatchMetrics
from service.runtime import provider_of

log = logging.getLogger(__name__)


@dataclass
class ServedModel:
    manifest: ModelManifest
    version: int
    version_dir: Path
    sessions: dict[str, ort.InferenceSession]
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    batcher: DynamicBatcher | None = field(default=None, init=False)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def provider(self) -> str:
        return provider_of(next(iter(self.sessions.values())))

    @property
    def max_batch_size(self) -> int:
        """Settings may lower, never raise, the size the graph was exported and tested for."""
        return min(self.batching.max_batch_size, self.manifest.max_batch_size)

    # -- to implement per task -------------------------------------------------------------------
    def predict_batch(self, items: list[Any]) -> Sequence[Any]:
        """Runs in a worker thread: one result (or exception instance) per item, in order."""
        raise NotImplementedError

    def warmup_items(self) -> list[Any]:
        """Inputs that exercise the graph once (a short and a long one) before the model is ready."""
        raise NotImplementedError

    # -- lifecycle, shared -----------------------------------------------------------------------
    def warmup(self) -> None:
        items = self.warmup_items()
        for result in self.predict_batch(items):
            if isinstance(result, BaseException):
                raise result
        self.predict_batch(items[:1])

    async def start(self, metrics: BatchMetrics | None, workers: int = 1) -> None:
        self.batcher = DynamicBatcher(
            self.predict_batch,
            name=self.name,
            max_batch_size=self.max_batch_size,
            max_queue_delay_ms=self.batching.max_queue_delay_ms,
            max_queue_size=self.batching.max_queue_size,
            workers=workers,
            metrics=metrics,
        )
        await self.batcher.start()

    async def close(self, drain: bool = True, timeout: float | None = None) -> None:
        if self.batcher is not None:
            await self.batcher.close(drain=drain, timeout=timeout)

    async def infer_many(self, items: Sequence[Any]) -> list[Any]:
        """Results in order; an item's own error is re-raised (not a ``ServiceError``: a 500 that says so)."""
        try:
            return await self.batcher.submit_many(items, timeout=self.batching.timeout_s)
        except ServiceError:
            raise
        except Exception as exc:
            log.warning("model %s: inference failed: %s: %s", self.name, type(exc).__name__, exc)
            raise InferenceError(f"inference failed: {type(exc).__name__}: {exc}") from exc

    def info(self) -> dict[str, Any]:
        """What ``/models`` shows besides the manifest."""
        batcher = self.batcher
        return {
            "batching": {**self.batching.model_dump(), "max_batch_size": self.max_batch_size},
            "queue_depth": batcher.queue_depth if batcher else 0,
            "in_flight": batcher.in_flight if batcher else 0,
            "stats": dict(batcher.stats) if batcher else {},
        }


BuildFn = Callable[[ModelManifest, int, Path, dict[str, ort.InferenceSession], Settings], ServedModel]


class CodecFactory(Protocol):
    def __call__(self, manifest: ModelManifest, version_dir: Path) -> Any: ...


def codec_model_builder(model_class: type[ServedModel], codec_factory: CodecFactory) -> BuildFn:
    """The usual ``build``: ``model_class`` around the sessions, the task's batching settings and a codec
    read from the manifest and version folder (``codec_factory``, e.g. ``SentimentCodec.from_manifest``)."""

    def build(
        manifest: ModelManifest,
        version: int,
        version_dir: Path,
        sessions: dict[str, ort.InferenceSession],
        settings: Settings,
    ) -> ServedModel:
        return model_class(
            manifest=manifest,
            version=version,
            version_dir=version_dir,
            sessions=sessions,
            batching=settings.batching_for(manifest.task),
            codec=codec_factory(manifest, version_dir),
        )

    return build


@dataclass(frozen=True)
class TaskPlugin:
    """One servable task: its manifest ``task`` name, how to build a served model, and its routes."""

    task: str
    build: BuildFn
    router: APIRouter | None = None
