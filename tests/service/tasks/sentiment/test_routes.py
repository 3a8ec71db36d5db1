"""POST /sentiment on a tiny model repository: answers, model choice, every limit and bad input."""

from __future__ import annotations

import json

import pytest

from tests.service.conftest import TINY, serving, settings_for


def test_one_text_gives_one_result_with_a_label_and_both_scores(client):
    r = client.post("/sentiment", json={"text": "a good film ."})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == TINY
    (result,) = body["results"]
    assert set(result["scores"]) == {"negative", "positive"}
    assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert result["label"] == max(result["scores"], key=result["scores"].get)
    assert result["score"] == result["scores"][result["label"]]


def test_several_texts_come_back_in_input_order_and_equal_single_answers(client):
    texts = ["good", "the plot was very dull and the acting awful", "?", "not bad", "great great great film"]
    batch = client.post("/sentiment", json={"texts": texts}).json()["results"]
    single = [client.post("/sentiment", json={"text": t}).json()["results"][0] for t in texts]
    assert len(batch) == len(texts)
    for b, s in zip(batch, single, strict=True):
        assert b["label"] == s["label"]
        assert b["scores"]["positive"] == pytest.approx(s["scores"]["positive"], abs=1e-6)
    # the texts differ, so a reordering would show
    assert len({round(b["scores"]["positive"], 6) for b in batch}) > 1


def test_a_named_model_answers_and_its_newest_version_is_used(client):
    r = client.post("/sentiment", json={"text": "good", "model": "sentiment-tiny-b"})
    assert r.status_code == 200 and r.json()["model"] == "sentiment-tiny-b"
    default = client.post("/sentiment", json={"text": "good"}).json()["results"][0]
    assert r.json()["results"][0]["scores"] != default["scores"]  # different weights


def test_unknown_model_is_404_naming_the_model_field(client):
    r = client.post("/sentiment", json={"text": "good", "model": "nope"})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "model_not_found" and err["field"] == "model" and TINY in err["message"]


def test_a_broken_model_answers_503_naming_why(client):
    r = client.post("/sentiment", json={"text": "good", "model": "broken-graph"})
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["field"] == "model" and "failed to load" in err["message"]


def test_a_model_of_another_task_is_rejected(client):
    # a valid body: no sentiment model has that name (404, not 422)
    r = client.post("/sentiment", json={"text": "good", "model": "unknown-task"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "model"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "text"),
        ({"text": "a", "texts": ["b"]}, "text"),
        ({"texts": []}, "texts"),
        ({"text": 3}, "text"),
        ({"texts": ["ok", 7]}, "texts[1]"),
        ({"text": None, "texts": ["ok"]}, "text"),  # absent, not null
        ({"texts": "not a list"}, "texts"),
        ({"text": "a", "model": 5}, "model"),
        ({"text": "a", "colour": "red"}, "colour"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(client, payload, field):
    r = client.post("/sentiment", json=payload)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


def test_a_json_array_body_is_422(client):
    r = client.post("/sentiment", json=["good"])
    assert r.status_code == 422 and r.json()["error"]["field"] == "body"


@pytest.mark.parametrize("body", [b'{"text": ', b"", b"text=good", b'{"text": "a",}'])
def test_invalid_json_is_400(client, body):
    r = client.post("/sentiment", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_json" and err["field"] == "body" and "JSON" in err["message"]


def test_invalid_utf8_is_400_naming_the_byte(client):
    r = client.post(
        "/sentiment", content=b'{"text": "caf\xe9"}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_utf8" and "byte 13" in err["message"]


def test_non_ascii_text_is_fine(client):
    r = client.post("/sentiment", json={"text": "café ☕ — naïve 日本"})
    assert r.status_code == 200


def test_limits_name_the_field_and_the_limit(tiny_repo):
    limits = {"max_text_chars": 10, "max_texts": 3, "max_body_bytes": 400}
    with serving(settings_for(tiny_repo, limits=limits)) as c:
        r = c.post("/sentiment", json={"text": "x" * 11})
        assert r.status_code == 422
        assert r.json()["error"] | {"message": ""} == {
            "code": "limit_exceeded",
            "message": "",
            "field": "text",
            "limit": 10,
        }
        assert c.post("/sentiment", json={"text": "x" * 10}).status_code == 200

        r = c.post("/sentiment", json={"texts": ["ok", "fine", "y" * 11]})
        assert r.status_code == 422 and r.json()["error"]["field"] == "texts[2]"

        r = c.post("/sentiment", json={"texts": ["a"] * 4})
        err = r.json()["error"]
        assert r.status_code == 422 and err["field"] == "texts" and err["limit"] == 3

        big = json.dumps({"text": "a" * 500}).encode()
        r = c.post("/sentiment", content=big, headers={"content-type": "application/json"})
        err = r.json()["error"]
        assert r.status_code == 413 and err["field"] == "body" and err["limit"] == 400

        def chunks():  # no Content-Length: the limit still holds while reading
            for _ in range(10):
                yield b" " * 100

        r = c.post("/sentiment", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["limit"] == 400


def test_default_limits_are_the_documented_ones(client):
    assert client.post("/sentiment", json={"text": "a" * 5000}).status_code == 200
    assert client.post("/sentiment", json={"text": "a" * 5001}).json()["error"]["limit"] == 5000
    assert client.post("/sentiment", json={"texts": ["a"] * 64}).status_code == 200
    assert client.post("/sentiment", json={"texts": ["a"] * 65}).json()["error"]["limit"] == 64


def test_full_queue_is_503_with_retry_after(tiny_repo):
    with serving(settings_for(tiny_repo, batching={"sentiment": {"max_queue_size": 2}})) as c:
        r = c.post("/sentiment", json={"texts": ["a", "b", "c"]})
        assert r.status_code == 503
        assert r.headers["retry-after"].isdigit()
        assert r.json()["error"]["code"] == "queue_full"
        assert c.post("/sentiment", json={"texts": ["a", "b"]}).status_code == 200


def test_request_timeout_is_504(tiny_repo):
    with serving(settings_for(tiny_repo, batching={"sentiment": {"timeout_s": 1e-6}})) as c:
        r = c.post("/sentiment", json={"texts": ["a long text to classify"] * 64})
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "timeout"


def test_request_id_is_echoed_or_generated(client):
    r = client.post("/sentiment", json={"text": "good"}, headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    generated = client.get("/health").headers["x-request-id"]
    assert len(generated) == 32 and generated != client.get("/health").headers["x-request-id"]
    r = client.post("/sentiment", json={}, headers={"X-Request-ID": "my-id"})
    assert r.json()["request_id"] == "my-id"
    assert client.get("/health", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"] != "bad id\n"
