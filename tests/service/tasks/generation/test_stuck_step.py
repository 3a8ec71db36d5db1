"""A step call stuck past ``stall_after_s``: the scheduler refuses new generations meanwhile (admission by
room still says yes), and serves again once the call returns."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.errors import ModelUnavailable
from service.scheduler import GenerationScheduler
from tests.service.tasks.generation.test_continuous_batching import real_graphs, request


class HangingSteps:
    """Real graphs whose step calls block while ``hang`` is set."""

    def __init__(self, graphs):
        self.graphs, self.hang, self.release = graphs, threading.Event(), threading.Event()

    def prefill(self, prompts):
        return self.graphs.prefill(prompts)

    def zero_state(self, batch):
        return self.graphs.zero_state(batch)

    def step(self, tokens, states):
        if self.hang.is_set():
            assert self.release.wait(30)
        return self.graphs.step(tokens, states)


@pytest.mark.timeout(60)
def test_a_stuck_step_refuses_new_generations_until_it_returns(tiny_generation) -> None:
    graphs = HangingSteps(real_graphs(tiny_generation))
    codec = tiny_generation.codec

    async def scenario() -> None:
        scheduler = GenerationScheduler(
            graphs,
            [codec.decode_token(i) for i in range(len(codec.vocab))],
            name="gen",
            banned_ids=codec.special_ids,
            stall_after_s=0.3,
        )
        scheduler.start()
        try:
            graphs.hang.set()
            stuck = asyncio.ensure_future(
                scheduler.generate(request(tiny_generation, "A", max_new_tokens=5, seed=1), timeout=20)
            )
            await asyncio.sleep(0.6)
            assert "inference call has been running" in scheduler.watch.fault()
            assert scheduler.refusal() is None, "room is not the problem: admission before the body says yes"
            with pytest.raises(ModelUnavailable):
                scheduler.submit(request(tiny_generation, "B", max_new_tokens=5, seed=2))
            graphs.hang.clear()
            graphs.release.set()
            done = await asyncio.wait_for(stuck, 20)
            assert done.tokens == 5 and scheduler.watch.fault() is None
            after = await scheduler.generate(request(tiny_generation, "C", max_new_tokens=3, seed=3), 20)
            assert after.tokens == 3
        finally:
            await scheduler.close()

    asyncio.run(scenario())
