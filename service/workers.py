"""Several serving processes on one port: each publishes its state, any of them answers for all.

``python -m service`` with ``RNNSERVE_WORKERS`` > 1 runs that many processes under uvicorn's supervisor;
they share the listening socket, so a request (``/ready`` and ``/models`` included) reaches any one of
them. Each process writes its readiness and its models' states to ``<dir>/<pid>.json`` (atomically, on
every change); ``/ready`` is 200 only when the expected number of live processes have all published
"ready", and ``/models`` reports how many processes serve each model. Files of processes that are gone
(a crashed worker before the supervisor replaces it) are ignored and cleaned up.

Model-control orders (``RNNSERVE_MODEL_CONTROL=explicit``) reach one process but concern all of them: the
process that receives a load or unload writes it to ``<dir>/orders.json`` (model -> action and a serial
number, under a file lock), every process applies the orders newer than the ones it has applied, and
publishes, per model, the serial it applied last and its outcome, so the receiving process can tell when
every process has followed. Without a directory (one process) the orders stay in memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

WORKERS_DIR_ENV = "RNNSERVE_WORKERS_DIR"  # set by ``python -m service`` for its worker processes
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def signal_when_parent_dies(sig: signal.Signals) -> None:
    """Linux: the calling process gets ``sig`` when the thread that started it ends (its parent dies, even
    by SIGKILL); elsewhere nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


ORDERS_FILE = "orders.json"
ORDERS_LOCK = "orders.lock"

Action = Literal["load", "unload"]


class Order(TypedDict):
    """What every serving process should do with a model; a higher serial is a newer order."""

    action: Action
    serial: int


class Outcome(TypedDict):
    """What one process did with a model's newest order it applied: its serial, and why it failed."""

    serial: int
    error: str | None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass
class WorkerGroup:
    """This process's view of the group: ``directory`` is None for a single process."""

    directory: Path | None
    expected: int = 1
    #: model -> outcome of the newest order this process applied (published with its state)
    outcomes: dict[str, Outcome] = field(default_factory=dict, init=False)
    _local_orders: dict[str, Order] = field(default_factory=dict, init=False, repr=False)  # one process

    @classmethod
    def from_env(cls, expected: int) -> WorkerGroup:
        directory = os.environ.get(WORKERS_DIR_ENV)
        return cls(Path(directory) if directory else None, expected)

    @property
    def _own_file(self) -> Path:
        return self.directory / f"{os.getpid()}.json"

    def publish(self, ready: bool, reasons: dict[str, str], models: dict[str, str]) -> None:
        """Writes this process's state (readiness, reasons, model -> state, order outcomes) for the others."""
        if self.directory is None:
            return
        state = {
            "pid": os.getpid(),
            "ready": ready,
            "reasons": reasons,
            "models": models,
            "outcomes": self.outcomes,
        }
        self._write(self._own_file, state)

    def _write(self, path: Path, data: Any) -> None:
        """Atomically: a reader sees the old file or the new one, never half of one."""
        with tempfile.NamedTemporaryFile("w", dir=self.directory, suffix=".tmp", delete=False) as tmp:
            json.dump(data, tmp)
        os.replace(tmp.name, path)

    def withdraw(self) -> None:
        """At shutdown: this process no longer counts."""
        if self.directory is not None:
            with contextlib.suppress(FileNotFoundError):
                self._own_file.unlink()

    def states(self) -> list[dict[str, Any]]:
        """The published states of the live processes (this one included)."""
        if self.directory is None:
            return []
        states = []
        for path in self.directory.glob("[0-9]*.json"):  # <pid>.json, not the orders
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):  # being replaced this instant, or half-written by a dead process
                continue
            if _alive(int(state["pid"])):
                states.append(state)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return states

    def readiness(self, own_ready: bool, own_reasons: dict[str, str]) -> tuple[bool, dict[str, str]]:
        """Ready when this process is and every expected process has published that it is."""
        if self.directory is None or not own_ready:
            return own_ready, own_reasons
        states = self.states()
        ready = [s for s in states if s["ready"]]
        if len(ready) >= self.expected:
            return True, {}
        reasons = {"*": f"{len(ready)} of {self.expected} serving processes are ready"}
        for state in states:
            for task, reason in state["reasons"].items():
                reasons.setdefault(task, f"process {state['pid']}: {reason}")
        return False, reasons

    def model_counts(self) -> dict[str, dict[str, int]]:
        """Model -> state -> how many live processes report it (``{}`` for a single process)."""
        counts: dict[str, dict[str, int]] = {}
        for state in self.states():
            for model, model_state in state["models"].items():
                counts.setdefault(model, {}).setdefault(model_state, 0)
                counts[model][model_state] += 1
        return counts

    # -- model-control orders --------------------------------------------------------------------
    def place_order(self, model: str, action: Action) -> int:
        """Records that every serving process should now ``action`` ``model``; returns the order's serial."""
        if self.directory is None:
            return self._place(self._local_orders, model, action)
        with self._orders_locked():
            orders = self.orders()
            serial = self._place(orders, model, action)
            self._write(self.directory / ORDERS_FILE, orders)
        return serial

    @staticmethod
    def _place(orders: dict[str, Order], model: str, action: Action) -> int:
        serial = 1 + max((order["serial"] for order in orders.values()), default=0)
        orders[model] = {"action": action, "serial": serial}
        return serial

    @contextlib.contextmanager
    def _orders_locked(self) -> Iterator[None]:
        """Serializes order placement across the processes (``flock`` on a file beside the orders)."""
        with open(self.directory / ORDERS_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def orders(self) -> dict[str, Order]:
        """Model -> the newest order about it (``{}`` before any)."""
        if self.directory is None:
            return dict(self._local_orders)
        try:
            return json.loads((self.directory / ORDERS_FILE).read_text())
        except FileNotFoundError:
            return {}

    def followers(self, model: str, serial: int) -> tuple[list[int], dict[int, str]]:
        """Of the other live processes: those that have not yet applied order ``serial`` about ``model``
        (or a newer one), and the errors of those that failed to."""
        waiting: list[int] = []
        errors: dict[int, str] = {}
        for state in self.states():
            if state["pid"] == os.getpid():
                continue
            outcome = state.get("outcomes", {}).get(model)
            if outcome is None or outcome["serial"] < serial:
                waiting.append(state["pid"])
            elif outcome["serial"] == serial and outcome["error"]:
                errors[state["pid"]] = outcome["error"]
        return waiting, errors
