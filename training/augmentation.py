"""A larger transfer set for distillation: perturbed copies of the training texts for the teacher to label.

The recipe of Tang et al. (2019), "Distilling task-specific knowledge from BERT into simple neural
networks", without its part-of-speech replacement: each copy of a text masks every word with probability
``mask_prob`` and, with probability ``ngram_prob``, keeps only a random n-gram (1 to 5 words) of it. A
sentiment copy carries no gold label: the student learns it from the teacher's distribution alone. An NER
copy takes the teacher's decoded tags as its gold tags besides the teacher's per-token distributions
(sequence-level distillation, Kim and Rush, 2016), so the student's CRF learns from it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from training.config import DistillConfig

#: the masked word: a word that no vocabulary holds, so that the teacher's codec and the student's both
#: encode it as their unknown id
MASK_WORD = "xxmaskxx"

MAX_NGRAM = 5


def perturbed_texts(
    word_lists: Sequence[Sequence[str]],
    copies: int,
    rng: np.random.Generator,
    mask_prob: float = 0.1,
    ngram_prob: float = 0.25,
    min_words: int = 4,
) -> list[str]:
    """``copies`` perturbed versions of every text of at least ``min_words`` words, joined with spaces
    (each a text the tokenizer splits back into the same words), duplicates of the text itself left out."""
    out: list[str] = []
    for words in word_lists:
        if len(words) < min_words:
            continue
        for _ in range(copies):
            masks = rng.random(len(words)) < mask_prob
            kept = [MASK_WORD if masked else word for word, masked in zip(words, masks, strict=True)]
            if rng.random() < ngram_prob:
                n = int(rng.integers(1, min(MAX_NGRAM, len(kept)) + 1))
                start = int(rng.integers(0, len(kept) - n + 1))
                kept = kept[start : start + n]
            if kept != list(words):
                out.append(" ".join(kept))
    return out


def distill_copies(word_lists: Sequence[Sequence[str]], distill: DistillConfig, seed: int) -> list[str]:
    """The copies ``distill`` asks for (``augment`` per text, its probabilities), drawn from ``seed``, so a
    resumed run rebuilds the same ones; none when ``augment`` is 0."""
    if not distill.augment:
        return []
    return perturbed_texts(
        word_lists,
        distill.augment,
        np.random.default_rng(seed),
        mask_prob=distill.mask_prob,
        ngram_prob=distill.ngram_prob,
    )
