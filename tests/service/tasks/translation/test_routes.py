"""POST /translate over a tiny trained model: answers, batching invariance, attention, errors."""

from __future__ import annotations

import concurrent.futures

import pytest

from tests.service.conftest import serving, settings_for
from tests.service.tasks.translation.tiny_model import pairs, plugins, shared_tiny_translation

SOURCES = [en for en, _ in pairs()][::9]


@pytest.fixture(scope="module")
def translate_client():
    with serving(settings_for(shared_tiny_translation().root), plugins=plugins()) as client:
        yield client


def post(client, **payload):
    return client.post("/translate", json=payload)


def test_one_text_gives_a_translation_and_a_score(translate_client):
    response = post(translate_client, text="A red dog runs.", beam_size=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "translation-tiny"
    (result,) = body["results"]
    assert set(result) == {"translation", "score"}
    assert isinstance(result["translation"], str) and result["score"] <= 0


@pytest.mark.parametrize("beam_size", [1, 4])
def test_a_sentence_alone_equals_it_in_a_batch(translate_client, beam_size):
    batch = post(translate_client, texts=SOURCES, beam_size=beam_size).json()["results"]
    for text, together in zip(SOURCES, batch, strict=True):
        alone = post(translate_client, text=text, beam_size=beam_size).json()["results"][0]
        assert alone["translation"] == together["translation"]
        assert alone["score"] == pytest.approx(together["score"], abs=1e-4)


def test_concurrent_requests_share_the_batcher_and_agree(translate_client):
    want = [post(translate_client, text=t, beam_size=2).json()["results"][0] for t in SOURCES]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(
            pool.map(lambda t: post(translate_client, text=t, beam_size=2).json()["results"][0], SOURCES)
        )
    assert [g["translation"] for g in got] == [w["translation"] for w in want]


def test_the_tiny_model_learned_the_training_pairs(translate_client):
    sample = pairs()[::10]
    results = post(translate_client, texts=[en for en, _ in sample], beam_size=3).json()["results"]
    right = sum(r["translation"] == fr for r, (_, fr) in zip(results, sample, strict=True))
    assert right >= len(sample) // 2


def test_return_attention_gives_tokens_and_one_row_per_target_token(translate_client):
    (result,) = post(translate_client, text="A blue cat sleeps.", return_attention=True).json()["results"]
    source, target, attention = result["source_tokens"], result["target_tokens"], result["attention"]
    assert source[-1] == "<eos>" and len(attention) == len(target)
    for row in attention:
        assert len(row) == len(source) and sum(row) == pytest.approx(1.0, abs=1e-4)


def test_max_length_bounds_the_output(translate_client):
    (result,) = post(translate_client, text="A red dog runs.", max_length=2, return_attention=True).json()[
        "results"
    ]
    assert len(result["target_tokens"]) <= 2


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"text": "a", "beam_size": 0}, "beam_size"),
        ({"text": "a", "beam_size": 9}, "beam_size"),
        ({"text": "a", "max_length": 0}, "max_length"),
        ({"text": "a", "max_length": 10_000}, "max_length"),
        ({"text": "a", "length_penalty": -1}, "length_penalty"),
        ({"text": "a", "texts": ["b"]}, "text"),
        ({}, "text"),
        ({"texts": []}, "texts"),
        ({"text": 3}, "text"),
        ({"text": "a", "colour": "red"}, "colour"),
    ],
)
def test_invalid_requests_are_422_naming_the_field(translate_client, payload, field):
    response = post(translate_client, **payload)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_limits_and_unknown_models(translate_client):
    too_long = post(translate_client, text="a" * 5001).json()["error"]
    assert too_long["code"] == "limit_exceeded" and too_long["limit"] == 5000
    assert post(translate_client, texts=["a"] * 65).json()["error"]["field"] == "texts"
    assert post(translate_client, text="a", model="nope").status_code == 404


def test_empty_text_still_translates(translate_client):
    assert post(translate_client, text="").status_code == 200
