"""Faults injected while serving: a model call that fails or hangs, model files that vanish or rot, and
clients that leave early. Each test says what the service must do; none of them may take it down."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.service.bundled import bundled_repository
from tests.service.conftest import TINY, serving, settings_for
from tests.service.faults import inject, live_app, wait_until
from tests.service.tiny_onnx import make_tiny_sentiment


class Injected(RuntimeError):
    pass


# ------------------------------------------------------------------------------ a failing batch


def test_a_session_that_fails_one_batch_fails_only_that_batchs_callers(tiny_repo):
    gate = threading.Event()
    failing: set[int] = set()

    def plan(call: int, feeds) -> None:
        if call == 1:
            assert gate.wait(10)
        if call in failing:
            raise Injected("onnxruntime: injected failure")

    with live_app(settings_for(tiny_repo, access_log=False)) as (base, app):
        faulty = inject(app, TINY, plan)
        batcher = app.state.repository.entries[TINY].model.batcher
        with ThreadPoolExecutor(8) as pool, httpx.Client(base_url=base, timeout=30) as client:

            def post(text: str) -> httpx.Response:
                return client.post("/sentiment", json={"text": text})

            first = pool.submit(post, "good")  # holds the only worker
            wait_until(lambda: faulty.calls == 1, what="the first batch running")
            queued = [pool.submit(post, text) for text in ("bad", "dull film", "great acting")]
            wait_until(lambda: batcher.queue_depth == 3, what="three requests queued")
            # the next batch (the three queued texts) fails, and so do their retries one by one
            failing.update({2, 3, 4, 5})
            gate.set()
            assert first.result().status_code == 200
            for future in queued:
                r = future.result()
                assert r.status_code == 500, r.text
                assert r.json()["error"]["code"] == "inference_error"
            assert faulty.batches[:5] == [1, 3, 1, 1, 1]  # one batch of 3, then each item alone
            after = post("fine")
            assert after.status_code == 200, "the model serves again after the failing batch"
            assert client.get("/ready").status_code == 200
        stats = app.state.repository.entries[TINY].model.batcher.stats
        assert stats["items_failed"] == 3


# --------------------------------------------------------------------------------- a hung call


@pytest.mark.parametrize("served_before", [False, True])
def test_a_hung_model_call_makes_the_model_unready_until_it_returns_and_blocks_nothing_else(
    tiny_repo, served_before: bool
):
    """The stuck call's own caller gets 504 at its deadline (a thread inside ONNX Runtime cannot be
    interrupted). Once the call has run past ``stall_after_s`` the model is unready with the reason in
    /ready and /models, the requests queued behind it fail at once with 503 (not at their deadlines), new
    ones are refused at admission with Retry-After, and other models serve on. When the call returns, the
    model is ready and serves again. A model that has answered before hangs in its worker thread too when
    ``inline_max_ms`` is 0 (by default its short calls run on the event loop's thread)."""
    release = threading.Event()

    def plan(call: int, feeds) -> None:
        if not (served_before and call == 1):
            assert release.wait(60)

    batching = {"sentiment": {"timeout_s": 4.0, "stall_after_s": 1.0}}
    if served_before:
        batching["sentiment"]["inline_max_ms"] = 0
    settings = settings_for(tiny_repo, access_log=False, batching=batching)
    with live_app(settings) as (base, app):
        inject(app, TINY, plan)
        batcher = app.state.repository.entries[TINY].model.batcher
        with ThreadPoolExecutor(2) as pool, httpx.Client(base_url=base, timeout=30) as client:
            if served_before:
                assert client.post("/sentiment", json={"text": "good"}).status_code == 200
                assert batcher.cost.measured
            try:
                started = time.monotonic()
                stuck = pool.submit(client.post, "/sentiment", json={"text": "good"})
                wait_until(lambda: batcher.in_flight == 1, what="the call running")
                queued = pool.submit(client.post, "/sentiment", json={"texts": ["bad", "fine"]})
                wait_until(lambda: batcher.queue_depth == 2 or queued.done(), what="two texts queued")
                assert "sentiment" not in client.get("/ready").json()["reasons"], "not stuck yet"

                r = queued.result()
                assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable", r.text
                assert time.monotonic() - started < 3.5, "failed at the stall, before its own deadline"
                ready = client.get("/ready")
                assert ready.status_code == 503
                reason = ready.json()["reasons"]["sentiment"]
                assert TINY in reason and "inference call has been running" in reason, reason
                models = {m["name"]: m for m in client.get("/models").json()["models"]}
                assert "stall_after_s" in models[TINY]["fault"]
                refused = client.post("/sentiment", json={"text": "good"})
                assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
                assert "inference call has been running" in refused.json()["error"]["message"]
                # meanwhile: another model of the task, health and the metrics answer
                other = client.post("/sentiment", json={"text": "good", "model": "sentiment-tiny-b"})
                assert other.status_code == 200 and other.elapsed.total_seconds() < 1
                assert client.get("/health").status_code == 200
                gauge = f'rnnserve_model_ready{{model="{TINY}"}} 0.0'
                wait_until(lambda: gauge in client.get("/metrics").text, what="the ready gauge at 0")

                r = stuck.result()
                assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
                assert 3.9 <= time.monotonic() - started < 7
            finally:
                release.set()
            wait_until(lambda: batcher.in_flight == 0, what="the call returned")
            wait_until(lambda: "sentiment" not in client.get("/ready").json()["reasons"], what="ready again")
            assert client.post("/sentiment", json={"text": "good"}).status_code == 200
            models = {m["name"]: m for m in client.get("/models").json()["models"]}
            assert models[TINY]["fault"] is None and models[TINY]["state"] == "ready"


# ------------------------------------------------------------------- model files that go away


def test_model_folders_that_vanish_or_rot_while_serving_change_no_answer(tmp_path):
    root = bundled_repository(
        tmp_path / "models", copy=("ner-bigru-crf", "translation-gru", "generation-gru")
    )
    make_tiny_sentiment(root, TINY, default=True)
    requests = [
        ("/sentiment", {"texts": ["good", "bad film"]}),
        ("/tag", {"text": "Angela Merkel met Emmanuel Macron in Paris ."}),
        ("/translate", {"text": "A dog runs in the snow.", "beam_size": 2}),
        ("/generate", {"prompt": "ROMEO:", "max_new_tokens": 40, "seed": 3}),
    ]
    with serving(settings_for(root, access_log=False, default_models={"sentiment": TINY})) as c:
        before = [c.post(path, json=body).json() for path, body in requests]
        shutil.rmtree(root / TINY)  # the folder disappears
        for name in ("ner-bigru-crf", "translation-gru"):
            for path in (root / name / "1").iterdir():  # every file of the version is overwritten
                path.write_bytes(b"\x00garbage" * 10)
        for path in (root / "generation-gru" / "1").iterdir():  # or truncated (weights.bin too)
            path.write_bytes(b"")
        after = [c.post(path, json=body).json() for path, body in requests]
        assert after == before, "answers come from the loaded sessions"
        assert c.get("/ready").status_code == 200
        assert {m["state"] for m in c.get("/models").json()["models"]} == {"ready"}
        assert c.get("/openapi.json").status_code == 200


# -------------------------------------------------------------------------- clients that leave


def _raw_post(base: str, path: str, body: dict) -> socket.socket:
    """Sends a request on a raw socket and returns the socket unread (closing it is leaving)."""
    host, port = base.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return sock


def test_a_client_that_leaves_while_queued_has_its_texts_skipped(tiny_repo):
    gate = threading.Event()

    def plan(call: int, feeds) -> None:
        if call == 1:
            assert gate.wait(10)

    with live_app(settings_for(tiny_repo, access_log=False)) as (base, app):
        faulty = inject(app, TINY, plan)
        batcher = app.state.repository.entries[TINY].model.batcher
        with httpx.Client(base_url=base, timeout=30) as client, ThreadPoolExecutor(2) as pool:
            first = pool.submit(client.post, "/sentiment", json={"text": "good"})
            wait_until(lambda: faulty.calls == 1, what="the first batch running")
            leaving = _raw_post(base, "/sentiment", {"texts": ["bad", "dull", "awful film"]})
            wait_until(lambda: batcher.queue_depth == 3, what="the leaving client's texts queued")
            leaving.close()
            metrics = app.state.metrics
            wait_until(
                lambda: 'status="499"' in metrics.render().decode(),
                what="the server noticing the client left",
            )
            gate.set()
            assert first.result().status_code == 200
            assert client.post("/sentiment", json={"text": "fine"}).status_code == 200
        assert faulty.batches == [1, 1], "the leaving client's three texts were never computed"
        assert batcher.stats["items"] == 2


def test_a_client_that_leaves_a_stream_frees_its_slot_at_the_next_step(tmp_path):
    root = bundled_repository(tmp_path / "models", names=["generation-gru"])
    with live_app(settings_for(root, access_log=False)) as (base, app):
        scheduler = app.state.repository.entries["generation-gru"].model.scheduler
        graphs = scheduler.graphs
        step, steps_at = graphs.step, []

        def slow_step(tokens, states):
            time.sleep(0.01)  # 1000 characters would take more than 10 s
            return step(tokens, states)

        graphs.step = slow_step
        body = {"prompt": "ROMEO:", "max_new_tokens": 1000, "seed": 1, "stream": True}
        with (
            httpx.Client(base_url=base, timeout=30) as client,
            client.stream("POST", "/generate", json=body) as r,
        ):
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
            assert scheduler.active == 1
            steps_at.append(scheduler.stats["steps"])
        # the client closed the connection: the server sees it at its next event, the slot goes at the
        # step after that
        wait_until(lambda: scheduler.active == 0, what="the slot freed")
        steps_at.append(scheduler.stats["steps"])
        assert scheduler.stats["cancelled"] == 1
        assert steps_at[1] - steps_at[0] <= 3, steps_at
        assert scheduler.stats["tokens"] < 100


def test_a_failure_while_admitting_a_generation_does_not_stop_the_model(tmp_path):
    root = bundled_repository(tmp_path / "models", names=["generation-gru"])
    settings = settings_for(root, access_log=False, batching={"generation": {"timeout_s": 2.0}})
    with serving(settings) as c:
        graphs = c.app.state.repository.entries["generation-gru"].model.scheduler.graphs
        zero_state, calls = graphs.zero_state, []

        def failing_once(batch: int):
            calls.append(batch)
            if len(calls) == 1:
                raise Injected("injected failure while building the first state")
            return zero_state(batch)

        graphs.zero_state = failing_once
        first = c.post("/generate", json={"prompt": "ROMEO:", "max_new_tokens": 5})
        assert first.status_code in (500, 503, 504), first.text
        second = c.post("/generate", json={"prompt": "ROMEO:", "max_new_tokens": 5})
        assert second.status_code == 200, second.text
