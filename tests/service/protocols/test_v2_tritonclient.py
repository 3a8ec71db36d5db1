"""The Open Inference Protocol through Triton's own HTTP client: health, metadata, and inference on every
task, answering exactly what the task routes answer for the same texts."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

SENTIMENT = ["a gripping , beautifully acted film .", "dull and far too long .", "not bad at all ."]
NER = ["Angela Merkel met Emmanuel Macron in Paris.", "EU rejects German call to boycott British lamb ."]
TRANSLATION = ["A man is riding a bike.", "Two dogs play in the snow."]
PROMPTS = ["ROMEO:", "JULIET:\n", ""]


@pytest.fixture(scope="module")
def client(server: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=server.removeprefix("http://"), connection_timeout=60)


def texts_input(texts: list[str], name: str = "text") -> triton.InferInput:
    tensor = triton.InferInput(name, [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object), binary_data=False)
    return tensor


def outputs(*names: str) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=False) for name in names]


def test_health_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "rnnserve" and "parameters" in metadata["extensions"]


def test_every_model_is_ready_by_name_and_by_its_loaded_version(
    client: triton.InferenceServerClient, http: httpx.Client
) -> None:
    models = http.get("/models").json()["models"]
    assert len(models) >= 4
    for model in models:
        assert client.is_model_ready(model["name"]), model["name"]
        assert client.is_model_ready(model["name"], str(model["version"])), model["name"]
        assert not client.is_model_ready(model["name"], str(model["version"] + 1))
    assert not client.is_model_ready("no-such-model")


@pytest.mark.parametrize(
    ("model", "inputs", "outputs_"),
    [
        ("sentiment-lstm-x5", ["text"], [("label", "BYTES", [-1]), ("probabilities", "FP32", [-1, 2])]),
        ("ner-bilstm-crf-x3", ["text"], [("entities", "BYTES", [-1]), ("tokens", "BYTES", [-1])]),
        (
            "translation-gru",
            ["text"],
            [("translation", "BYTES", [-1]), ("score", "FP32", [-1]), ("attention", "BYTES", [-1])],
        ),
        (
            "generation-lstm",
            ["prompt"],
            [("text", "BYTES", [-1]), ("finish_reason", "BYTES", [-1]), ("tokens", "INT32", [-1])],
        ),
    ],
)
def test_model_metadata_names_the_tensors(
    client: triton.InferenceServerClient, model: str, inputs: list[str], outputs_: list[tuple]
) -> None:
    metadata = client.get_model_metadata(model)
    assert metadata == client.get_model_metadata(model, "1")
    assert metadata["name"] == model and metadata["versions"] == ["1"]
    assert metadata["platform"] == "rnnserve_onnx"
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        (name, "BYTES", [-1]) for name in inputs
    ]
    assert [(o["name"], o["datatype"], o["shape"]) for o in metadata["outputs"]] == outputs_


def test_metadata_documents_labels_and_parameters(client: triton.InferenceServerClient) -> None:
    sentiment = client.get_model_metadata("sentiment-lstm-x5")["parameters"]
    assert sentiment["task"] == "sentiment" and sentiment["labels"] == ["negative", "positive"]
    translation = client.get_model_metadata("translation-gru")["parameters"]["request_parameters"]
    assert set(translation) == {"beam_size", "max_length", "length_penalty", "return_attention"}
    assert translation["beam_size"]["default"] == 5 and translation["beam_size"]["maximum"] == 8
    generation = client.get_model_metadata("generation-lstm")["parameters"]["request_parameters"]
    assert set(generation) == {"max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop"}


def test_sentiment_equals_the_task_route(client: triton.InferenceServerClient, http: httpx.Client) -> None:
    result = client.infer(
        "sentiment-lstm-x5",
        [texts_input(SENTIMENT)],
        outputs=outputs("label", "probabilities"),
        request_id="7",
    )
    expected = http.post("/sentiment", json={"texts": SENTIMENT}).json()["results"]
    assert result.get_response()["id"] == "7"
    assert result.get_response()["model_version"] == "1"
    assert result.as_numpy("label").tolist() == [r["label"] for r in expected]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (3, 2)
    want = np.array([[r["scores"]["negative"], r["scores"]["positive"]] for r in expected], np.float32)
    np.testing.assert_array_equal(probabilities, want)


def test_ner_equals_the_task_route_as_json_per_text(
    client: triton.InferenceServerClient, http: httpx.Client
) -> None:
    result = client.infer("ner-bilstm-crf-x3", [texts_input(NER)], outputs=outputs("entities", "tokens"))
    expected = http.post("/tag", json={"texts": NER, "model": "ner-bilstm-crf-x3"}).json()["results"]
    assert [json.loads(e) for e in result.as_numpy("entities")] == [r["entities"] for r in expected]
    assert [json.loads(t) for t in result.as_numpy("tokens")] == [r["tokens"] for r in expected]
    assert json.loads(result.as_numpy("entities")[0])[0]["label"] == "PER"


@pytest.mark.parametrize("beam_size", [1, 4])
def test_translation_equals_the_task_route(
    client: triton.InferenceServerClient, http: httpx.Client, beam_size: int
) -> None:
    result = client.infer(
        "translation-gru",
        [texts_input(TRANSLATION)],
        outputs=outputs("translation", "score", "attention"),
        parameters={"beam_size": beam_size, "max_length": 60},
    )
    expected = http.post(
        "/translate",
        json={"texts": TRANSLATION, "beam_size": beam_size, "max_length": 60, "return_attention": True},
    ).json()["results"]
    assert result.as_numpy("translation").tolist() == [r["translation"] for r in expected]
    np.testing.assert_array_equal(
        result.as_numpy("score"), np.array([r["score"] for r in expected], np.float32)
    )
    attention = [json.loads(a) for a in result.as_numpy("attention")]
    assert attention == [{k: r[k] for k in ("source_tokens", "target_tokens", "attention")} for r in expected]


def test_generation_equals_the_task_route_for_the_same_seed(
    client: triton.InferenceServerClient, http: httpx.Client
) -> None:
    options = {"max_new_tokens": 80, "temperature": 0.8, "top_k": 20, "seed": 3, "stop": "\n\n"}
    result = client.infer(
        "generation-lstm",
        [texts_input(PROMPTS, "prompt")],
        outputs=outputs("text", "finish_reason", "tokens"),
        parameters=options,
    )
    texts = result.as_numpy("text").tolist()
    reasons = result.as_numpy("finish_reason").tolist()
    tokens = result.as_numpy("tokens")
    assert tokens.dtype == np.int32
    for prompt, text, reason, count in zip(PROMPTS, texts, reasons, tokens.tolist(), strict=True):
        expected = http.post("/generate", json={**options, "stop": ["\n\n"], "prompt": prompt}).json()
        assert (text, reason, count) == (expected["text"], expected["finish_reason"], expected["tokens"])


def test_all_outputs_come_back_without_an_output_selection(client: triton.InferenceServerClient) -> None:
    """Without ``outputs`` the client asks for binary outputs; the server answers JSON, which it reads."""
    result = client.infer("sentiment-gru", [texts_input(SENTIMENT[:1])])
    assert result.as_numpy("label").shape == (1,)
    assert result.as_numpy("probabilities").shape == (1, 2)


def test_errors_reach_the_client_with_the_servers_message(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as error:
        client.infer("nope", [texts_input(["x"])], outputs=outputs("label"))
    assert str(error.value.status()) == "404"
    with pytest.raises(InferenceServerException, match="no version '7' loaded"):
        client.infer("sentiment-gru", [texts_input(["x"])], model_version="7", outputs=outputs("label"))
    with pytest.raises(InferenceServerException, match="beam_size"):
        client.infer("translation-gru", [texts_input(["x"])], parameters={"beam_size": 99})
    binary = triton.InferInput("text", [1], "BYTES")
    binary.set_data_from_numpy(np.array(["x"], dtype=object))  # the client's default: binary data
    with pytest.raises(InferenceServerException, match="binary tensor data is not supported"):
        client.infer("sentiment-gru", [binary])
