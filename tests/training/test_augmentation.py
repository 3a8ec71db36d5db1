"""Perturbed copies for the distillation transfer set."""

from __future__ import annotations

import numpy as np

from service.text import build_tokenizer
from training.augmentation import MASK_WORD, MAX_NGRAM, perturbed_texts

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
