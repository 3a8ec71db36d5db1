"""The model repository at run time: scan ``models/``, validate manifests, pick versions, load, warm up.

Each model is loaded in isolation: a missing or invalid ``config.json``, a missing version, a corrupt
graph or a failing warm-up gives exactly one ERROR log line and marks that model ``failed``; the other
models are unaffected. A task is ready when its default model is ready; the service is ready when every
task's default is.

Default model of a task: ``settings.default_models[task]``, else the manifest marked ``default``, else
the alphabetically first model of that task (picked again whenever models come or go). Version:
``settings.pinned_versions[name]``, else newest.

While serving (``service.model_control`` decides when): :meth:`ModelRepository.reload` scans one model
again, loads and warms up the version it names off the event loop, and switches it in with one
assignment of the model's entry, so new requests go to it at once; the version served until then keeps
admitting requests for ``HANDOVER_S`` (those that picked it just before the switch), then drains and is
unloaded. A version that fails to load leaves the one being served in place, with ``update_error``
saying why. :meth:`~ModelRepository.unload` drains a model and keeps it listed as ``unloaded``;
:meth:`~ModelRepository.remove` drains it and forgets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.auth import authorize_model
from service.config import Settings
from service.errors import ModelNotFound, ModelUnavailable, ServiceError
from service.inference_process import InferenceProcess
from service.manifest import MANIFEST_NAME, ModelManifest, version_dirs
from service.metrics import Metrics
from service.plugin import TaskPlugin
from service.priority import in_model_thread
from service.serving import ServedModel, load_model
from service.workers import WorkerGroup

log = logging.getLogger(__name__)

#: how long a replaced version still admits requests (those that picked it just before the switch)
HANDOVER_S = 1.0
#: what a model's files looked like when scanned: manifest stat, chosen version, that version's file stats
Fingerprint = tuple[object, ...]


class ModelState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADING = "unloading"
    UNLOADED = "unloaded"


@dataclass
class ModelEntry:
    name: str
    task: str | None
    state: ModelState
    manifest: ModelManifest | None = None
    version: int | None = None
    model: ServedModel | None = None
    error: str | None = None
    #: why the repository's newer files are not served (the version in ``version`` still is)
    update_error: str | None = None
    fingerprint: Fingerprint | None = None


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _fingerprint(model_dir: Path, version: int | None) -> Fingerprint:
    """Stat calls only: changes when the manifest, the version to serve or one of its files changes."""
    files: tuple[object, ...] = ()
    if version is not None:
        version_dir = model_dir / str(version)
        with contextlib.suppress(OSError):
            files = tuple(sorted((str(p.relative_to(version_dir)), _stat(p)) for p in version_dir.rglob("*")))
    return _stat(model_dir / MANIFEST_NAME), version, files


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


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
        inference: InferenceProcess | None = None,
    ):
        self.settings = settings
        self.plugins = {p.task: p for p in plugins}
        self.metrics = metrics
        self.workers = workers or WorkerGroup(None)  # the other serving processes, if any
        self.inference = inference  # where the batched models run, when not in this process
        self.entries: dict[str, ModelEntry] = {}
        self.defaults: dict[str, str] = {}
        self.loading_done = False
        self.draining = False  # after SIGTERM: not ready, whatever the models' states
        self._retiring: set[asyncio.Task[None]] = set()  # replaced or unloaded models, draining
        self._shutting_down = asyncio.Event()  # ends the handover of replaced versions at once

    # -- scanning --------------------------------------------------------------------------------
    def scan(self) -> None:
        """Reads every manifest (cheap, synchronous); models start ``loading`` or ``failed``."""
        root = self.settings.model_repository
        if not root.is_dir():
            log.error("model repository %s does not exist", root)
            return
        for model_dir in self._model_dirs():
            entry = self._scan_one(model_dir)
            self.entries[entry.name] = entry
            if entry.state is ModelState.FAILED:
                self._fail(entry, entry.error or "invalid")
        self._pick_defaults()

    def _model_dirs(self) -> list[Path]:
        """The model folders of the repository (raises ``OSError`` when it cannot be listed)."""
        root = self.settings.model_repository
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))

    def folder_names(self) -> set[str]:
        """Blocking: the names of the repository's model folders (none when it cannot be listed)."""
        try:
            return {p.name for p in self._model_dirs()}
        except OSError:
            return set()

    def survey(self) -> dict[str, Fingerprint]:
        """Blocking, stat calls only: every model folder and its fingerprint; raises ``OSError`` when the
        repository cannot be listed (a volume being remounted is not a repository without models)."""
        return {d.name: self.fingerprint(d) for d in self._model_dirs()}

    def fingerprint(self, model_dir: Path) -> Fingerprint:
        return _fingerprint(model_dir, self._chosen_version(model_dir))

    def _chosen_version(self, model_dir: Path) -> int | None:
        """The version folder to serve: the pinned one, else the newest; None when there is none."""
        try:
            versions = [version for version, _ in version_dirs(model_dir)]
        except OSError:
            return None
        pinned = self.settings.pinned_versions.get(model_dir.name)
        if pinned is not None:
            return pinned if pinned in versions else None
        return max(versions, default=None)

    def _scan_one(self, model_dir: Path) -> ModelEntry:
        fingerprint = self.fingerprint(model_dir)  # first: a change while reading shows at the next scan
        entry = self._read_entry(model_dir)
        entry.fingerprint = fingerprint
        return entry

    def _read_entry(self, model_dir: Path) -> ModelEntry:
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
        """Task -> default model, from scratch (at start-up and whenever models come or go)."""
        by_task: dict[str, list[ModelEntry]] = {}
        for entry in sorted(self.entries.values(), key=lambda e: e.name):
            if entry.task in self.plugins:  # a task nobody serves has no default to wait for
                by_task.setdefault(entry.task, []).append(entry)
        defaults = dict(self.settings.default_models)
        for task, entries in by_task.items():
            if task not in defaults:
                marked = [e.name for e in entries if e.manifest and e.manifest.default]
                defaults[task] = marked[0] if marked else entries[0].name
        if defaults != self.defaults:
            self._explain_defaults(defaults, by_task)
            self.defaults = defaults

    def _explain_defaults(self, defaults: dict[str, str], by_task: dict[str, list[ModelEntry]]) -> None:
        for task, name in self.settings.default_models.items():
            if name not in self.entries:
                log.error("default model %r of task %r is not in the repository", name, task)
        for task, entries in by_task.items():
            marked = [e.name for e in entries if e.manifest and e.manifest.default]
            if task not in self.settings.default_models and len(marked) > 1:
                log.warning("task %r: several models marked default %s; using %r", task, marked, marked[0])
        if self.loading_done:
            log.info("task defaults: %s", defaults)

    # -- loading ---------------------------------------------------------------------------------
    def _build(self, entry: ModelEntry) -> ServedModel:
        """Blocking: sessions, task model, warm-up, here or in the inference process. Raises with a
        one-line reason."""
        manifest = entry.manifest
        assert manifest is not None and entry.version is not None
        version_dir = self.settings.model_repository / entry.name / str(entry.version)
        plugin = self.plugins[manifest.task]
        if self.inference is None:
            return load_model(plugin.build, manifest, entry.version, version_dir, self.settings)
        model = plugin.build(manifest, entry.version, version_dir, {}, self.settings)  # no sessions here
        model.remote = self.inference.load(plugin.build, manifest, entry.version, version_dir)
        return model

    async def _start(self, entry: ModelEntry) -> ServedModel:
        """Builds ``entry``'s version off the event loop (in a thread at the model threads' priority: its
        sessions' own threads inherit it), then starts its batcher or scheduler."""
        model = await in_model_thread(self._build, entry)
        await model.start(self.metrics.for_model(entry.name))
        return model

    async def load_all(self) -> None:
        """Loads every ``loading`` model, one at a time, off the event loop."""
        try:
            for entry in list(self.entries.values()):
                if entry.state is not ModelState.LOADING:
                    continue
                try:
                    model = await self._start(entry)
                except Exception as exc:
                    self._fail(entry, _reason(exc))
                    continue
                entry.model, entry.state = model, ModelState.READY
                self.metrics.model_ready.labels(entry.name).set(1)
                self._log_ready(entry, model)
        finally:
            self.loading_done = True
            self.publish()
            ok, reasons = self._own_readiness()
            log.info("model loading finished: %s", "ready" if ok else f"not ready: {reasons}")

    def _log_ready(self, entry: ModelEntry, model: ServedModel, replaced: int | None = None) -> None:
        log.info(
            "model %s ready: task=%s version=%s provider=%s max_batch_size=%d%s",
            entry.name,
            entry.task,
            entry.version,
            model.provider,
            model.max_batch_size,
            "" if replaced is None else f" (replaces version {replaced})",
        )

    def _fail(self, entry: ModelEntry, reason: str) -> None:
        entry.state, entry.error = ModelState.FAILED, reason
        self.metrics.model_ready.labels(entry.name).set(0)
        log.error("model %s failed to load: %s", entry.name, reason)

    # -- changes while serving ---------------------------------------------------------------------
    async def reload(self, name: str) -> str | None:
        """Scans model ``name`` again, loads the version to serve and switches it in. Returns None, or
        why it is not served (the version served until now, if any, still is)."""
        model_dir = self.settings.model_repository / name
        if not await asyncio.to_thread(model_dir.is_dir):
            return f"no model folder {name!r} in the repository"
        try:
            candidate = await asyncio.to_thread(self._scan_one, model_dir)
        except OSError as exc:  # the folder changed while it was read: the next look sees how it ends
            return f"cannot read the model folder: {exc}"
        current = self.entries.get(name)
        serving = current if current is not None and current.state is ModelState.READY else None
        result = await self._try_start(candidate, list_loading=serving is None)
        if isinstance(result, str):
            self._refuse(candidate, serving, result)
        else:
            self._switch(candidate, result, serving)
        self._pick_defaults()
        self.publish()
        return result if isinstance(result, str) else None

    async def _try_start(self, candidate: ModelEntry, list_loading: bool) -> ServedModel | str:
        """The started model, or why it could not be. ``list_loading``: show it ``loading`` meanwhile
        (when no version of it is being served)."""
        if candidate.error is not None:
            return candidate.error
        if list_loading:
            self.entries[candidate.name] = candidate
            self.metrics.model_ready.labels(candidate.name).set(0)
            self.publish()
        try:
            return await self._start(candidate)
        except Exception as exc:
            return _reason(exc)

    def _switch(self, candidate: ModelEntry, model: ServedModel, previous: ModelEntry | None) -> None:
        """From here on new requests go to ``model``: one assignment of the model's entry."""
        self.entries[candidate.name] = replace(candidate, state=ModelState.READY, model=model)
        self.metrics.model_ready.labels(candidate.name).set(1)
        self._log_ready(candidate, model, replaced=previous.version if previous else None)
        if previous is not None and previous.model is not None:
            self._retire(previous.model, handover=True)

    def _refuse(self, candidate: ModelEntry, serving: ModelEntry | None, reason: str) -> None:
        if serving is None:
            self.entries[candidate.name] = candidate
            self._fail(candidate, reason)
            return
        what = "its files" if candidate.version is None else f"version {candidate.version}"
        serving.update_error = f"{what}: {reason}"
        log.error(
            "model %s: %s not loaded, version %s still serving: %s",
            serving.name,
            what,
            serving.version,
            reason,
        )

    def _retire(self, model: ServedModel, handover: bool) -> asyncio.Task[None]:
        """Unloads ``model`` in a task of its own (a shutdown waits for it; cancelling a caller does not
        stop it half-way)."""
        task = asyncio.create_task(self._unload_model(model, handover), name=f"unload-{model.name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return task

    async def _unload_model(self, model: ServedModel, handover: bool) -> None:
        """With ``handover``, ``model`` admits requests ``HANDOVER_S`` more; then it drains (finishes what
        it admitted, within the shutdown timeout) and is closed."""
        if handover:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._shutting_down.wait(), HANDOVER_S)
        try:
            await model.close(drain=True, timeout=self.settings.shutdown_timeout_s)
        except Exception:
            log.exception("model %s version %s: drain failed", model.name, model.version)
        log.info("model %s version %s unloaded", model.name, model.version)

    async def unload(self, name: str) -> None:
        """New requests for ``name`` get 503 at once; those admitted finish, then the model is unloaded
        and stays listed as ``unloaded``."""
        entry = await self._stop(name)
        self.entries[name] = replace(entry, state=ModelState.UNLOADED, version=None, error=None)
        self.publish()

    async def remove(self, name: str) -> None:
        """``name``'s folder is gone: drained as by :meth:`unload`, then forgotten (404)."""
        await self._stop(name)
        del self.entries[name]
        self._pick_defaults()
        self.publish()

    async def _stop(self, name: str) -> ModelEntry:
        entry = self.entries[name]
        self.entries[name] = replace(entry, state=ModelState.UNLOADING, model=None, update_error=None)
        self.metrics.model_ready.labels(name).set(0)
        self.publish()
        if entry.model is not None:
            await asyncio.shield(self._retire(entry.model, handover=False))
        return self.entries[name]

    async def close(self, drain: bool = True, timeout: float | None = None) -> None:
        self._shutting_down.set()
        models = [e.model for e in self.entries.values() if e.model is not None]
        await asyncio.gather(*(m.close(drain=drain, timeout=timeout) for m in models))
        await asyncio.gather(*self._retiring, return_exceptions=True)

    # -- queries ---------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, str]]:
        """``(ready, {task: reason})``: every task's default model loaded and warmed, in this process and,
        with several serving processes, in every one of them."""
        return self.workers.readiness(*self._own_readiness())

    def begin_drain(self) -> None:
        """SIGTERM arrived (``service.drain``): readiness turns false here and for the other processes."""
        self.draining = True
        self.publish()

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
        if self.draining:
            reasons["*"] = "the process is shutting down"
        for task, name in self.defaults.items():
            entry = self.entries.get(name)
            if entry is None:
                reasons[task] = f"default model {name!r} is missing"
            elif entry.state is not ModelState.READY:
                reasons[task] = f"default model {name!r} is {entry.state.value}" + (
                    f": {entry.error}" if entry.error else ""
                )
            elif entry.model is not None and (fault := entry.model.fault()):
                reasons[task] = f"default model {name!r} is not ready: {fault}"
        return not reasons, reasons

    async def watch_faults(self, interval_s: float = 1.0) -> None:
        """Runs until cancelled: a served model whose call is stuck (``ServedModel.fault``) turns its
        ``model_ready`` gauge to 0 and is logged, and the other serving processes are told (their
        ``/ready`` aggregates this one's); all of it undone when the call returns."""
        faulted: dict[str, str] = {}
        while True:
            await asyncio.sleep(interval_s)
            now = {
                name: fault
                for name, entry in self.entries.items()
                if entry.state is ModelState.READY
                and entry.model is not None
                and (fault := entry.model.fault())
            }
            if now.keys() == faulted.keys():
                continue
            for name in now.keys() - faulted.keys():
                self.metrics.model_ready.labels(name).set(0)
                log.error("model %s is not ready: %s", name, now[name])
            for name in faulted.keys() - now.keys():
                if (entry := self.entries.get(name)) is not None and entry.state is ModelState.READY:
                    self.metrics.model_ready.labels(name).set(1)
                    log.info("model %s is ready again: its stuck call returned", name)
            faulted = now
            self.publish()

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
        if entry.state in (ModelState.UNLOADING, ModelState.UNLOADED):
            raise ModelUnavailable(f"model {name!r} is {entry.state.value}", field="model")
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
        for entry in sorted(self.entries.values(), key=lambda e: e.name):
            item: dict[str, Any] = {
                "name": entry.name,
                "task": entry.task,
                "state": entry.state.value,
                "default": bool(entry.task) and self.defaults.get(entry.task) == entry.name,
                "version": entry.version,
                "provider": entry.model.provider if entry.model else None,
                "error": entry.error,
                "update_error": entry.update_error,
                "processes": processes.get(entry.name) or {entry.state.value: 1},
            }
            if entry.model is not None:
                item.update(entry.model.info())
            item["config"] = entry.manifest.model_dump(mode="json") if entry.manifest else None
            out.append(item)
        return out
