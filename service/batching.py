"""A generic asyncio dynamic batcher: callers submit single items, a worker thread sees lists.

Usage (any task)::

    batcher = DynamicBatcher(predict, name="sentiment-lstm", max_batch_size=64,
                             max_queue_delay_ms=0, max_queue_size=1024)
    await batcher.start()
    result = await batcher.submit(item, timeout=10)         # one item
    results = await batcher.submit_many(items, timeout=10)  # several, all-or-nothing
    await batcher.close()                                   # drains queued and in-flight items

``predict(items: list[T]) -> Sequence[R | BaseException]`` runs in a worker thread (short calls: on the
event loop's, below) and returns one entry per item, in order; an exception in a slot fails only that
item's caller. If ``predict`` raises as a whole for a batch of several items, every item is retried alone
so a single poisonous input cannot fail its neighbours.

Scheduling (Triton's knob names, Ray Serve's simplicity): while a worker is free the collector takes
every queued item up to ``max_batch_size`` and dispatches them at once. While the worker is busy, new
items accumulate, which is where the batching comes from. With ``max_queue_delay_ms`` above 0 (default 0,
as Triton's), when the previous batch held several items (the server is under load) the collector waits
up to that long after the oldest queued item for the batch to fill; a lone request on an idle server is
never delayed. Against clients that wait for each answer before sending again the wait mostly idles the
model: the batch cannot grow past the requests outstanding (docs/experiments.md, "Waiting for a batch to
fill").

Admission is by time: the batcher measures the model's time by batch size (``service.batch_cost``) and
admits a request only if the items ahead of it are expected to clear within ``max_queue_wait_s`` and the
queue stays within ``max_queue_size``; otherwise ``QueueFull`` (503 with a ``Retry-After`` of the expected
wait) is raised at once, before anything is queued. ``refusal()`` answers the same question before a
request is parsed, so a server can refuse without reading the body. Items whose caller has gone (timeout,
cancellation, client disconnect) are dropped from the queue instead of computed.

A model call running longer than ``stall_after_s`` is a stall (``service.watchdog``): the items queued
behind it fail at once with 503, and new requests are refused with 503 until the call returns.

Short calls run on the event loop's own thread: a batch whose calls of its size have taken at most
``inline_max_s`` of CPU time (``service.batch_cost``) is called right there, with whatever was queued
meanwhile added to it. Handing a batch to the worker thread and its results back costs two thread
wake-ups and GIL hand-offs, which for a call of a millisecond is a large share of it; with one serving
process per core there is no idle core for the worker thread to use meanwhile (docs/experiments.md,
"Short model calls on the event loop's thread"). Longer calls, unmeasured ones, and the item-by-item
retry of a failed batch stay in the worker thread, under the stall watch, with the event loop free.

Step-level batching (generation) needs a different loop, but can reuse ``split_by_length`` and the
``BatchMetrics`` hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from service.batch_cost import BatchCostModel
from service.errors import QueueFull, RequestTimeout, ShuttingDown
from service.metrics import BatchMetrics
from service.priority import thread_pool
from service.timers import delayed_calls
from service.watchdog import CallWatch

T = TypeVar("T")
R = TypeVar("R")
BatchFn = Callable[[list[T]], Sequence[Any]]

log = logging.getLogger(__name__)


def split_by_length(lengths: Sequence[int], ratio: float = 2.0) -> list[list[int]]:
    """Groups item indices, shortest first, so no group's longest item exceeds ``ratio`` × its shortest.

    Used by batch functions to limit padding: each group becomes one model call. ``ratio=inf`` keeps a
    single (sorted) group.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] <= ratio * max(1, lengths[groups[-1][0]]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def admission_refusal(
    name: str, full: bool, max_queue_size: int, expected_wait_s: float, max_wait_s: float, unit: str
) -> QueueFull | None:
    """The 503 (with a ``Retry-After`` of the expected wait) for a full queue or a wait beyond
    ``max_wait_s``; None when a request can be admitted. Shared by the batcher and the step scheduler."""
    if full:
        reason = f"queue of {name} is full ({max_queue_size} {unit})"
    elif expected_wait_s > max_wait_s:
        reason = (
            f"{name} is overloaded: the work ahead is expected to take {expected_wait_s:.2f} s, "
            f"beyond the {max_wait_s:g} s a request may wait"
        )
    else:
        return None
    retry_after = max(1, math.ceil(expected_wait_s))
    return QueueFull(reason, limit=max_queue_size, headers={"Retry-After": str(retry_after)})


def _expire(pending: list[_Pending], timeout: float) -> None:
    """A request's deadline has passed: its items fail with ``RequestTimeout`` (queued ones are then
    skipped, running ones' results dropped)."""
    for p in pending:
        if not p.future.done():
            p.future.set_exception(
                RequestTimeout(f"request did not finish within {timeout:g} s", limit=timeout)
            )


@dataclass(eq=False)
class _Pending:
    item: Any
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher(Generic[T, R]):
    def __init__(
        self,
        fn: BatchFn,
        *,
        name: str,
        max_batch_size: int = 64,
        max_queue_delay_ms: float = 0.0,
        max_queue_size: int = 1024,
        metrics: BatchMetrics | None = None,
        max_queue_wait_s: float = float("inf"),
        stall_after_s: float = float("inf"),
        inline_max_s: float = 0.0,
    ):
        if max_batch_size < 1 or max_queue_size < 1:
            raise ValueError("max_batch_size and max_queue_size must be >= 1")
        self.fn = fn
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay_ms / 1000.0
        self.max_queue_size = max_queue_size
        self.metrics = metrics
        self.max_queue_wait_s = max_queue_wait_s
        self.inline_max_s = inline_max_s
        self.watch = CallWatch(name, stall_after_s)
        self.cost = BatchCostModel(max_batch_size)  # model time by batch size, as measured
        # the CPU time of the calling thread, which decides what runs on the event loop's thread: a call in
        # the worker thread also waits for the GIL, and its wall time would keep it there
        self.call_cpu = BatchCostModel(max_batch_size)
        self._batch_started = 0.0
        self._queue: deque[_Pending] = deque()
        self._in_flight = 0
        self._under_load = False
        self._closing = False
        self._wakeup: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._collector: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._executor: ThreadPoolExecutor | None = None
        self.stats = {"batches": 0, "items": 0, "items_failed": 0, "inline_batches": 0}

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._collector is not None:
            return
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._slots = asyncio.Semaphore(1)  # one batch at a time: the next one fills meanwhile
        self._executor = thread_pool(f"batch-{self.name}")
        self._collector = asyncio.create_task(self._collect(), name=f"batcher-{self.name}")

    async def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stops accepting items; with ``drain`` finishes queued and in-flight ones first."""
        self._closing = True
        if self._collector is None:
            return
        if not drain:
            self._fail_queued(ShuttingDown(f"model {self.name} is shutting down"))
        self._wakeup.set()
        try:
            await asyncio.wait_for(self._wait_idle(), timeout)
        except TimeoutError:
            log.warning("batcher %s: drain timed out, failing %d queued items", self.name, len(self._queue))
            self._fail_queued(ShuttingDown(f"model {self.name} is shutting down"))
        self._collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._collector
        self._executor.shutdown(wait=False)  # idle after a drain; never block the event loop on a stray batch

    async def _wait_idle(self) -> None:
        while self._queue or self._in_flight:
            self._idle.clear()
            await self._idle.wait()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def closed(self) -> bool:
        return self._closing

    # -- admission -------------------------------------------------------------------------------
    def expected_wait_s(self, extra_items: int = 0) -> float:
        """How long the batch running and the items queued (plus ``extra_items``) are expected to take."""
        wait = 0.0
        if self._in_flight:
            elapsed = time.perf_counter() - self._batch_started
            wait = max(0.0, self.cost.batch_s(self._in_flight) - elapsed)
        return wait + self.cost.queue_s(len(self._queue) + extra_items)

    def refusal(self, items: int = 1) -> QueueFull | None:
        """The 503 a request of ``items`` would get now for lack of room (a full queue, a wait beyond the
        bound), or None if it would be admitted. (A stalled model is refused at submission.)"""
        full = len(self._queue) + items > self.max_queue_size
        return admission_refusal(
            self.name, full, self.max_queue_size, self.expected_wait_s(), self.max_queue_wait_s, "items"
        )

    # -- submission ------------------------------------------------------------------------------
    async def submit(self, item: T, timeout: float | None = None) -> R:
        return (await self.submit_many([item], timeout))[0]

    async def submit_many(self, items: Sequence[T], timeout: float | None = None) -> list[R]:
        """Queues all items or none; returns their results in order, or raises the first item error."""
        if self._closing or self._collector is None:
            raise ShuttingDown(f"model {self.name} is not accepting requests")
        refusal = self.watch.refusal() or self.refusal(len(items))
        if refusal is not None:
            raise refusal
        loop = asyncio.get_running_loop()
        pending = [_Pending(item, loop.create_future()) for item in items]
        self._queue.extend(pending)
        self._idle.clear()
        if self.metrics:
            self.metrics.queue_depth.set(len(self._queue))
        self._wakeup.set()
        # the deadline: one timer per event loop for all requests (``asyncio.timeout`` costs ~4 µs each)
        expiry = None
        if timeout is not None:
            expiry = delayed_calls(loop).add(loop, timeout, functools.partial(_expire, pending, timeout))
        try:
            if len(pending) == 1:  # the common case, without gather's extra future
                return [await pending[0].future]
            return await asyncio.gather(*(p.future for p in pending))
        finally:
            if expiry is not None:
                expiry[1] = None
            for p in pending:  # a failed sibling or a timeout: unqueued siblings are skipped
                if not p.future.done():
                    p.future.cancel()

    # -- collection and execution ----------------------------------------------------------------
    def _take(self, limit: int) -> list[_Pending]:
        batch: list[_Pending] = []
        while self._queue and len(batch) < limit:
            p = self._queue.popleft()
            if not p.future.done():  # timed out or cancelled while queued
                batch.append(p)
        if self.metrics:
            self.metrics.queue_depth.set(len(self._queue))
        return batch

    async def _next_item(self) -> bool:
        while not self._queue:
            if self._closing:
                return False
            self._wakeup.clear()
            await self._wakeup.wait()
        return True

    async def _collect(self) -> None:
        while True:
            await self._slots.acquire()
            if not await self._next_item():
                self._slots.release()
                self._idle.set()
                return
            batch = self._take(self.max_batch_size)
            if self._under_load and self.max_queue_delay > 0 and batch:
                deadline = batch[0].enqueued + self.max_queue_delay
                while len(batch) < self.max_batch_size and not self._closing:
                    if self._queue:
                        batch += self._take(self.max_batch_size - len(batch))
                        continue
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    self._wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), remaining)
            if not batch:
                self._slots.release()
                self._signal_if_idle()
                continue
            self._under_load = len(batch) > 1 or bool(self._queue)
            self._in_flight += len(batch)
            self._batch_started = time.perf_counter()
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _runs_inline(self, items: int) -> bool:
        """Whether a batch of ``items`` is expected (from the CPU time measured for its size) to be short
        enough to run on the event loop's thread; unmeasured batches run in the worker thread."""
        return self.inline_max_s > 0 and 0.0 < self.call_cpu.batch_s(items) <= self.inline_max_s

    async def _run(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        inline = self._runs_inline(len(batch))
        if inline:  # what was queued since the collector took the batch joins it, as far as it stays short
            extra = min(self.max_batch_size - len(batch), len(self._queue))
            while extra and not self._runs_inline(len(batch) + extra):
                extra //= 2
            more = self._take(extra)
            batch += more
            self._in_flight += len(more)
            self.stats["inline_batches"] += 1
        items = [p.item for p in batch]
        started = time.perf_counter()
        self.stats["batches"] += 1
        self.stats["items"] += len(batch)
        if self.metrics:
            self.metrics.batch_size.observe(len(batch))
            for p in batch:
                self.metrics.queue_wait.observe(started - p.enqueued)
        try:
            try:
                if inline:
                    results = self._call(items)
                else:
                    results = await self._watched(loop.run_in_executor(self._executor, self._call, items))
            except Exception as exc:
                if len(items) == 1:
                    results = [exc]
                else:
                    log.warning(
                        "batcher %s: batch of %d failed (%s); retrying items alone",
                        self.name,
                        len(items),
                        exc,
                    )
                    results = await self._watched(
                        loop.run_in_executor(self._executor, self._call_each, items)
                    )
            for p, result in zip(batch, results, strict=True):
                if p.future.done():
                    continue
                if isinstance(result, BaseException):
                    self.stats["items_failed"] += 1
                    if self.metrics:
                        self.metrics.items_failed.inc()
                    p.future.set_exception(result)
                else:
                    p.future.set_result(result)
        finally:
            self._in_flight -= len(batch)
            self._slots.release()
            self._signal_if_idle()

    async def _watched(self, call: asyncio.Future) -> Any:
        """Awaits a model call; once it runs past ``stall_after_s`` the items queued behind it fail at
        once (503) rather than each at its own deadline, and new requests are refused until it returns."""
        stall_after = self.watch.stall_after_s
        if not math.isfinite(stall_after):
            return await call
        # one timer per batch, cancelled when the call returns (cheaper than ``asyncio.wait``)
        timer = asyncio.get_running_loop().call_later(stall_after, self._stalled, stall_after)
        try:
            return await call
        finally:
            timer.cancel()

    def _stalled(self, stall_after: float) -> None:
        log.error(
            "batcher %s: a model call has been running for more than %g s; model unready until it"
            " returns, failing %d queued items",
            self.name,
            stall_after,
            len(self._queue),
        )
        self._fail_queued(
            self.watch.unavailable(f"a model call has been running for more than {stall_after:g} s")
        )

    def _signal_if_idle(self) -> None:
        if not self._queue and not self._in_flight:
            self._idle.set()

    def _call(self, items: list[Any]) -> Sequence[Any]:
        started, cpu = time.perf_counter(), time.thread_time()
        with self.watch.timing():
            results = self.fn(items)
        elapsed = time.perf_counter() - started
        self.cost.observe(len(items), elapsed)
        self.call_cpu.observe(len(items), time.thread_time() - cpu)
        if self.metrics:
            self.metrics.inference_time.observe(elapsed)
        if len(results) != len(items):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
        return results

    def _call_each(self, items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            try:
                out.append(self._call([item])[0])
            except Exception as exc:
                out.append(exc)
        return out

    def _fail_queued(self, exc: Exception) -> None:
        while self._queue:
            p = self._queue.popleft()
            if not p.future.done():
                p.future.set_exception(exc)
        if self.metrics:
            self.metrics.queue_depth.set(0)
        self._signal_if_idle()
