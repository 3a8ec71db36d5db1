"""POST /generate on a tiny trained model: decoding semantics, validation and streaming."""

from __future__ import annotations

import json

import httpx
import pytest
from httpx_sse import connect_sse

from tests.service.conftest import serving, settings_for
from tests.service.tasks.generation.conftest import plugins
from tests.service.tasks.generation.tiny_model import TinyGeneration


def generate(client, **body) -> dict:
    response = client.post("/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def torch_greedy(tiny: TinyGeneration, prompt: str, steps: int) -> str:
    """The PyTorch model's own argmax rollout (special tokens excluded, as the service does)."""
    import torch

    codec = tiny.codec
    with torch.no_grad():
        logits, state = tiny.model(torch.tensor([codec.encode(prompt)]))
        logits = logits[:, -1]
        out = []
        for _ in range(steps):
            logits[:, codec.special_ids] = -float("inf")
            token = logits.argmax(-1)
            out.append(int(token))
            logits, state = tiny.model(token[:, None], state)
            logits = logits[:, -1]
    return codec.decode(out)


@pytest.mark.parametrize("prompt", ["First Citizen:\n", "", "All"])
def test_temperature_zero_equals_the_pytorch_argmax_rollout(gen_client, tiny_generation, prompt):
    answer = generate(gen_client, prompt=prompt, temperature=0, max_new_tokens=120)
    assert answer["text"] == torch_greedy(tiny_generation, prompt, 120)
    assert (answer["finish_reason"], answer["tokens"], answer["model"]) == ("length", 120, "generation-tiny")


def test_top_k_one_equals_greedy(gen_client):
    greedy = generate(gen_client, prompt="All:\n", temperature=0, max_new_tokens=80)
    for seed in (1, 2):
        top1 = generate(gen_client, prompt="All:\n", temperature=1.5, top_k=1, seed=seed, max_new_tokens=80)
        assert top1["text"] == greedy["text"]


def test_same_seed_same_text_and_different_seeds_differ(gen_client):
    body = {"prompt": "First", "max_new_tokens": 150, "temperature": 1.2, "top_p": 0.95}
    a = generate(gen_client, seed=11, **body)
    b = generate(gen_client, seed=11, **body)
    others = {generate(gen_client, seed=s, **body)["text"] for s in (12, 13, 14)}
    assert a == b
    assert others - {a["text"]}


def test_empty_prompt_generates_from_scratch(gen_client):
    answer = generate(gen_client, prompt="", max_new_tokens=30, seed=5)
    assert answer["tokens"] == 30 and len(answer["text"]) == 30


def test_stop_sequences_end_the_text(gen_client):
    free = generate(gen_client, prompt="All:\n", temperature=0, max_new_tokens=200)["text"]
    stop = free[10:13]  # a sequence greedy decoding is known to produce
    answer = generate(gen_client, prompt="All:\n", temperature=0, max_new_tokens=200, stop=["@@", stop])
    assert answer["finish_reason"] == "stop"
    assert answer["text"].endswith(stop) and answer["text"].count(stop) == 1
    assert free.startswith(answer["text"])
    assert answer["tokens"] == len(answer["text"]) <= 13


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 1001}, "max_new_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.01}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"stop": [""]}, "stop[0]"),
        ({"stop": ["x"] * 9}, "stop"),
        ({"model": "no-such-model"}, "model"),
    ],
)
def test_invalid_requests_name_their_field(gen_client, body, field):
    response = gen_client.post("/generate", json={"prompt": "All", **body})
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["field"] == field


def test_unknown_characters_are_named(gen_client):
    response = gen_client.post("/generate", json={"prompt": "All 😀 ~"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "prompt"
    assert "'😀'" in error["message"] and "'~'" in error["message"]


def test_a_model_of_another_task_is_refused(gen_client):
    # not a 422: the body is valid; from /sentiment's side that model does not exist
    response = gen_client.post("/sentiment", json={"text": "good", "model": "generation-tiny"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert response.json()["error"]["field"] == "model"


def test_models_lists_the_scheduler(gen_client):
    generate(gen_client, prompt="All", max_new_tokens=5, seed=1)
    entry = next(m for m in gen_client.get("/models").json()["models"] if m["name"] == "generation-tiny")
    assert entry["state"] == "ready" and entry["task"] == "generation"
    assert entry["batching"]["kind"] == "step-level (continuous)"
    assert entry["batching"]["max_queue_wait_s"] == 0.25  # generation's own default
    assert entry["stats"]["tokens"] >= 5


def test_the_queue_bound_follows_the_setting(tiny_generation):
    settings = settings_for(tiny_generation.root, batching={"generation": {"max_queue_wait_s": 2}})
    with serving(settings, plugins=plugins()) as client:
        entry = next(m for m in client.get("/models").json()["models"] if m["name"] == "generation-tiny")
    assert entry["batching"]["max_queue_wait_s"] == 2


def test_sse_stream_parsed_by_a_real_client(live):
    base, _ = live
    body = {"prompt": "First Citizen:\n", "max_new_tokens": 300, "seed": 21, "temperature": 0.9}
    with httpx.Client(base_url=base, timeout=30) as client:
        alone = client.post("/generate", json=body).json()
        with connect_sse(client, "POST", "/generate", json={**body, "stream": True}) as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            events = [json.loads(event.data) for event in source.iter_sse()]
    assert len(events) >= 2
    assert all(e["finish_reason"] is None for e in events[:-1])
    final = events[-1]
    assert final["finish_reason"] == "length" and final["generated_tokens"] == 300
    assert "".join(e["text"] for e in events) == final["generated_text"] == alone["text"]
    assert sum(e["tokens"] for e in events) == 300


def test_stream_errors_before_the_first_event_are_json(live):
    base, _ = live
    with httpx.Client(base_url=base, timeout=30) as client:
        response = client.post("/generate", json={"prompt": "~", "stream": True})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "prompt"
