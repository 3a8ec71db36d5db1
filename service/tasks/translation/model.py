"""Translation serving glue: the codec, the encoder and decoder-step graphs, and numpy beam search.

One batch of the dynamic batcher (items of concurrent requests) is encoded per length group, then decoded
together: every time step is one decoder-step call for every live hypothesis of every sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.batching import split_by_length
from service.errors import InferenceError
from service.serving import BatchedModel, CodecModelBuilder
from service.tasks.translation.codec import TranslationCodec
from service.tasks.translation.contract import (
    ATTENTION,
    DEFAULT_STATE_NAMES,
    KEYS,
    LOG_PROBS,
    MEMORY,
    PREV_TOKENS,
    SRC_LENGTHS,
    state_output,
)
from service.tasks.translation.schemas import TranslateRequest
from service.tasks.translation.search import Arrays, Hypothesis, SearchParams, beam_search, greedy_search

Item = tuple[str, SearchParams]


@dataclass
class TranslationModel(BatchedModel):
    codec: TranslationCodec = field(kw_only=True)
    state_names: tuple[str, ...] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if self.state_names is None:  # the exporter records them: ("hidden",) for GRU, plus "cell" for LSTM
            self.state_names = tuple(self.manifest.task_options.get("state_names", DEFAULT_STATE_NAMES))

    def encode(self, encoded: Sequence[Sequence[int]]) -> tuple[Arrays, Arrays]:
        """Encoder graph: (initial decoder state, memory) for a batch of source ids."""
        feeds = self.codec.collate(encoded)
        names = [MEMORY, KEYS, *self.state_names]
        outputs = dict(zip(names, self.sessions["encoder"].run(names, feeds), strict=True))
        state = {name: outputs[name] for name in self.state_names}
        memory = {MEMORY: outputs[MEMORY], KEYS: outputs[KEYS], SRC_LENGTHS: feeds[SRC_LENGTHS]}
        return state, memory

    def step(
        self, tokens: np.ndarray, state: Arrays, memory: Arrays
    ) -> tuple[np.ndarray, Arrays, np.ndarray]:
        outputs = [LOG_PROBS, *(state_output(name) for name in self.state_names), ATTENTION]
        log_probs, *new_state, attention = self.sessions["step"].run(
            outputs, {PREV_TOKENS: tokens, **state, **memory}
        )
        return log_probs, dict(zip(self.state_names, new_state, strict=True)), attention

    def translate(self, encoded: list[list[int]], params: list[SearchParams]) -> list[Hypothesis]:
        state, memory = self.encode(encoded)
        search = greedy_search if all(p.beam_size == 1 for p in params) else beam_search
        return search(self.step, state, memory, params)

    def answer(self, source: list[int], hyp: Hypothesis, params: SearchParams) -> dict[str, Any] | Exception:
        if not np.isfinite(hyp.score):
            return InferenceError("the model produced a non-finite score")
        result: dict[str, Any] = {"translation": self.codec.decode(hyp.tokens), "score": hyp.score}
        if params.return_attention:
            result["source_tokens"] = self.codec.source_pieces(source)
            result["target_tokens"] = self.codec.target_pieces(hyp.tokens)
            result["attention"] = [row[: len(source)].tolist() for row in hyp.attention]
        return result

    @staticmethod
    def empty_answer(params: SearchParams) -> dict[str, Any]:
        """The answer to a text without source tokens (empty or white space only): nothing to translate."""
        result: dict[str, Any] = {"translation": "", "score": 0.0}
        if params.return_attention:
            result.update(source_tokens=[], target_tokens=[], attention=[])
        return result

    def predict_batch(self, items: list[Item]) -> Sequence[Any]:
        encoded = [self.codec.encode_source(text) for text, _ in items]
        results: list[Any] = [None] * len(items)
        nonempty = []
        for i, source in enumerate(encoded):
            if len(source) > 1:  # more than the closing <eos>
                nonempty.append(i)
            else:
                results[i] = self.empty_answer(items[i][1])
        lengths = [len(encoded[i]) for i in nonempty]
        for group in split_by_length(lengths, self.batching.bucket_ratio):
            members = [nonempty[g] for g in group]
            params = [items[i][1] for i in members]
            hyps = self.translate([encoded[i] for i in members], params)
            for i, hyp, p in zip(members, hyps, params, strict=True):
                results[i] = self.answer(encoded[i], hyp, p)
        return results

    def request_items(self, payload: TranslateRequest, texts: list[str]) -> list[Item]:
        params = SearchParams(
            beam_size=payload.beam_size,
            max_length=payload.max_length,
            length_penalty=payload.length_penalty,
            return_attention=payload.return_attention,
        )
        return [(text, params) for text in texts]

    def warmup_items(self) -> list[Item]:
        params = SearchParams(beam_size=2, max_length=8)
        return [("A dog runs.", params), ("A man in a blue shirt is standing on a ladder " * 3, params)]


# A translation request holds a beam search of up to max_length steps, and beam searches batch poorly
# (32 sentences in one call run 1.4x faster than one by one, against 5x for greedy search), so at 70 % of
# the service's capacity Poisson bursts queue seconds of translation: with a 2 s bound the 30-minute soak
# refused 31 of 363,074 requests, at expected waits of 2.0-2.4 s. Half the 10 s request deadline still
# leaves the request's own batch time to spare.
# Every batch runs in the model thread (``inline_max_ms`` 0): a decoder's batch takes several milliseconds,
# and the greedy ones that fit the default bound answered 3 % fewer sentences at 16 clients on the event
# loop's thread (docs/experiments.md, "Short model calls on the event loop's thread").
build = CodecModelBuilder(
    TranslationModel,
    TranslationCodec.from_manifest,
    batching_defaults={"max_queue_wait_s": 5.0, "inline_max_ms": 0.0},
)
