"""The shared text processing: tokenizers keep exact offsets, vocabularies round-trip, padding is exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.text import (
    SPECIALS,
    CharTokenizer,
    Vocab,
    WhitespaceTokenizer,
    WordTokenizer,
    build_tokenizer,
    pad_batch,
    pad_nested,
)

TOKENIZERS = [WordTokenizer(), WordTokenizer(lowercase=True), WhitespaceTokenizer(), CharTokenizer()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I didn't like it.", ["I", "did", "n't", "like", "it", "."]),
        ("it 's a charming journey . ", ["it", "'s", "a", "charming", "journey", "."]),
        ("does n't work", ["does", "n't", "work"]),
        (
            "The U.S. won 3.5 to 1-0, well-made...",
            ["The", "U.S.", "won", "3.5", "to", "1-0", ",", "well-made", "..."],
        ),
        ("Can't stop 😀!", ["Ca", "n't", "stop", "😀", "!"]),
    ],
)
def test_word_tokenizer_splits_like_the_treebank(text: str, expected: list[str]) -> None:
    assert [t.text for t in WordTokenizer().tokenize(text)] == expected


def test_lowercase_changes_texts_not_offsets() -> None:
    text = "Hello  World"
    upper, lower = WordTokenizer().tokenize(text), WordTokenizer(lowercase=True).tokenize(text)
    assert [t.text for t in lower] == ["hello", "world"]
    assert [(t.start, t.end) for t in upper] == [(t.start, t.end) for t in lower] == [(0, 5), (7, 12)]


@pytest.mark.parametrize("tokenizer", TOKENIZERS, ids=lambda t: str(t.spec()))
@given(text=st.text(max_size=200))
def test_offsets_point_into_the_original_text(tokenizer, text: str) -> None:
    tokens = tokenizer.tokenize(text)
    previous_end = 0
    for token in tokens:
        assert previous_end <= token.start < token.end <= len(text)
        source = text[token.start : token.end]
        assert token.text == (source.lower() if tokenizer.spec().get("lowercase") else source)
        previous_end = token.end
    # Nothing but whitespace is dropped.
    covered = "".join(text[t.start : t.end] for t in tokens)
    assert covered == "".join(text.split()) or isinstance(tokenizer, CharTokenizer)


@pytest.mark.parametrize("tokenizer", TOKENIZERS, ids=lambda t: str(t.spec()))
@given(text=st.text(max_size=200) | st.text(alphabet=" \t\n\x1c\x85\u00a0\u2028İI'n.t-3,sS", max_size=60))
def test_words_are_the_token_texts(tokenizer, text: str) -> None:
    """``words`` is the fast path models encode with; it must never differ from ``tokenize``."""
    assert tokenizer.words(text) == [t.text for t in tokenizer.tokenize(text)]


@pytest.mark.parametrize("tokenizer", TOKENIZERS, ids=lambda t: str(t.spec()))
def test_tokenizer_rebuilds_from_its_spec(tokenizer) -> None:
    assert build_tokenizer(tokenizer.spec()) == tokenizer


def test_unknown_tokenizer_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown tokenizer type"):
        build_tokenizer({"type": "nope"})


def test_vocab_build_orders_by_frequency_and_respects_limits(tmp_path) -> None:
    sequences = [["b", "a", "a"], ["c", "a", "b"], ["d"]]
    vocab = Vocab.build(sequences, min_freq=2)
    assert vocab.itos == [*SPECIALS, "a", "b"]
    assert Vocab.build(sequences, max_size=len(SPECIALS) + 1).itos == [*SPECIALS, "a"]
    assert vocab.encode(["a", "zzz"], add_bos=True, add_eos=True) == [2, 4, 1, 3]
    assert vocab.decode([2, 4, 5, 3, 4]) == ["a", "b"]

    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert Vocab.load(path).itos == vocab.itos


def test_vocab_rejects_missing_specials_and_duplicates() -> None:
    with pytest.raises(ValueError, match="special"):
        Vocab(["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        Vocab([*SPECIALS, "a", "a"])


def test_pad_batch() -> None:
    ids, lengths = pad_batch([[5, 6, 7], [8], []])
    assert ids.dtype == lengths.dtype == np.int64
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(lengths, [3, 1, 0])
    assert pad_batch([[]])[0].shape == (1, 1)


def test_pad_nested() -> None:
    ids, lengths = pad_nested([[[4, 5], [6]], [[7, 8, 9]]])
    assert ids.shape == (2, 2, 3)
    np.testing.assert_array_equal(lengths, [[2, 1], [3, 0]])
    np.testing.assert_array_equal(ids[0, 0], [4, 5, 0])
