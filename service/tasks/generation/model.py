"""The served generation model: the character codec, the two graphs and the step-level scheduler.

It owns a request's whole life: checks and encoding (``prepare``), admission to the scheduler, waiting,
streaming, and cancellation when the client leaves or the caller gives up, so ``/generate`` (and any
other protocol on top) only parses, calls ``generate`` or ``stream``, and formats.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.config import Settings
from service.errors import ClientDisconnected, InvalidInput, LimitExceeded, ServiceError
from service.manifest import ModelManifest
from service.metrics import BatchMetrics
from service.remote_scheduler import RemoteScheduler
from service.sampling import SamplingParams
from service.scheduler import FINISHED, GenerationRequest, GenerationScheduler, StepScheduler, Update
from service.serving import ScheduledModel
from service.tasks.generation.codec import CharCodec, UnknownCharactersError
from service.tasks.generation.contract import DEFAULT_STATE_NAMES, TASK
from service.tasks.generation.graphs import RecurrentGraphs
from service.tasks.generation.schemas import MAX_STOP_CHARS, GenerateRequest
from service.text import SPECIALS


@dataclass
class GenerationModel(ScheduledModel):
    codec: CharCodec = field(kw_only=True)
    #: None in a serving process whose model runs in the inference process (``remote``)
    graphs: RecurrentGraphs | None = field(kw_only=True)
    max_prompt_chars: int = field(default=4096, kw_only=True)
    scheduler: StepScheduler | None = field(default=None, init=False)

    def prepare(self, payload: GenerateRequest) -> GenerationRequest:
        """Checks and encodes a request; every problem is a 422 naming its field."""
        if len(payload.prompt) > self.max_prompt_chars:
            raise LimitExceeded(
                f"prompt has {len(payload.prompt)} characters; the limit is {self.max_prompt_chars}",
                field="prompt",
                limit=self.max_prompt_chars,
            )
        for i, stop in enumerate(payload.stop):
            if not 1 <= len(stop) <= MAX_STOP_CHARS:
                raise InvalidInput(
                    f"stop[{i}] must have 1 to {MAX_STOP_CHARS} characters", field=f"stop[{i}]"
                )
        try:
            prompt_ids = self.codec.encode(payload.prompt)
        except UnknownCharactersError as exc:
            raise InvalidInput(str(exc), field="prompt") from None
        params = SamplingParams(
            max_new_tokens=payload.max_new_tokens,
            temperature=payload.temperature,
            top_k=payload.top_k,
            top_p=payload.top_p,
            seed=payload.seed,
            stop=tuple(payload.stop),
        )
        return GenerationRequest(prompt_ids, params, stream=payload.stream)

    # -- answering -------------------------------------------------------------------------------
    async def generate(
        self, payload: GenerateRequest, client_gone: Callable[[], Awaitable[None]]
    ) -> dict[str, Any]:
        """The whole generation, or :class:`ClientDisconnected` (slot freed) if ``client_gone()`` returns
        first; a timeout or an inference error is raised as its ``ServiceError``."""
        job = self.prepare(payload)
        generation = asyncio.ensure_future(self.scheduler.generate(job, self.batching.timeout_s))
        gone = asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait({generation, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not generation.done():  # the client left (or the caller was cancelled): free the slot
                generation.cancel()
                job.cancel()
        if not generation.done():
            with contextlib.suppress(asyncio.CancelledError):
                await generation
            raise ClientDisconnected("the client disconnected before the generation finished")
        generation.result()  # re-raises a timeout or an inference error
        return {
            "model": self.name,
            "text": job.text,
            "finish_reason": job.finish_reason,
            "tokens": job.tokens,
        }

    async def stream(self, payload: GenerateRequest) -> AsyncIterator[dict[str, Any]]:
        """Admits the request and waits until it runs (errors until then are raised here, so they can
        still be plain error answers), then returns its events: ``{text, tokens, finish_reason: None}``
        per chunk of characters, a last one with ``finish_reason`` and the totals, or ``{error,
        error_type}``. Closing the iterator early cancels the generation."""
        job = self.prepare(payload)
        self.scheduler.submit(job)
        try:
            await self.scheduler.wait_started(job, self.batching.timeout_s)
        except BaseException:
            job.cancel()
            raise
        return self._events(job)

    async def _events(self, job: GenerationRequest) -> AsyncIterator[dict[str, Any]]:
        """One event per chunk (everything queued since the last read)."""
        queue = job.events
        try:
            while True:
                chunk = [await queue.get()]
                while not queue.empty():
                    chunk.append(queue.get_nowait())
                finished = chunk[-1] is FINISHED
                if finished:
                    chunk.pop()
                errors = [c for c in chunk if isinstance(c, BaseException)]
                if errors:
                    error = errors[0]
                    yield {"error": str(error), "error_type": getattr(error, "code", "internal_error")}
                    return
                text = "".join(chunk)
                if finished:
                    yield {
                        "text": text,
                        "tokens": len(chunk),
                        "finish_reason": job.finish_reason,
                        "generated_text": job.text,
                        "generated_tokens": job.tokens,
                        "model": self.name,
                    }
                    return
                yield {"text": text, "tokens": len(chunk), "finish_reason": None}
        finally:
            job.cancel()

    # -- several generations at once (v2 requests of N prompts, OpenAI's n) ------------------------
    async def _finished(self, job: GenerationRequest) -> None:
        await self.scheduler.wait_started(job, self.batching.timeout_s)
        await asyncio.shield(job.done)

    async def generate_many(
        self, payloads: list[GenerateRequest], client_gone: Callable[[], Awaitable[None]]
    ) -> list[dict[str, Any]]:
        """``generate`` for several requests submitted together: one answer per payload, in order. The
        first error fails them all and frees every slot, as does the client leaving
        (:class:`ClientDisconnected`)."""
        jobs = [self.prepare(payload) for payload in payloads]
        self.scheduler.submit_many(jobs)
        tasks = [asyncio.ensure_future(self._finished(job)) for job in jobs]
        waiting = asyncio.gather(*tasks)
        gone = asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            for task, job in zip(tasks, jobs, strict=True):
                if not task.done():
                    task.cancel()
                    job.cancel()
        if not waiting.done() or waiting.cancelled():
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            raise ClientDisconnected("the client disconnected before the generation finished")
        waiting.result()  # re-raises the first timeout or inference error
        return [
            {
                "model": self.name,
                "text": job.text,
                "finish_reason": job.finish_reason,
                "tokens": job.tokens,
            }
            for job in jobs
        ]

    async def stream_many(self, payloads: list[GenerateRequest]) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        """``stream`` for several requests submitted together: waits until every one runs (errors until
        then are raised here), then returns ``(index, event)`` pairs as they come, with the events of
        ``stream``. An error event ends the iterator; closing it cancels every generation."""
        jobs = [self.prepare(payload.model_copy(update={"stream": True})) for payload in payloads]
        self.scheduler.submit_many(jobs)
        started = [
            asyncio.ensure_future(self.scheduler.wait_started(job, self.batching.timeout_s)) for job in jobs
        ]
        try:
            await asyncio.gather(*started)
        except BaseException:
            for task, job in zip(started, jobs, strict=True):
                task.cancel()
                job.cancel()
            raise
        return self._merged_events(jobs)

    async def _merged_events(
        self, jobs: list[GenerationRequest]
    ) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        merged: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()

        async def forward(index: int, job: GenerationRequest) -> None:
            events = self._events(job)
            try:
                async for event in events:
                    merged.put_nowait((index, event))
            finally:
                await events.aclose()

        forwarders = [asyncio.ensure_future(forward(i, job)) for i, job in enumerate(jobs)]
        try:
            running = len(jobs)
            while running:
                index, event = await merged.get()
                yield index, event
                if "error" in event:
                    return
                if event["finish_reason"] is not None:
                    running -= 1
        finally:
            for task, job in zip(forwarders, jobs, strict=True):
                task.cancel()
                job.cancel()

    # -- lifecycle (the step scheduler instead of the dynamic batcher) ----------------------------
    def warmup(self) -> None:
        """Runs both graphs at batch 1 and at the largest batch, with a short and a long prompt."""
        bos, char = self.codec.vocab.bos_id, len(SPECIALS)  # the first ordinary character
        for batch in (1, self.max_batch_size):
            prompts = [[bos] + [char] * (1 + 63 * (i % 2)) for i in range(batch)]
            logits, states = self.graphs.prefill(prompts)
            tokens = np.argmax(logits, axis=1).astype(np.int64)
            for _ in range(2):
                logits, states = self.graphs.step(tokens, states)
            if not np.isfinite(logits).all():
                raise ValueError("warm-up produced non-finite logits")

    def create_scheduler(
        self, metrics: BatchMetrics | None, publish: Callable[[list[Update]], None] | None = None
    ) -> GenerationScheduler:
        vocab = self.codec.vocab
        return GenerationScheduler(
            self.graphs,
            [self.codec.decode_token(i) for i in range(len(vocab))],
            bucket_ratio=self.batching.bucket_ratio,
            step_prefill_max_tokens=self.batching.step_prefill_max_tokens,
            banned_ids=self.codec.special_ids,
            metrics=metrics,
            publish=publish,
            **self._admission(),
        )

    def _admission(self) -> dict[str, Any]:
        """The bounds a scheduler admits by, wherever its steps run."""
        return {
            "name": self.name,
            "max_batch_size": self.max_batch_size,
            "max_queue_size": self.batching.max_queue_size,
            "max_queue_wait_s": self.batching.max_queue_wait_s,
            "stall_after_s": self.batching.stall_after_s,
        }

    async def start(self, metrics: BatchMetrics | None) -> None:
        if self.remote is None:
            self.scheduler = self.create_scheduler(metrics)
        else:
            self.scheduler = RemoteScheduler(self.remote, metrics=metrics, **self._admission())
        self.scheduler.start()

    async def close(self, drain: bool = True, timeout: float | None = None) -> None:
        if self.scheduler is not None:
            await self.scheduler.close(drain=drain, timeout=timeout)
        if self.remote is not None:
            self.remote.release()

    def fault(self) -> str | None:
        return self.scheduler.fault() if self.scheduler is not None else None

    def refusal(self) -> ServiceError | None:
        return self.scheduler.refusal() if self.scheduler is not None else None

    def info(self) -> dict[str, Any]:
        scheduler = self.scheduler
        return {
            "batching": {
                "kind": "step-level (continuous)",
                **self.batching.model_dump(),
                "max_batch_size": self.max_batch_size,
            },
            "queue_depth": scheduler.queue_depth if scheduler else 0,
            "in_flight": scheduler.active if scheduler else 0,
            "fault": self.fault(),
            "stats": dict(scheduler.stats) if scheduler else {},
        }


# A generation holds its slot for hundreds of milliseconds, so a request admitted at the 1 s bound of the
# other tasks answers after 1.5-2 s at capacity, and a retry held for its Retry-After (service/read_hold.py)
# after 2.5-3 s; at 0.25 s a storm of 16 times the saturating clients is still answered within 2 s
# (docs/experiments.md, "Holding a refused connection").
BATCHING_DEFAULTS = {"max_queue_wait_s": 0.25}


def build(
    manifest: ModelManifest,
    version: int,
    version_dir: Path,
    sessions: dict[str, ort.InferenceSession],
    settings: Settings,
) -> GenerationModel:
    state_names = tuple(manifest.task_options.get("state_names", DEFAULT_STATE_NAMES))
    return GenerationModel(
        manifest=manifest,
        version=version,
        version_dir=version_dir,
        sessions=sessions,
        batching=settings.batching_for(TASK, BATCHING_DEFAULTS),
        codec=CharCodec.from_manifest(manifest, version_dir),
        graphs=RecurrentGraphs(sessions["prefill"], sessions["step"], state_names) if sessions else None,
        max_prompt_chars=min(
            int(manifest.task_options.get("max_prompt_chars", 4096)), settings.limits.max_text_chars
        ),
    )
