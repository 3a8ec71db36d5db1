"""A serving process whose event loop stops running ends itself (``service.loop_watchdog``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

import httpx
import pytest

from loadtest.bench_process_death import serving_pids
from service.loop_watchdog import STALLED_EXIT_CODE, LoopWatchdog
from tests.service.bundled import bundled_repository
from tests.service.faults import HANG_FLAG_ENV, Service, sitecustomize_with_faults, wait_until


def _watch(block_s: float, stall_s: float) -> list[tuple[float, str]]:
    """Stalls seen by a watchdog (``stall_s`` bound) over a loop that runs, then blocks for ``block_s``."""
    stalls: list[tuple[float, str]] = []

    async def scenario() -> None:
        dog = LoopWatchdog(stall_s, on_stall=lambda s, stack: stalls.append((s, stack)), beat_s=0.05)
        dog.start(asyncio.get_running_loop())
        await asyncio.sleep(0.5)  # running: beats every 0.05 s
        time.sleep(block_s)  # a call on the loop's thread that does not return for a while
        await asyncio.sleep(0.2)
        dog.stop()

    asyncio.run(scenario())
    return stalls


def test_a_loop_that_stops_running_is_reported_once_with_where_it_stopped() -> None:
    stalls = _watch(block_s=0.9, stall_s=0.3)
    assert len(stalls) == 1
    stalled_s, stack = stalls[0]
    assert stalled_s >= 0.3 and "time.sleep(block_s)" in stack and "scenario" in stack


def test_a_loop_that_keeps_running_is_left_alone() -> None:
    assert _watch(block_s=0.1, stall_s=1.0) == []  # a bound well above the block: a loaded machine's lag


@pytest.mark.timeout(300)
def test_python_m_service_ends_a_process_whose_loop_hangs(tmp_path: Path) -> None:
    """A short call, run on the event loop's thread, that never returns: the process logs where its loop
    is stuck and exits, so its supervisor can start a fresh one; the stuck request's connection closes."""
    root = bundled_repository(tmp_path / "models", names=["sentiment-gru"])
    flag = tmp_path / "hang"
    env = {
        "RNNSERVE_MODEL_REPOSITORY": str(root),
        "RNNSERVE_WORKERS": "1",  # no supervisor: the exit is seen by whoever runs the process
        "RNNSERVE_EVENT_LOOP_STALL_S": "2",
        HANG_FLAG_ENV: str(flag),
    }
    svc = Service(env, tmp_path / "log", faults=True)
    try:
        svc.wait("/ready")
        assert httpx.post(f"{svc.base}/sentiment", json={"text": "good"}, timeout=10).status_code == 200
        flag.touch()  # the next call, measured short by the one before, runs on the loop's thread and hangs
        outcome: list[object] = []

        def stuck() -> None:
            try:
                outcome.append(httpx.post(f"{svc.base}/sentiment", json={"text": "good"}, timeout=60))
            except httpx.TransportError as exc:
                outcome.append(exc)

        threading.Thread(target=stuck, daemon=True).start()
        assert svc.process.wait(30) == STALLED_EXIT_CODE
        wait_until(lambda: bool(outcome), 10, "the stuck request's end")
        assert isinstance(outcome[0], httpx.TransportError), outcome
        log = svc.output()
        assert "event loop has not run for" in log and "serve_with_faults" in log, log[-3000:]
    finally:
        svc.stop()


@pytest.mark.timeout(300)
def test_uvicorns_supervisor_replaces_a_serving_process_whose_loop_hangs(tmp_path: Path) -> None:
    """Two serving processes, the faults installed in each (``sitecustomize``): once short calls hang on the
    event loops' threads, a process ends itself and the supervisor starts a fresh one that serves."""
    root = bundled_repository(tmp_path / "models", names=["sentiment-gru"])
    flag = tmp_path / "hang"
    env = {
        "RNNSERVE_MODEL_REPOSITORY": str(root),
        "RNNSERVE_WORKERS": "2",
        "RNNSERVE_EVENT_LOOP_STALL_S": "2",
        HANG_FLAG_ENV: str(flag),
        **sitecustomize_with_faults(tmp_path),
    }
    svc = Service(env, tmp_path / "log")
    try:
        svc.wait("/ready")
        first = serving_pids(svc.base, 2)
        for _ in range(40):  # on new connections, spread over both: each measures its single-text call
            assert httpx.post(f"{svc.base}/sentiment", json={"text": "good"}, timeout=10).status_code == 200
        flag.touch()

        def stuck() -> None:
            with contextlib.suppress(httpx.TransportError):
                httpx.post(f"{svc.base}/sentiment", json={"text": "good"}, timeout=60)

        for _ in range(8):
            threading.Thread(target=stuck, daemon=True).start()
        wait_until(lambda: not all(Path(f"/proc/{pid}").exists() for pid in first), 60, "a process ending")
        flag.unlink()
        svc.wait("/ready", timeout=120)
        assert serving_pids(svc.base, 2, timeout_s=60) - first, "a fresh process serving"
        assert httpx.post(f"{svc.base}/sentiment", json={"text": "good"}, timeout=10).status_code == 200
        assert svc.process.poll() is None  # the supervisor itself goes on
        log = svc.output()
        assert "event loop has not run for" in log and "died" in log, log[-3000:]
    finally:
        svc.stop()
