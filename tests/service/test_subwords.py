"""The word_pieces tokenizer: whole words where training saw them often, pieces for the rest."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import service.subwords as subwords
from service.subwords import CONTINUES, RareWordPieceTokenizer, train_word_pieces
from service.text import build_tokenizer

TEXTS = [
    "the film is good",
    "the film is bad",
    "a good and moving story",
    "an unmoving , ungood story",
    "the acting is dull",
] * 3 + ["the unwatchable film"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> RareWordPieceTokenizer:
    return train_word_pieces(TEXTS, tmp_path_factory.mktemp("pieces"), pieces=100, whole_word_min_freq=3)


def _joined(pieces: list[str]) -> str:
    return "".join(p.removeprefix("▁").removeprefix(CONTINUES) for p in pieces)


def test_frequent_words_stay_whole_and_rare_or_unseen_ones_are_spelled(tokenizer) -> None:
    assert tokenizer.words("The film is GOOD") == ["the", "film", "is", "good"]
    for word in ("unwatchable", "unmovingly", "goodness"):  # seen once, never, never
        pieces = tokenizer.spell(word)
        assert len(pieces) > 1 and pieces[0].startswith("▁"), pieces
        assert all(p.startswith(CONTINUES) for p in pieces[1:]) and _joined(pieces) == word
    assert tokenizer.words("an unwatchable film")[0] == "an" and tokenizer.words("x")[-1] != "x"


def test_pieces_keep_their_characters_offsets(tokenizer) -> None:
    text = "The UNWATCHABLE film"
    tokens = tokenizer.tokenize(text)
    assert [t.text for t in tokens] == tokenizer.words(text)
    spelled = tokens[1:-1]
    assert spelled[0].start == 4 and spelled[-1].end == 15
    assert "".join(text[t.start : t.end] for t in spelled) == "UNWATCHABLE"
    assert all(a.end == b.start for a, b in itertools.pairwise(spelled))


def test_a_word_whose_lower_case_is_longer_gives_each_piece_the_whole_span(tokenizer) -> None:
    text = "İstanbul"  # lower-cased, one character more
    tokens = tokenizer.tokenize(text)
    assert len(tokens) > 1 and {(t.start, t.end) for t in tokens} == {(0, len(text))}


def test_the_spec_rebuilds_the_same_tokenizer_from_its_folder(tokenizer) -> None:
    spec = tokenizer.spec()
    assert spec == {
        "type": "word_pieces",
        "model_file": "pieces.model",
        "words_file": "words.txt",
        "lowercase": True,
    }
    again = build_tokenizer(spec, Path(tokenizer.model_file).parent)
    for text in [*TEXTS, "an unseen wordiness"]:
        assert again.words(text) == tokenizer.words(text)


def test_remembered_spellings_are_bounded(tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subwords, "SPELLING_CACHE", 3)
    for word in ("qa", "qb", "qc", "qd", "qe"):
        assert _joined(tokenizer.spell(word)) == word
        assert len(tokenizer._spelled) <= 3
