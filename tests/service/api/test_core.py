"""Health, readiness (before and after loading, broken defaults), /models, /metrics and OpenAPI."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from service.plugin import TaskPlugin
from service.tasks.sentiment.model import build as build_sentiment
from service.tasks.sentiment.routes import router as sentiment_router
from tests.service.conftest import TINY, serving, settings_for, wait_loaded, wait_ready, write_broken_models
from tests.service.tiny_onnx import make_tiny_sentiment


def test_health_answers(client):
    assert client.get("/health").json() == {"status": "ok"}


def test_ready_is_503_while_loading_and_200_after(tiny_repo):
    gate = threading.Event()

    def gated_build(*args):
        model = build_sentiment(*args)
        assert gate.wait(10)
        return model

    plugin = TaskPlugin(task="sentiment", build=gated_build, router=sentiment_router)
    with serving(settings_for(tiny_repo), plugins=[plugin], ready=False) as c:
        r = c.get("/ready")
        assert r.status_code == 503 and r.json()["ready"] is False
        assert c.get("/health").status_code == 200
        loading = c.post("/sentiment", json={"text": "good"})
        assert loading.status_code == 503 and "Retry-After" in loading.headers
        gate.set()
        wait_ready(c)
        assert c.get("/ready").json() == {"ready": True, "defaults": {"sentiment": TINY}, "reasons": {}}
        assert c.post("/sentiment", json={"text": "good"}).status_code == 200


def test_a_broken_default_model_makes_the_service_unready(tmp_path: Path):
    model = make_tiny_sentiment(tmp_path, "sentiment-bad", default=True)
    (model / "1" / "model.onnx").write_bytes(b"\x00garbage")
    with serving(settings_for(tmp_path), ready=False) as c:
        wait_loaded(c)
        r = c.get("/ready")
        assert r.status_code == 503
        assert "sentiment-bad" in r.json()["reasons"]["sentiment"]
        assert c.get("/health").status_code == 200


def test_broken_models_do_not_take_the_others_down(tiny_repo, caplog):
    with serving(settings_for(tiny_repo)) as c:
        models = {m["name"]: m for m in c.get("/models").json()["models"]}
    assert models[TINY]["state"] == "ready" and models["sentiment-tiny-b"]["state"] == "ready"
    for name, reason in {
        "broken-graph": "ONNX Runtime cannot load",
        "broken-config": "invalid config.json",
        "no-config": "no config.json",
        "unknown-task": "no plug-in serves task 'astrology'",
    }.items():
        assert models[name]["state"] == "failed"
        assert reason in models[name]["error"], models[name]["error"]
    failures = [r for r in caplog.records if "failed to load" in r.getMessage()]
    assert sorted(r.getMessage().split()[1] for r in failures) == sorted(
        ["broken-graph", "broken-config", "no-config", "unknown-task"]
    )  # exactly one log line per broken model


def test_models_shows_config_version_provider_and_counters(client):
    client.post("/sentiment", json={"texts": ["good", "bad"]})
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    tiny = models[TINY]
    assert tiny["default"] is True and tiny["version"] == 1
    assert tiny["provider"] == "CPUExecutionProvider"
    assert tiny["config"]["labels"] == ["negative", "positive"]
    assert tiny["batching"]["max_batch_size"] == 64
    assert tiny["stats"]["items"] >= 2
    assert models["sentiment-tiny-b"]["version"] == 2  # newest
    assert models["sentiment-tiny-b"]["default"] is False


def test_a_pinned_version_is_used(tiny_repo):
    with serving(settings_for(tiny_repo, pinned_versions={"sentiment-tiny-b": 1})) as c:
        models = {m["name"]: m for m in c.get("/models").json()["models"]}
        assert models["sentiment-tiny-b"]["version"] == 1
    with serving(settings_for(tiny_repo, pinned_versions={TINY: 9}), ready=False) as c:
        wait_loaded(c)
        models = {m["name"]: m for m in c.get("/models").json()["models"]}
        assert models[TINY]["state"] == "failed" and "pinned version 9" in models[TINY]["error"]


def test_settings_pick_the_default_model_and_cap_batch_size(tiny_repo):
    settings = settings_for(
        tiny_repo,
        default_models={"sentiment": "sentiment-tiny-b"},
        batching={"sentiment": {"max_batch_size": 512}},
    )
    with serving(settings) as c:
        assert c.post("/sentiment", json={"text": "good"}).json()["model"] == "sentiment-tiny-b"
        models = {m["name"]: m for m in c.get("/models").json()["models"]}
        assert models["sentiment-tiny-b"]["batching"]["max_batch_size"] == 64  # the manifest's cap


def test_metrics_are_prometheus_text_with_the_documented_series(client):
    client.post("/sentiment", json={"texts": ["good", "bad", "fine"]})
    client.post("/sentiment", json={})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for series in [
        'rnnserve_http_requests_total{endpoint="/sentiment",method="POST",status="200"} 1.0',
        'rnnserve_http_requests_total{endpoint="/sentiment",method="POST",status="422"} 1.0',
        'rnnserve_http_request_duration_seconds_bucket{endpoint="/sentiment",le="0.5",method="POST",status="200"}',
        f'rnnserve_queue_depth{{model="{TINY}"}} 0.0',
        f'rnnserve_batch_size_sum{{model="{TINY}"}} 3.0',
        f'rnnserve_queue_wait_seconds_count{{model="{TINY}"}} 3.0',
        f'rnnserve_inference_seconds_count{{model="{TINY}"}}',
        f'rnnserve_model_ready{{model="{TINY}"}} 1.0',
        'rnnserve_model_ready{model="broken-graph"} 0.0',
    ]:
        assert series in text, series


def test_unknown_route_and_method_are_json_errors(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/sentiment")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_openapi_documents_every_endpoint_with_request_examples(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/health", "/ready", "/models", "/metrics", "/sentiment"} <= set(spec["paths"])
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method in {"post", "put", "patch"}:
                body = op["requestBody"]["content"]["application/json"]
                assert body.get("examples"), f"{method.upper()} {path} has no request example"
                assert body["schema"]


def test_a_missing_repository_leaves_the_service_alive_and_unready(tmp_path: Path):
    with serving(settings_for(tmp_path / "absent"), ready=False) as c:
        wait_loaded(c)
        assert c.get("/health").status_code == 200
        assert c.get("/ready").json()["reasons"] == {"*": "no model in the repository"}


def test_broken_models_alone_are_unready(tmp_path: Path):
    write_broken_models(tmp_path)
    with serving(settings_for(tmp_path), ready=False) as c:
        wait_loaded(c)
        assert c.get("/health").status_code == 200
        r = c.get("/ready")
        assert r.status_code == 503 and "broken-graph" in r.json()["reasons"]["sentiment"]


def test_an_inference_failure_is_a_500_that_says_so_and_spares_other_requests(tiny_repo):
    def failing_build(*args):
        model = build_sentiment(*args)
        original = model.predict_batch

        def predict(items):
            if any("explode" in t for t in items):
                raise RuntimeError("kaboom")
            return original(items)

        model.predict_batch = predict
        return model

    plugin = TaskPlugin(task="sentiment", build=failing_build, router=sentiment_router)
    with serving(settings_for(tiny_repo, warmup=False), plugins=[plugin]) as c:
        r = c.post("/sentiment", json={"texts": ["good", "explode"]}, headers={"X-Request-ID": "boom-1"})
        assert r.status_code == 500 and r.headers["x-request-id"] == "boom-1"
        err = r.json()["error"]
        assert err["code"] == "inference_error" and "kaboom" in err["message"]
        assert c.post("/sentiment", json={"text": "good"}).status_code == 200


def test_an_unexpected_error_is_a_json_500_with_the_request_id(tiny_repo, monkeypatch):
    from service.repository import ModelRepository

    def broken_resolve(self, task, name):
        raise KeyError("bug")

    monkeypatch.setattr(ModelRepository, "resolve", broken_resolve)
    with serving(settings_for(tiny_repo)) as c:
        r = c.post("/sentiment", json={"text": "good"}, headers={"X-Request-ID": "bug-1"})
    assert r.status_code == 500 and r.headers["x-request-id"] == "bug-1"
    assert r.json() == {
        "error": {"code": "internal_error", "message": "internal server error", "field": None, "limit": None},
        "request_id": "bug-1",
    }


def test_the_startup_heap_is_frozen_once_loaded(tiny_repo):
    import gc

    gc.unfreeze()
    try:
        with serving(settings_for(tiny_repo, gc_freeze=True)) as c:
            for _ in range(1000):  # the freeze follows readiness within the same task
                if c.app.state.loading.done():
                    break
                time.sleep(0.005)
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    with serving(settings_for(tiny_repo)):
        assert gc.get_freeze_count() == 0
