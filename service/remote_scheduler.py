"""Generation's step scheduler in the inference process, and its event-loop side in the serving process.

With ``RNNSERVE_INFERENCE_PROCESS`` a generation model's decoding thread (steps, sampling, stopping,
detokenization) runs in the inference process, with the GIL of that process: a serving process whose event
loop is busy refusing a retry storm holds its own GIL, not the one the steps need between two ONNX Runtime
calls. Both ends of the pipe are here:

* :class:`RemoteScheduler` (serving process): the same admission, futures and streaming as a local
  scheduler (``service.scheduler.StepScheduler``). It counts the requests it has handed over and those
  that have started, so admission by expected wait needs no round trip; requests cross the pipe in one
  message per admission, cancellations in one per request.
* :class:`HostedScheduler` (inference process): the model's ``GenerationScheduler``, whose updates go back
  over the pipe, one message per iteration that has news (a non-streaming request has news when it starts
  and when it finishes). Its statistics, stall state and metric observations follow every half second.

Wire format: ``gen_submit (key, [(id, prompt_ids, params, stream)])``, ``gen_cancel (key, [id])``,
``gen_close (key, drain, timeout)`` one way; ``gen (key, [(id, text, finished, error, final)])`` with
``final = (text, finish_reason, tokens)`` on a request's last update, and ``gen_stats (key, stats, metric
records, fault)`` the other.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from service.errors import ServiceError, ShuttingDown
from service.metrics import BatchMetrics
from service.scheduler import GenerationRequest, StepScheduler, Update, call_soon_threadsafe, deliver
from service.watchdog import CallWatch

if TYPE_CHECKING:
    from service.inference_process import RemoteModel
    from service.serving import ScheduledModel

log = logging.getLogger(__name__)

#: (id, text, finished, error, (text, finish_reason, tokens) on the last update else None)
WireUpdate = tuple[int, str, bool, BaseException | None, tuple[str, str | None, int] | None]
#: (metric attribute of ``BatchMetrics``, method, value)
MetricRecord = tuple[str, str, float]

STATS_INTERVAL_S = 0.5


class RemoteScheduler(StepScheduler):
    """The serving process's side: admits, hands requests to the inference process, delivers its news."""

    def __init__(
        self,
        remote: RemoteModel,
        *,
        name: str,
        max_batch_size: int,
        max_queue_size: int,
        max_queue_wait_s: float,
        metrics: BatchMetrics | None = None,
        stall_after_s: float = float("inf"),
    ):
        super().__init__(
            name=name,
            max_batch_size=max_batch_size,
            max_queue_size=max_queue_size,
            max_queue_wait_s=max_queue_wait_s,
        )
        self.remote = remote
        self.metrics = metrics
        self._watch = CallWatch(name, stall_after_s)  # for its 503; the stall itself is timed over there
        self._requests: dict[int, GenerationRequest] = {}  # handed over and not finished
        self._running: set[int] = set()
        self._ids = itertools.count()
        self._stats: dict[str, int] = {}
        self._fault: str | None = None  # the hosted scheduler's, as last reported
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    @property
    def queue_depth(self) -> int:
        return len(self._requests) - len(self._running)

    @property
    def active(self) -> int:
        return len(self._running)

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.remote.subscribe(self)

    async def close(self, drain: bool = True, timeout: float | None = None) -> None:
        self._closing = True
        # Over there the drain takes up to ``timeout`` and the cancelling after it up to 5 s more; a
        # process wedged beyond that is not waited for (its generations fail below, and it is killed).
        wait = None if timeout is None else timeout + 10
        try:
            await asyncio.to_thread(self.remote.call, "gen_close", drain, timeout, timeout=wait)
        except ServiceError as exc:  # the inference process is gone: nothing is left to drain
            log.info("generation %s: %s", self.name, exc)
        except TimeoutError:
            log.warning("generation %s: the inference process did not close it within %g s", self.name, wait)
        self.remote.unsubscribe()
        self._fail_all(ShuttingDown(f"model {self.name} is shutting down"))

    def fault(self) -> str | None:
        return self._fault or self.remote.fault()

    # -- event loop ------------------------------------------------------------------------------
    def _unavailable(self) -> ServiceError | None:
        if self._closing or self._loop is None:
            return ShuttingDown(f"model {self.name} is not accepting requests")
        if (down := self.remote.unavailable()) is not None:
            return down
        return self._watch.unavailable(self._fault) if self._fault else None

    def enqueue(self, requests: list[GenerationRequest]) -> None:
        wire = []
        for request in requests:
            rid = next(self._ids)
            self._requests[rid] = request
            request.on_cancel = lambda rid=rid: self._cancel(rid)
            wire.append((rid, request.prompt_ids, request.params, request.stream))
        self.remote.send("gen_submit", wire)

    def _cancel(self, rid: int) -> None:
        if self._requests.pop(rid, None) is None:  # finished already
            return
        self._running.discard(rid)
        self.remote.send("gen_cancel", [rid])

    def _apply(self, wire: list[WireUpdate]) -> None:
        """An iteration's news, on the event loop: the mirror requests take it, then their waiters."""
        now = time.perf_counter()
        updates: list[Update] = []
        for rid, text, finished, error, final in wire:
            request = self._requests.get(rid)
            if request is None:  # cancelled meanwhile
                continue
            if error is None and rid not in self._running:
                self._running.add(rid)
                request.first_token_at = now
            if finished:
                del self._requests[rid]
                self._running.discard(rid)
                if final is not None:
                    full_text, request.finish_reason, request.stopping.generated = final
                    request.text_parts = [full_text]
                    if request.first_token_at is not None:
                        self._observe_duration(now - request.first_token_at)
            updates.append((request, text, finished, error))
        deliver(updates)

    def _fail_all(self, error: BaseException) -> None:
        failed = [(request, "", True, error) for request in self._requests.values()]
        self._requests.clear()
        self._running.clear()
        deliver(failed)

    # -- the inference process's reader thread ---------------------------------------------------
    def receive(self, kind: str, payload: tuple[Any, ...]) -> None:
        if kind == "gen":
            call_soon_threadsafe(self._loop, self._apply, payload[0])
        elif kind == "gen_stats":
            self._stats, records, self._fault = payload
            if self.metrics is not None:
                for name, method, value in records:
                    getattr(getattr(self.metrics, name), method)(value)

    def lost(self, error: BaseException) -> None:
        """The inference process exited: every generation handed to it has failed."""
        call_soon_threadsafe(self._loop, self._fail_all, error)


class _Recorder:
    """Stands for one metric of :class:`BatchMetrics` in the inference process: records each call."""

    def __init__(self, name: str, records: deque[MetricRecord]):
        self.name, self.records = name, records

    def set(self, value: float) -> None:
        self.records.append((self.name, "set", value))

    def observe(self, value: float) -> None:
        self.records.append((self.name, "observe", value))

    def inc(self, value: float = 1) -> None:
        self.records.append((self.name, "inc", value))


def recording_metrics(records: deque[MetricRecord]) -> BatchMetrics:
    return BatchMetrics(**{name: _Recorder(name, records) for name in BatchMetrics.__dataclass_fields__})


class HostedScheduler:
    """The inference process's side: the model's own scheduler, its requests known by the serving
    process's ids. ``send(kind, payload)`` writes one message to the serving process (thread-safe)."""

    def __init__(self, key: int, model: ScheduledModel, send: Callable[[str, tuple[Any, ...]], None]):
        self.key = key
        self.send = send
        self.records: deque[MetricRecord] = deque()
        self._lock = threading.Lock()  # the id maps: the pipe's reader thread and the decoding thread
        self._by_id: dict[int, GenerationRequest] = {}
        self._ids: dict[GenerationRequest, int] = {}
        self.scheduler = model.create_scheduler(recording_metrics(self.records), self._publish)
        self.scheduler.start()

    def submit(self, wire: list[tuple[int, list[int], Any, bool]]) -> None:
        requests = []
        with self._lock:
            for rid, prompt_ids, params, stream in wire:
                request = GenerationRequest(prompt_ids, params, stream=stream)
                self._by_id[rid], self._ids[request] = request, rid
                requests.append(request)
        self.scheduler.enqueue(requests)

    def cancel(self, rids: list[int]) -> None:
        with self._lock:
            for rid in rids:
                request = self._by_id.pop(rid, None)
                if request is not None:
                    del self._ids[request]
                    request.cancel()

    def close(self, drain: bool, timeout: float | None) -> None:
        """Blocking: as the local scheduler's ``close``."""
        asyncio.run(self.scheduler.close(drain=drain, timeout=timeout))

    def report(self) -> None:
        """Statistics, stall state and the metric observations since the last report."""
        records = []
        while self.records:
            records.append(self.records.popleft())
        self.send("gen_stats", (self.key, dict(self.scheduler.stats), records, self.scheduler.fault()))

    def _publish(self, updates: list[Update]) -> None:
        wire: list[WireUpdate] = []
        with self._lock:
            for request, text, finished, error in updates:
                rid = self._ids.get(request)
                if rid is None:  # cancelled by the serving process
                    continue
                final = None
                if finished:
                    del self._ids[request], self._by_id[rid]
                    if error is None:
                        final = (request.text, request.finish_reason, request.tokens)
                wire.append((rid, text, finished, error, final))
        if wire:
            self.send("gen", (self.key, wire))
