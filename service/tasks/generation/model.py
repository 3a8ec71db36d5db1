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
from service.errors import ClientDisconnected, InvalidInput, LimitExceeded
from service.manifest import ModelManifest
from service.metrics import BatchMetrics
from service.sampling import SamplingParams
from service.scheduler import FINISHED, GenerationRequest, GenerationScheduler
from service.serving import ServedModel
from service.tasks.generation.codec import CharCodec, UnknownCharactersError
from service.tasks.generation.contract import DEFAULT_STATE_NAMES, TASK
from service.tasks.generation.graphs import RecurrentGraphs
from service.tasks.generation.schemas import MAX_STOP_CHARS, GenerateRequest
from service.text import SPECIALS


@dataclass
class GenerationModel(ServedModel):
    codec: CharCodec = field(kw_only=True)
    graphs: RecurrentGraphs = field(kw_only=True)
    max_prompt_chars: int = field(default=4096, kw_only=True)
    scheduler: GenerationScheduler | None = field(default=None, init=False)

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

    async def start(self, metrics: BatchMetrics | None, workers: int = 1) -> None:
        vocab = self.codec.vocab
        self.scheduler = GenerationScheduler(
            self.graphs,
            [self.codec.decode_token(i) for i in range(len(vocab))],
            name=self.name,
            max_batch_size=self.max_batch_size,
            max_queue_size=self.batching.max_queue_size,
            bucket_ratio=self.batching.bucket_ratio,
            step_prefill_max_tokens=self.batching.step_prefill_max_tokens,
            banned_ids=self.codec.special_ids,
            metrics=metrics,
        )
        self.scheduler.start()

    async def close(self, drain: bool = True, timeout: float | None = None) -> None:
        if self.scheduler is not None:
            await self.scheduler.close(drain=drain, timeout=timeout)

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
            "stats": dict(scheduler.stats) if scheduler else {},
        }


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
        batching=settings.batching_for(TASK),
        codec=CharCodec.from_manifest(manifest, version_dir),
        graphs=RecurrentGraphs(sessions["prefill"], sessions["step"], state_names),
        max_prompt_chars=min(
            int(manifest.task_options.get("max_prompt_chars", 4096)), settings.limits.max_text_chars
        ),
    )
