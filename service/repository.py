"""The model repository at run time: scan ``models/``, validate manifests, pick versions, load, warm up.

Each model is loaded in isolation: a missing or invalid ``config.json``, a missing version, a corrupt
graph or a failing warm-up gives exactly one ERROR log line and marks that model ``failed``; the other
models are unaffected. A task is ready when its default model is ready; the service is ready when every
task's default is.

Default model of a task: ``settings.default_models[task]``, else the manifest marked ``default``, else
the alphabetically first model of that task. Version: ``settings.pinned_versions[name]``, else newest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from service.auth import authorize_model
from service.config import Settings
from service.errors import ModelNotFound, ModelUnavailable, ServiceError
from service.manifest import MANIFEST_NAME, ModelManifest, version_dirs
from service.metrics import Metrics
from service.plugin import TaskPlugin
from service.runtime import ModelLoadError, create_session
from service.serving import ServedModel
from service.workers import WorkerGroup

log = logging.getLogger(__name__)


class ModelState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class ModelEntry:
    name: str
    task: str | None
    state: ModelState
    manifest: ModelManifest | None = None
    version: int | None = None
    model: ServedModel | None = None
    error: str | None = None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(root)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"


class ModelRepository:
    def __init__(
        self,
        settings: Settings,
        plugins: Sequence[TaskPlugin],
        metrics: Metrics,
        workers: WorkerGroup | None = None,
    ):
        self.settings = settings
        self.plugins = {p.task: p for p in plugins}
        self.metrics = metrics
        self.workers = workers or WorkerGroup(None)  # the other serving processes, if any
        self.entries: dict[str, ModelEntry] = {}
        self.defaults: dict[str, str] = {}
        self.loading_done = False

    # -- scanning --------------------------------------------------------------------------------
    def scan(self) -> None:
        """Reads every manifest (cheap, synchronous); models start ``loading`` or ``failed``."""
        root = self.settings.model_repository
        if not root.is_dir():
            log.error("model repository %s does not exist", root)
            return
        for model_dir in sorted(
            p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
        ):
            entry = self._scan_one(model_dir)
            self.entries[entry.name] = entry
            if entry.state is ModelState.FAILED:
                self._fail(entry, entry.error or "invalid")
        self._pick_defaults()

    def _scan_one(self, model_dir) -> ModelEntry:
        name = model_dir.name
        if not (model_dir / MANIFEST_NAME).is_file():
            return ModelEntry(name, None, ModelState.FAILED, error=f"no {MANIFEST_NAME}")
        try:
            manifest = ModelManifest.load(model_dir)
        except ValidationError as exc:
            return ModelEntry(
                name, None, ModelState.FAILED, error=f"invalid {MANIFEST_NAME}: {_first_error(exc)}"
            )
        except (OSError, UnicodeDecodeError) as exc:
            return ModelEntry(name, None, ModelState.FAILED, error=f"unreadable {MANIFEST_NAME}: {exc}")
        entry = ModelEntry(name, manifest.task, ModelState.LOADING, manifest=manifest)
        if manifest.name != name:
            entry.state, entry.error = (
                ModelState.FAILED,
                f"manifest name {manifest.name!r} != folder {name!r}",
            )
        elif manifest.task not in self.plugins:
            entry.state = ModelState.FAILED
            entry.error = f"no plug-in serves task {manifest.task!r} (known: {sorted(self.plugins)})"
        else:
            versions = dict(version_dirs(model_dir))
            pinned = self.settings.pinned_versions.get(name)
            if pinned is not None and pinned not in versions:
                entry.state, entry.error = (
                    ModelState.FAILED,
                    f"pinned version {pinned} not found ({sorted(versions)})",
                )
            elif not versions:
                entry.state, entry.error = ModelState.FAILED, "no numbered version folder"
            else:
                entry.version = pinned if pinned is not None else max(versions)
        return entry

    def _pick_defaults(self) -> None:
        by_task: dict[str, list[ModelEntry]] = {}
        for entry in self.entries.values():
            if entry.task in self.plugins:  # a task nobody serves has no default to wait for
                by_task.setdefault(entry.task, []).append(entry)
        for task, name in self.settings.default_models.items():
            self.defaults[task] = name
            if name not in self.entries:
                log.error("default model %r of task %r is not in the repository", name, task)
        for task, entries in by_task.items():
            if task in self.defaults:
                continue
            marked = [e.name for e in entries if e.manifest and e.manifest.default]
            if len(marked) > 1:
                log.warning("task %r: several models marked default %s; using %r", task, marked, marked[0])
            self.defaults[task] = marked[0] if marked else entries[0].name

    # -- loading ---------------------------------------------------------------------------------
    def _build(self, entry: ModelEntry) -> ServedModel:
        """Blocking: sessions, task model, warm-up. Raises with a one-line reason."""
        manifest = entry.manifest
        assert manifest is not None and entry.version is not None
        version_dir = self.settings.model_repository / entry.name / str(entry.version)
        # files first: a graph's external weights are among them, and this error is the plainer one
        missing = [f for f in manifest.files.values() if not (version_dir / f).is_file()]
        if missing:
            raise ModelLoadError(f"files missing from version {entry.version}: {missing}")
        sessions = {
            key: create_session(version_dir / spec.file, spec, self.settings)
            for key, spec in manifest.graphs.items()
        }
        if not sessions:
            raise ModelLoadError("manifest declares no graphs")
        model = self.plugins[manifest.task].build(
            manifest, entry.version, version_dir, sessions, self.settings
        )
        if self.settings.warmup:
            model.warmup()
        return model

    async def load_all(self) -> None:
        """Loads every ``loading`` model, one at a time, off the event loop."""
        try:
            for entry in list(self.entries.values()):
                if entry.state is not ModelState.LOADING:
                    continue
                try:
                    model = await asyncio.to_thread(self._build, entry)
                    await model.start(self.metrics.for_model(entry.name))
                except Exception as exc:
                    self._fail(entry, f"{type(exc).__name__}: {exc}".splitlines()[0])
                    continue
                entry.model, entry.state = model, ModelState.READY
                self.metrics.model_ready.labels(entry.name).set(1)
                log.info(
                    "model %s ready: task=%s version=%s provider=%s max_batch_size=%d",
                    entry.name,
                    entry.task,
                    entry.version,
                    model.provider,
                    model.max_batch_size,
                )
        finally:
            self.loading_done = True
            self.publish()
            ok, reasons = self._own_readiness()
            log.info("model loading finished: %s", "ready" if ok else f"not ready: {reasons}")

    def _fail(self, entry: ModelEntry, reason: str) -> None:
        entry.state, entry.error = ModelState.FAILED, reason
        self.metrics.model_ready.labels(entry.name).set(0)
        log.error("model %s failed to load: %s", entry.name, reason)

    async def close(self, drain: bool = True, timeout: float | None = None) -> None:
        models = [e.model for e in self.entries.values() if e.model is not None]
        await asyncio.gather(*(m.close(drain=drain, timeout=timeout) for m in models))

    # -- queries ---------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, str]]:
        """``(ready, {task: reason})``: every task's default model loaded and warmed, in this process and,
        with several serving processes, in every one of them."""
        return self.workers.readiness(*self._own_readiness())

    def publish(self) -> None:
        """Tells the other serving processes this one's readiness and model states (on every change)."""
        ready, reasons = self._own_readiness()
        self.workers.publish(ready, reasons, {name: e.state.value for name, e in self.entries.items()})

    def _own_readiness(self) -> tuple[bool, dict[str, str]]:
        reasons: dict[str, str] = {}
        if not self.loading_done:
            reasons["*"] = "models are loading"
        if not self.defaults:
            reasons["*"] = "no model in the repository"
        for task, name in self.defaults.items():
            entry = self.entries.get(name)
            if entry is None:
                reasons[task] = f"default model {name!r} is missing"
            elif entry.state is not ModelState.READY:
                reasons[task] = f"default model {name!r} is {entry.state.value}" + (
                    f": {entry.error}" if entry.error else ""
                )
        return not reasons, reasons

    def resolve(self, task: str, name: str | None) -> ServedModel:
        """The model that should answer a request, or a 403/404/503 naming the ``model`` field."""
        if name is None:
            name = self.defaults.get(task)
            if name is None:
                raise ModelUnavailable(f"no model serves task {task!r}", field="model")
        authorize_model(name)  # 403 when the request's API key may not use it
        entry = self.entries.get(name)
        if entry is None or entry.task != task:
            known = sorted(e.name for e in self.entries.values() if e.task == task)
            raise ModelNotFound(f"no {task} model is named {name!r}; {task} models: {known}", field="model")
        if entry.state is ModelState.LOADING:
            raise ModelUnavailable(f"model {name!r} is loading", field="model", headers={"Retry-After": "1"})
        if entry.state is ModelState.FAILED or entry.model is None:
            raise ModelUnavailable(f"model {name!r} failed to load: {entry.error}", field="model")
        return entry.model

    def refusal(self, task: str | None = None, name: str | None = None) -> ServiceError | None:
        """The 503 a new request for a model (``name``, else ``task``'s default) would get now; None when
        it would be admitted, or when the model is not serving (the normal path then says why)."""
        entry = self.entries.get(name or self.defaults.get(task, ""))
        if entry is None or entry.model is None or entry.state is not ModelState.READY:
            return None
        return entry.model.refusal()

    def describe(self) -> list[dict[str, Any]]:
        processes = self.workers.model_counts()
        out = []
        for entry in self.entries.values():
            item: dict[str, Any] = {
                "name": entry.name,
                "task": entry.task,
                "state": entry.state.value,
                "default": bool(entry.task) and self.defaults.get(entry.task) == entry.name,
                "version": entry.version,
                "provider": entry.model.provider if entry.model else None,
                "error": entry.error,
                "processes": processes.get(entry.name) or {entry.state.value: 1},
            }
            if entry.model is not None:
                item.update(entry.model.info())
            item["config"] = entry.manifest.model_dump(mode="json") if entry.manifest else None
            out.append(item)
        return out
