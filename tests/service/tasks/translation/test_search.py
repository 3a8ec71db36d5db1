from __future__ import annotations

import numpy as np
import pytest

from service.tasks.translation.contract import EOS_ID
from service.tasks.translation.search import SearchParams, beam_search, greedy_search
from tests.service.tasks.translation.numpy_decoders import RandomAttentionDecoder, TrapDecoder

LENGTHS = [5, 2, 7, 3]


@pytest.mark.parametrize("seed", range(4))
def test_beam_of_one_equals_greedy(seed):
    decoder = RandomAttentionDecoder(seed=seed, eos_bias=1.0)
    params = [SearchParams(beam_size=1, max_length=12, return_attention=True)] * len(LENGTHS)
    greedy = greedy_search(decoder, *decoder.sources(LENGTHS), params)
    beam = beam_search(decoder, *decoder.sources(LENGTHS), params)
    for g, b in zip(greedy, beam, strict=True):
        assert g.tokens == b.tokens
        assert g.score == pytest.approx(b.score)
        np.testing.assert_allclose(np.stack(g.attention), np.stack(b.attention))


def test_beam_search_finds_what_greedy_misses():
    trap = TrapDecoder()
    params = [SearchParams(beam_size=1, max_length=6, length_penalty=0.0)]
    greedy = greedy_search(trap, *trap.sources(1), params)[0]
    assert greedy.tokens[0] == 4
    beam = beam_search(trap, *trap.sources(1), [SearchParams(beam_size=2, max_length=6, length_penalty=0.0)])[
        0
    ]
    assert beam.tokens == [5, EOS_ID]
    assert beam.score == pytest.approx(np.log(0.4 * 0.99))
    assert beam.score > greedy.score


@pytest.mark.parametrize("search,beam_size", [(greedy_search, 1), (beam_search, 1), (beam_search, 4)])
def test_a_sentence_alone_equals_it_in_a_batch(search, beam_size):
    decoder = RandomAttentionDecoder(seed=3, eos_bias=0.5)
    params = [SearchParams(beam_size=beam_size, max_length=10)] * len(LENGTHS)
    state, memory = decoder.sources(LENGTHS)
    batch = search(decoder, state, memory, params)
    for i, n in enumerate(LENGTHS):
        alone_state = {k: v[i : i + 1] for k, v in state.items()}
        alone_memory = {
            "memory": memory["memory"][i : i + 1, :n],
            "src_lengths": memory["src_lengths"][i : i + 1],
        }
        (alone,) = search(decoder, alone_state, alone_memory, params[:1])
        assert alone.tokens == batch[i].tokens
        assert alone.score == pytest.approx(batch[i].score, abs=1e-9)


def test_per_sentence_parameters_and_length_limit():
    decoder = RandomAttentionDecoder(seed=1, eos_bias=-20.0)  # never ends by itself
    params = [SearchParams(beam_size=3, max_length=4), SearchParams(beam_size=1, max_length=7)]
    hyps = beam_search(decoder, *decoder.sources([3, 4]), params)
    assert [len(h.tokens) for h in hyps] == [4, 7]
    assert all(EOS_ID not in h.tokens for h in hyps)


def test_wider_beam_never_scores_worse_on_the_trap():
    trap = TrapDecoder()
    scores = [
        beam_search(trap, *trap.sources(1), [SearchParams(beam_size=k, max_length=6, length_penalty=0.0)])[
            0
        ].score
        for k in (1, 2, 4, 8)
    ]
    assert scores == sorted(scores)
