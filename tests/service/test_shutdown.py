"""Graceful shutdown of ``python -m service``: after SIGTERM new work is refused, in-flight work ends."""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.service.live import start_service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_finishes_in_flight_requests_then_exits(tiny_repo: Path):
    env = {
        "RNNSERVE_MODEL_REPOSITORY": str(tiny_repo),
        "RNNSERVE_DEVICE": "cpu",
        "RNNSERVE_LOG_FORMAT": "json",
        "RNNSERVE_BATCHING__SENTIMENT__MAX_BATCH_SIZE": "1",
        "RNNSERVE_WORKERS": "1",  # one process's queue counts below (test_workers.py drains several)
        "RNNSERVE_BATCHING__SENTIMENT__MAX_QUEUE_WAIT_S": "600",  # admit the whole backlog
    }
    server, base = start_service(env)
    deadline = time.monotonic() + 60
    try:
        heavy = {"texts": ["the plot was good and the acting was very dull " * 100] * 64}
        finished: list[tuple[int, float]] = []

        def call() -> None:
            r = httpx.post(f"{base}/sentiment", json=heavy, timeout=60)
            finished.append((r.status_code, time.monotonic()))

        threads = [threading.Thread(target=call) for _ in range(12)]
        for t in threads:
            t.start()
        submitted = 0
        while submitted < 12 * 64:  # every request's texts are queued or running
            assert time.monotonic() < deadline + 60, submitted
            (model,) = [
                m for m in httpx.get(f"{base}/models").json()["models"] if m["name"] == "sentiment-tiny"
            ]
            submitted = model["queue_depth"] + model["stats"].get("items", 0)
            time.sleep(0.01)
        sigterm_at = time.monotonic()
        server.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        # the admitted requests drain with the port open: new work is refused, not reset
        assert httpx.get(f"{base}/ready", timeout=2).status_code == 503
        late = httpx.post(f"{base}/sentiment", json={"text": "good"}, timeout=2)
        assert late.status_code == 503 and late.json()["error"]["code"] == "shutting_down"
        for t in threads:
            t.join(60)
        assert server.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it is done
    finally:
        if server.poll() is None:
            server.kill()
    log = server.stdout.read()
    assert [status for status, _ in finished] == [200] * 12, log[-2000:]
    assert any(at > sigterm_at for _, at in finished), "no request was in flight at SIGTERM"
    assert "shutdown complete" in log
