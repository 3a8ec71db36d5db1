"""Golden answers: fixed requests to every endpoint and every bundled model, answered as recorded.

The answers in ``golden_answers.json`` were recorded from the service on the bundled ``models/``;
any change to text processing, decoding, batching or response shapes that alters an answer fails here.
Re-record deliberately (after a model is retrained, say) with ``RNNSERVE_RECORD_GOLDEN=1``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app
from service.manifest import ModelManifest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = REPO_ROOT / "models"
GOLDEN = Path(__file__).with_name("golden_answers.json")
RECORD = os.environ.get("RNNSERVE_RECORD_GOLDEN") == "1"

SENTIMENT_TEXTS = [
    "a gripping , beautifully acted film .",
    "dull and far too long .",
    "It's not bad at all, actually — quite charming!",
    "x",
]
NER_TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris.",
    "EU rejects German call to boycott British lamb .",
    "  Spaces   and\ttabs around Obama in New York  ",
]
TRANSLATION_TEXTS = ["A man is riding a bike.", "Two dogs play in the snow near a red house."]


def _models_of(task: str) -> list[str]:
    return sorted(
        p.name
        for p in MODELS.iterdir()
        if (p / "config.json").is_file() and ModelManifest.load(p).task == task
    )


def _requests() -> dict[str, tuple[str, dict[str, Any]]]:
    """Case name -> (path, JSON body)."""
    cases: dict[str, tuple[str, dict[str, Any]]] = {}
    for model in _models_of("sentiment"):
        cases[f"sentiment/{model}/texts"] = ("/sentiment", {"texts": SENTIMENT_TEXTS, "model": model})
        cases[f"sentiment/{model}/text"] = ("/sentiment", {"text": SENTIMENT_TEXTS[0], "model": model})
    for model in _models_of("ner"):
        cases[f"tag/{model}/texts"] = ("/tag", {"texts": NER_TEXTS, "model": model})
        cases[f"tag/{model}/text"] = ("/tag", {"text": NER_TEXTS[0], "model": model})
    for model in _models_of("translation"):
        cases[f"translate/{model}/greedy"] = ("/translate", {"texts": TRANSLATION_TEXTS, "model": model})
        cases[f"translate/{model}/beam"] = (
            "/translate",
            {"text": TRANSLATION_TEXTS[1], "beam_size": 5, "model": model},
        )
        cases[f"translate/{model}/attention"] = (
            "/translate",
            {"text": TRANSLATION_TEXTS[0], "return_attention": True, "model": model},
        )
    for model in _models_of("generation"):
        cases[f"generate/{model}/sampled"] = (
            "/generate",
            {
                "prompt": "ROMEO:\n",
                "max_new_tokens": 60,
                "temperature": 0.8,
                "top_k": 20,
                "seed": 1,
                "model": model,
            },
        )
        cases[f"generate/{model}/greedy-stop"] = (
            "/generate",
            {
                "prompt": "First Citizen:\n",
                "temperature": 0,
                "stop": ["\n\n"],
                "max_new_tokens": 80,
                "model": model,
            },
        )
        cases[f"generate/{model}/top-p"] = (
            "/generate",
            {"prompt": "", "max_new_tokens": 40, "top_p": 0.9, "seed": 7, "model": model},
        )
    return cases


CASES = _requests()


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings = Settings(model_repository=MODELS, device="cpu", ort_intra_op_threads=1, gc_freeze=False)
    with TestClient(create_app(settings)) as c:
        deadline = 120
        import time

        start = time.monotonic()
        while c.get("/ready").status_code != 200:
            assert time.monotonic() - start < deadline, c.get("/ready").json()
            time.sleep(0.05)
        yield c


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    if RECORD:
        return {}
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def _close(actual: Any, expected: Any, where: str) -> None:
    """Equal, with floats compared to 1e-5 (the answers come from the same graphs and arithmetic)."""
    if isinstance(expected, float) or isinstance(actual, float):
        assert isinstance(actual, int | float) and math.isclose(
            actual, expected, rel_tol=1e-5, abs_tol=1e-6
        ), f"{where}: {actual!r} != {expected!r}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), f"{where}: keys differ"
        for key in expected:
            _close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: lengths differ"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _close(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def _stream_text(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    """The streamed events of a generation, reduced to what must equal the non-streamed answer."""
    text, final = "", None
    with client.stream("POST", "/generate", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[len("data: ") :])
                text += event["text"]
                if event.get("finish_reason") is not None:
                    final = event
    assert final is not None
    assert final["generated_text"] == text
    return {
        "model": final["model"],
        "text": text,
        "finish_reason": final["finish_reason"],
        "tokens": final["generated_tokens"],
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_answer_is_the_recorded_one(client: TestClient, golden: dict[str, Any], case: str) -> None:
    path, body = CASES[case]
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    if path == "/generate":
        assert _stream_text(client, body) == answer, "streamed and non-streamed generations differ"
    if RECORD:
        golden[case] = answer
        return
    assert case in golden, f"no recorded answer for {case}: re-record with RNNSERVE_RECORD_GOLDEN=1"
    _close(answer, golden[case], case)


def test_every_recorded_case_is_still_asked(golden: dict[str, Any]) -> None:
    if RECORD:
        pytest.skip("recording")
    assert sorted(golden) == sorted(CASES)


@pytest.fixture(scope="module", autouse=True)
def _write_recording(golden: dict[str, Any]) -> Iterator[None]:
    yield
    if RECORD:
        GOLDEN.write_text(
            json.dumps(golden, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
        )
