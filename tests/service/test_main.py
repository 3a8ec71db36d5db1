"""Start-up as a balancer sees it: by default the port opens at once (``/health`` answers, ``/ready`` says
503 until the models are warm); with ``listen_when_ready`` the port stays closed until they are, so the
first answer a client gets is a ready one."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from loadtest.bench.server import free_port
from tests.service.bundled import bundled_repository


def first_ready_answers(tmp_path, listen_when_ready: bool) -> list[int]:
    """The statuses of ``GET /ready`` from the first connection the server accepts until the first 200
    (a refused connection is no answer)."""
    repository = bundled_repository(tmp_path / "models")  # every task: loading takes a few seconds
    port = free_port()
    env = {
        **os.environ,
        "RNNSERVE_MODEL_REPOSITORY": str(repository),
        "RNNSERVE_PORT": str(port),
        "RNNSERVE_WORKERS": "1",
        "RNNSERVE_LISTEN_WHEN_READY": str(listen_when_ready).lower(),
    }
    server = subprocess.Popen([sys.executable, "-m", "service"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    answers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not answers or answers[-1] != 200:
            assert time.monotonic() < deadline and server.poll() is None, "server did not become ready"
            try:
                answers.append(httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code)
            except httpx.ConnectError:
                time.sleep(0.01)
    finally:
        server.terminate()
        server.wait(30)
    return answers


@pytest.mark.timeout(300)
def test_the_port_opens_only_when_ready_with_listen_when_ready(tmp_path) -> None:
    assert first_ready_answers(tmp_path / "default", listen_when_ready=False)[0] == 503, "loading, port open"
    assert first_ready_answers(tmp_path / "ready", listen_when_ready=True) == [200]
