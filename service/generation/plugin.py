"""Generation serving glue: the character codec, the two graphs and the step-level scheduler as a model
of the repository (it replaces the per-item dynamic batcher with :class:`GenerationScheduler`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.api.routes.generate import TASK, router
from service.config import Settings
from service.errors import InvalidInput, LimitExceeded
from service.generation.graphs import RecurrentGraphs
from service.generation.sampling import SamplingParams
from service.generation.scheduler import GenerationRequest, GenerationScheduler
from service.generation.schemas import MAX_STOP_CHARS, GenerateRequest
from service.manifest import ModelManifest
from service.metrics import BatchMetrics
from service.serving import ServedModel, TaskPlugin
from service.tasks.generation import CharCodec, UnknownCharactersError
from service.tasks.text import SPECIALS


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

    # -- lifecycle (replaces the dynamic batcher) ------------------------------------------------
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
    state_names = tuple(manifest.task_options.get("state_names", ("h", "c")))
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


PLUGIN = TaskPlugin(task=TASK, build=build, router=router)
