"""Dynamic batcher unit tests: grouping, order, delay, timeout, queue bound, failure isolation, drain."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.batching import DynamicBatcher, split_by_length
from service.errors import QueueFull, RequestTimeout, ShuttingDown
from service.metrics import Metrics
from service.timers import delayed_calls


class Recorder:
    """A batch function that doubles numbers, records the batches it saw, and can be held shut."""

    def __init__(self, hold: bool = False):
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        if not hold:
            self.gate.set()

    def __call__(self, items: list[int]) -> list[int]:
        self.entered.set()
        assert self.gate.wait(5)
        self.batches.append(list(items))
        return [x * 2 for x in items]


async def wait_entered(rec: Recorder) -> None:
    while not rec.entered.is_set():
        await asyncio.sleep(0.001)


def make(fn, **kw) -> DynamicBatcher:
    kw.setdefault("max_batch_size", 8)
    kw.setdefault("max_queue_delay_ms", 0)
    kw.setdefault("max_queue_size", 100)
    return DynamicBatcher(fn, name="test", **kw)


def test_concurrent_items_are_grouped_and_answered_in_order():
    async def scenario():
        rec = Recorder(hold=True)
        b = make(rec, max_batch_size=8)
        await b.start()
        first = asyncio.create_task(b.submit(100))
        await wait_entered(rec)  # the worker is busy with [100]; the next items queue up
        rest = [asyncio.create_task(b.submit(i)) for i in range(10)]
        await asyncio.sleep(0.01)
        rec.gate.set()
        results = await asyncio.gather(first, *rest)
        await b.close()
        return rec.batches, results

    batches, results = asyncio.run(scenario())
    assert results == [200] + [2 * i for i in range(10)]
    assert batches[0] == [100]
    assert batches[1] == list(range(8))  # max_batch_size caps a batch, FIFO order kept
    assert batches[2] == [8, 9]


def test_submit_many_returns_results_in_input_order():
    async def scenario():
        b = make(Recorder(), max_batch_size=3)
        await b.start()
        out = await b.submit_many(list(range(10)))
        await b.close()
        return out

    assert asyncio.run(scenario()) == [2 * i for i in range(10)]


def test_idle_server_does_not_delay_a_lone_request():
    async def scenario():
        b = make(Recorder(), max_queue_delay_ms=1000)
        await b.start()
        t0 = time.perf_counter()
        await b.submit(1)
        t1 = time.perf_counter()
        await b.close()
        return t1 - t0

    assert asyncio.run(scenario()) < 0.5  # far below the 1 s queue delay


def test_under_load_the_batch_waits_up_to_the_queue_delay_to_fill():
    async def scenario():
        rec = Recorder()
        b = make(rec, max_batch_size=2, max_queue_delay_ms=5000)  # dispatched when full, long before 5 s
        await b.start()
        await b.submit_many([1, 2])  # a batch of 2: the server counts as under load
        first = asyncio.create_task(b.submit(3))
        await asyncio.sleep(0.05)  # well within the delay: joins the same batch
        second = asyncio.create_task(b.submit(4))
        await asyncio.gather(first, second)
        await b.close()
        return rec.batches

    assert asyncio.run(scenario())[-1] == [3, 4]


def test_timeout_fails_the_request_and_skips_its_queued_item():
    async def scenario():
        rec = Recorder(hold=True)
        b = make(rec)
        await b.start()
        busy = asyncio.create_task(b.submit(1))
        await wait_entered(rec)
        with pytest.raises(RequestTimeout) as info:
            await b.submit(2, timeout=0.05)
        rec.gate.set()
        await busy
        await b.submit(3)
        await b.close()
        return rec.batches, info.value

    batches, err = asyncio.run(scenario())
    assert err.status_code == 504
    assert [2] not in batches and all(2 not in batch for batch in batches)


def test_each_request_times_out_at_its_own_deadline_while_the_model_is_busy():
    async def scenario():
        rec = Recorder(hold=True)
        b = make(rec)
        await b.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        running = asyncio.create_task(b.submit(1, timeout=0.3))  # in the model call when it times out
        await wait_entered(rec)
        late = asyncio.create_task(b.submit(2, timeout=0.2))
        early = asyncio.create_task(b.submit(3, timeout=0.05))
        failed_at = {}
        for name, task in (("early", early), ("late", late), ("running", running)):
            with pytest.raises(RequestTimeout) as info:
                await task
            failed_at[name] = loop.time() - started
            assert info.value.limit == {"early": 0.05, "late": 0.2, "running": 0.3}[name]
        rec.gate.set()
        assert await b.submit(4, timeout=1) == 8  # the model serves on; the dropped results went nowhere
        await b.close()
        return failed_at, rec.batches

    failed_at, batches = asyncio.run(scenario())
    assert 0.05 <= failed_at["early"] < 0.15 and 0.2 <= failed_at["late"] < 0.3 <= failed_at["running"] < 0.4
    assert batches == [[1], [4]]  # the queued items that timed out were never computed


def test_deadlines_share_one_timer_and_answered_requests_are_let_go():
    async def scenario():
        loop = asyncio.get_running_loop()
        calls = delayed_calls(loop)
        b = make(Recorder())
        await b.start()
        scheduled = len(loop._scheduled)
        for i in range(50):
            assert await b.submit(i, timeout=10) == 2 * i
        timers = len(loop._scheduled) - scheduled
        tracked = sum(len(queue) for queue in calls._due.values())
        await b.close()
        return calls.armed, timers, tracked, calls.pending

    armed, timers, tracked, after_close = asyncio.run(scenario())
    assert armed and timers == 1 and tracked <= 1 and after_close == 0


def test_full_queue_rejects_at_once_with_retry_after():
    async def scenario():
        rec = Recorder(hold=True)
        b = make(rec, max_queue_size=3)
        await b.start()
        busy = asyncio.create_task(b.submit(0))
        await wait_entered(rec)
        queued = [asyncio.create_task(b.submit(i)) for i in range(1, 4)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull) as info:
            await b.submit(99)
        with pytest.raises(QueueFull):
            await b.submit_many([7, 8])  # all or nothing
        rec.gate.set()
        results = await asyncio.gather(busy, *queued)
        await b.close()
        return results, info.value

    results, err = asyncio.run(scenario())
    assert results == [0, 2, 4, 6]
    assert err.status_code == 503 and err.headers["Retry-After"].isdigit() and err.limit == 3


def test_a_failing_item_fails_only_its_own_request():
    def fn(items):
        return [ValueError(f"bad {x}") if x < 0 else x * 2 for x in items]

    async def scenario():
        b = make(fn)
        await b.start()
        out = await asyncio.gather(*(b.submit(x) for x in [1, -1, 2]), return_exceptions=True)
        await b.close()
        return out, b.stats

    out, stats = asyncio.run(scenario())
    assert out[0] == 2 and out[2] == 4
    assert isinstance(out[1], ValueError) and "bad -1" in str(out[1])
    assert stats["items_failed"] == 1


def test_a_batch_that_raises_is_retried_item_by_item():
    calls: list[list[int]] = []

    def fn(items):
        calls.append(list(items))
        if 13 in items:
            raise RuntimeError("poison")
        return [x + 1 for x in items]

    async def scenario():
        b = make(fn)
        await b.start()
        out = await asyncio.gather(b.submit_many([1, 13, 2]), b.submit(5), return_exceptions=True)
        await b.close()
        return out

    out = asyncio.run(scenario())
    assert isinstance(out[0], RuntimeError)  # the request holding the poisonous item fails
    assert out[1] == 6  # its neighbour in the batch does not
    assert [5] in calls


def test_close_drains_queued_and_in_flight_items_then_refuses_new_ones():
    async def scenario():
        rec = Recorder(hold=True)
        b = make(rec, max_batch_size=2)
        await b.start()
        tasks = [asyncio.create_task(b.submit(i)) for i in range(5)]
        await wait_entered(rec)
        closing = asyncio.create_task(b.close(drain=True))
        await asyncio.sleep(0.01)
        with pytest.raises(ShuttingDown):
            await b.submit(99)
        assert not closing.done()
        rec.gate.set()
        await closing
        return await asyncio.gather(*tasks)

    assert asyncio.run(scenario()) == [0, 2, 4, 6, 8]


def test_close_without_drain_fails_queued_items():
    async def scenario():
        rec = Recorder(hold=True)
        b = make(rec, max_batch_size=1)
        await b.start()
        tasks = [asyncio.create_task(b.submit(i)) for i in range(3)]
        await wait_entered(rec)
        closing = asyncio.create_task(b.close(drain=False))
        await asyncio.sleep(0.01)
        rec.gate.set()
        await closing
        return await asyncio.gather(*tasks, return_exceptions=True)

    out = asyncio.run(scenario())
    assert out[0] == 0  # in flight: finished
    assert all(isinstance(x, ShuttingDown) for x in out[1:])


def test_wrong_result_count_fails_the_batch():
    async def scenario():
        b = make(lambda items: items[:-1])
        await b.start()
        with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
            await b.submit(1)
        await b.close()

    asyncio.run(scenario())


def test_metrics_record_batches_queue_wait_and_inference():
    metrics = Metrics()

    async def scenario():
        b = make(Recorder(), metrics=metrics.for_model("m"))
        await b.start()
        await b.submit_many([1, 2, 3])
        await b.close()

    asyncio.run(scenario())
    get = metrics.registry.get_sample_value
    assert get("rnnserve_batch_size_count", {"model": "m"}) >= 1
    assert get("rnnserve_batch_size_sum", {"model": "m"}) == 3
    assert get("rnnserve_queue_wait_seconds_count", {"model": "m"}) == 3
    assert get("rnnserve_inference_seconds_count", {"model": "m"}) >= 1
    assert get("rnnserve_queue_depth", {"model": "m"}) == 0


def busy(seconds: float) -> None:
    """Spends ``seconds`` of the calling thread's CPU time (what decides where a batch runs)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class ThreadRecorder:
    """A batch function that records the thread each batch ran in and takes ``seconds`` of CPU per call."""

    def __init__(self, seconds: float = 0.0, fail_on: int | None = None):
        self.seconds, self.fail_on = seconds, fail_on
        self.calls: list[tuple[list[int], int]] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.calls.append((list(items), threading.get_ident()))
        if self.fail_on in items:
            raise RuntimeError("poison")
        busy(self.seconds)
        return [x * 2 for x in items]


def test_a_short_measured_batch_runs_on_the_event_loops_thread():
    async def scenario():
        rec = ThreadRecorder()
        b = make(rec, inline_max_s=0.05)
        await b.start()
        first = await b.submit(1)  # no call measured yet: the worker thread
        second = await b.submit_many([2, 3])
        await b.close()
        return rec, b.stats, first, second, threading.get_ident()

    rec, stats, first, second, loop_thread = asyncio.run(scenario())
    assert (first, second) == (2, [4, 6])
    assert rec.calls[0][1] != loop_thread and rec.calls[1] == ([2, 3], loop_thread)
    assert stats["inline_batches"] == 1 and stats["batches"] == 2


@pytest.mark.parametrize("inline_max_s", [0.0, 0.001])
def test_a_batch_longer_than_the_bound_or_with_inline_calls_off_runs_in_the_worker_thread(inline_max_s):
    async def scenario():
        rec = ThreadRecorder(seconds=0.005)
        b = make(rec, inline_max_s=inline_max_s)
        await b.start()
        for i in range(3):
            assert await b.submit(i) == 2 * i
        await b.close()
        return rec, b.stats, threading.get_ident()

    rec, stats, loop_thread = asyncio.run(scenario())
    assert len(rec.calls) == 3 and all(thread != loop_thread for _, thread in rec.calls)
    assert stats["inline_batches"] == 0


@pytest.mark.parametrize(("inline_max_s", "batches"), [(0.05, [[1, 2]]), (0.0, [[1], [2]])])
def test_an_inline_batch_takes_what_was_queued_after_it_was_formed(inline_max_s, batches):
    async def scenario():
        rec = ThreadRecorder()
        b = make(rec, inline_max_s=inline_max_s, max_batch_size=8)
        await b.start()
        await b.submit(0)  # measured

        async def one_step_later() -> int:
            await asyncio.sleep(0)  # runs just after the collector has taken item 1 as a batch
            return await b.submit(2)

        results = await asyncio.gather(b.submit(1), one_step_later())
        await b.close()
        return rec, results

    rec, results = asyncio.run(scenario())
    assert results == [2, 4]
    assert [items for items, _ in rec.calls[1:]] == batches


def test_what_decides_is_the_cpu_time_of_a_call_not_its_waits():
    """A call in the worker thread also waits for the GIL; that wait must not keep it off the event loop."""
    threads: list[int] = []

    def fn(items: list[int]) -> list[int]:
        threads.append(threading.get_ident())
        time.sleep(0.02)  # waiting, as for the GIL: wall time, no CPU time
        return items

    async def scenario():
        b = make(fn, inline_max_s=0.005)
        await b.start()
        for i in range(2):
            await b.submit(i)
        await b.close()
        return b.cost.batch_s(1), threading.get_ident()

    wall, loop_thread = asyncio.run(scenario())
    assert wall >= 0.02 and threads[0] != loop_thread and threads[1] == loop_thread


def test_an_inline_batch_grows_only_as_far_as_its_expected_time_stays_within_the_bound():
    def fn(items: list[int]) -> list[int]:
        calls.append(list(items))
        busy(0.004 * len(items))
        return items

    calls: list[list[int]] = []

    async def scenario():
        b = make(fn, inline_max_s=0.01, max_batch_size=8)
        await b.start()
        await b.submit(0)  # 4 ms an item: two items fit within 10 ms, four do not

        async def one_step_later(item: int) -> int:
            await asyncio.sleep(0)
            return await b.submit(item)

        await asyncio.gather(b.submit(1), *(one_step_later(i) for i in (2, 3, 4)))
        await b.close()
        return b.stats

    stats = asyncio.run(scenario())
    assert calls == [[0], [1, 2], [3, 4]] and stats["inline_batches"] == 2


def test_a_failing_inline_batch_is_retried_item_by_item_in_the_worker_thread():
    async def scenario():
        rec = ThreadRecorder(fail_on=13)
        b = make(rec, inline_max_s=0.05)
        await b.start()
        await b.submit(0)
        out = await asyncio.gather(b.submit(13), b.submit(5), return_exceptions=True)
        await b.close()
        return rec, out, threading.get_ident()

    rec, out, loop_thread = asyncio.run(scenario())
    assert isinstance(out[0], RuntimeError) and out[1] == 10
    assert rec.calls[1] == ([13, 5], loop_thread)
    assert [thread != loop_thread for _, thread in rec.calls[2:]] == [True, True]


@pytest.mark.parametrize(
    ("lengths", "ratio", "groups"),
    [
        ([5, 1, 3, 2], 2.0, [[1, 3], [2, 0]]),
        ([1, 3, 7, 20], 2.0, [[0], [1], [2], [3]]),
        ([4, 4, 4], 2.0, [[0, 1, 2]]),
        ([10, 1, 20], float("inf"), [[1, 0, 2]]),
        ([], 2.0, []),
    ],
)
def test_split_by_length_sorts_and_bounds_padding(lengths, ratio, groups):
    assert split_by_length(lengths, ratio) == groups
