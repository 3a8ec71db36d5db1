"""The inference process: the models' sessions, batches and generation steps in a child of the serving
process."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loadtest.bench.procs import running
from service.errors import ModelUnavailable
from service.inference_process import InferenceProcess
from service.plugin import TaskPlugin
from service.serving import CodecModelBuilder
from service.tasks.sentiment.codec import SentimentCodec
from service.tasks.sentiment.model import SentimentModel
from service.tasks.sentiment.plugin import PLUGIN as SENTIMENT
from tests.service.bundled import bundled_repository
from tests.service.conftest import TINY, serving, settings_for, wait_ready
from tests.service.faults import killed_during, wait_until

TEXTS = ["a gripping , beautifully acted film .", "dull and far too long .", "not bad at all ."]
REQUESTS = {
    "/sentiment": {"texts": TEXTS},
    "/tag": {"texts": ["Peter Blackburn spoke in Brussels.", "EU rejects German call ."]},
    "/translate": {"texts": ["A man is riding a bicycle.", "Two dogs play in the snow."], "beam_size": 3},
    "/generate": {"prompt": "ROMEO:", "max_new_tokens": 40, "seed": 7},
}

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX processes and signals")


def _inference(client: TestClient) -> InferenceProcess:
    inference = client.app.state.repository.inference
    assert inference is not None
    return inference


def test_every_task_answers_as_it_does_in_the_serving_process(tmp_path: Path) -> None:
    root = bundled_repository(tmp_path / "models")
    answers = {}
    child = 0
    for inference_process in (False, True):
        with serving(settings_for(root, inference_process=inference_process)) as client:
            answers[inference_process] = {p: client.post(p, json=body).json() for p, body in REQUESTS.items()}
            streamed = client.post("/generate", json={**REQUESTS["/generate"], "stream": True})
            events = [
                json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: ")
            ]
            # the chunks depend on timing, not the text
            last = {k: v for k, v in events[-1].items() if k not in ("text", "tokens")}
            answers[inference_process]["stream"] = ("".join(e["text"] for e in events), last)
            models = {e.name: e.model for e in client.app.state.repository.entries.values()}
            if inference_process:
                for name in ("sentiment-gru", "ner-bigru-crf", "translation-gru", "generation-gru"):
                    assert models[name].sessions == {} and models[name].remote is not None, name
                    assert models[name].provider == "CPUExecutionProvider"
                child = _inference(client).pid
                assert child is not None and child != os.getpid()
        if inference_process:  # the serving process's shutdown ends its inference process
            wait_until(lambda pid=child: not running(pid), 10)
    assert answers[True] == answers[False]
    assert all("error" not in answer for answer in answers[True].values()), answers[True]


def test_a_killed_inference_process_is_started_again_and_its_models_loaded_again(tiny_repo: Path) -> None:
    with serving(settings_for(tiny_repo, inference_process=True)) as client:
        inference = _inference(client)
        before = client.post("/sentiment", json={"texts": TEXTS}).json()
        first = inference.pid
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: inference.restarts == 1)

        refused = client.post("/sentiment", json={"texts": TEXTS})
        if refused.status_code == 503:  # unless the models were loaded again already
            assert refused.json()["error"]["code"] == "model_unavailable"
            assert refused.headers["Retry-After"] == "1"
        wait_ready(client)
        assert inference.pid != first
        assert client.post("/sentiment", json={"texts": TEXTS}).json() == before
        names = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert names[TINY]["fault"] is None


def test_the_ready_check_names_the_restart_while_it_lasts(tiny_repo: Path) -> None:
    with serving(settings_for(tiny_repo, inference_process=True)) as client:
        inference = _inference(client)
        model = client.app.state.repository.entries[TINY].model
        inference.live.discard(model.remote.key)  # as the supervisor does when the process has gone
        inference.down_reason = "the inference process exited (code -9) and is being restarted"
        answer = client.post("/sentiment", json={"text": "good"})
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "model_unavailable"
        assert "restarting" in answer.json()["error"]["message"]
        wait_until(lambda: client.get("/ready").status_code == 503)
        assert "exited (code -9)" in client.get("/ready").json()["reasons"]["sentiment"]
        inference.live.add(model.remote.key)
        wait_ready(client)


@dataclass
class SlowSentimentModel(SentimentModel):
    """Takes its time over any batch with the text ``slow``."""

    def predict_batch(self, items: list[str]) -> list[Any]:
        if "slow" in items:
            time.sleep(20)
        return list(super().predict_batch(items))


SLOW = TaskPlugin(
    task=SENTIMENT.task,
    build=CodecModelBuilder(SlowSentimentModel, SentimentCodec.from_manifest),
    router=SENTIMENT.router,
    v2=SENTIMENT.v2,
)


def test_a_call_running_when_the_process_dies_fails_with_503_and_others_are_answered(
    tiny_repo: Path,
) -> None:
    with serving(settings_for(tiny_repo, inference_process=True), plugins=[SLOW]) as client:
        batcher = client.app.state.repository.entries[TINY].model.batcher
        answer = killed_during(client, "/sentiment", {"text": "slow"}, lambda: batcher.in_flight == 1)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "model_unavailable"
        assert "exited (code -9) during the call" in answer.json()["error"]["message"]
        wait_ready(client)
        assert client.post("/sentiment", json={"text": "good"}).status_code == 200


def test_an_unloaded_version_is_forgotten_by_the_inference_process(tiny_repo: Path) -> None:
    with serving(settings_for(tiny_repo, inference_process=True)) as client:
        inference = _inference(client)
        model = client.app.state.repository.entries["sentiment-tiny-b"].model
        key = model.remote.key
        assert inference.call("predict", key, ["good"])[0]["label"] in ("positive", "negative")
        client.portal.call(client.app.state.repository.unload, "sentiment-tiny-b")
        assert key not in inference.live
        with pytest.raises(ModelUnavailable, match="not loaded here"):
            inference.call("predict", key, ["good"])
        assert client.post("/sentiment", json={"text": "good"}).status_code == 200  # the others serve


def test_a_model_that_fails_to_load_there_is_failed_with_its_reason(tiny_repo: Path) -> None:
    with serving(settings_for(tiny_repo, inference_process=True), ready=False) as client:
        wait_until(lambda: client.app.state.repository.loading_done)
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert models["broken-graph"]["state"] == "failed"
        assert "ONNX Runtime cannot load it" in models["broken-graph"]["error"]
        assert models[TINY]["state"] == "ready"


def test_a_reloaded_version_replaces_the_old_one_there_too(tiny_repo: Path) -> None:
    with serving(settings_for(tiny_repo, inference_process=True)) as client:
        inference = _inference(client)
        repository = client.app.state.repository
        old = repository.entries["sentiment-tiny-b"].model
        body = {"text": "good", "model": "sentiment-tiny-b"}
        before = client.post("/sentiment", json=body).json()
        assert client.portal.call(repository.reload, "sentiment-tiny-b") is None
        new = repository.entries["sentiment-tiny-b"].model
        assert new is not old and new.remote.key != old.remote.key
        wait_until(lambda: old.remote.key not in inference.live)  # drained after its handover, then released
        assert new.remote.key in inference.live
        assert client.post("/sentiment", json=body).json() == before


def test_a_process_that_cannot_be_started_leaves_its_calls_unavailable(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_process(self: InferenceProcess) -> None:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(InferenceProcess, "_spawn", no_process)
    inference = InferenceProcess(settings_for(tiny_repo))
    inference.start()  # returns: the supervisor keeps trying in the background
    try:
        with pytest.raises(ModelUnavailable, match="cannot be started: Resource temporarily unavailable"):
            inference.call("predict", 0, ["good"])
    finally:
        inference.close(timeout=2)
