"""Generation's step scheduler in the inference process, driven from the serving process."""

from __future__ import annotations

import asyncio
import os
import pickle
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from service.config import BatchingConfig
from service.errors import QueueFull, ShuttingDown
from service.manifest import ModelManifest
from service.plugin import TaskPlugin
from service.remote_scheduler import HostedScheduler, RemoteScheduler
from service.sampling import SamplingParams
from service.scheduler import GenerationRequest, GenerationScheduler
from service.serving import load_model
from service.tasks.generation.plugin import PLUGIN as GENERATION
from tests.service.bundled import bundled_repository
from tests.service.conftest import metric_sample, serving, settings_for, wait_ready
from tests.service.faults import killed_during, wait_until

MODEL = "generation-gru"
LONG = {"prompt": "ROMEO:", "max_new_tokens": 1000, "temperature": 1.0, "seed": 3}
STEP_S = 0.005


class SlowGraphs:
    """The model's graphs with a pause before each step: 1,000 characters take five seconds."""

    def __init__(self, graphs: Any) -> None:
        self.graphs = graphs

    def zero_state(self, batch: int) -> Any:
        return self.graphs.zero_state(batch)

    def prefill(self, prompts: Any) -> Any:
        return self.graphs.prefill(prompts)

    def step(self, tokens: Any, states: Any) -> Any:
        time.sleep(STEP_S)
        return self.graphs.step(tokens, states)


def slow_build(*args: Any) -> Any:
    """The generation build, slowed (named at module level: the inference process imports it)."""
    model = GENERATION.build(*args)
    if model.graphs is not None:
        model.graphs = SlowGraphs(model.graphs)
    return model


SLOW = TaskPlugin(
    task=GENERATION.task, build=slow_build, router=GENERATION.router, routers=GENERATION.routers
)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX processes and signals")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundled_repository(tmp_path_factory.mktemp("models"))


def _scheduler(client: Any) -> RemoteScheduler:
    scheduler = client.app.state.repository.entries[MODEL].model.scheduler
    assert isinstance(scheduler, RemoteScheduler)
    return scheduler


# -- the two ends joined in one process, through pickled messages ------------------------------------
class Loopback:
    """A ``RemoteModel`` whose inference process is a ``HostedScheduler`` here: every message is pickled
    and unpickled on its way, as over the pipe."""

    def __init__(self, model: Any) -> None:
        self.listener: Any = None
        self.hosted = HostedScheduler(0, model, self._up)
        self.key = 0

    def _up(self, kind: str, payload: tuple[Any, ...]) -> None:
        kind, payload = pickle.loads(pickle.dumps((kind, payload)))
        if self.listener is not None:
            self.listener.receive(kind, payload[1:])

    def send(self, op: str, *args: Any) -> None:
        (wire,) = pickle.loads(pickle.dumps(args))
        (self.hosted.submit if op == "gen_submit" else self.hosted.cancel)(wire)

    def call(self, op: str, *args: Any, timeout: float | None = None) -> None:
        assert op == "gen_close"
        self.hosted.close(*args)

    def subscribe(self, listener: Any) -> None:
        self.listener = listener

    def unsubscribe(self) -> None:
        self.listener = None

    def unavailable(self) -> None:
        return None

    def fault(self) -> None:
        return None


def _model(repo: Path) -> Any:
    manifest = ModelManifest.load(repo / MODEL)
    return load_model(GENERATION.build, manifest, 1, repo / MODEL / "1", settings_for(repo))


def _request(prompt_ids: list[int], seed: int, stream: bool = False, tokens: int = 30) -> GenerationRequest:
    return GenerationRequest(prompt_ids, SamplingParams(max_new_tokens=tokens, seed=seed), stream=stream)


def test_the_remote_side_answers_what_the_local_scheduler_answers(repo: Path) -> None:
    model = _model(repo)
    prompts = [model.codec.encode(p) for p in ("ROMEO:", "JULIET:\nO", "First Citizen:")]

    async def run(scheduler: Any) -> list[tuple[str, str | None, int, list[str]]]:
        scheduler.start()
        jobs = [_request(p, seed=i, stream=i == 1) for i, p in enumerate(prompts)]
        scheduler.submit_many(jobs)
        await asyncio.gather(*(job.done for job in jobs))
        chunks = []
        while not jobs[1].events.empty():
            chunks.append(jobs[1].events.get_nowait())
        await scheduler.close()
        return [(j.text, j.finish_reason, j.tokens, chunks if j.stream else []) for j in jobs]

    local = asyncio.run(run(model.create_scheduler(None)))

    async def remote() -> Any:
        loopback = Loopback(model)
        return await run(
            RemoteScheduler(loopback, name=MODEL, max_batch_size=8, max_queue_size=8, max_queue_wait_s=30)
        )

    answers = asyncio.run(remote())
    assert answers == local
    assert all(reason == "length" and tokens == 30 for _, reason, tokens, _ in answers)
    assert "".join(c for c in answers[1][3] if isinstance(c, str)) == answers[1][0]


def test_admission_counts_what_was_handed_over_and_what_started(repo: Path) -> None:
    model = _model(repo)
    prompt = model.codec.encode("ROMEO:")

    async def run() -> None:
        loopback = Loopback(model)
        scheduler = RemoteScheduler(
            loopback, name=MODEL, max_batch_size=1, max_queue_size=1, max_queue_wait_s=30
        )
        scheduler.start()
        first, second = _request(prompt, 1, tokens=1000), _request(prompt, 2, tokens=1000)
        scheduler.submit(first)
        await first.started
        assert (scheduler.active, scheduler.queue_depth) == (1, 0)
        scheduler.submit(second)
        assert scheduler.queue_depth == 1
        with pytest.raises(QueueFull):
            scheduler.submit(_request(prompt, 3))
        second.cancel()  # its place is free at once, here and over there
        assert scheduler.queue_depth == 0
        first.cancel()
        assert scheduler.active == 0
        await asyncio.to_thread(wait_until, lambda: loopback.hosted.scheduler.active == 0)
        await scheduler.close()
        with pytest.raises(ShuttingDown):
            scheduler.submit(_request(prompt, 4))

    asyncio.run(run())


# -- through a real inference process ------------------------------------------------------------------
def test_a_client_that_leaves_frees_its_slot_in_the_inference_process(repo: Path) -> None:
    with serving(settings_for(repo, inference_process=True), plugins=[SLOW]) as client:
        scheduler = _scheduler(client)
        with client.stream("POST", "/generate", json={**LONG, "stream": True}) as answer:
            assert answer.status_code == 200
            lines = answer.iter_lines()  # kept: a closed iterator closes the answer
            assert next(lines).startswith("data: ")
            assert scheduler.active == 1
        wait_until(lambda: scheduler.active == 0 and scheduler.stats.get("cancelled") == 1)
        assert scheduler.stats["tokens"] < 1000


def test_a_generation_running_when_the_process_dies_fails_with_503_and_the_next_is_answered(
    repo: Path,
) -> None:
    with serving(settings_for(repo, inference_process=True), plugins=[SLOW]) as client:
        scheduler = _scheduler(client)
        answer = killed_during(client, "/generate", LONG, lambda: scheduler.active == 1)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "model_unavailable"
        assert (scheduler.active, scheduler.queue_depth) == (0, 0)
        wait_ready(client)
        again = client.post("/generate", json={"prompt": "ROMEO:", "max_new_tokens": 20, "seed": 1})
        assert again.status_code == 200 and again.json()["tokens"] == 20


def test_its_steps_reach_the_serving_process_s_metrics_and_statistics(repo: Path) -> None:
    with serving(settings_for(repo, inference_process=True)) as client:
        answer = client.post("/generate", json={"prompt": "ROMEO:", "max_new_tokens": 25, "seed": 1})
        assert answer.status_code == 200
        scheduler = _scheduler(client)
        wait_until(lambda: scheduler.stats.get("tokens") == 25)
        model = next(m for m in client.get("/models").json()["models"] if m["name"] == MODEL)
        assert model["stats"]["requests"] == 1 and model["stats"]["steps"] >= 25

        def batches() -> float:
            series = f'rnnserve_batch_size_count{{model="{MODEL}"}}'
            return metric_sample(client.get("/metrics").text, series) or 0.0

        wait_until(lambda: batches() >= 25)


def test_it_refuses_at_its_own_counts_before_the_inference_process_hears_of_it(repo: Path) -> None:
    batching = {"generation": BatchingConfig(max_batch_size=1, max_queue_size=1)}
    with serving(settings_for(repo, inference_process=True, batching=batching), plugins=[SLOW]) as client:
        scheduler = _scheduler(client)
        streams = [
            client.stream("POST", "/generate", json={**LONG, "stream": True, "seed": i}) for i in (1, 2)
        ]
        first = streams[0].__enter__()
        assert first.status_code == 200
        waiting = threading.Thread(target=streams[1].__enter__)
        waiting.start()
        wait_until(lambda: scheduler.queue_depth == 1)
        refused = client.post("/generate", json=LONG)
        assert refused.status_code == 503 and "Retry-After" in refused.headers
        streams[0].__exit__(None, None, None)
        waiting.join(30)
        streams[1].__exit__(None, None, None)
        wait_until(lambda: scheduler.active == 0 and scheduler.queue_depth == 0)


def test_the_local_scheduler_is_the_default(repo: Path) -> None:
    with serving(settings_for(repo)) as client:
        scheduler = client.app.state.repository.entries[MODEL].model.scheduler
        assert isinstance(scheduler, GenerationScheduler)
