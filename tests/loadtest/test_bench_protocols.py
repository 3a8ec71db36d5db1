"""The protocol benchmark's requests: each pair asks the service for the same work, and is counted alike."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from loadtest.bench.server import REPO_ROOT, running_service
from loadtest.bench_generate import _one, _one_openai
from loadtest.bench_protocols import v2_body
from tests.service.tiny_onnx import make_tiny_sentiment

GENERATION = REPO_ROOT / "models" / "generation-gru"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory):
    if not (GENERATION / "config.json").is_file():
        pytest.skip("generation-gru is not bundled in models/")
    models = tmp_path_factory.mktemp("models")
    make_tiny_sentiment(models)
    (models / GENERATION.name).symlink_to(GENERATION, target_is_directory=True)
    env = {"RNNSERVE_MODEL_REPOSITORY": str(models), "RNNSERVE_DEVICE": "cpu", "RNNSERVE_WORKERS": "1"}
    with running_service(env, log_path=Path(models).parent / "server.log") as url:
        yield str(url)


def test_the_v2_body_asks_for_what_the_task_route_answers(base: str) -> None:
    text = "a good film with a dull plot"
    task = httpx.post(f"{base}/sentiment", json={"text": text}, timeout=30).json()
    name = task["model"]
    v2 = httpx.post(f"{base}/v2/models/{name}/infer", json=v2_body(text), timeout=30)
    assert v2.status_code == 200, v2.text
    labels = {o["name"]: o["data"] for o in v2.json()["outputs"]}["label"]
    assert labels == [task["results"][0]["label"]]


def test_both_streaming_protocols_count_the_same_tokens_for_the_same_request(base: str) -> None:
    body = {"prompt": "ROMEO:", "max_new_tokens": 50, "temperature": 1.0, "seed": 7}

    async def both() -> tuple[tuple, tuple]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            return await _one(client, body, True), await _one_openai(client, body, GENERATION.name)

    (_, first_plain, plain_tokens), (_, first_openai, openai_tokens) = asyncio.run(both())
    assert plain_tokens == openai_tokens == 50
    assert first_plain is not None and first_openai is not None
