"""The NER codec: tag schemes, Viterbi against brute force, BIO validity, marginals, offsets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.tasks.ner.codec import (
    CrfScores,
    NerCodec,
    bio_spans,
    crf_marginals,
    iob1_to_bio,
    is_valid_bio,
    repair_bio,
    viterbi,
)
from service.tasks.ner.contract import CHAR_IDS, LENGTHS, WORD_IDS
from service.text import Vocab, WordTokenizer

LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")


def _random_crf(rng: np.random.Generator, k: int) -> CrfScores:
    return CrfScores(rng.normal(size=(k, k)), rng.normal(size=k), rng.normal(size=k))


def _path_score(path, emissions, crf: CrfScores) -> float:
    score = crf.start[path[0]] + crf.end[path[-1]] + sum(emissions[t, p] for t, p in enumerate(path))
    return score + sum(crf.transitions[a, b] for a, b in itertools.pairwise(path))


def _codec(crf: CrfScores | None = None) -> NerCodec:
    words = Vocab.build([["peter", "lives", "in", "paris", "."]])
    chars = Vocab.build([list("PeterlivsinPars.")])
    return NerCodec(WordTokenizer(), words, chars, LABELS, crf=crf)


def test_iob1_to_bio_starts_every_entity_with_b():
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG", "I-MISC", "I-MISC"]
    assert iob1_to_bio(iob1) == ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG", "B-MISC", "I-MISC"]
    assert iob1_to_bio(["O", "B-PER", "I-PER"]) == ["O", "B-PER", "I-PER"]
    with pytest.raises(ValueError, match="not a BIO"):
        iob1_to_bio(["X-PER"])


def test_repair_and_spans():
    tags = repair_bio(["I-PER", "I-PER", "O", "I-LOC", "B-PER", "I-LOC"])
    assert tags == ["B-PER", "I-PER", "O", "B-LOC", "B-PER", "B-LOC"]
    assert is_valid_bio(tags) and not is_valid_bio(["O", "I-PER"])
    assert bio_spans(tags) == [("PER", 0, 2), ("LOC", 3, 4), ("PER", 4, 5), ("LOC", 5, 6)]


@pytest.mark.parametrize("seed", range(20))
def test_viterbi_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    k, steps = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    crf, emissions = _random_crf(rng, k), rng.normal(size=(steps, k))
    path, score = viterbi(emissions, crf)
    best = max(itertools.product(range(k), repeat=steps), key=lambda p: _path_score(p, emissions, crf))
    assert path == list(best)
    assert score == pytest.approx(_path_score(best, emissions, crf))


@pytest.mark.parametrize("seed", range(5))
def test_marginals_equal_brute_force_probabilities(seed):
    rng = np.random.default_rng(seed)
    k, steps = 3, 4
    crf, emissions = _random_crf(rng, k), rng.normal(size=(steps, k))
    paths = list(itertools.product(range(k), repeat=steps))
    weights = np.exp([_path_score(p, emissions, crf) for p in paths])
    expected = np.zeros((steps, k))
    for p, w in zip(paths, weights, strict=True):
        expected[np.arange(steps), p] += w
    np.testing.assert_allclose(crf_marginals(emissions, crf), expected / weights.sum(), rtol=1e-9)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 12), use_crf=st.booleans())
def test_every_decode_is_valid_bio(seed, steps, use_crf):
    rng = np.random.default_rng(seed)
    crf = _random_crf(rng, len(LABELS)) if use_crf else None
    # I- tags strongly favoured, so an unconstrained decode would be invalid
    emissions = rng.normal(size=(steps, len(LABELS))) + np.array([0, 0, 5, 0, 5])
    tags, confidence = _codec(crf).decode_tags(emissions)
    assert len(tags) == steps and is_valid_bio(tags)
    assert ((confidence > 0) & (confidence <= 1 + 1e-9)).all()


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=60), seed=st.integers(0, 2**16))
def test_offsets_and_entity_text_match_the_input(text, seed):
    rng = np.random.default_rng(seed)
    codec = _codec(_random_crf(rng, len(LABELS)))
    encoded = codec.encode(text)
    answer = codec.decode(text, encoded, rng.normal(size=(len(encoded.tokens), len(LABELS))) * 3)
    for token in answer["tokens"]:
        assert text[token["start"] : token["end"]] == token["text"] and token["text"].strip()
    for entity in answer["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
        assert 0 < entity["score"] <= 1 + 1e-9
    assert is_valid_bio([t["tag"] for t in answer["tokens"]])


def test_encode_and_collate_shapes():
    codec = _codec()
    a, b = codec.encode("Peter lives in Paris ."), codec.encode("Zürich")
    assert a.word_ids[0] == codec.words.stoi["peter"] and b.word_ids == [codec.words.unk_id]
    assert a.char_ids[0] == codec.chars.encode("Peter")
    feeds = codec.collate([a.word_ids, b.word_ids], [a.char_ids, b.char_ids])
    assert feeds[WORD_IDS].shape == (2, 5) and feeds[CHAR_IDS].shape == (2, 5, 6)
    assert feeds[LENGTHS].tolist() == [5, 1]


def test_transitions_json_round_trip_checks_labels():
    crf = _random_crf(np.random.default_rng(0), len(LABELS))
    again = CrfScores.from_json(crf.to_json(LABELS), LABELS)
    np.testing.assert_allclose(again.transitions, crf.transitions)
    with pytest.raises(ValueError, match="labels"):
        CrfScores.from_json(crf.to_json(LABELS), LABELS[::-1])
