"""OpenAI-compatible completions through OpenAI's own Python client, and on the wire: the same seed gives
``/generate``'s text, ``n`` completions share the step batch, streams end with ``[DONE]``, unsupported
fields are refused by name, and a client that leaves frees its slots."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

MODEL = "generation-lstm"


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60)


def generate(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post("/generate", json={"model": MODEL, **body})
    assert response.status_code == 200, response.text
    return response.json()


def stats(http: httpx.Client, model: str = MODEL) -> dict[str, Any]:
    (entry,) = [m for m in http.get("/models").json()["models"] if m["name"] == model]
    return entry


def test_models_list_the_generation_models(client: openai.OpenAI, http: httpx.Client) -> None:
    listed = {m.id: m for m in client.models.list()}
    generation = {m["name"] for m in http.get("/models").json()["models"] if m["task"] == "generation"}
    assert set(listed) == generation and MODEL in listed
    assert listed[MODEL].object == "model" and listed[MODEL].owned_by == "rnnserve"
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("sentiment-gru")


def test_the_same_seed_gives_generates_text(client: openai.OpenAI, http: httpx.Client) -> None:
    completion = client.completions.create(
        model=MODEL, prompt="ROMEO:\n", max_tokens=80, temperature=0.8, top_p=0.95, seed=7
    )
    expected = generate(http, prompt="ROMEO:\n", max_new_tokens=80, temperature=0.8, top_p=0.95, seed=7)
    assert completion.object == "text_completion" and completion.model == MODEL
    (choice,) = completion.choices
    assert (choice.index, choice.text, choice.finish_reason) == (0, expected["text"], "length")
    assert choice.logprobs is None
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 80, 87)


def test_top_k_is_accepted_as_an_extension(client: openai.OpenAI, http: httpx.Client) -> None:
    completion = client.completions.create(
        model=MODEL, prompt="A", max_tokens=30, seed=2, extra_body={"top_k": 5}
    )
    assert (
        completion.choices[0].text == generate(http, prompt="A", max_new_tokens=30, seed=2, top_k=5)["text"]
    )


def test_a_stop_sequence_ends_the_text_and_is_not_part_of_it(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    expected = generate(http, prompt="JULIET:", max_new_tokens=300, seed=1, stop=["\n"])
    assert expected["finish_reason"] == "stop" and expected["text"].endswith("\n")
    completion = client.completions.create(model=MODEL, prompt="JULIET:", max_tokens=300, seed=1, stop="\n")
    (choice,) = completion.choices
    assert (choice.text, choice.finish_reason) == (expected["text"][:-1], "stop")
    assert completion.usage.completion_tokens == expected["tokens"]


def test_n_completions_use_seed_plus_index_and_run_together(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    before = stats(http)["stats"]
    completion = client.completions.create(model=MODEL, prompt="First", max_tokens=25, n=6, seed=10)
    after = stats(http)["stats"]
    assert [c.index for c in completion.choices] == list(range(6))
    for i, choice in enumerate(completion.choices):
        assert choice.text == generate(http, prompt="First", max_new_tokens=25, seed=10 + i)["text"]
    assert after["requests"] - before["requests"] == 6
    assert after["max_batch"] >= 6
    assert completion.usage.prompt_tokens == len("First")
    assert completion.usage.completion_tokens == 6 * 25


def test_streaming_gives_the_same_text_in_text_completion_chunks(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    expected = generate(http, prompt="KING:", max_new_tokens=120, seed=4, temperature=0.9, stop=["\n\n"])
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt="KING:",
            max_tokens=120,
            seed=4,
            temperature=0.9,
            stop=["\n\n"],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *text_chunks, usage_chunk = chunks
    assert all(c.object == "text_completion" and c.model == MODEL for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].text for c in text_chunks)
    trimmed = (
        expected["text"].removesuffix("\n\n") if expected["finish_reason"] == "stop" else expected["text"]
    )
    assert text == trimmed
    assert [c.choices[0].finish_reason for c in text_chunks][-1] == expected["finish_reason"]
    assert all(c.choices[0].finish_reason is None for c in text_chunks[:-1])
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens == expected["tokens"]
    assert usage_chunk.usage.prompt_tokens == len("KING:")


def test_a_stream_of_n_completions_tells_them_apart_by_index(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    stream = client.completions.create(model=MODEL, prompt="Thou", max_tokens=40, n=2, seed=20, stream=True)
    texts, reasons = ["", ""], [None, None]
    for chunk in stream:
        (choice,) = chunk.choices
        texts[choice.index] += choice.text
        reasons[choice.index] = choice.finish_reason or reasons[choice.index]
    for i in range(2):
        assert texts[i] == generate(http, prompt="Thou", max_new_tokens=40, seed=20 + i)["text"]
    assert reasons == ["length", "length"]


def test_the_raw_stream_ends_with_done(http: httpx.Client) -> None:
    body = {"model": MODEL, "prompt": "A", "max_tokens": 5, "stream": True}
    with http.stream("POST", "/v1/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    last = json.loads(events[-2].removeprefix("data: "))
    assert last["choices"][0]["finish_reason"] == "length" and "usage" not in last


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"logprobs": 3}, "logprobs", "unsupported parameter(s): logprobs"),
        ({"echo": True}, "echo", "unsupported parameter(s): echo"),
        (
            {"best_of": 3},
            "best_of",
            "unsupported parameter(s): best_of (accepted only as best_of: null or 1)",
        ),
        ({"echo": 0}, "echo", "unsupported parameter(s): echo"),
        ({"suffix": "end"}, "suffix", "unsupported parameter(s): suffix"),
        (
            {"presence_penalty": 0.5, "frequency_penalty": 1},
            "presence_penalty",
            "presence_penalty, frequency_penalty",
        ),
        ({"logit_bias": {"5": 10}}, "logit_bias", "unsupported parameter(s): logit_bias"),
        ({"functions": []}, "functions", "unknown parameter(s): functions"),
        ({"stream_options": {"include_obfuscation": True}}, "stream_options", "include_obfuscation"),
        ({"stream_options": {"other": 1}}, "stream_options.other", "Extra inputs are not permitted"),
        ({"max_tokens": 0}, "max_tokens", "max_tokens: Input should be greater than or equal to 1"),
        ({"temperature": -1}, "temperature", "temperature"),
        ({"top_p": 1.5}, "top_p", "top_p"),
        ({"n": 0}, "n", "n: must be at least 1"),
        ({"n": 65}, "n", "n is 65; the limit is 64"),
        ({"n": True}, "n", "n: Input should be a valid integer"),
        ({"prompt": [[1, 2]]}, "prompt", "token arrays is not supported"),
        ({"prompt": ["A", "B"]}, "prompt", "a list of prompts"),
        ({"stop": [1]}, "stop", "stop: must be a string or a list of strings"),
        ({"stop": ["x"] * 9}, "stop", "stop"),
        ({"prompt": "é"}, "prompt", "does not know: 'é'"),
        ({"seed": "1"}, "seed", "seed: Input should be a valid integer"),
    ],
)
def test_unsupported_and_invalid_fields_are_400_naming_them(
    client: openai.OpenAI, http: httpx.Client, fields: dict[str, Any], param: str, message: str
) -> None:
    body = {"model": MODEL, "prompt": "A", "max_tokens": 5, **fields}
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert message in error["message"]


def test_neutral_values_of_unsupported_fields_are_accepted(http: httpx.Client) -> None:
    body = {
        "model": MODEL,
        "prompt": "A",
        "max_tokens": 5,
        "seed": 1,
        "logprobs": None,
        "echo": False,
        "best_of": 1,
        "suffix": None,
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "logit_bias": {},
        "user": "someone",
        "stream_options": {"include_usage": True, "include_obfuscation": False},  # no effect unless streaming
    }
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    assert (
        response.json()["choices"][0]["text"] == generate(http, prompt="A", max_new_tokens=5, seed=1)["text"]
    )


def test_the_client_raises_openais_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=MODEL, prompt="A", logprobs=2)
    assert bad.value.body["param"] == "logprobs" and bad.value.code == "unsupported_parameter"
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="nope", prompt="A")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="sentiment-gru", prompt="A")


def _wait_idle(http: httpx.Client, cancelled_before: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        entry = stats(http, "generation-gru")
        if (
            entry["in_flight"] == 0
            and entry["queue_depth"] == 0
            and entry["stats"]["cancelled"] > cancelled_before
        ):
            return entry
        assert time.monotonic() < deadline, entry
        time.sleep(0.05)


def test_a_client_leaving_a_stream_frees_its_slot(server: str, http: httpx.Client) -> None:
    cancelled = stats(http, "generation-gru")["stats"]["cancelled"]
    body = {"model": "generation-gru", "prompt": "A", "max_tokens": 1000, "stream": True}
    with (
        httpx.Client(base_url=server, timeout=30) as own,
        own.stream("POST", "/v1/completions", json=body) as r,
    ):
        assert next(r.iter_lines()).startswith("data: ")
    entry = _wait_idle(http, cancelled)
    assert entry["stats"]["cancelled"] == cancelled + 1


def test_a_client_leaving_before_the_answer_frees_every_slot(server: str, http: httpx.Client) -> None:
    cancelled = stats(http, "generation-gru")["stats"]["cancelled"]
    body = {"model": "generation-gru", "prompt": "A", "max_tokens": 1000, "n": 64}
    # the largest request allowed: 64 × 1,000 steps take about 0.5-1 s on a fast 2-core machine, so the
    # client leaves well before that
    with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=server, timeout=0.2) as own:
        own.post("/v1/completions", json=body)
    entry = _wait_idle(http, cancelled)
    assert entry["stats"]["cancelled"] == cancelled + 64


def test_the_openapi_document_states_the_rules(http: httpx.Client) -> None:
    operation = http.get("/openapi.json").json()["paths"]["/v1/completions"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    properties = schema["properties"]
    assert schema["additionalProperties"] is False and schema["required"] == ["model"]
    assert properties["n"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 64}
    assert properties["max_tokens"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert properties["best_of"]["enum"] == [1, None] and properties["logprobs"]["type"] == "null"
    assert "pattern" in properties["prompt"]["anyOf"][0]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
