"""API keys, per-key model lists, public paths, CORS, request ids, and what an error may reveal."""

from __future__ import annotations

import hmac
import json
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from service.main import create_app
from service.plugin import TaskPlugin
from service.tasks.sentiment.model import build as build_sentiment
from service.tasks.sentiment.routes import router as sentiment_router
from tests.service.conftest import TINY, serving, settings_for, wait_loaded

KEYS = {"key-all": ["*"], "key-b-only": ["sentiment-tiny-b"]}
ALL = {"Authorization": "Bearer key-all"}
B_ONLY = {"Authorization": "Bearer key-b-only"}


@pytest.fixture(scope="module")
def locked(tiny_repo: Path):
    with serving(settings_for(tiny_repo, api_keys=KEYS)) as c:
        yield c


# ----------------------------------------------------------------------------------------- keys


def test_without_keys_nothing_asks_for_one(client):
    assert client.post("/sentiment", json={"text": "good"}).status_code == 200
    assert client.get("/models").status_code == 200


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, None),
        ({"Authorization": "Bearer"}, None),
        ({"Authorization": "Basic a2V5LWFsbA=="}, None),
        ({"Authorization": "Bearer key-al"}, "invalid_token"),
        ({"Authorization": "Bearer key-all-and-more"}, "invalid_token"),
    ],
)
def test_a_request_without_a_known_key_is_401_with_a_bearer_challenge(locked, headers, error):
    r = locked.post("/sentiment", json={"text": "good"}, headers=headers)
    assert r.status_code == 401
    challenge = 'Bearer realm="rnnserve"' + (f', error="{error}"' if error else "")
    assert r.headers["www-authenticate"] == challenge
    body = r.json()
    assert body["error"]["code"] == "unauthorized" and body["error"]["field"] == "authorization"
    assert body["request_id"] == r.headers["x-request-id"]
    assert "key-all" not in r.text


def test_a_known_key_is_accepted_whatever_the_scheme_case(locked):
    for scheme in ("Bearer", "bearer", "BEARER"):
        r = locked.post("/sentiment", json={"text": "good"}, headers={"Authorization": f"{scheme} key-all"})
        assert r.status_code == 200, scheme


@pytest.mark.parametrize("path", ["/models", "/metrics", "/nope", "/docs/../models"])
def test_every_other_path_needs_a_key(locked, path):
    assert locked.get(path).status_code == 401
    assert locked.get(path, headers=ALL).status_code != 401


@pytest.mark.parametrize(
    "path", ["/health", "/ready", "/", "/ui", "/ui/", "/ui/static/app.js", "/openapi.json", "/docs"]
)
def test_probes_the_page_and_the_docs_stay_open(locked, path):
    assert locked.get(path).status_code == 200, path


def test_the_page_asks_for_a_key_that_every_api_call_then_needs(locked):
    page = locked.get("/ui/")
    assert page.status_code == 200 and 'id="api-key"' in page.text
    assert locked.get("/models").status_code == 401  # what the page's status tab calls
    assert locked.get("/models", headers=ALL).status_code == 200


def test_a_key_limited_to_models_gets_403_for_the_others(locked):
    r = locked.post("/sentiment", json={"text": "good", "model": "sentiment-tiny-b"}, headers=B_ONLY)
    assert r.status_code == 200
    r = locked.post("/sentiment", json={"text": "good"}, headers=B_ONLY)  # the default model is not allowed
    assert r.status_code == 403
    assert r.json()["error"] == {
        "code": "forbidden",
        "message": f"this API key may not use model '{TINY}'",
        "field": "model",
        "limit": None,
    }
    r = locked.post("/sentiment", json={"text": "good", "model": "no-such-model"}, headers=B_ONLY)
    assert r.status_code == 403, "a limited key learns nothing about models it may not use"
    assert locked.post("/sentiment", json={"text": "good"}, headers=ALL).status_code == 200


def test_public_paths_are_a_setting(tiny_repo):
    settings = settings_for(tiny_repo, api_keys=KEYS, public_paths=["/health", "/metrics"])
    with serving(settings, ready=False) as c:
        wait_loaded(c)
        assert c.get("/metrics").status_code == 200
        assert c.get("/ready").status_code == 401
        assert c.get("/health").status_code == 200


def test_a_route_opts_out_with_an_empty_security_requirement(tiny_repo):
    extra = APIRouter()

    @extra.get("/open/{item}", openapi_extra={"security": []})
    async def open_item(item: str) -> dict:
        return {"item": item}

    @extra.get("/closed")
    async def closed() -> dict:
        return {}

    plugin = TaskPlugin(task="sentiment", build=build_sentiment, router=sentiment_router)
    app = create_app(settings_for(tiny_repo, api_keys=KEYS), plugins=[plugin])
    app.include_router(extra)
    with TestClient(app) as c:
        assert c.get("/open/x").json() == {"item": "x"}
        assert c.get("/closed").status_code == 401
        operations = c.get("/openapi.json").json()["paths"]
        assert operations["/open/{item}"]["get"]["security"] == []
        assert "401" not in operations["/open/{item}"]["get"]["responses"]
        assert operations["/closed"]["get"]["security"] == [{"apiKey": []}]


def test_keys_are_compared_in_constant_time_against_every_key(locked, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert locked.get("/models", headers=ALL).status_code == 200
    assert len(calls) == len(KEYS), "every key is compared, the first match does not stop the loop"
    assert {pair for pair in calls} == {(32, 32)}, "digests of equal length: the key's length does not leak"
    calls.clear()
    assert locked.get("/models", headers={"Authorization": "Bearer x"}).status_code == 401
    assert len(calls) == len(KEYS)


def test_keys_come_from_a_file_too(tiny_repo, tmp_path):
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({"file-key": ["sentiment-tiny-b"]}))
    with serving(settings_for(tiny_repo, api_keys=["env-key"], api_keys_file=keys_file)) as c:
        assert c.get("/models", headers={"Authorization": "Bearer env-key"}).status_code == 200
        file_key = {"Authorization": "Bearer file-key"}
        assert c.post("/sentiment", json={"text": "good"}, headers=file_key).status_code == 403
        r = c.post("/sentiment", json={"text": "good", "model": "sentiment-tiny-b"}, headers=file_key)
        assert r.status_code == 200


@pytest.mark.parametrize("content", [None, "{not json", '{"k": []}', '{"with space": ["*"]}'])
def test_an_unreadable_keys_file_stops_the_start_without_printing_keys(tiny_repo, tmp_path, content):
    keys_file = tmp_path / "keys.json"
    if content is not None:
        keys_file.write_text(content)
    with pytest.raises(ValueError, match="API keys file") as error:
        create_app(settings_for(tiny_repo, api_keys_file=keys_file))
    assert "with space" not in str(error.value)


def test_the_openapi_document_says_which_operations_need_a_key(locked):
    document = locked.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    sentiment = document["paths"]["/sentiment"]["post"]
    assert sentiment["security"] == [{"apiKey": []}]
    assert sentiment["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert "403" in sentiment["responses"]  # a key is limited to models
    assert document["paths"]["/models"]["get"]["security"] == [{"apiKey": []}]
    assert "403" not in document["paths"]["/models"]["get"]["responses"]
    for path in ("/health", "/ready", "/ui/"):
        operation = document["paths"][path]["get"]
        assert operation["security"] == [] and "401" not in operation["responses"], path


# ------------------------------------------------------------------------------------------ CORS


def test_cors_is_off_by_default(locked):
    r = locked.get("/health", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_origins_are_a_setting_and_preflights_need_no_key(tiny_repo):
    settings = settings_for(tiny_repo, api_keys=KEYS, cors_origins=["https://app.example"])
    with serving(settings) as c:
        preflight = c.options(
            "/sentiment",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        r = c.post("/sentiment", json={"text": "good"}, headers={"Origin": "https://app.example", **ALL})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
        denied = c.post("/sentiment", json={"text": "good"}, headers={"Origin": "https://app.example"})
        assert denied.status_code == 401  # a browser page can read why
        assert denied.headers["access-control-allow-origin"] == "https://app.example"
        other = c.options(
            "/sentiment", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


# ----------------------------------------------------------------------------------- request ids


@pytest.mark.parametrize("kept", ["a", "trace-1:span_2.x", "x" * 128])
def test_a_short_printable_request_id_is_kept(client, kept):
    r = client.post("/sentiment", json={"text": "good"}, headers={"X-Request-ID": kept})
    assert r.headers["x-request-id"] == kept


@pytest.mark.parametrize(
    "replaced", ["x" * 129, "has space", "semi;colon", 'quote"', "tab\tx", "ümlaut", "{}"]
)
def test_any_other_request_id_is_replaced(client, replaced):
    r = client.post("/sentiment", json={"texts": []}, headers={"X-Request-ID": replaced.encode("utf-8")})
    generated = r.headers["x-request-id"]
    assert generated != replaced and len(generated) == 32 and generated.isalnum()
    assert r.json()["request_id"] == generated


# ------------------------------------------------------------------------------- what errors show


def _failing_plugin(message: str) -> TaskPlugin:
    def build(*args):
        model = build_sentiment(*args)

        def predict(items):
            raise RuntimeError(message)

        model.predict_batch = predict
        return model

    return TaskPlugin(task="sentiment", build=build, router=sentiment_router)


LEAKY = (
    "boom in /srv/rnnserve/service/tasks/sentiment/model.py:42\n"
    "Traceback (most recent call last):\n"
    '  File "/srv/rnnserve/service/batching.py", line 271, in _call\n'
    "    results = self.fn(items)\n"
    "RuntimeError: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : /onnxruntime_src/onnxruntime/core/framework/"
    "execution_frame.cc:173 onnxruntime::IExecutionFrame::GetOrCreateNodeOutputMLValue shape mismatch"
)


def _assert_nothing_internal(text: str) -> None:
    for leak in ("/srv/", "Traceback", 'File "', "onnxruntime_src", "line 271", "self.fn("):
        assert leak not in text, (leak, text)


def test_an_internal_error_shows_no_trace_and_no_path(tiny_repo):
    with serving(settings_for(tiny_repo, warmup=False), plugins=[_failing_plugin(LEAKY)]) as c:
        r = c.post("/sentiment", json={"text": "good"})
    assert r.status_code == 500 and r.json()["error"]["code"] == "inference_error"
    _assert_nothing_internal(r.text)
    assert "model.py" in r.json()["error"]["message"]  # the file's name stays, its place does not


def test_an_unexpected_error_shows_nothing_of_it(tiny_repo, monkeypatch):
    from service.repository import ModelRepository

    def broken(self, task, name):
        raise OSError(f"[Errno 2] No such file or directory: '/srv/models/{name}/1/vocab.json'")

    monkeypatch.setattr(ModelRepository, "resolve", broken)
    with serving(settings_for(tiny_repo)) as c:
        r = c.post("/sentiment", json={"text": "good"})
    assert r.status_code == 500
    assert r.json()["error"] == {
        "code": "internal_error",
        "message": "internal server error",
        "field": None,
        "limit": None,
    }


def test_a_model_that_failed_to_load_is_named_without_its_path(tiny_repo):
    with serving(settings_for(tiny_repo)) as c:
        r = c.post("/sentiment", json={"text": "good", "model": "broken-graph"})
    assert r.status_code == 503
    message = r.json()["error"]["message"]
    assert "broken-graph" in message and "model.onnx" in message
    assert str(tiny_repo) not in r.text
    _assert_nothing_internal(r.text)
