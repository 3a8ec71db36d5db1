"""Fault injection for the service tests: ONNX sessions that fail or hang on demand, a real uvicorn
server in a thread, and ``python -m service`` in a subprocess (optionally with its sessions made to hang
once a flag file exists)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from service.config import Settings
from service.main import create_app

REPO_ROOT = Path(__file__).resolve().parents[2]


class FaultySession:
    """Wraps an ``onnxruntime.InferenceSession``; ``plan(call_number, feeds)`` runs before each call and
    may raise or block. Every call's batch size is recorded in ``batches``."""

    def __init__(self, session: Any, plan: Callable[[int, dict[str, Any]], None] | None = None):
        self.session = session
        self.plan = plan
        self.calls = 0
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def run(self, outputs, feeds, *args, **kwargs):
        with self._lock:
            self.calls += 1
            number = self.calls
        self.batches.append(len(next(iter(feeds.values()))))
        if self.plan is not None:
            self.plan(number, feeds)
        return self.session.run(outputs, feeds, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def inject(app, model_name: str, plan, graph: str = "model") -> FaultySession:
    """Puts a ``FaultySession`` in front of graph ``graph`` of a loaded model of ``app``."""
    model = app.state.repository.entries[model_name].model
    faulty = FaultySession(model.sessions[graph], plan)
    model.sessions[graph] = faulty
    return faulty


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_app(settings: Settings, plugins=None) -> Iterator[tuple[str, Any]]:
    """The app on a real uvicorn server in a thread (real sockets: clients can disconnect). Yields
    ``(base_url, app)`` once the models have loaded."""
    app = create_app(settings, plugins)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_until(lambda: server.started and app.state.repository.loading_done, 60, "server start")
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(30)


HANG_FLAG_ENV = "RNNSERVE_TEST_HANG_FLAG"
DELAY_ENV = "RNNSERVE_TEST_CALL_DELAY_S"


def serve_with_faults() -> None:
    """``python -m service`` with :func:`install_faults` in its own process (a serving process that uvicorn's
    supervisor starts runs without them: ``sitecustomize_with_faults`` reaches those)."""
    install_faults()
    from service.__main__ import main

    main()


def sitecustomize_with_faults(folder: Path) -> dict[str, str]:
    """The environment under which every Python process started (serving processes included) runs
    :func:`install_faults` at start: a ``sitecustomize`` module in ``folder``, first on ``PYTHONPATH``."""
    (folder / "sitecustomize.py").write_text(
        "from tests.service.faults import install_faults\n\ninstall_faults()\n", encoding="utf-8"
    )
    return {"PYTHONPATH": os.pathsep.join([str(folder), str(REPO_ROOT)])}


def install_faults() -> None:
    """Every ONNX call blocks for good while the file named by ``RNNSERVE_TEST_HANG_FLAG`` exists (a model
    call that never returns), and takes ``RNNSERVE_TEST_CALL_DELAY_S`` seconds longer (a slow model)."""
    import onnxruntime

    flag = Path(os.environ.get(HANG_FLAG_ENV, "/nonexistent/flag"))
    delay = float(os.environ.get(DELAY_ENV, "0"))
    real_run = onnxruntime.InferenceSession.run

    def run(self, *args, **kwargs):
        if flag.exists():
            threading.Event().wait()
        if delay:
            time.sleep(delay)
        return real_run(self, *args, **kwargs)

    onnxruntime.InferenceSession.run = run


class Service:
    """``python -m service`` (or ``serve_with_faults``) in a subprocess, its output in a file."""

    def __init__(self, env: dict[str, str], log: Path, faults: bool = False):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        command = [sys.executable, "-m", "service"]
        if faults:
            launch = "from tests.service.faults import serve_with_faults; serve_with_faults()"
            command = [sys.executable, "-c", launch]
        full_env = {
            **os.environ,
            "RNNSERVE_HOST": "127.0.0.1",
            "RNNSERVE_PORT": str(self.port),
            "RNNSERVE_DEVICE": "cpu",
            "RNNSERVE_GC_FREEZE": "false",
            **env,
        }
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.base + path, timeout=kwargs.pop("timeout", 5), **kwargs)

    def answers(self, path: str, status: int = 200) -> bool:
        try:
            return self.get(path, timeout=1).status_code == status
        except httpx.TransportError:
            return False

    def wait(self, path: str, status: int = 200, timeout: float = 60) -> None:
        wait_until(lambda: self.answers(path, status) or self.process.poll() is not None, timeout, path)
        assert self.process.poll() is None, self.output()[-3000:]

    def sigterm(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


def killed_during(client: Any, path: str, body: dict, running: Callable[[], bool]) -> httpx.Response:
    """Posts ``body`` to ``path`` in a thread, SIGKILLs the app's inference process once ``running()``
    says the call is under way there, and returns the answer the call got."""
    answers: list[httpx.Response] = []
    poster = threading.Thread(target=lambda: answers.append(client.post(path, json=body)))
    poster.start()
    wait_until(running)
    os.kill(client.app.state.repository.inference.pid, signal.SIGKILL)
    poster.join(30)
    (answer,) = answers
    return answer
