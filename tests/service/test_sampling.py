"""Next-token choice and stopping: numpy only, no model."""

from __future__ import annotations

import numpy as np
import pytest

from service.sampling import BatchChooser, NextTokenChooser, SamplingParams, StoppingCriteria


def choose(params: list[SamplingParams], logits: np.ndarray, steps: int = 1, banned=()) -> np.ndarray:
    chooser = BatchChooser([NextTokenChooser(p) for p in params], banned)
    return np.stack([chooser(logits) for _ in range(steps)], axis=1)


def random_logits(batch: int, vocab: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 2, (batch, vocab)).astype(np.float32)


def test_temperature_zero_is_argmax():
    logits = random_logits(5)
    out = choose([SamplingParams(temperature=0)] * 5, logits)[:, 0]
    assert np.array_equal(out, logits.argmax(axis=1))


def test_top_k_one_equals_greedy_whatever_the_temperature():
    logits = random_logits(6, seed=1)
    params = [SamplingParams(temperature=t, top_k=1, seed=i) for i, t in enumerate([0.5, 1, 2, 5, 10, 50])]
    out = choose(params, logits, steps=20)
    assert (out == logits.argmax(axis=1)[:, None]).all()


def test_same_seed_same_tokens_and_other_seeds_differ():
    logits = np.zeros((1, 40), np.float32)  # uniform: every draw depends on the generator alone
    a = choose([SamplingParams(seed=7)], logits, steps=50)
    b = choose([SamplingParams(seed=7)], logits, steps=50)
    c = choose([SamplingParams(seed=8)], logits, steps=50)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_rows_are_independent_of_their_batch_neighbours():
    logits = random_logits(4, seed=2)
    params = [
        SamplingParams(seed=1, temperature=0.7),
        SamplingParams(temperature=0),
        SamplingParams(seed=3, top_k=5),
        SamplingParams(seed=4, top_p=0.8, temperature=1.3),
    ]
    together = choose(params, logits, steps=30)
    for row, p in enumerate(params):
        alone = choose([p], logits[row : row + 1], steps=30)
        assert np.array_equal(together[row], alone[0])


def test_choosing_for_some_rows_draws_only_from_their_generators():
    """Rows still reading their prompt sample nothing, so their seeded sequence starts when they generate."""
    logits = random_logits(3, seed=5)
    params = [SamplingParams(seed=s, temperature=1.2) for s in (11, 12, 13)]
    chooser = BatchChooser([NextTokenChooser(p) for p in params])
    skipped = [chooser(logits, np.array([0, 2])) for _ in range(5)]  # row 1 waits 5 steps
    late = [chooser(logits)[1] for _ in range(10)]
    alone = choose([params[1]], logits[1:2], steps=10)[0]
    assert np.array_equal(late, alone)
    first_and_last = choose([params[0], params[2]], logits[[0, 2]], steps=5)
    assert np.array_equal(np.stack(skipped, axis=1), first_and_last)


def test_top_k_and_top_p_never_pick_outside_their_sets():
    logits = np.log(np.array([[0.5, 0.3, 0.1, 0.06, 0.04]], np.float32))
    top2 = choose([SamplingParams(seed=0, top_k=2)], logits, steps=400)
    assert set(np.unique(top2)) == {0, 1}
    nucleus = choose([SamplingParams(seed=0, top_p=0.85)], logits, steps=400)  # 0.5+0.3 < 0.85 <= 0.9
    assert set(np.unique(nucleus)) == {0, 1, 2}
    tiny_p = choose([SamplingParams(seed=0, top_p=0.01)], logits, steps=50)
    assert set(np.unique(tiny_p)) == {0}


def test_sampling_follows_the_distribution():
    probs = np.array([0.6, 0.3, 0.1])
    draws = choose([SamplingParams(seed=0)], np.log(probs)[None].astype(np.float32), steps=6000)[0]
    assert np.allclose(np.bincount(draws, minlength=3) / len(draws), probs, atol=0.03)


def test_banned_ids_are_never_chosen():
    logits = random_logits(3, seed=4)
    logits[:, 2] = 100.0
    out = choose(
        [SamplingParams(temperature=0), SamplingParams(seed=1), SamplingParams(seed=2)], logits, 50, [2]
    )
    assert (out != 2).all()


def test_filter_and_concatenate_keep_rows_aligned():
    a = BatchChooser(
        [NextTokenChooser(SamplingParams(temperature=0)), NextTokenChooser(SamplingParams(seed=1))]
    )
    b = BatchChooser([NextTokenChooser(SamplingParams(top_k=1, seed=2))])
    merged = a.concatenate(b).filter([0, 2])
    assert len(merged) == 2
    assert merged.greedy.tolist() == [True, False]
    assert merged.top_k.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("pieces", "stop", "limit", "reason", "at"),
    [
        (list("abcdef"), (), 4, "length", 4),
        (list("hello world"), ("lo w",), 100, "stop", 7),
        (list("a\n\nb"), ("\n\n", "zz"), 100, "stop", 3),
        (list("xyz"), ("q",), 3, "length", 3),
    ],
)
def test_stopping_criteria(pieces, stop, limit, reason, at):
    criteria = StoppingCriteria(limit, stop)
    results = [criteria(p) for p in pieces]
    first = next(i for i, r in enumerate(results) if r is not None)
    assert (first + 1, results[first]) == (at, reason)
