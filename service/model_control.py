"""Live changes to the served models, Triton's model-control modes (``RNNSERVE_MODEL_CONTROL``).

* ``none``: the repository is read once, at start-up.
* ``poll``: every ``model_poll_interval_s`` the repository is surveyed (stat calls only: manifests,
  version folder names, the files of the version to serve). A model whose fingerprint changed is scanned
  again, loaded, warmed up and switched in (``ModelRepository.reload``); a model folder that is gone is
  drained and forgotten. A change that fails to load is not tried again until its files change.
* ``explicit``: the repository extension's load and unload requests (``service.protocols.v2.repository``)
  call :meth:`ModelControl.load` and :meth:`ModelControl.unload`. Start-up still loads every model found
  (Triton's ``--load-model=*``).

One change at a time per process (a lock), each model loaded off the event loop. With several serving
processes, ``poll`` runs in each of them; an explicit request reaches one process, which places an order
that every process follows (``WorkerGroup.place_order``; :meth:`ModelControl.run` checks the orders every
``ORDERS_CHECK_S``), and answers once every live process has applied it (or ``ORDERS_WAIT_S`` passed).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from service.config import Settings
from service.errors import BadRequest, ModelNotFound, ServiceError
from service.repository import Fingerprint, ModelEntry, ModelRepository, ModelState
from service.workers import Action, WorkerGroup

log = logging.getLogger(__name__)

#: how often a process of several looks for load and unload orders placed by another one
ORDERS_CHECK_S = 0.2
#: how long the process that placed an order waits for the other processes to apply it
ORDERS_WAIT_S = 60.0
#: a model name as manifests allow it (and so no path separator, no leading dot)
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
#: the repository index's states (Triton's names)
INDEX_STATES = {
    ModelState.LOADING: "LOADING",
    ModelState.READY: "READY",
    ModelState.FAILED: "UNAVAILABLE",
    ModelState.UNLOADING: "UNLOADING",
    ModelState.UNLOADED: "UNAVAILABLE",
}


class ControlModeError(ServiceError):
    """A load or unload request while the mode is not ``explicit`` (409: the request is well formed, the
    service's configuration refuses it)."""

    status_code, code = 409, "model_control_disabled"


class ModelControl:
    def __init__(
        self, repository: ModelRepository, settings: Settings, on_change: Callable[[], None] = lambda: None
    ):
        self.repository = repository
        self.on_change = on_change  # after each change (the app forgets its OpenAPI document)
        self.mode = settings.model_control
        self.interval = settings.model_poll_interval_s
        self._lock = asyncio.Lock()  # one change at a time
        self._attempted: dict[str, Fingerprint | None] = {}  # poll: the files last tried, per model
        self._applied: dict[str, int] = {}  # explicit: the newest order applied, per model
        self._started = asyncio.Event()  # start-up loading is over: changes may begin

    @property
    def _workers(self) -> WorkerGroup:
        return self.repository.workers

    # -- lifecycle -------------------------------------------------------------------------------
    async def prepare(self) -> None:
        """After the start-up scan, before loading: a process that starts while orders stand (one
        replacing a process that died) leaves the models ordered unloaded unloaded."""
        if self.mode != "explicit":
            return
        for name, order in (await asyncio.to_thread(self._workers.orders)).items():
            self._applied[name] = order["serial"]
            if order["action"] == "unload" and name in self.repository.entries:
                await self.repository.unload(name)

    async def run(self, loading: asyncio.Future[Any]) -> None:
        """The control loop of this process, from the end of the start-up loading (``loading``)."""
        await asyncio.wait([loading])
        if self.mode == "none":
            return
        self._record_startup()
        self._started.set()
        step = self._step()
        if step is None:
            return
        action, period = step
        while True:
            await asyncio.sleep(period)
            try:
                await action()
            except Exception:  # the loop must outlive any one bad pass
                log.exception("model control (%s): pass failed", self.mode)

    def _step(self) -> tuple[Callable[[], Awaitable[None]], float] | None:
        """What the loop does, and how often: poll the repository, or follow the other processes'
        orders; nothing for explicit control of a single process (its requests act directly)."""
        if self.mode == "poll":
            return self.poll_once, self.interval
        if self._workers.directory is not None:
            return self.follow_orders, ORDERS_CHECK_S
        return None

    def _record_startup(self) -> None:
        """What start-up loaded is the baseline: poll compares against those files; explicit reports
        the standing orders as applied, with each model's outcome."""
        entries = self.repository.entries
        self._attempted = {name: entry.fingerprint for name, entry in entries.items()}
        for name, serial in self._applied.items():
            entry = entries.get(name)
            error = entry.error if entry is not None and entry.state is ModelState.FAILED else None
            self._workers.outcomes[name] = {"serial": serial, "error": error}
        self.repository.publish()

    # -- poll ------------------------------------------------------------------------------------
    async def poll_once(self) -> None:
        """Applies what changed in the repository since the last pass."""
        async with self._lock:
            try:
                found = await asyncio.to_thread(self.repository.survey)
            except OSError as exc:
                log.warning("model control: cannot list the repository (%s); nothing changes", exc)
                return
            for name, fingerprint in sorted(found.items()):
                if self._attempted.get(name) != fingerprint:
                    self._attempted[name] = fingerprint
                    await self.repository.reload(name)
                    self.on_change()
            for name in sorted(set(self.repository.entries) - set(found)):
                self._attempted.pop(name, None)
                log.info("model %s: folder removed from the repository; unloading", name)
                await self.repository.remove(name)
                self.on_change()

    # -- explicit --------------------------------------------------------------------------------
    async def index(self, ready_only: bool) -> list[dict[str, str]]:
        """The repository index: every model loaded or with a folder in the repository."""
        folders = await asyncio.to_thread(self.repository.folder_names)
        entries = self.repository.entries
        out = []
        for name in sorted(set(entries) | folders):
            item = _index_item(name, entries.get(name))
            if not ready_only or item["state"] == "READY":
                out.append(item)
        return out

    async def load(self, name: str) -> None:
        """Loads (or reloads) the version to serve of ``name`` in every serving process. Raises
        ``ModelNotFound`` without a folder, ``BadRequest`` with the reason when it failed somewhere (the
        version served before, if any, still is there)."""
        self._check(name)
        if name not in await asyncio.to_thread(self.repository.folder_names):
            raise ModelNotFound(f"no model folder '{name}' in the repository")
        await self._order(name, "load")

    async def unload(self, name: str) -> None:
        """Unloads ``name`` in every serving process, each finishing the requests it admitted first."""
        self._check(name)
        if name not in self.repository.entries:
            raise ModelNotFound(f"no model '{name}' is loaded")
        await self._order(name, "unload")

    def _check(self, name: str) -> None:
        if self.mode != "explicit":
            raise ControlModeError(
                f"model control mode is {self.mode}: load and unload need RNNSERVE_MODEL_CONTROL=explicit"
            )
        if not MODEL_NAME.fullmatch(name):
            raise BadRequest(f"'{name}' is not a model name")

    async def _order(self, name: str, action: Action) -> None:
        """Places the order, applies it here, waits for the other processes; ``BadRequest`` naming every
        process where it failed."""
        await self._started.wait()  # a request during start-up waits for the start-up loading
        async with self._lock:
            serial = await asyncio.to_thread(self._workers.place_order, name, action)
            error = await self._apply(name, action, serial)
        problems = [] if error is None else [error]
        problems += await self._followers_problems(name, serial)
        if problems:
            raise BadRequest(f"failed to {action} '{name}': " + "; ".join(problems))

    async def _apply(self, name: str, action: Action, serial: int) -> str | None:
        """Carries out one order in this process (the caller holds the lock) and publishes the outcome."""
        if action == "load":
            error = await self.repository.reload(name)
        elif name in self.repository.entries:
            await self.repository.unload(name)
            error = None
        else:
            error = None  # nothing loaded here: nothing to unload
        self._applied[name] = serial
        self._workers.outcomes[name] = {"serial": serial, "error": error}
        self.repository.publish()
        self.on_change()
        return error

    async def follow_orders(self) -> None:
        """Applies the orders other processes placed since this one last looked."""
        orders = await asyncio.to_thread(self._workers.orders)
        for name, order in sorted(orders.items(), key=lambda item: item[1]["serial"]):
            if order["serial"] <= self._applied.get(name, 0):
                continue
            async with self._lock:
                if order["serial"] > self._applied.get(name, 0):  # not applied meanwhile
                    log.info("model %s: %s ordered by another serving process", name, order["action"])
                    await self._apply(name, order["action"], order["serial"])

    async def _followers_problems(self, name: str, serial: int) -> list[str]:
        """Waits until every other live process has applied order ``serial``; what went wrong in those
        that failed, or did not follow within ``ORDERS_WAIT_S``."""
        deadline = time.monotonic() + ORDERS_WAIT_S
        while True:
            waiting, errors = await asyncio.to_thread(self._workers.followers, name, serial)
            if not waiting or time.monotonic() > deadline:
                break
            await asyncio.sleep(ORDERS_CHECK_S / 2)
        problems = [f"process {pid}: {error}" for pid, error in sorted(errors.items())]
        if waiting:
            problems.append(f"processes {sorted(waiting)} did not follow within {ORDERS_WAIT_S:g} s")
        return problems


def _index_item(name: str, entry: ModelEntry | None) -> dict[str, str]:
    if entry is None:
        return {"name": name, "state": "UNAVAILABLE", "reason": "not loaded"}
    item = {"name": name, "state": INDEX_STATES[entry.state], "reason": ""}
    if entry.version is not None:
        item["version"] = str(entry.version)
    if entry.state is ModelState.FAILED:
        item["reason"] = entry.error or "failed to load"
    elif entry.state is ModelState.UNLOADED:
        item["reason"] = "unloaded"
    return item
