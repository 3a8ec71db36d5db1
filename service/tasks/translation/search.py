"""Greedy and beam search over a decoder-step function, numpy only, batched across sentences and beams.

Each time step is ONE call of ``step`` for every live hypothesis of every sentence; a sentence whose search
is over leaves the batch (its rows are no longer fed). Every array of ``state`` and ``memory`` is batch-first,
so keeping, dropping or duplicating hypotheses is one ``np.take`` along axis 0.

Scores are sums of log-probabilities divided by ``length ** length_penalty`` (length counts ``<eos>``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from service.tasks.translation.contract import BOS_ID, EOS_ID

Arrays = dict[str, np.ndarray]
#: (previous tokens [N], state, memory) -> (log-probabilities [N, V], new state, attention [N, S])
StepFn = Callable[[np.ndarray, Arrays, Arrays], tuple[np.ndarray, Arrays, np.ndarray]]


@dataclass(frozen=True)
class SearchParams:
    beam_size: int = 1
    max_length: int = 100
    length_penalty: float = 1.0
    return_attention: bool = False


@dataclass
class Hypothesis:
    tokens: list[int]
    log_prob: float
    attention: list[np.ndarray] = field(default_factory=list)
    score: float = 0.0


def normalized(log_prob: float, length: int, penalty: float) -> float:
    return log_prob / max(length, 1) ** penalty


def _take(arrays: Arrays, rows: np.ndarray) -> Arrays:
    return {name: np.take(value, rows, axis=0) for name, value in arrays.items()}


def greedy_search(
    step: StepFn, state: Arrays, memory: Arrays, params: Sequence[SearchParams]
) -> list[Hypothesis]:
    """Arg-max decoding; the reference that ``beam_search`` with ``beam_size=1`` must equal."""
    n = len(params)
    hyps = [Hypothesis([], 0.0) for _ in range(n)]
    live = np.arange(n)
    tokens = np.full(n, BOS_ID, dtype=np.int64)
    t = 0
    while live.size:
        log_probs, state, attention = step(tokens, state, memory)
        best = log_probs.argmax(axis=1)
        keep = []
        for row, sent in enumerate(live.tolist()):
            hyp, token = hyps[sent], int(best[row])
            hyp.tokens.append(token)
            hyp.log_prob += float(log_probs[row, token])
            if params[sent].return_attention:
                hyp.attention.append(attention[row])
            if token != EOS_ID and t + 1 < params[sent].max_length:
                keep.append(row)
        t += 1
        rows = np.asarray(keep, dtype=np.int64)
        live, tokens = live[rows], best[rows].astype(np.int64)
        state, memory = _take(state, rows), _take(memory, rows)
    for hyp, p in zip(hyps, params, strict=True):
        hyp.score = normalized(hyp.log_prob, len(hyp.tokens), p.length_penalty)
    return hyps


def beam_search(
    step: StepFn, state: Arrays, memory: Arrays, params: Sequence[SearchParams]
) -> list[Hypothesis]:
    """Beam search with a beam size, length limit and length penalty per sentence; best hypothesis each.

    A sentence is done once it has ``beam_size`` finished hypotheses or reaches ``max_length`` (its live
    hypotheses are then finished as they are).
    """
    n = len(params)
    live: list[list[Hypothesis]] = [[Hypothesis([], 0.0)] for _ in range(n)]
    finished: list[list[Hypothesis]] = [[] for _ in range(n)]
    owner = np.arange(n)  # row -> sentence
    tokens = np.full(n, BOS_ID, dtype=np.int64)
    t = 0
    while owner.size:
        log_probs, state, attention = step(tokens, state, memory)
        next_rows: list[int] = []
        next_tokens: list[int] = []
        start = 0
        for sent in dict.fromkeys(owner.tolist()):
            p, beams = params[sent], live[sent]
            rows = np.arange(start, start + len(beams))
            start += len(beams)
            total = np.asarray([h.log_prob for h in beams])[:, None] + log_probs[rows]
            flat = total.ravel()
            k = min(2 * p.beam_size, flat.size)
            top = np.argpartition(-flat, k - 1)[:k]
            top = top[np.argsort(-flat[top], kind="stable")]
            last_step = t + 1 >= p.max_length
            survivors: list[tuple[Hypothesis, int]] = []
            for index in top.tolist():
                beam, token = divmod(index, log_probs.shape[1])
                parent = beams[beam]
                hyp = Hypothesis(
                    [*parent.tokens, token],
                    float(flat[index]),
                    [*parent.attention, attention[rows[beam]]] if p.return_attention else [],
                )
                if token == EOS_ID or last_step:
                    hyp.score = normalized(hyp.log_prob, len(hyp.tokens), p.length_penalty)
                    finished[sent].append(hyp)
                    if len(finished[sent]) >= p.beam_size:
                        break
                else:
                    survivors.append((hyp, int(rows[beam])))
                    if len(survivors) >= p.beam_size:
                        break
            done = len(finished[sent]) >= p.beam_size or last_step
            if done:
                live[sent] = []
                continue
            live[sent] = [h for h, _ in survivors]
            next_rows.extend(row for _, row in survivors)
            next_tokens.extend(h.tokens[-1] for h, _ in survivors)
        t += 1
        rows = np.asarray(next_rows, dtype=np.int64)
        owner = np.take(owner, rows)
        tokens = np.asarray(next_tokens, dtype=np.int64)
        state, memory = _take(state, rows), _take(memory, rows)
    return [max(f, key=lambda h: h.score) for f in finished]
