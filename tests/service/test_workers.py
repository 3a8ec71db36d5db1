"""Several serving processes on one port: readiness, metrics and a SIGTERM drain across all of them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from loadtest.bench.procs import ProcessTree, running
from service.workers import WorkerGroup
from tests.service.live import start_service


def test_the_group_is_ready_only_when_every_expected_process_is(tmp_path: Path) -> None:
    group = WorkerGroup(tmp_path, expected=2)
    group.publish(True, {}, {"m": "ready"})
    assert group.readiness(True, {}) == (False, {"*": "1 of 2 serving processes are ready"})
    other = tmp_path / "1.json"  # pid 1 is alive in any container; a second ready process
    other.write_text(json.dumps({"pid": 1, "ready": True, "reasons": {}, "models": {"m": "ready"}}))
    assert group.readiness(True, {}) == (True, {})
    assert group.model_counts() == {"m": {"ready": 2}}
    assert group.readiness(False, {"t": "loading"}) == (False, {"t": "loading"})  # this one is not ready


def test_files_of_dead_processes_are_ignored_and_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"{dead.pid}.json").write_text(
        json.dumps({"pid": dead.pid, "ready": True, "reasons": {}, "models": {}})
    )
    group = WorkerGroup(tmp_path, expected=1)
    assert group.states() == []
    assert not (tmp_path / f"{dead.pid}.json").exists()
    group.publish(True, {}, {})
    group.withdraw()
    assert list(tmp_path.iterdir()) == []


def _requests_total(metrics: str, endpoint: str) -> float:
    """The summed ``rnnserve_http_requests_total`` of an endpoint's 200 answers, over its series."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("rnnserve_http_requests_total{") and f'endpoint="{endpoint}"' in line:
            total += float(line.rsplit(" ", 1)[1]) if 'status="200"' in line else 0.0
    return total


@pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals and /proc")
@pytest.mark.parametrize("inference_process", [False, True], ids=["in-process", "inference-process"])
def test_two_processes_serve_count_together_and_drain_on_sigterm(
    tiny_repo: Path, inference_process: bool
) -> None:
    env = {
        "RNNSERVE_INFERENCE_PROCESS": str(inference_process).lower(),
        "RNNSERVE_MODEL_REPOSITORY": str(tiny_repo),
        "RNNSERVE_DEVICE": "cpu",
        "RNNSERVE_WORKERS": "2",
        "RNNSERVE_BATCHING__SENTIMENT__MAX_BATCH_SIZE": "1",
        "RNNSERVE_BATCHING__SENTIMENT__MAX_QUEUE_WAIT_S": "600",  # admit the whole backlog
    }
    server, base = start_service(env)
    try:
        # the supervisor and two serving processes, each with its inference process when asked
        assert ProcessTree(server.pid).processes() >= (5 if inference_process else 3)

        with httpx.Client(base_url=base) as client:  # new connections spread over the processes
            for _ in range(40):
                assert client.post("/sentiment", json={"text": "good"}).status_code == 200
        answered_by = {httpx.get(f"{base}/models").json()["pid"] for _ in range(30)}
        assert len(answered_by) == 2, "both processes answer on the one port"
        models = {m["name"]: m for m in httpx.get(f"{base}/models").json()["models"]}
        assert models["sentiment-tiny"]["processes"] == {"ready": 2}
        assert _requests_total(httpx.get(f"{base}/metrics").text, "/sentiment") == 40

        heavy = {"texts": ["the plot was good and the acting was very dull " * 100] * 32}
        finished: list[int] = []

        sending = threading.Semaphore(0)

        def call() -> None:
            with httpx.Client(event_hooks={"request": [lambda request: sending.release()]}) as client:
                finished.append(client.post(f"{base}/sentiment", json=heavy, timeout=60).status_code)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for t in threads:
            t.start()
        for _ in threads:  # every request is on its way before the signal
            assert sending.acquire(timeout=30)
        time.sleep(0.3)
        server.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        assert server.wait(60) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
    log = server.stdout.read()
    assert finished == [200] * 8, log[-3000:]
    assert log.count("] shutdown complete") == 2, log[-3000:]  # each serving process drained
    if inference_process:
        assert log.count("inference process") >= 4, log[-3000:]  # two started, two exited
        assert log.count("exited with code") == 0, log[-3000:]  # none died on the way


@pytest.mark.skipif(sys.platform != "linux", reason="prctl(PR_SET_PDEATHSIG)")
@pytest.mark.parametrize(
    "settings",
    [{"RNNSERVE_REUSE_PORT": "false"}, {"RNNSERVE_INFERENCE_PROCESS": "true"}],
    ids=["shared-socket", "inference-process"],
)
def test_serving_processes_exit_when_their_supervisor_is_killed(
    tiny_repo: Path, settings: dict[str, str]
) -> None:
    env = {"RNNSERVE_MODEL_REPOSITORY": str(tiny_repo), **settings}
    env |= {"RNNSERVE_DEVICE": "cpu", "RNNSERVE_WORKERS": "2"}
    server, _ = start_service(env, capture=False)
    try:
        workers = ProcessTree(server.pid).pids() - {server.pid}
        assert workers
        server.kill()  # SIGKILL: the supervisor cannot stop its workers itself
        server.wait(10)
        deadline = time.monotonic() + 30
        while any(running(pid) for pid in workers):
            assert time.monotonic() < deadline, "orphaned serving processes are still running"
            time.sleep(0.2)
    finally:
        if server.poll() is None:
            server.kill()
