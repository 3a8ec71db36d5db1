"""``python -m service`` under faults: SIGTERM mid-stream, mid-load and with a hung model call, and a
log destination that blocks or fails. Every request ends (an answer or a clean error), the process
exits, and serving never waits on the logs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.service.bundled import BUNDLED, bundled_repository
from tests.service.conftest import metric_sample
from tests.service.faults import DELAY_ENV, HANG_FLAG_ENV, Service, free_port, wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
EXITED_ON_SIGTERM = (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it is done


@pytest.fixture
def service(tmp_path: Path):
    started: list[Service] = []

    def start(root: Path, faults: bool = False, **env: str) -> Service:
        # one serving process: these tests follow one process's drain (tests/service/test_workers.py has
        # the drain of several)
        settings = {"RNNSERVE_MODEL_REPOSITORY": str(root), "RNNSERVE_WORKERS": "1", **env}
        svc = Service(settings, tmp_path / f"log{len(started)}", faults)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


def _assert_clean_log(svc: Service) -> None:
    log = svc.output()
    assert "shutdown complete" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_sigterm_while_streams_and_translations_run_lets_them_all_end(service, tmp_path):
    root = bundled_repository(tmp_path / "models", names=["generation-gru", "translation-gru"])
    svc = service(root, RNNSERVE_SHUTDOWN_TIMEOUT_S="60", RNNSERVE_BATCHING__TRANSLATION__MAX_BATCH_SIZE="2")
    svc.wait("/ready")
    streams: list[dict] = []
    translations: list[tuple[int, dict]] = []
    first_events = threading.Semaphore(0)

    def stream() -> None:
        body = {"prompt": "ROMEO:", "max_new_tokens": 1000, "seed": 1, "stream": True}
        events = []
        try:
            with httpx.stream("POST", f"{svc.base}/generate", json=body, timeout=60) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                        if len(events) == 1:
                            first_events.release()
        except httpx.HTTPError as exc:
            events.append({"transport_error": repr(exc)})
        streams.append(events[-1] if events else {})

    def translate() -> None:
        texts = ["A man in a blue shirt is standing on a ladder cleaning windows ."] * 4
        try:
            r = httpx.post(f"{svc.base}/translate", json={"texts": texts, "beam_size": 8}, timeout=60)
            translations.append((r.status_code, r.json()))
        except httpx.HTTPError as exc:
            translations.append((0, {"transport_error": repr(exc)}))

    threads = [threading.Thread(target=stream) for _ in range(3)] + [
        threading.Thread(target=translate) for _ in range(4)
    ]
    batches_before = _batches(svc, "translation-gru")
    for t in threads:
        t.start()
    for _ in range(3):
        assert first_events.acquire(timeout=30), "the streams did not start"
    # a translation admitted and running: the drain has one to finish, however slow the machine is today
    wait_until(lambda: _batches(svc, "translation-gru") > batches_before, 30, "a translation batch")
    svc.sigterm()
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "a request hung"
    assert svc.process.wait(60) in EXITED_ON_SIGTERM
    assert len(streams) == 3 and all(last.get("finish_reason") == "length" for last in streams), streams
    for status, body in translations:
        assert status == 200 or (status == 503 and body["error"]["code"] == "shutting_down"), body
    assert any(status == 200 for status, _ in translations)
    _assert_clean_log(svc)


def _batches(svc: Service, model: str) -> float:
    """Batches the model's batcher has started (warm-up included), from ``/metrics``."""
    metrics = httpx.get(f"{svc.base}/metrics", timeout=10).text
    return metric_sample(metrics, f'rnnserve_batch_size_count{{model="{model}"}}') or 0.0


def _long_stream(svc: Service) -> tuple[threading.Thread, list[dict]]:
    """A 1000-character stream, running once this returns; its last event lands in the list."""
    ending: list[dict] = []
    started = threading.Event()

    def stream() -> None:
        body = {"prompt": "ROMEO:", "max_new_tokens": 1000, "seed": 3, "stream": True}
        events = []
        with httpx.stream("POST", f"{svc.base}/generate", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    started.set()
        ending.append(events[-1])

    thread = threading.Thread(target=stream)
    thread.start()
    assert started.wait(30), "the stream did not start"
    return thread, ending


def test_while_a_stream_drains_new_requests_get_503_and_the_port_stays_open(service, tmp_path):
    """uvicorn alone closes its port at SIGTERM, and a client already connected then reads a reset; here
    the port stays open while the admitted stream runs, and a new request is answered 503."""
    root = bundled_repository(tmp_path / "models", names=["generation-gru"])
    # every step 5 ms slower: the 1000 characters take more than 5 s
    svc = service(root, faults=True, RNNSERVE_SHUTDOWN_TIMEOUT_S="60", **{DELAY_ENV: "0.005"})
    svc.wait("/ready")
    thread, ending = _long_stream(svc)
    svc.sigterm()
    wait_until(lambda: svc.get("/ready").status_code == 503, 10, "readiness to turn false")
    assert svc.get("/ready").json()["reasons"] == {"*": "the process is shutting down"}
    late = httpx.post(f"{svc.base}/generate", json={"prompt": "ROMEO:", "max_new_tokens": 5}, timeout=10)
    assert late.status_code == 503 and late.json()["error"]["code"] == "shutting_down", late.text
    assert late.headers["retry-after"] == "1" and late.headers["connection"] == "close"
    assert svc.process.poll() is None and thread.is_alive(), "the drain ended before the stream did"
    thread.join(60)
    assert ending and ending[0].get("finish_reason") == "length", ending
    assert svc.process.wait(60) in EXITED_ON_SIGTERM
    log = svc.output()
    assert "draining 1 request(s) in flight" in log, log[-3000:]
    _assert_clean_log(svc)


def test_with_listen_when_ready_the_port_closes_at_sigterm_and_the_stream_still_ends(service, tmp_path):
    """For a balancer without readiness checks the open port is the signal: closed at SIGTERM, so the
    balancer retries new requests elsewhere; the admitted stream still runs to its end."""
    root = bundled_repository(tmp_path / "models", names=["generation-gru"])
    svc = service(
        root,
        faults=True,
        RNNSERVE_SHUTDOWN_TIMEOUT_S="60",
        RNNSERVE_LISTEN_WHEN_READY="true",
        **{DELAY_ENV: "0.005"},
    )
    svc.wait("/ready")
    thread, ending = _long_stream(svc)
    svc.sigterm()
    wait_until(lambda: not svc.answers("/health"), 10, "the port to close")
    assert thread.is_alive(), "the stream ended before the port closed"
    thread.join(60)
    assert ending and ending[0].get("finish_reason") == "length", ending
    assert svc.process.wait(60) in EXITED_ON_SIGTERM
    assert "in flight (new ones get 503" not in svc.output()
    _assert_clean_log(svc)


def test_streams_still_running_at_the_shutdown_bound_end_with_an_error_event(service, tmp_path):
    root = bundled_repository(tmp_path / "models", names=["generation-gru"])
    # every step 5 ms slower: 1000 characters take more than 5 s, far past the 1 s bound
    svc = service(root, faults=True, RNNSERVE_SHUTDOWN_TIMEOUT_S="1", **{DELAY_ENV: "0.005"})
    svc.wait("/ready")
    last_events: list[dict] = []
    started = threading.Semaphore(0)

    def stream() -> None:
        events = []
        try:
            body = {"prompt": "ROMEO:", "max_new_tokens": 1000, "seed": 2, "stream": True}
            with httpx.stream("POST", f"{svc.base}/generate", json=body, timeout=30) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                        if len(events) == 1:
                            started.release()
        except httpx.HTTPError as exc:
            events.append({"transport_error": repr(exc)})
        last_events.append(events[-1] if events else {})

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in threads:
        assert started.acquire(timeout=30), "the streams did not start"
    svc.sigterm()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a stream hung"
    assert svc.process.wait(60) in EXITED_ON_SIGTERM
    assert len(last_events) == 4  # each ended by the server with an event saying why: none cut
    assert all(last.get("error_type") == "shutting_down" for last in last_events), last_events
    _assert_clean_log(svc)


def test_sigterm_during_model_loading_exits_cleanly(service, tmp_path):
    every_model = sorted(p.name for p in BUNDLED.iterdir() if (p / "config.json").is_file())
    root = bundled_repository(tmp_path / "models", names=every_model)  # seconds of loading
    svc = service(root)
    svc.wait("/health")
    assert svc.get("/ready").status_code == 503, "still loading"
    started = time.monotonic()
    svc.sigterm()
    assert svc.process.wait(60) in EXITED_ON_SIGTERM
    assert time.monotonic() - started < 30
    _assert_clean_log(svc)


def test_sigterm_with_a_hung_model_call_still_exits(service, tmp_path):
    """The stuck worker thread stays blocked; the drain gives up after RNNSERVE_SHUTDOWN_TIMEOUT_S and
    the process still exits (uvicorn ends by dying of the signal, so no exit hook waits for threads)."""
    root = bundled_repository(tmp_path / "models", names=["sentiment-gru"])
    flag = tmp_path / "hang"
    svc = service(
        root,
        faults=True,
        **{
            HANG_FLAG_ENV: str(flag),
            "RNNSERVE_SHUTDOWN_TIMEOUT_S": "2",
            "RNNSERVE_BATCHING__SENTIMENT__TIMEOUT_S": "1",
        },
    )
    svc.wait("/ready")
    flag.touch()
    r = httpx.post(f"{svc.base}/sentiment", json={"text": "good"}, timeout=10)
    assert r.status_code == 504
    svc.sigterm()
    try:
        code = svc.process.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail("the process did not exit 20 s after SIGTERM: " + svc.output()[-1500:])
    assert code in EXITED_ON_SIGTERM
    log = svc.output()
    assert "shutdown complete" in log, log[-2000:]


def test_the_shutdown_bound_is_one_for_the_whole_shutdown(service, tmp_path):
    """A request stuck in a hung model call outlives every stage of the shutdown: the drain's wait, uvicorn's
    wait for running requests and the queues' drain share one RNNSERVE_SHUTDOWN_TIMEOUT_S from SIGTERM
    (a deployment's grace period covers it once), not one each."""
    root = bundled_repository(tmp_path / "models", names=["sentiment-gru"])
    flag = tmp_path / "hang"
    bound = 4.0
    svc = service(
        root,
        faults=True,
        **{
            HANG_FLAG_ENV: str(flag),
            "RNNSERVE_SHUTDOWN_TIMEOUT_S": str(bound),
            "RNNSERVE_BATCHING__SENTIMENT__TIMEOUT_S": "60",  # the request stays in flight throughout
            "RNNSERVE_BATCHING__SENTIMENT__INLINE_MAX_MS": "0",  # hung in the model thread, not the loop
        },
    )
    svc.wait("/ready")
    batches_before = _batches(svc, "sentiment-gru")
    flag.touch()

    def stuck_request() -> None:
        with contextlib.suppress(httpx.HTTPError):  # cut off by the shutdown, as it must be
            httpx.post(f"{svc.base}/sentiment", json={"text": "good"}, timeout=60)

    threading.Thread(target=stuck_request, daemon=True).start()
    wait_until(lambda: _batches(svc, "sentiment-gru") > batches_before, 10, "the stuck request's batch")
    started = time.monotonic()
    svc.sigterm()
    code = svc.process.wait(3 * bound + 10)
    took = time.monotonic() - started
    assert code in EXITED_ON_SIGTERM
    assert took < 2.5 * bound, f"shutdown took {took:.1f} s against a bound of {bound} s (3 bounds: 12 s)"


@pytest.mark.parametrize("destination", ["pipe nobody reads", "closed pipe", "full disk"])
def test_a_log_destination_that_blocks_or_fails_does_not_stop_serving(tmp_path, destination):
    root = bundled_repository(tmp_path / "models", names=["sentiment-gru"])
    read_end, write_end = os.pipe()
    if destination == "closed pipe":
        os.close(read_end)
        stream = write_end
    elif destination == "full disk":
        stream = os.open("/dev/full", os.O_WRONLY)
    else:
        stream = write_end
    port = free_port()
    env = {
        **os.environ,
        "RNNSERVE_MODEL_REPOSITORY": str(root),
        "RNNSERVE_PORT": str(port),
        "RNNSERVE_DEVICE": "cpu",
        "RNNSERVE_WORKERS": "1",
        "RNNSERVE_ACCESS_LOG": "true",  # a line per request: a pipe's 64 KiB fill after ~400 requests
        "RNNSERVE_LOG_LEVEL": "DEBUG",
    }
    process = subprocess.Popen([sys.executable, "-m", "service"], env=env, stdout=stream, stderr=stream)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(base), 60, "ready")
        with httpx.Client(base_url=base, timeout=10) as client:
            for i in range(1000):
                r = client.post("/sentiment", json={"text": f"good film number {i} " * 5})
                assert r.status_code == 200, (i, r.text)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) in EXITED_ON_SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for fd in {read_end, write_end, stream}:
            with contextlib.suppress(OSError):
                os.close(fd)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
