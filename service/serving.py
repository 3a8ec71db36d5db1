"""The served-model contract: what the repository loads, starts, describes and closes, and what routes call.

Two kinds of served model share :class:`ServedModel` (manifest, version, sessions, batching settings):

* :class:`BatchedModel`, one item in and one result out (sentiment, NER, translation): a task implements
  ``predict_batch(items) -> results`` (run by a ``DynamicBatcher`` in a worker thread, or on the event
  loop's thread when its calls are short; one result or exception per item) and ``warmup_items()``; routes
  call ``infer_many(items)``.

With ``RNNSERVE_INFERENCE_PROCESS`` the serving process's copy of a model holds no sessions: ``remote`` is
the same model loaded (by :func:`load_model`) in the inference process, and its batches or steps run there.
* :class:`ScheduledModel`, a model with its own scheduler (generation, step by step): it implements
  ``start``, ``close``, ``warmup`` and ``info`` itself, and offers routes its own calls (``generate``,
  ``stream``). With ``RNNSERVE_INFERENCE_PROCESS`` its scheduler runs in the inference process too
  (``create_scheduler`` there); the serving process's copy admits, waits and streams through
  ``service.remote_scheduler``.

A task's ``plugin.py`` joins its model's ``build`` function and its routes in a
:class:`service.plugin.TaskPlugin`; ``service.registry`` lists the plug-ins.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import onnxruntime as ort

from service.batching import DynamicBatcher
from service.config import BatchingConfig, Settings
from service.errors import InferenceError, ServiceError
from service.manifest import ModelManifest
from service.metrics import BatchMetrics
from service.runtime import ModelLoadError, create_session, provider_of

if TYPE_CHECKING:
    from service.inference_process import RemoteModel

log = logging.getLogger(__name__)


@dataclass
class ServedModel(abc.ABC):
    manifest: ModelManifest
    version: int
    version_dir: Path
    sessions: dict[str, ort.InferenceSession]
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    #: the same model loaded in the inference process (``service.inference_process``), where its batches
    #: or steps run; None: they run in this process, on ``sessions``
    remote: RemoteModel | None = field(default=None, init=False)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def provider(self) -> str:
        if self.remote is not None:
            return self.remote.provider
        return provider_of(next(iter(self.sessions.values())))

    @property
    def max_batch_size(self) -> int:
        """Settings may lower, never raise, the size the graph was exported and tested for."""
        return min(self.batching.max_batch_size, self.manifest.max_batch_size)

    @abc.abstractmethod
    def warmup(self) -> None:
        """Blocking: runs the graphs once (short and long inputs) before the model is marked ready."""

    @abc.abstractmethod
    async def start(self, metrics: BatchMetrics | None) -> None: ...

    @abc.abstractmethod
    async def close(self, drain: bool = True, timeout: float | None = None) -> None: ...

    @abc.abstractmethod
    def info(self) -> dict[str, Any]:
        """What ``/models`` shows besides the manifest: batching settings, queue depth, statistics."""

    @abc.abstractmethod
    def fault(self) -> str | None:
        """Why the loaded model cannot serve now (a model call stuck past ``stall_after_s``), else None."""

    @abc.abstractmethod
    def refusal(self) -> ServiceError | None:
        """The 503 a new request would get now (admission by expected wait), or None if it would be admitted;
        asked before a request's body is read."""


@dataclass
class BatchedModel(ServedModel):
    """A model answered item by item through the dynamic batcher."""

    batcher: DynamicBatcher | None = field(default=None, init=False)

    # -- to implement per task -------------------------------------------------------------------
    @abc.abstractmethod
    def predict_batch(self, items: list[Any]) -> Sequence[Any]:
        """One result (or exception instance) per item, in order. Runs in a worker thread, or on the event
        loop's thread when its calls are short (``BatchingConfig.inline_max_ms``): it must not wait."""

    @abc.abstractmethod
    def warmup_items(self) -> list[Any]:
        """Inputs that exercise the graph once (a short and a long one) before the model is ready."""

    def request_items(self, payload: Any, texts: list[str]) -> list[Any]:
        """The batcher items of a request's checked texts (tasks with per-request options pair them)."""
        return texts

    # -- shared ----------------------------------------------------------------------------------
    def warmup(self) -> None:
        items = self.warmup_items()
        for result in self.predict_batch(items):
            if isinstance(result, BaseException):
                raise result
        self.predict_batch(items[:1])

    async def start(self, metrics: BatchMetrics | None) -> None:
        self.batcher = DynamicBatcher(
            self.remote or self.predict_batch,
            name=self.name,
            max_batch_size=self.max_batch_size,
            max_queue_delay_ms=self.batching.max_queue_delay_ms,
            max_queue_size=self.batching.max_queue_size,
            metrics=metrics,
            max_queue_wait_s=self.batching.max_queue_wait_s,
            stall_after_s=self.batching.stall_after_s,
            # a remote batch waits on another process: never on the event loop's thread
            inline_max_s=0.0 if self.remote else self.batching.inline_max_ms / 1000,
        )
        await self.batcher.start()

    async def close(self, drain: bool = True, timeout: float | None = None) -> None:
        if self.batcher is not None:
            await self.batcher.close(drain=drain, timeout=timeout)
        if self.remote is not None:
            self.remote.release()

    def fault(self) -> str | None:
        own = self.batcher.watch.fault() if self.batcher is not None else None
        return own or (self.remote.fault() if self.remote is not None else None)

    def refusal(self) -> ServiceError | None:
        return self.batcher.refusal() if self.batcher is not None else None

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
        batcher = self.batcher
        return {
            "batching": {**self.batching.model_dump(), "max_batch_size": self.max_batch_size},
            "queue_depth": batcher.queue_depth if batcher else 0,
            "in_flight": batcher.in_flight if batcher else 0,
            "fault": self.fault(),
            "stats": dict(batcher.stats) if batcher else {},
        }


@dataclass
class ScheduledModel(ServedModel):
    """A model that runs its own scheduler instead of the dynamic batcher."""

    @abc.abstractmethod
    def create_scheduler(self, metrics: BatchMetrics | None, publish: Callable[[list[Any]], None]) -> Any:
        """The scheduler that runs this model's steps in this process, publishing each iteration's updates
        through ``publish`` (the inference process hosts one for the serving process's copy)."""


BuildFn = Callable[[ModelManifest, int, Path, dict[str, ort.InferenceSession], Settings], ServedModel]


class CodecFactory(Protocol):
    def __call__(self, manifest: ModelManifest, version_dir: Path) -> Any: ...


@dataclass(frozen=True)
class CodecModelBuilder:
    """The usual ``build``: ``model_class`` around the sessions, the task's batching settings (the task's
    ``batching_defaults`` where the settings name none) and a codec read from the manifest and version
    folder (``codec_factory``, e.g. ``SentimentCodec.from_manifest``). A class and a function named at
    module level, so the builder pickles by reference and the inference process can build the same model."""

    model_class: type[ServedModel]
    codec_factory: CodecFactory
    batching_defaults: Mapping[str, Any] | None = None

    def __call__(
        self,
        manifest: ModelManifest,
        version: int,
        version_dir: Path,
        sessions: dict[str, ort.InferenceSession],
        settings: Settings,
    ) -> ServedModel:
        return self.model_class(
            manifest=manifest,
            version=version,
            version_dir=version_dir,
            sessions=sessions,
            batching=settings.batching_for(manifest.task, self.batching_defaults),
            codec=self.codec_factory(manifest, version_dir),
        )


def load_model(
    build: BuildFn, manifest: ModelManifest, version: int, version_dir: Path, settings: Settings
) -> ServedModel:
    """Blocking: the version's sessions, the task's model around them, and its warm-up (when the settings
    ask for one). Raises with a one-line reason."""
    # files first: a graph's external weights are among them, and this error is the plainer one
    missing = [f for f in manifest.files.values() if not (version_dir / f).is_file()]
    if missing:
        raise ModelLoadError(f"files missing from version {version}: {missing}")
    sessions = {
        key: create_session(version_dir / spec.file, spec, settings) for key, spec in manifest.graphs.items()
    }
    if not sessions:
        raise ModelLoadError("manifest declares no graphs")
    model = build(manifest, version, version_dir, sessions, settings)
    if settings.warmup:
        model.warmup()
    return model
