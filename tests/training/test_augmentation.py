"""Perturbed copies for the distillation transfer set."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from service.text import build_tokenizer
from training.augmentation import MASK_WORD, MAX_NGRAM, PosReplacer, perturbed_texts, pos_lexicon
from training.config import DistillConfig

SENTENCES = [
    ["a", "gripping", ",", "beautifully", "acted", "film"],
    ["dull", "and", "far", "too", "long", ",", "with", "n't", "a", "single", "surprise"],
    ["short", "one"],
]


def test_copies_mask_words_or_keep_an_ngram_of_the_text() -> None:
    copies = perturbed_texts(SENTENCES, 50, np.random.default_rng(0), mask_prob=0.2, ngram_prob=0.5)
    assert copies and all(c not in {" ".join(s) for s in SENTENCES} for c in copies)
    originals = [s for s in SENTENCES if len(s) >= 4]
    masked = ngrams = 0
    for copy in copies:
        words = copy.split()
        masked += MASK_WORD in words
        # every copy lines up with a stretch of one original, word for word or masked
        assert any(
            all(w in (MASK_WORD, o[start + i]) for i, w in enumerate(words))
            for o in originals
            for start in range(len(o) - len(words) + 1)
        )
        if len(words) not in {len(o) for o in originals}:
            ngrams += 1
            assert 1 <= len(words) <= MAX_NGRAM
    assert masked > 0 and ngrams > 0


def test_short_texts_get_no_copies_and_the_mask_is_one_unknown_word() -> None:
    assert perturbed_texts([["too", "short"]], 10, np.random.default_rng(0), mask_prob=1.0) == []
    tokenizer = build_tokenizer({"type": "word", "lowercase": True})
    rng = np.random.default_rng(0)
    (copy,) = perturbed_texts([["a", "b", "c", "d"]], 1, rng, mask_prob=1.0, ngram_prob=0)
    assert tokenizer.words(copy) == [MASK_WORD] * 4


def test_the_same_seed_gives_the_same_copies() -> None:
    def run() -> list[str]:
        return perturbed_texts(SENTENCES, 5, np.random.default_rng(13))

    assert run() == run()


CONLL = """-DOCSTART- -X- -X- O

A DT B-NP O
gripping JJ I-NP O
film NN I-NP O
. . O O

a DT B-NP O
dull JJ I-NP O
Film NN I-NP O
acted VBN I-VP O

acted VBD I-VP O
acted VBN I-VP O
"""


def test_each_word_takes_its_most_frequent_tag_in_the_tagged_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "train.txt"
    corpus.write_text(CONLL)
    lexicon = pos_lexicon(corpus)
    assert lexicon["a"] == "DT" and lexicon["film"] == "NN" and lexicon["gripping"] == "JJ"
    assert lexicon["acted"] == "VBN" and "-docstart-" not in lexicon


def test_a_replacement_has_the_words_tag_and_follows_the_training_frequencies() -> None:
    lexicon = {"gripping": "JJ", "dull": "JJ", "long": "JJ", "film": "NN", "a": "DT"}
    texts = [["a", "dull", "film"], ["dull", "and", "long"], ["dull", "dull", "gripping"]]
    replacer = PosReplacer(texts, lexicon)
    rng = np.random.default_rng(0)
    drawn = Counter(replacer.replace("gripping", rng) for _ in range(3000))
    assert set(drawn) == {"dull", "long", "gripping"}  # adjectives of the texts, not of the lexicon alone
    assert drawn["dull"] / 3000 == pytest.approx(4 / 6, abs=0.03)  # 4 of the 6 adjectives in the texts
    assert replacer.replace("film", rng) == "film" and replacer.replace("and", rng) == "and"  # unknown


def test_copies_replace_words_by_words_of_their_tag() -> None:
    lexicon = {"gripping": "JJ", "dull": "JJ", "beautifully": "RB", "far": "RB", "film": "NN"}
    replacer = PosReplacer(SENTENCES, lexicon)
    rng = np.random.default_rng(3)
    copies = perturbed_texts(
        SENTENCES, 30, rng, mask_prob=0.0, ngram_prob=0.0, pos_prob=1.0, replacer=replacer
    )
    originals = [s for s in SENTENCES if len(s) >= 4]
    assert copies
    for copy in copies:
        words = copy.split()
        original = next(o for o in originals if len(o) == len(words))
        for new, old in zip(words, original, strict=True):
            assert new == old or lexicon[new] == lexicon[old]
    with pytest.raises(ValueError, match="replacer"):
        perturbed_texts(SENTENCES, 1, rng, pos_prob=0.1)


def test_replacement_needs_a_lexicon_and_room_beside_the_mask() -> None:
    with pytest.raises(ValidationError, match="pos_lexicon"):
        DistillConfig(teacher="t", augment=2, pos_prob=0.1)
    with pytest.raises(ValidationError, match="at most 1"):
        DistillConfig(teacher="t", augment=2, mask_prob=0.6, pos_prob=0.5, pos_lexicon="ner/train.txt")
