"""Starts ``python -m service`` in a subprocess with settings overrides, waits until ready, stops it.

``running_service`` is the one-server case; ``start_service``/``wait_ready``/``stop_service`` are its
steps, for callers that run several servers (replicas on ports of their own) and signal or restart them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from loadtest.bench.procs import ProcessTree
from service.config import Settings

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
    """The base URL (``http://127.0.0.1:PORT``) of a running service, with its process id (and, when
    started here, its process and log file)."""

    pid: int
    process: subprocess.Popen | None
    log_path: Path | None
    _log: IO | None

    def __new__(
        cls,
        base: str,
        pid: int,
        process: subprocess.Popen | None = None,
        log_path: Path | None = None,
        log: IO | None = None,
    ) -> Service:
        obj = super().__new__(cls, base)
        obj.pid, obj.process, obj.log_path, obj._log = pid, process, log_path, log
        return obj

    @property
    def port(self) -> int:
        return int(self.rsplit(":", 1)[1])

    def cpu_seconds(self) -> float:
        """User + system CPU time the server's processes (the supervisor and its serving processes) have
        used so far (Linux ``/proc``)."""
        return ProcessTree(self.pid).cpu_seconds()


def server_settings(env: Mapping[str, str]) -> Settings:
    """The settings a service started with ``env`` reads (this process's environment, then ``env``)."""
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def start_service(
    env: dict[str, str],
    log_path: Path | None = None,
    port: int | None = None,
    capture: bool = False,
    tree: Path = REPO_ROOT,
) -> Service:
    """Starts ``python -m service`` on 127.0.0.1 (``port``, else a free one) without waiting for it; its
    output goes to ``log_path``, or with ``capture`` to ``service.process.stdout`` (text), else nowhere.
    ``tree``: the source tree to run it from (another checkout, for a before/after comparison)."""
    port = port or free_port()
    full_env = {
        **os.environ,
        "RNNSERVE_HOST": "127.0.0.1",
        "RNNSERVE_PORT": str(port),
        "RNNSERVE_ACCESS_LOG": "false",
        **env,
    }
    log = open(log_path, "w") if log_path else None  # noqa: SIM115 - closed by stop_service
    proc = subprocess.Popen(
        [sys.executable, "-m", "service"],
        cwd=tree,
        env=full_env,
        stdout=log or (subprocess.PIPE if capture else subprocess.DEVNULL),
        stderr=log or (subprocess.STDOUT if capture else subprocess.DEVNULL),
        text=capture,
    )
    return Service(f"http://127.0.0.1:{port}", proc.pid, proc, log_path, log)


def wait_ready(service: Service, timeout: float = 120) -> None:
    """Returns once ``/ready`` answers 200; raises when the process exits or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not _ready(service):
        exited = service.process is not None and service.process.poll() is not None
        if exited or time.monotonic() > deadline:
            raise RuntimeError(f"service {service} did not become ready (see {service.log_path})")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, grace_s: float = 30) -> None:
    """``sig`` (a graceful stop), SIGKILL after ``grace_s``; a process already gone is only reaped."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_service(service: Service, grace_s: float = 30) -> None:
    """SIGTERM (the service drains), SIGKILL after ``grace_s``."""
    if service.process is not None:
        stop_process(service.process, signal.SIGTERM, grace_s)
    if service._log is not None:
        service._log.close()


@contextmanager
def running_service(
    env: dict[str, str], log_path: Path | None = None, timeout: float = 120
) -> Iterator[Service]:
    """Yields a ready service (its base URL, as a ``str``); ``env`` adds ``RNNSERVE_*`` values."""
    service = start_service(env, log_path)
    try:
        wait_ready(service, timeout)
        yield service
    finally:
        stop_service(service)
