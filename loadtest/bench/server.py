"""Starts ``python -m service`` in a subprocess with settings overrides, waits until ready, stops it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loadtest.bench.procs import ProcessTree

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class Service(str):
    """The base URL (``http://127.0.0.1:PORT``) of a running service, with its process id."""

    pid: int

    def __new__(cls, base: str, pid: int) -> Service:
        obj = super().__new__(cls, base)
        obj.pid = pid
        return obj

    def cpu_seconds(self) -> float:
        """User + system CPU time the server's processes (the supervisor and its serving processes) have
        used so far (Linux ``/proc``)."""
        return ProcessTree(self.pid).cpu_seconds()


@contextmanager
def running_service(
    env: dict[str, str], log_path: Path | None = None, timeout: float = 120
) -> Iterator[Service]:
    """Yields a ready service (its base URL, as a ``str``); ``env`` adds ``RNNSERVE_*`` values."""
    port = free_port()
    full_env = {
        **os.environ,
        "RNNSERVE_HOST": "127.0.0.1",
        "RNNSERVE_PORT": str(port),
        "RNNSERVE_ACCESS_LOG": "false",
        **env,
    }
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=full_env, stdout=log, stderr=log
    )
    base = Service(f"http://127.0.0.1:{port}", proc.pid)
    try:
        deadline = time.monotonic() + timeout
        while not _ready(base):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"service did not become ready (see {log_path})")
            time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log_path:
            log.close()
