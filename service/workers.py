"""Several serving processes on one port: each publishes its state, any of them answers for all.

``python -m service`` with ``RNNSERVE_WORKERS`` > 1 runs that many processes under uvicorn's supervisor;
they share the listening socket, so a request (``/ready`` and ``/models`` included) reaches any one of
them. Each process writes its readiness and its models' states to ``<dir>/<pid>.json`` (atomically, on
every change); ``/ready`` is 200 only when the expected number of live processes have all published
"ready", and ``/models`` reports how many processes serve each model. Files of processes that are gone
(a crashed worker before the supervisor replaces it) are ignored and cleaned up.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKERS_DIR_ENV = "RNNSERVE_WORKERS_DIR"  # set by ``python -m service`` for its worker processes


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

    @classmethod
    def from_env(cls, expected: int) -> WorkerGroup:
        directory = os.environ.get(WORKERS_DIR_ENV)
        return cls(Path(directory) if directory else None, expected)

    @property
    def _own_file(self) -> Path:
        return self.directory / f"{os.getpid()}.json"

    def publish(self, ready: bool, reasons: dict[str, str], models: dict[str, str]) -> None:
        """Writes this process's state (readiness, reasons, model -> state) for the others to read."""
        if self.directory is None:
            return
        state = {"pid": os.getpid(), "ready": ready, "reasons": reasons, "models": models}
        with tempfile.NamedTemporaryFile("w", dir=self.directory, suffix=".tmp", delete=False) as tmp:
            json.dump(state, tmp)
        os.replace(tmp.name, self._own_file)

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
        for path in self.directory.glob("*.json"):
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
