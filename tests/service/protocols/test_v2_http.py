"""The Open Inference Protocol on the wire: response shapes, output selection, and every error answered
``{"error": "..."}`` with the status the specification gives."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.service.protocols.conftest import SENTIMENT_QUEUE


def texts(*values: Any, name: str = "text", shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": name, "datatype": "BYTES", "shape": shape or [len(values)], "data": list(values)}


def infer(http: httpx.Client, model: str, body: dict[str, Any], version: str | None = None) -> httpx.Response:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    return http.post(path, json=body)


def error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str)
    return body["error"]


def test_health_and_server_metadata(http: httpx.Client) -> None:
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get("/v2").json() == {"name": "rnnserve", "version": "0.1.0", "extensions": ["parameters"]}


def test_model_ready_and_metadata_of_unknown_models_and_versions(http: httpx.Client) -> None:
    assert http.get("/v2/models/sentiment-gru/ready").json() == {"name": "sentiment-gru", "ready": True}
    assert http.get("/v2/models/sentiment-gru/versions/1/ready").status_code == 200
    assert "unknown model 'nope'" in error(http.get("/v2/models/nope/ready"), 404)
    assert "unknown model 'nope'" in error(http.get("/v2/models/nope"), 404)
    message = error(http.get("/v2/models/sentiment-gru/versions/2"), 404)
    assert message.startswith("model 'sentiment-gru' has no version '2' loaded (loaded version: '1'")
    assert http.get("/v2/models/sentiment-gru/versions/1").json()["versions"] == ["1"]


def test_the_answer_has_the_model_version_id_and_typed_tensors(http: httpx.Client) -> None:
    body = {"id": "req-1", "inputs": [texts("a gripping , beautifully acted film .", "dull .")]}
    answer = infer(http, "sentiment-gru", body, version="1").json()
    assert answer["model_name"] == "sentiment-gru" and answer["model_version"] == "1"
    assert answer["id"] == "req-1"
    label, probabilities = answer["outputs"]
    assert label == {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["positive", "negative"]}
    assert probabilities["datatype"] == "FP32" and probabilities["shape"] == [2, 2]
    assert len(probabilities["data"]) == 4 and abs(sum(probabilities["data"][:2]) - 1) < 1e-5
    assert "id" not in infer(http, "sentiment-gru", {"inputs": [texts("x")]}).json()


def test_nested_data_is_read_in_row_major_order(http: httpx.Client) -> None:
    flat = infer(http, "sentiment-gru", {"inputs": [texts("good .", "bad .", "fine .")]}).json()
    nested = {"name": "text", "datatype": "BYTES", "shape": [3], "data": [["good .", ["bad ."]], "fine ."]}
    assert infer(http, "sentiment-gru", {"inputs": [nested]}).json()["outputs"] == flat["outputs"]


def test_outputs_are_those_requested_in_their_order(http: httpx.Client) -> None:
    body = {"inputs": [texts("A dog runs.")], "outputs": [{"name": "score"}, {"name": "translation"}]}
    answer = infer(http, "translation-gru", body).json()
    assert [o["name"] for o in answer["outputs"]] == ["score", "translation"]
    # attention: returned when return_attention is set, or when asked for by name
    plain = infer(http, "translation-gru", {"inputs": [texts("A dog runs.")]}).json()
    assert [o["name"] for o in plain["outputs"]] == ["translation", "score"]
    with_flag = {"inputs": [texts("A dog runs.")], "parameters": {"return_attention": True}}
    assert [o["name"] for o in infer(http, "translation-gru", with_flag).json()["outputs"]] == [
        "translation",
        "score",
        "attention",
    ]
    by_name = {
        "inputs": [texts("A dog runs.")],
        "outputs": [{"name": "attention", "parameters": {"binary_data": False}}],
    }
    assert [o["name"] for o in infer(http, "translation-gru", by_name).json()["outputs"]] == ["attention"]


def test_a_generation_stop_parameter_may_be_a_string_or_a_list(http: httpx.Client) -> None:
    body = {"inputs": [texts("ROMEO:", name="prompt")], "parameters": {"seed": 5, "max_new_tokens": 200}}
    one = infer(http, "generation-gru", {**body, "parameters": {**body["parameters"], "stop": "\n"}}).json()
    many = infer(
        http, "generation-gru", {**body, "parameters": {**body["parameters"], "stop": ["\n"]}}
    ).json()
    assert one == many
    assert one["outputs"][1]["data"] == ["stop"] and one["outputs"][0]["data"][0].endswith("\n")


@pytest.mark.parametrize(
    ("model", "body", "message"),
    [
        ("sentiment-gru", {"inputs": []}, "expected exactly one input, 'text'"),
        ("sentiment-gru", {"inputs": [texts("x", name="prompt")]}, "expected exactly one input, 'text'"),
        ("generation-gru", {"inputs": [texts("x")]}, "expected exactly one input, 'prompt'"),
        ("sentiment-gru", {"inputs": [texts("x", "y", shape=[3])]}, "has shape [3] but 2 elements"),
        ("sentiment-gru", {"inputs": [texts("x", shape=[1, 1])]}, "must have shape [N]"),
        ("sentiment-gru", {"inputs": [{**texts("x"), "datatype": "FP32"}]}, "datatype BYTES, not 'FP32'"),
        ("sentiment-gru", {"inputs": [texts("x", 3)]}, "element 1 is int, not a string"),
        ("sentiment-gru", {"inputs": [texts()]}, "has no elements"),
        ("sentiment-gru", {"inputs": [texts("  ")]}, "element 0 is empty or white space only"),
        (
            "sentiment-gru",
            {"inputs": [{k: v for k, v in texts("x").items() if k != "data"}]},
            "has no 'data'",
        ),
        ("sentiment-gru", {"inputs": [texts("x")], "parameters": {"beam_size": 2}}, "accepts: none"),
        ("translation-gru", {"inputs": [texts("x")], "parameters": {"beam_size": 9}}, "parameters.beam_size"),
        ("translation-gru", {"inputs": [texts("x")], "parameters": {"beam_size": "2"}}, "valid integer"),
        ("translation-gru", {"inputs": [texts("x")], "parameters": {"priority": 1}}, "['priority']"),
        ("generation-gru", {"inputs": [texts("é", name="prompt")]}, "does not know: 'é'"),
        ("generation-gru", {"inputs": [texts("x", name="prompt")], "parameters": {"top_p": 0}}, "top_p"),
        ("sentiment-gru", {"inputs": [texts("x")], "outputs": [{"name": "score"}]}, "unknown output 'score'"),
        (
            "sentiment-gru",
            {"inputs": [texts("x")], "outputs": [{"name": "label"}, {"name": "label"}]},
            "requested twice",
        ),
        (
            "sentiment-gru",
            {"inputs": [texts("x")], "outputs": [{"name": "label", "parameters": {"classification": 2}}]},
            "unsupported output parameter(s) ['classification']",
        ),
        (
            "sentiment-gru",
            {"inputs": [{**texts("x"), "parameters": {"binary_data_size": 5}}]},
            "binary tensor data is not supported",
        ),
        ("sentiment-gru", {"inputs": [texts("x")], "extra": 1}, "extra: Extra inputs are not permitted"),
        ("sentiment-gru", {"inputs": [{**texts("x"), "shape": ["1"]}]}, "inputs[0].shape[0]"),
    ],
)
def test_bad_requests_are_400_naming_the_problem(
    http: httpx.Client, model: str, body: dict[str, Any], message: str
) -> None:
    assert message in error(infer(http, model, body), 400)


def test_limits_invalid_json_and_binary_requests_are_400(http: httpx.Client) -> None:
    too_many = texts(*["x"] * 65)
    assert "65 elements; the limit is 64" in error(infer(http, "sentiment-gru", {"inputs": [too_many]}), 400)
    long = {"inputs": [texts("good", "x" * 5001)]}
    assert "element 1 has 5001 characters; the limit is 5000" in error(infer(http, "ner-lstm-crf", long), 400)
    response = http.post("/v2/models/sentiment-gru/infer", content=b'{"inputs": [', headers={})
    assert "not valid JSON" in error(response, 400)
    binary = http.post(
        "/v2/models/sentiment-gru/infer",
        content=b'{"inputs": []}\x00\x00',
        headers={"Inference-Header-Content-Length": "14"},
    )
    assert "binary tensor data is not supported" in error(binary, 400)


def test_unknown_model_or_version_is_404(http: httpx.Client) -> None:
    assert "unknown model 'nope'" in error(infer(http, "nope", {"inputs": [texts("x")]}), 404)
    assert "no version '9' loaded" in error(infer(http, "sentiment-gru", {"inputs": [texts("x")]}, "9"), 404)


def test_a_full_queue_is_503_with_retry_after(http: httpx.Client) -> None:
    response = infer(http, "sentiment-gru", {"inputs": [texts(*["good ."] * (SENTIMENT_QUEUE + 1))]})
    assert "queue" in error(response, 503)
    assert int(response.headers["Retry-After"]) >= 1


def test_the_routes_are_in_the_openapi_document(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    paths = document["paths"]
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs <= set(document["components"]["schemas"]), "every schema reference resolves"
    for path in (
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}",
        "/v2/models/{model_name}/versions/{model_version}/ready",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    ):
        assert path in paths, path
    infer_doc = paths["/v2/models/{model_name}/infer"]["post"]
    assert [p["name"] for p in infer_doc["parameters"]] == ["model_name"]
    assert "examples" in infer_doc["requestBody"]["content"]["application/json"]
