"""Step-level (continuous) batching of generations, in the manner of text-generation-inference's router.

One decoding thread owns a :class:`DecodeBatch` (the active requests, their pending tokens, their
recurrent states and their samplers, all row-aligned). Each iteration it

1. drops requests whose client went away (their slot is free at once),
2. admits new requests: a prompt of at most ``step_prefill_max_tokens`` tokens joins the batch at once
   and is read through the shared steps, one token per step (a recurrent prompt is a sequence of steps
   anyway, and a row added to a running step costs far less than a batch-1 prefill call, which reads
   every weight once per character); longer prompts go to the prefill thread (one ``prefill`` call per
   length bucket, running alongside the steps, so a long prompt never stalls the batch),
3. runs **one** ``step`` call for every active request and concatenates the requests whose prefill has
   finished (a request joins at the next step, never waiting for a batch to end),
4. feeds the next prompt token to rows still reading their prompt, samples one token for every other
   request, applies the stopping criteria, and
5. filters out finished requests (they leave at once, never waiting for the longest one).

Results reach the event loop through one ``call_soon_threadsafe`` per iteration (or, in an inference
process, go over its pipe: ``publish``). Non-streaming requests are only told when they start and when
they finish; streaming ones receive every token.

The event-loop side (admission by expected wait, futures, waiting, delivery) is :class:`StepScheduler`,
shared by :class:`GenerationScheduler` (the decoding thread in this process) and
``service.remote_scheduler.RemoteScheduler`` (the same scheduler running in the inference process).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from service.batching import admission_refusal, split_by_length
from service.errors import InferenceError, QueueFull, RequestTimeout, ServiceError, ShuttingDown
from service.metrics import BatchMetrics
from service.priority import start_thread, thread_pool
from service.sampling import BatchChooser, NextTokenChooser, SamplingParams, StoppingCriteria
from service.watchdog import CallWatch

log = logging.getLogger(__name__)

#: a recurrent model's state: one ``[layers, B, hidden]`` array per state tensor, batch on axis 1
State = tuple[np.ndarray, ...]


class StepGraphs(Protocol):
    """What the scheduler drives: a model read token by token (a task's graphs implement it)."""

    def zero_state(self, batch: int) -> State:
        """The state before the first input."""

    def prefill(self, prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, State]:
        """Reads whole prompts at once: logits ``[B, V]`` after each prompt's last token, and the state."""

    def step(self, tokens: np.ndarray, states: State) -> tuple[np.ndarray, State]:
        """One token ``[B]`` per row: logits ``[B, V]`` and the next state."""


FINISHED = object()  # end-of-stream marker on a request's event queue


@dataclass(eq=False)
class GenerationRequest:
    """One generation; created on the event loop, advanced by the decoding thread."""

    prompt_ids: list[int]
    params: SamplingParams
    stream: bool = False
    fed: int = field(default=0, init=False)  # prompt tokens given to the model so far
    chooser: NextTokenChooser = field(init=False)
    stopping: StoppingCriteria = field(init=False)
    text_parts: list[str] = field(default_factory=list, init=False)
    finish_reason: str | None = field(default=None, init=False)
    cancelled: bool = field(default=False, init=False)
    enqueued: float = field(default_factory=time.perf_counter, init=False)
    first_token_at: float | None = field(default=None, init=False)
    # event-loop side
    started: asyncio.Future | None = field(default=None, init=False)
    done: asyncio.Future | None = field(default=None, init=False)
    events: asyncio.Queue | None = field(default=None, init=False)
    #: called once by ``cancel`` (a scheduler in another process is told through it)
    on_cancel: Callable[[], None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.chooser = NextTokenChooser(self.params)
        self.stopping = StoppingCriteria(self.params.max_new_tokens, self.params.stop)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def tokens(self) -> int:
        return self.stopping.generated

    def cancel(self) -> None:
        """The client is gone: the decoding thread drops the request before its next step."""
        if self.cancelled:
            return
        self.cancelled = True
        if self.on_cancel is not None:
            self.on_cancel()


@dataclass
class DecodeBatch:
    """Row-aligned state of the active requests: ``tokens[b]`` is request ``b``'s next input."""

    requests: list[GenerationRequest]
    tokens: np.ndarray
    states: State
    chooser: BatchChooser

    def __len__(self) -> int:
        return len(self.requests)

    def filter(self, keep: Sequence[int]) -> DecodeBatch:
        index = np.asarray(keep, dtype=np.int64)
        return DecodeBatch(
            [self.requests[i] for i in keep],
            self.tokens[index],
            tuple(np.ascontiguousarray(s[:, index]) for s in self.states),
            self.chooser.filter(keep),
        )

    def concatenate(self, other: DecodeBatch) -> DecodeBatch:
        return DecodeBatch(
            self.requests + other.requests,
            np.concatenate([self.tokens, other.tokens]),
            tuple(np.concatenate([a, b], axis=1) for a, b in zip(self.states, other.states, strict=True)),
            self.chooser.concatenate(other.chooser),
        )


# One iteration's news for the event loop: (request, new text, finished, error).
Update = tuple[GenerationRequest, str, bool, BaseException | None]


class StepScheduler(abc.ABC):
    """The event-loop side of step-level batching: admission by expected wait, the requests' futures,
    waiting for them. Where the steps run (a thread here, or the inference process) is the subclass's."""

    def __init__(
        self, *, name: str, max_batch_size: int, max_queue_size: int, max_queue_wait_s: float
    ) -> None:
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_queue_size = max_queue_size
        self.max_queue_wait_s = max_queue_wait_s
        self.generation_s = 0.0  # moving average of a generation's duration (0 until one finishes)

    @property
    @abc.abstractmethod
    def queue_depth(self) -> int:
        """Requests admitted that have no slot yet."""

    @property
    @abc.abstractmethod
    def active(self) -> int:
        """Requests being generated now."""

    @property
    @abc.abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters for ``/models``: steps, prefills, tokens, requests, cancelled, largest batch."""

    @abc.abstractmethod
    def start(self) -> None:
        """On the event loop, before the first request."""

    @abc.abstractmethod
    async def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stops admitting; with ``drain`` finishes waiting and running generations first."""

    @abc.abstractmethod
    def fault(self) -> str | None:
        """Why the steps cannot run now (a stuck graph call), else None."""

    @abc.abstractmethod
    def _unavailable(self) -> ServiceError | None:
        """The 503 for a request submitted now for a reason other than room (closing, stalled)."""

    @abc.abstractmethod
    def enqueue(self, requests: list[GenerationRequest]) -> None:
        """Hands requests to the steps, together (they join the same step), with no admission check:
        ``submit_many`` has made it."""

    def _observe_duration(self, seconds: float) -> None:
        """A finished generation's time from its first token (a moving average of about 20)."""
        d = self.generation_s
        self.generation_s = seconds if not d else 0.95 * d + 0.05 * seconds

    def expected_wait_s(self) -> float:
        """Until a new request would get a slot: nothing while slots are free, else one average
        generation per ``max_batch_size`` requests ahead of it."""
        waiting = self.queue_depth
        if self.active + waiting < self.max_batch_size:
            return 0.0
        return (1 + waiting // self.max_batch_size) * self.generation_s

    def refusal(self, count: int = 1) -> QueueFull | None:
        """The 503 that ``count`` new requests would get now for lack of room (a full queue, or a wait for
        a slot beyond the bound)."""
        full = self.queue_depth + count > self.max_queue_size
        return admission_refusal(
            self.name, full, self.max_queue_size, self.expected_wait_s(), self.max_queue_wait_s, "requests"
        )

    def submit(self, request: GenerationRequest) -> GenerationRequest:
        self.submit_many([request])
        return request

    def submit_many(self, requests: list[GenerationRequest]) -> None:
        """Admits every request or none, in one admission: they run as rows of the same step batch."""
        refusal = self._unavailable() or self.refusal(len(requests))
        if refusal is not None:
            raise refusal
        loop = asyncio.get_running_loop()
        for request in requests:
            request.started, request.done = loop.create_future(), loop.create_future()
            if request.stream:
                request.events = asyncio.Queue()
        self.enqueue(requests)

    async def wait_started(self, request: GenerationRequest, timeout: float | None) -> None:
        """Waits for the first token; past ``timeout`` in the queue the request is withdrawn (504)."""
        try:
            await asyncio.wait_for(asyncio.shield(request.started), timeout)
        except TimeoutError:
            request.cancel()
            raise RequestTimeout(
                f"generation did not start within {timeout:g} s (all slots busy)", limit=timeout
            ) from None

    async def generate(self, request: GenerationRequest, timeout: float | None = None) -> GenerationRequest:
        """Submits and waits for the whole generation; cancelling the caller frees the slot."""
        self.submit(request)
        try:
            await self.wait_started(request, timeout)
            await asyncio.shield(request.done)
        finally:
            if not request.done.done():
                request.cancel()
        return request


class GenerationScheduler(StepScheduler):
    """The steps in a decoding thread of this process. ``publish`` receives each iteration's updates in
    that thread (default: delivered on the event loop that called ``start``)."""

    def __init__(
        self,
        graphs: StepGraphs,
        vocab_text: Sequence[str],
        *,
        name: str,
        max_batch_size: int = 64,
        max_queue_size: int = 1024,
        max_queue_wait_s: float = float("inf"),
        bucket_ratio: float = 2.0,
        step_prefill_max_tokens: int = 64,
        banned_ids: Sequence[int] = (),
        metrics: BatchMetrics | None = None,
        stall_after_s: float = float("inf"),
        publish: Callable[[list[Update]], None] | None = None,
    ):
        super().__init__(
            name=name,
            max_batch_size=max_batch_size,
            max_queue_size=max_queue_size,
            max_queue_wait_s=max_queue_wait_s,
        )
        self.graphs = graphs
        self._vocab_text = list(vocab_text)  # token id -> the text it adds ("" for special tokens)
        self.bucket_ratio = bucket_ratio
        self.step_prefill_max_tokens = step_prefill_max_tokens
        self.banned_ids = list(banned_ids)
        self.metrics = metrics
        self.watch = CallWatch(name, stall_after_s)  # a stuck graph call makes the model unready
        self._publish_to = publish
        self._pending: deque[GenerationRequest] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._drain = True
        self._thread: threading.Thread | None = None
        self._prefill_executor: ThreadPoolExecutor | None = None
        self._active = 0
        self._stats = {
            "steps": 0,
            "prefills": 0,
            "prompt_tokens_in_steps": 0,
            "tokens": 0,
            "requests": 0,
            "cancelled": 0,
            "max_batch": 0,
        }

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def active(self) -> int:
        return self._active

    @property
    def stats(self) -> dict[str, int]:
        return self._stats

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        if self._publish_to is None:
            loop = asyncio.get_running_loop()
            self._publish_to = functools.partial(call_soon_threadsafe, loop, deliver)
        self._prefill_executor = thread_pool(f"prefill-{self.name}")
        self._thread = threading.Thread(target=self._run, name=f"generate-{self.name}", daemon=True)
        start_thread(self._thread)

    async def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stops admitting; with ``drain`` finishes waiting and running generations first."""
        with self._cond:
            self._closing, self._drain = True, drain
            self._cond.notify()
        if self._thread is None:
            return
        await asyncio.to_thread(self._thread.join, timeout)
        if self._thread.is_alive():
            log.warning("generation %s: drain timed out; cancelling what is left", self.name)
            with self._cond:
                self._drain = False
                self._cond.notify()
            await asyncio.to_thread(self._thread.join, 5)
        self._prefill_executor.shutdown(wait=False, cancel_futures=True)

    def fault(self) -> str | None:
        return self.watch.fault()

    # -- admission (event loop) ------------------------------------------------------------------
    def _unavailable(self) -> ServiceError | None:
        if self._closing or self._thread is None:
            return ShuttingDown(f"model {self.name} is not accepting requests")
        return self.watch.refusal()

    def enqueue(self, requests: list[GenerationRequest]) -> None:
        with self._cond:  # one hold: the decoding thread takes them together
            self._pending.extend(requests)
            self._cond.notify()
        if self.metrics:
            self.metrics.queue_depth.set(len(self._pending))

    # -- decoding thread -------------------------------------------------------------------------
    def _run(self) -> None:
        batch: DecodeBatch | None = None
        prefilling: list[tuple[list[GenerationRequest], Future]] = []
        while True:
            with self._cond:
                while not (
                    self._pending
                    or batch is not None
                    or any(f.done() for _, f in prefilling)
                    or self._closing
                ):
                    self._cond.wait()
                if self._closing and not self._drain:
                    self._abandon(batch, [r for group, _ in prefilling for r in group])
                    return
                if self._closing and not (self._pending or batch is not None or prefilling):
                    return
                busy = (len(batch) if batch else 0) + sum(len(group) for group, _ in prefilling)
                joining = []
                while self._pending and len(joining) < self.max_batch_size - busy:
                    request = self._pending.popleft()
                    if not request.cancelled:
                        joining.append(request)
                    else:
                        self._stats["cancelled"] += 1
            if self.metrics:
                self.metrics.queue_depth.set(len(self._pending))
            try:  # a failure while admitting fails the requests joining, never the thread
                self._admitted(joining)
                limit = self.step_prefill_max_tokens
                fresh = self._fresh_batch([r for r in joining if len(r.prompt_ids) <= limit])
                prefilling += self._start_prefill([r for r in joining if len(r.prompt_ids) > limit])
            except Exception as exc:
                log.exception("model %s: admitting %d generations failed", self.name, len(joining))
                self._fail(joining, exc)
                continue
            ready = [(group, f) for group, f in prefilling if f.done()]
            prefilling = [(group, f) for group, f in prefilling if not f.done()]
            joined = []
            for group, future in ready:
                if future.exception() is not None:
                    self._fail(group, future.exception())
                else:
                    joined.append(future.result())
            if batch is None and fresh is None and not joined:
                continue
            try:
                batch = self._iterate(batch, fresh, joined)
            except Exception as exc:  # an ORT failure fails the requests it touched, not the thread
                failed = (batch.requests if batch else []) + (fresh.requests if fresh else [])
                failed += [r for _, b in joined for r in b.requests]
                self._fail(failed, exc)
                batch, self._active = None, 0

    def _fail(self, requests: list[GenerationRequest], exc: BaseException) -> None:
        log.error("generation %s: model call failed: %r", self.name, exc)
        error = InferenceError(f"generation failed: {type(exc).__name__}")
        self._publish([(r, "", True, error) for r in requests])

    def _admitted(self, joining: list[GenerationRequest]) -> None:
        self._stats["requests"] += len(joining)
        if self.metrics:
            now = time.perf_counter()
            for r in joining:
                self.metrics.queue_wait.observe(now - r.enqueued)

    def _fresh_batch(self, requests: list[GenerationRequest]) -> DecodeBatch | None:
        """Requests that read their prompt through the shared steps: zero state, first prompt token next."""
        if not requests:
            return None
        for r in requests:
            r.fed = 1
        chooser = BatchChooser([r.chooser for r in requests], self.banned_ids)
        tokens = np.array([r.prompt_ids[0] for r in requests], dtype=np.int64)
        return DecodeBatch(requests, tokens, self.graphs.zero_state(len(requests)), chooser)

    def _start_prefill(
        self, joining: list[GenerationRequest]
    ) -> list[tuple[list[GenerationRequest], Future]]:
        """Prefills run in their own thread, overlapping the running batch's steps (a prompt is a sequence
        of recurrent steps; in line they would stall every active request for that long). One call per
        length bucket; the requests join the batch at the first step after their prefill finished."""
        started = []
        for group in split_by_length([len(r.prompt_ids) for r in joining], self.bucket_ratio):
            requests = [joining[i] for i in group]
            future = self._prefill_executor.submit(self._prefill, requests)
            future.add_done_callback(self._wake)
            started.append((requests, future))
        return started

    def _wake(self, _future: Future) -> None:
        with self._cond:
            self._cond.notify()

    def _prefill(self, requests: list[GenerationRequest]) -> tuple[np.ndarray, DecodeBatch]:
        with self.watch.timing():
            logits, states = self.graphs.prefill([r.prompt_ids for r in requests])
        for r in requests:
            r.fed = len(r.prompt_ids)
        self._stats["prefills"] += 1
        chooser = BatchChooser([r.chooser for r in requests], self.banned_ids)
        tokens = np.zeros(len(requests), dtype=np.int64)
        return logits, DecodeBatch(requests, tokens, states, chooser)

    def _iterate(
        self,
        batch: DecodeBatch | None,
        fresh: DecodeBatch | None,
        joined: list[tuple[np.ndarray, DecodeBatch]],
    ) -> DecodeBatch | None:
        """One step of the running batch, the newcomers that read their prompt in the steps (``fresh``)
        and, after it, the prefilled newcomers (``joined``); returns the batch still running."""
        started = time.perf_counter()
        batch, logits = self._step(batch, fresh, joined)
        if batch is None:
            self._active = 0
            return None
        rows, reading = self._next_tokens(batch, logits)
        keep, updates = self._advance(batch, rows, reading)
        self._stats["tokens"] += len(rows)
        self._stats["max_batch"] = max(self._stats["max_batch"], len(batch))
        self._active = len(keep)
        if self.metrics:
            self.metrics.batch_size.observe(len(batch))
            self.metrics.inference_time.observe(time.perf_counter() - started)
        if updates:
            self._publish(updates)
        if len(keep) == len(batch):
            return batch
        return batch.filter(sorted(keep)) if keep else None

    def _step(
        self,
        batch: DecodeBatch | None,
        fresh: DecodeBatch | None,
        joined: list[tuple[np.ndarray, DecodeBatch]],
    ) -> tuple[DecodeBatch | None, np.ndarray | None]:
        """The batch of this step (cancelled rows out, ``fresh`` in), run through the step graph, with the
        prefilled ``joined`` after it; its rows' logits in the same order."""
        if batch is not None:
            alive = [i for i, r in enumerate(batch.requests) if not r.cancelled]
            if len(alive) < len(batch):
                self._stats["cancelled"] += len(batch) - len(alive)
                batch = batch.filter(alive) if alive else None
        if fresh is not None:
            batch = fresh if batch is None else batch.concatenate(fresh)
        logits_parts = []
        if batch is not None:
            with self.watch.timing():
                logits, states = self.graphs.step(batch.tokens, batch.states)
            batch.states = states
            logits_parts.append(logits)
            self._stats["steps"] += 1
        for logits, new in joined:
            logits_parts.append(logits)
            batch = new if batch is None else batch.concatenate(new)
        if batch is None:
            return None, None
        return batch, logits_parts[0] if len(logits_parts) == 1 else np.concatenate(logits_parts)

    def _next_tokens(self, batch: DecodeBatch, logits: np.ndarray) -> tuple[Sequence[int], list[int]]:
        """Sets each row's next input token: the next prompt token for rows still reading their prompt,
        a sampled one for the others. Returns the sampled rows and the reading ones."""
        requests = batch.requests
        reading = [row for row, r in enumerate(requests) if r.fed < len(r.prompt_ids)]
        if not reading:
            batch.tokens = batch.chooser(logits)
            return range(len(batch)), reading
        sampled = np.ones(len(batch), dtype=bool)
        sampled[reading] = False
        sampled_rows = np.flatnonzero(sampled)
        tokens = batch.tokens.copy()
        for row in reading:
            request = requests[row]
            tokens[row] = request.prompt_ids[request.fed]
            request.fed += 1
        tokens[sampled_rows] = batch.chooser(logits, sampled_rows)
        batch.tokens = tokens
        self._stats["prompt_tokens_in_steps"] += len(reading)
        return sampled_rows.tolist(), reading

    def _advance(
        self, batch: DecodeBatch, rows: Sequence[int], reading: list[int]
    ) -> tuple[list[int], list[Update]]:
        """Appends the sampled rows' tokens to their texts. Returns the rows that go on, and the updates
        their requests wait for (every token of a stream, the first of any, the end)."""
        requests = batch.requests
        updates: list[Update] = []
        keep = reading  # rows reading their prompt always stay
        now = time.perf_counter()
        vocab_text = self._vocab_text
        token_list = batch.tokens.tolist()
        for row in rows:
            request = requests[row]
            text = vocab_text[token_list[row]]
            request.text_parts.append(text)
            reason = request.stopping(text)
            first = request.first_token_at is None
            if first:
                request.first_token_at = now
            if reason is not None:
                request.finish_reason = reason
                updates.append((request, text, True, None))
                self._observe_duration(now - request.first_token_at)
            else:
                keep.append(row)
                if request.stream or first:
                    updates.append((request, text, False, None))
        return keep, updates

    def _abandon(self, batch: DecodeBatch | None, prefilling: list[GenerationRequest]) -> None:
        left = (batch.requests if batch else []) + prefilling + list(self._pending)
        self._pending.clear()
        error = ShuttingDown(f"model {self.name} is shutting down")
        self._publish([(r, "", True, error) for r in left])

    def _publish(self, updates: list[Update]) -> None:
        if self._publish_to is not None:
            self._publish_to(updates)


def call_soon_threadsafe(
    loop: asyncio.AbstractEventLoop | None, fn: Callable[..., None], *args: object
) -> None:
    """``fn(*args)`` on ``loop`` from another thread; nothing once the loop has closed (nobody listens)."""
    if loop is not None and not loop.is_closed():
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(fn, *args)


def deliver(updates: list[Update]) -> None:
    """Runs on the event loop: resolves futures and feeds streaming queues."""
    for request, text, finished, error in updates:
        if error is not None:
            for future in (request.started, request.done):
                if future is not None and not future.done():
                    future.set_exception(error)
                    future.exception()  # mark retrieved: a cancelled caller may never look
        else:
            if not request.started.done():
                request.started.set_result(None)
            if finished and not request.done.done():
                request.done.set_result(request)
        if request.events is not None:
            request.events.put_nowait(error if error is not None else text)
            if finished:
                request.events.put_nowait(FINISHED)
