"""Live model updates (``RNNSERVE_MODEL_CONTROL``): poll switches versions under load without an error and
keeps a broken version out; explicit control loads and unloads through Triton's repository routes, in
one process and across several."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from service.repository import HANDOVER_S
from service.workers import WorkerGroup
from tests.service.conftest import TINY, metric_sample, serving, settings_for
from tests.service.faults import inject, live_app, wait_until
from tests.service.live import start_service
from tests.service.tiny_onnx import make_tiny_sentiment

OTHER = "sentiment-tiny-b"
POLL_S = 0.2
#: a tiny model loads and warms up in milliseconds; this leaves room for two busy shared cores
LOAD_S = 3.0
TEXT = "the acting was good"


def stage_version(root: Path, staging: Path, version: int, seed: int, corrupt: bool = False) -> Path:
    """Version ``version`` of ``TINY`` built beside the repository and renamed into it (so that no scan
    sees half a version); ``corrupt``: its graph is not ONNX."""
    make_tiny_sentiment(staging, TINY, version=version, seed=seed)
    built = staging / TINY / str(version)
    if corrupt:
        (built / "model.onnx").write_bytes(b"this is not an onnx file")
    target = root / TINY / str(version)
    os.rename(built, target)
    return target


def infer_body(text: str = TEXT) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]}


def served(client: httpx.Client, name: str = TINY) -> tuple[str, float]:
    """The version that answers ``name`` now, and its positive probability for ``TEXT``."""
    r = client.post(f"/v2/models/{name}/infer", json=infer_body())
    assert r.status_code == 200, r.text
    answer = r.json()
    return answer["model_version"], answer["outputs"][1]["data"][1]


def listed(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in client.get("/models").json()["models"]}


def ready_gauge(client: httpx.Client, name: str) -> float:
    value = metric_sample(client.get("/metrics").text, f'rnnserve_model_ready{{model="{name}"}}')
    if value is None:
        raise AssertionError(f"no rnnserve_model_ready for {name}")
    return value


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    make_tiny_sentiment(root, TINY, version=1, seed=0)
    return root


def poll_settings(root: Path, **overrides):
    return settings_for(
        root, access_log=False, model_control="poll", model_poll_interval_s=POLL_S, **overrides
    )


# ------------------------------------------------------------------------------------------ poll


def test_poll_switches_to_a_new_version_under_load_without_an_error(root: Path, tmp_path: Path) -> None:
    with live_app(poll_settings(root)) as (base, app), httpx.Client(base_url=base, timeout=30) as client:
        old = app.state.repository.entries[TINY].model
        _, v1_score = served(client)
        stop = threading.Event()
        answers: list[tuple[float, float, str, float]] = []  # sent, answered, version, score
        errors: list[str] = []

        def keep_asking() -> None:
            with httpx.Client(base_url=base, timeout=30) as own:
                while not stop.is_set():
                    sent = time.monotonic()
                    r = own.post(f"/v2/models/{TINY}/infer", json=infer_body())
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text}")
                        continue
                    answer = r.json()
                    score = answer["outputs"][1]["data"][1]
                    answers.append((sent, time.monotonic(), answer["model_version"], score))

        with ThreadPoolExecutor(16) as pool:
            clients = [pool.submit(keep_asking) for _ in range(16)]
            wait_until(lambda: len(answers) > 50, what="traffic on version 1")
            stage_version(root, tmp_path / "staging", 2, seed=2)
            added = time.monotonic()
            wait_until(lambda: any(a[2] == "2" for a in answers), timeout=30, what="an answer of version 2")
            new = app.state.repository.entries[TINY].model
            shutil.rmtree(root / TINY / "1")  # version 1 is not served any more: nothing changes
            time.sleep(3 * POLL_S + HANDOVER_S)
            stop.set()
            for future in clients:
                future.result()

        assert not errors, errors[:5]
        first_v2 = min(answered for _, answered, version, _ in answers if version == "2")
        assert first_v2 - added < POLL_S + LOAD_S
        late_v1 = [a for a in answers if a[0] > first_v2 and a[2] == "1"]
        assert not late_v1, "a request sent after the switch was answered by version 1"
        v2_score = next(score for _, _, version, score in answers if version == "2")
        assert abs(v2_score - v1_score) > 1e-3, "the versions answer differently"
        for _, _, version, score in answers:
            assert score == pytest.approx(v1_score if version == "1" else v2_score, abs=1e-5)

        model = listed(client)[TINY]
        assert (model["state"], model["version"], model["update_error"]) == ("ready", 2, None)
        assert client.get(f"/v2/models/{TINY}/versions/1").status_code == 404
        assert client.get(f"/v2/models/{TINY}/versions/2/ready").json() == {"name": TINY, "ready": True}
        assert client.get("/ready").status_code == 200 and ready_gauge(client, TINY) == 1
        assert app.state.repository.entries[TINY].model is new, "removing version 1 reloaded nothing"
        wait_until(lambda: old.batcher.closed and old.batcher.in_flight == 0, what="version 1 unloaded")


def test_a_request_admitted_by_the_old_version_finishes_after_the_switch(root: Path, tmp_path: Path) -> None:
    gate = threading.Event()
    with live_app(poll_settings(root)) as (base, app), httpx.Client(base_url=base, timeout=30) as client:
        inject(app, TINY, lambda call, feeds: gate.wait(30))
        old = app.state.repository.entries[TINY].model
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(client.post, f"/v2/models/{TINY}/infer", json=infer_body())
            wait_until(lambda: old.batcher.in_flight == 1, what="a request inside version 1")
            stage_version(root, tmp_path / "staging", 2, seed=2)
            wait_until(lambda: app.state.repository.entries[TINY].version == 2, timeout=POLL_S + LOAD_S)
            with httpx.Client(base_url=base, timeout=30) as other:
                assert served(other)[0] == "2"  # new requests go to version 2 while version 1 drains
            time.sleep(HANDOVER_S + POLL_S)
            assert not held.done(), "version 1 finishes what it admitted"
            gate.set()
            r = held.result(timeout=30)
        assert r.status_code == 200 and r.json()["model_version"] == "1"
        wait_until(lambda: old.batcher.closed and old.batcher.in_flight == 0, what="version 1 unloaded")


def _post_with_a_late_body(
    base: str, path: str, pool: ThreadPoolExecutor
) -> tuple[Future[httpx.Response], threading.Event]:
    """A POST of ``infer_body()`` whose body stops after 10 bytes until the returned event is set."""
    release = threading.Event()
    payload = json.dumps(infer_body()).encode()

    def late_body():
        yield payload[:10]
        assert release.wait(30)
        yield payload[10:]

    def post() -> httpx.Response:
        with httpx.Client(base_url=base, timeout=30) as own:
            return own.post(path, content=late_body())

    return pool.submit(post), release


def test_a_versioned_request_that_picked_the_old_version_just_before_the_switch_is_served(
    root: Path, tmp_path: Path
) -> None:
    """The v2 route picks its model before reading the body: a request for version 1 whose body is still
    arriving at the switch goes to version 1, which still admits it for the handover."""
    with live_app(poll_settings(root)) as (base, app), ThreadPoolExecutor(1) as pool:
        slow, release = _post_with_a_late_body(base, f"/v2/models/{TINY}/versions/1/infer", pool)
        time.sleep(0.3)  # the route has picked version 1 and waits for the rest of the body
        stage_version(root, tmp_path / "staging", 2, seed=2)
        wait_until(lambda: app.state.repository.entries[TINY].version == 2, timeout=POLL_S + LOAD_S)
        release.set()
        r = slow.result(timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == "1"


def test_an_unversioned_request_goes_to_the_version_loaded_when_its_body_has_arrived(
    root: Path, tmp_path: Path
) -> None:
    """A body that arrives after the version it started under was switched out, drained and unloaded is
    answered by the new version, not refused."""
    with live_app(poll_settings(root)) as (base, app), ThreadPoolExecutor(1) as pool:
        old = app.state.repository.entries[TINY].model
        slow, release = _post_with_a_late_body(base, f"/v2/models/{TINY}/infer", pool)
        time.sleep(0.3)  # the route has resolved version 1 and waits for the rest of the body
        stage_version(root, tmp_path / "staging", 2, seed=2)
        wait_until(lambda: app.state.repository.entries[TINY].version == 2, timeout=POLL_S + LOAD_S)
        wait_until(lambda: old.batcher.closed, timeout=HANDOVER_S + LOAD_S, what="version 1 drained")
        release.set()
        r = slow.result(timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == "2"


def test_removing_the_served_version_switches_to_the_newest_left(root: Path, tmp_path: Path) -> None:
    stage_version(root, tmp_path / "staging", 2, seed=2)
    stage_version(root, tmp_path / "staging", 3, seed=3)
    with live_app(poll_settings(root)) as (base, _app), httpx.Client(base_url=base, timeout=30) as client:
        assert served(client)[0] == "3"
        shutil.rmtree(root / TINY / "3")
        wait_until(lambda: served(client)[0] == "2", timeout=POLL_S + LOAD_S, what="version 2 served")
        assert listed(client)[TINY]["version"] == 2 and client.get("/ready").status_code == 200


def test_a_pinned_version_stays_when_a_newer_one_arrives(root: Path, tmp_path: Path) -> None:
    settings = poll_settings(root, pinned_versions={TINY: 1})
    with live_app(settings) as (base, app), httpx.Client(base_url=base, timeout=30) as client:
        model = app.state.repository.entries[TINY].model
        stage_version(root, tmp_path / "staging", 2, seed=2)
        time.sleep(5 * POLL_S)
        assert served(client)[0] == "1" and app.state.repository.entries[TINY].model is model


def test_a_broken_version_leaves_the_old_one_serving_until_its_files_change(
    root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="service.repository")
    with live_app(poll_settings(root)) as (base, _app), httpx.Client(base_url=base, timeout=30) as client:
        broken = stage_version(root, tmp_path / "staging", 2, seed=2, corrupt=True)
        wait_until(lambda: listed(client)[TINY]["update_error"] is not None, timeout=POLL_S + LOAD_S)
        model = listed(client)[TINY]
        assert (model["state"], model["version"]) == ("ready", 1)
        assert model["update_error"].startswith("version 2: "), model["update_error"]
        assert served(client)[0] == "1" and client.get("/ready").status_code == 200
        time.sleep(5 * POLL_S)
        refused = [r.getMessage() for r in caplog.records if "still serving" in r.getMessage()]
        assert len(refused) == 1, "a broken version is tried once, not on every poll"
        assert refused[0].startswith(f"model {TINY}: version 2 not loaded, version 1 still serving: ")

        make_tiny_sentiment(tmp_path / "fixed", TINY, version=2, seed=2)
        shutil.copy(tmp_path / "fixed" / TINY / "2" / "model.onnx", broken / "model.onnx")
        wait_until(lambda: served(client)[0] == "2", timeout=POLL_S + LOAD_S, what="the repaired version")
        assert listed(client)[TINY]["update_error"] is None


def test_model_folders_that_come_and_go_are_loaded_and_unloaded(root: Path) -> None:
    with live_app(poll_settings(root)) as (base, _app), httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/ready").json()["defaults"] == {"sentiment": TINY}
        make_tiny_sentiment(root.parent / "staging", OTHER, default=False, seed=5)
        os.rename(root.parent / "staging" / OTHER, root / OTHER)
        wait_until(lambda: OTHER in listed(client), timeout=POLL_S + LOAD_S, what="the new model listed")
        wait_until(lambda: listed(client)[OTHER]["state"] == "ready", timeout=LOAD_S)
        assert served(client, OTHER)[0] == "1" and ready_gauge(client, OTHER) == 1

        shutil.rmtree(root / TINY)
        wait_until(lambda: TINY not in listed(client), timeout=POLL_S + LOAD_S, what="the model removed")
        assert client.get(f"/v2/models/{TINY}/ready").status_code == 404
        r = client.post("/sentiment", json={"text": TEXT, "model": TINY})
        assert r.status_code == 404
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["defaults"] == {"sentiment": OTHER}
        assert client.post("/sentiment", json={"text": TEXT}).json()["model"] == OTHER
        assert ready_gauge(client, TINY) == 0


# -------------------------------------------------------------------------------------- explicit


def test_explicit_index_unload_load_and_a_failed_load(root: Path, tmp_path: Path) -> None:
    make_tiny_sentiment(root, OTHER, default=False, seed=5)
    settings = settings_for(root, access_log=False, model_control="explicit")
    with live_app(settings) as (base, _app), httpx.Client(base_url=base, timeout=30) as client:
        tc = triton.InferenceServerClient(url=base.removeprefix("http://"))
        assert "model_repository" in tc.get_server_metadata()["extensions"]
        make_tiny_sentiment(root, "sentiment-tiny-c", default=False, seed=6)  # after start: not loaded
        index = {m["name"]: m for m in tc.get_model_repository_index()}
        assert index[TINY] == {"name": TINY, "version": "1", "state": "READY", "reason": ""}
        assert index["sentiment-tiny-c"] == {
            "name": "sentiment-tiny-c",
            "state": "UNAVAILABLE",
            "reason": "not loaded",
        }
        tc.load_model("sentiment-tiny-c")
        assert tc.is_model_ready("sentiment-tiny-c")

        tc.unload_model(TINY)  # the default of its task
        assert not tc.is_model_ready(TINY)
        assert client.get(f"/v2/models/{TINY}/ready").status_code == 503
        assert client.post("/sentiment", json={"text": TEXT}).status_code == 503
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["reasons"] == {"sentiment": f"default model '{TINY}' is unloaded"}
        assert listed(client)[TINY]["state"] == "unloaded" and ready_gauge(client, TINY) == 0
        index = client.post("/v2/repository/index", json={}).json()
        assert {"name": TINY, "state": "UNAVAILABLE", "reason": "unloaded"} in index
        ready_only = client.post("/v2/repository/index", json={"ready": True}).json()
        assert sorted(m["name"] for m in ready_only) == [OTHER, "sentiment-tiny-c"]

        assert client.post(f"/v2/repository/models/{TINY}/load").json() == {}
        assert served(client)[0] == "1"
        assert client.get("/ready").status_code == 200 and ready_gauge(client, TINY) == 1

        stage_version(root, tmp_path / "staging", 2, seed=2, corrupt=True)
        r = client.post(f"/v2/repository/models/{TINY}/load", json={})
        assert r.status_code == 400 and r.json()["error"].startswith(f"failed to load '{TINY}': ")
        assert served(client)[0] == "1" and client.get("/ready").status_code == 200
        assert listed(client)[TINY]["update_error"].startswith("version 2: ")
        with pytest.raises(InferenceServerException):
            tc.load_model(TINY)

        assert client.post("/v2/repository/models/nope/load").status_code == 404
        assert client.post("/v2/repository/models/nope/unload").status_code == 404
        config = {"parameters": {"config": "{}"}}
        assert client.post(f"/v2/repository/models/{TINY}/load", json=config).status_code == 400
        assert client.post("/v2/repository/index", json={"ready": 1}).status_code == 400


def test_repository_routes_need_a_key_and_load_only_with_explicit_control(root: Path) -> None:
    keys = {"k-all": ["*"], "k-other": [OTHER]}
    settings = settings_for(root, access_log=False, model_control="explicit", api_keys=keys)
    with serving(settings) as client:
        for path in ("/v2/repository/index", f"/v2/repository/models/{TINY}/unload"):
            r = client.post(path)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert client.post(f"/v2/repository/models/{TINY}/unload", headers=_key("k-other")).status_code == 403
        assert client.post(f"/v2/repository/models/{TINY}/unload", headers=_key("k-all")).status_code == 200
    with serving(settings_for(root, access_log=False)) as client:  # model control "none"
        assert client.post("/v2/repository/index").json()[0]["state"] == "READY"
        r = client.post(f"/v2/repository/models/{TINY}/unload")
        assert r.status_code == 409 and "RNNSERVE_MODEL_CONTROL=explicit" in r.json()["error"]
        assert client.get(f"/v2/models/{TINY}/ready").status_code == 200


def _key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_orders_reach_every_process_sharing_the_directory(tmp_path: Path) -> None:
    mine, theirs = WorkerGroup(tmp_path, expected=2), WorkerGroup(tmp_path, expected=2)
    assert mine.place_order("m", "unload") == 1 and theirs.place_order("m", "load") == 2
    assert mine.orders() == {"m": {"action": "load", "serial": 2}}
    other = tmp_path / "1.json"  # pid 1, alive in any container: another serving process
    state = {"pid": 1, "ready": True, "reasons": {}, "models": {}, "outcomes": {}}
    other.write_text(json.dumps(state))
    assert mine.followers("m", 2) == ([1], {})
    other.write_text(json.dumps(state | {"outcomes": {"m": {"serial": 2, "error": "broken"}}}))
    assert mine.followers("m", 2) == ([], {1: "broken"})
    assert [s["pid"] for s in mine.states()] == [1], "the orders file is no process's state"


@pytest.mark.skipif(sys.platform != "linux", reason="several serving processes")
def test_explicit_control_applies_in_every_serving_process(root: Path, tmp_path: Path) -> None:
    env = {
        "RNNSERVE_MODEL_REPOSITORY": str(root),
        "RNNSERVE_DEVICE": "cpu",
        "RNNSERVE_WORKERS": "2",
        "RNNSERVE_MODEL_CONTROL": "explicit",
    }
    server, base = start_service(env, capture=False)
    try:

        def everywhere(state: str) -> bool:
            """Every process reports ``state`` for TINY (new connections reach either process)."""
            answers = [httpx.get(f"{base}/models").json()["models"] for _ in range(6)]
            return all(m[0]["processes"] == {state: 2} and m[0]["state"] == state for m in answers)

        wait_until(lambda: everywhere("ready"), timeout=30, what="both processes ready")
        r = httpx.post(f"{base}/v2/repository/models/{TINY}/unload", timeout=60)
        assert r.status_code == 200, r.text
        assert everywhere("unloaded")
        assert {httpx.get(f"{base}/v2/models/{TINY}/ready").status_code for _ in range(6)} == {503}
        assert httpx.get(f"{base}/ready").status_code == 503

        r = httpx.post(f"{base}/v2/repository/models/{TINY}/load", timeout=60)
        assert r.status_code == 200, r.text
        assert everywhere("ready") and httpx.get(f"{base}/ready").status_code == 200

        stage_version(root, tmp_path / "staging", 2, seed=2, corrupt=True)
        r = httpx.post(f"{base}/v2/repository/models/{TINY}/load", timeout=60)
        assert r.status_code == 400, r.text
        answers = [httpx.get(f"{base}/models").json()["models"][0] for _ in range(6)]
        assert all(m["version"] == 1 and m["update_error"].startswith("version 2: ") for m in answers)
    finally:
        server.kill()
        server.wait(10)
