"""Step-level batching: shared steps give every request its solo output, requests join at the next step
and leave when they finish, and a client that goes away frees its slot."""

from __future__ import annotations

import asyncio
import time

import httpx
import onnxruntime as ort
import pytest

from service.sampling import SamplingParams
from service.scheduler import GenerationRequest, GenerationScheduler
from service.tasks.generation.graphs import RecurrentGraphs
from tests.service.tasks.generation.conftest import live_server
from tests.service.tasks.generation.tiny_model import TinyGeneration


class SlowGraphs:
    """The real graphs, each call delayed, so that a generation lasts long enough to interfere with."""

    def __init__(self, graphs: RecurrentGraphs, delay_s: float):
        self.graphs, self.delay_s = graphs, delay_s

    def prefill(self, prompts):
        time.sleep(self.delay_s)
        return self.graphs.prefill(prompts)

    def step(self, tokens, states):
        time.sleep(self.delay_s)
        return self.graphs.step(tokens, states)

    def zero_state(self, batch):
        return self.graphs.zero_state(batch)


def real_graphs(tiny: TinyGeneration) -> RecurrentGraphs:
    folder = tiny.root / tiny.name / "1"
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = [ort.InferenceSession(str(folder / f), options) for f in ("prefill.onnx", "step.onnx")]
    return RecurrentGraphs(*sessions, state_names=tiny.model.state_names)


def scheduler_for(tiny: TinyGeneration, delay_s: float = 0.0, max_batch_size: int = 8) -> GenerationScheduler:
    graphs = real_graphs(tiny)
    codec = tiny.codec
    return GenerationScheduler(
        SlowGraphs(graphs, delay_s) if delay_s else graphs,
        [codec.decode_token(i) for i in range(len(codec.vocab))],
        name="test",
        max_batch_size=max_batch_size,
        banned_ids=codec.special_ids,
    )


def request(tiny: TinyGeneration, prompt: str, **params) -> GenerationRequest:
    return GenerationRequest(tiny.codec.encode(prompt), SamplingParams(**params))


BODIES = [
    {"prompt": "First Citizen:\n", "max_new_tokens": 300, "seed": 1},
    {"prompt": "", "max_new_tokens": 250, "seed": 2, "temperature": 0.7},
    {"prompt": "All:\nSpeak, speak.\n\n", "max_new_tokens": 40, "temperature": 0},
    {"prompt": "You", "max_new_tokens": 300, "seed": 4, "top_k": 5},
    {"prompt": "Resolved", "max_new_tokens": 280, "seed": 5, "top_p": 0.9, "temperature": 1.4},
    {"prompt": "F", "max_new_tokens": 300, "seed": 6, "stop": ["\n\n"]},
    {"prompt": "Before we proceed any further, hear me speak.\n", "max_new_tokens": 120, "seed": 7},
    {"prompt": "", "max_new_tokens": 300, "seed": 8, "top_k": 1},
]


def test_every_request_in_a_shared_batch_gets_its_solo_output(tiny_generation):
    with live_server(tiny_generation.root) as (base, app):
        with httpx.Client(base_url=base, timeout=60) as client:
            alone = [client.post("/generate", json=body).json() for body in BODIES]

        async def together() -> list[dict]:
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                responses = await asyncio.gather(*(client.post("/generate", json=b) for b in BODIES))
            return [r.json() for r in responses]

        shared = asyncio.run(together())
        stats = app.state.repository.entries["generation-tiny"].model.scheduler.stats
    assert shared == alone
    assert stats["max_batch"] >= 4, stats  # the requests really did share steps


def test_requests_join_at_the_next_step_and_leave_when_done(tiny_generation):
    async def scenario():
        scheduler = scheduler_for(tiny_generation, delay_s=0.002)
        scheduler.start()
        long = request(tiny_generation, "All", max_new_tokens=1000, seed=1)
        long_task = asyncio.create_task(scheduler.generate(long))
        while long.tokens < 20:
            await asyncio.sleep(0.005)
        before = long.tokens
        short = await scheduler.generate(request(tiny_generation, "First", max_new_tokens=5, seed=2))
        during = long.tokens - before
        assert short.tokens == 5 and short.finish_reason == "length"
        assert not long_task.done()
        # Admitted at the next step, 6 steps to read "<bos>First" (its first token comes from the last),
        # then 4 more: far below the ~980 steps the long request still had to go.
        assert during <= 15, during
        await long_task
        assert long.tokens == 1000
        await scheduler.close()
        assert scheduler.stats["max_batch"] == 2

    asyncio.run(scenario())


def test_a_cancelled_generation_frees_its_slot(tiny_generation):
    async def scenario():
        scheduler = scheduler_for(tiny_generation, delay_s=0.002, max_batch_size=1)
        scheduler.start()
        hog = request(tiny_generation, "All", max_new_tokens=1000, seed=1)
        hog_task = asyncio.create_task(scheduler.generate(hog))
        while hog.tokens < 5:
            await asyncio.sleep(0.005)
        hog_task.cancel()
        started = time.perf_counter()
        # the only slot is free again: a new request starts and finishes long before the hog would have
        nxt = await scheduler.generate(request(tiny_generation, "F", max_new_tokens=10, seed=3), timeout=5)
        assert nxt.tokens == 10 and hog.tokens < 200
        assert time.perf_counter() - started < 1.0
        assert scheduler.stats["cancelled"] == 1
        await scheduler.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("seed", [1, 2])
def test_prompts_read_in_the_steps_give_the_prefill_graphs_text(tiny_generation, seed):
    """A prompt read token by token through the shared steps gives the text the prefill graph gives."""

    async def generate(step_prefill_max_tokens: int) -> tuple[list[str], dict]:
        scheduler = scheduler_for(tiny_generation)
        scheduler.step_prefill_max_tokens = step_prefill_max_tokens
        scheduler.start()
        bodies = [b | {"seed": seed} if "seed" in b else b for b in BODIES]
        done = await asyncio.gather(
            *(scheduler.generate(request(tiny_generation, **_params(b))) for b in bodies)
        )
        await scheduler.close()
        return [r.text for r in done], scheduler.stats

    in_steps, step_stats = asyncio.run(generate(10_000))
    prefilled, prefill_stats = asyncio.run(generate(0))
    assert in_steps == prefilled
    prompt_tokens = sum(len(tiny_generation.codec.encode(b["prompt"])) for b in BODIES)
    assert step_stats["prefills"] == 0 and step_stats["prompt_tokens_in_steps"] == prompt_tokens - len(BODIES)
    assert prefill_stats["prefills"] >= 1 and prefill_stats["prompt_tokens_in_steps"] == 0
    assert step_stats["tokens"] == prefill_stats["tokens"] == sum(len(t) for t in in_steps)


def _params(body: dict) -> dict:
    return {"prompt": body["prompt"]} | {
        k: (tuple(v) if k == "stop" else v) for k, v in body.items() if k != "prompt"
    }


def slow_down(app, delay_s: float) -> GenerationScheduler:
    scheduler = app.state.repository.entries["generation-tiny"].model.scheduler
    scheduler.graphs = SlowGraphs(scheduler.graphs, delay_s)
    return scheduler


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_frees_its_slot(tiny_generation, stream):
    with live_server(tiny_generation.root) as (base, app):
        scheduler = slow_down(app, 0.005)  # 1000 tokens would take >= 5 s
        body = {"prompt": "All", "max_new_tokens": 1000, "seed": 1, "stream": stream}
        with httpx.Client(base_url=base, timeout=httpx.Timeout(30, read=0.5)) as client:
            if stream:
                with client.stream("POST", "/generate", json=body) as response:
                    lines = response.iter_lines()
                    assert next(lines).startswith("data: ")
                    assert scheduler.active == 1
            else:
                with pytest.raises(httpx.ReadTimeout):
                    client.post("/generate", json=body)
        wait_until(lambda: scheduler.active == 0 and scheduler.stats["cancelled"] == 1)
        assert scheduler.stats["tokens"] < 600
