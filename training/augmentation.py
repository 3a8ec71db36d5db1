"""A larger transfer set for distillation: perturbed copies of the training texts for the teacher to label.

The recipe of Tang et al. (2019), "Distilling task-specific knowledge from BERT into simple neural
networks": each copy of a text masks every word with probability ``mask_prob``, else replaces it with
probability ``pos_prob`` by a word of the same part of speech (drawn from the training texts' words by
their frequency; each word's tag is its most frequent one in a tagged corpus, ``pos_lexicon``), and,
with probability ``ngram_prob``, keeps only a random n-gram (1 to 5 words) of it. A
sentiment copy carries no gold label: the student learns it from the teacher's distribution alone. An NER
copy takes the teacher's decoded tags as its gold tags besides the teacher's per-token distributions
(sequence-level distillation, Kim and Rush, 2016), so the student's CRF learns from it too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.readers import read_conll

if TYPE_CHECKING:
    from training.config import DistillConfig

#: the masked word: a word that no vocabulary holds, so that the teacher's codec and the student's both
#: encode it as their unknown id
MASK_WORD = "xxmaskxx"

MAX_NGRAM = 5


def pos_lexicon(path: Path) -> dict[str, str]:
    """Each word's most frequent part-of-speech tag (lowercased words) in a CoNLL-format file whose
    second column is the tag (CoNLL-2003: ``token POS chunk NER``)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for sentence in read_conll(path, tag_column=1):
        for token, tag in zip(sentence.tokens, sentence.tags, strict=True):
            counts[token.lower()][tag] += 1
    return {word: tags.most_common(1)[0][0] for word, tags in counts.items()}


class PosReplacer:
    """Draws a replacement for a word: a word of the training texts with the same tag, by frequency."""

    def __init__(self, word_lists: Sequence[Sequence[str]], lexicon: Mapping[str, str]):
        self.lexicon = lexicon
        frequency = Counter(w for words in word_lists for w in words if w.lower() in lexicon)
        by_tag: dict[str, list[str]] = defaultdict(list)
        for word in sorted(frequency):
            by_tag[lexicon[word.lower()]].append(word)
        self.pools = {
            tag: (words, np.cumsum([frequency[w] for w in words], dtype=np.float64))
            for tag, words in by_tag.items()
        }

    def replace(self, word: str, rng: np.random.Generator) -> str:
        """A word of ``word``'s tag (``word`` itself when the lexicon does not know it)."""
        tag = self.lexicon.get(word.lower())
        if tag is None:
            return word
        words, cumulative = self.pools[tag]
        return words[int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))]


def perturbed_texts(
    word_lists: Sequence[Sequence[str]],
    copies: int,
    rng: np.random.Generator,
    mask_prob: float = 0.1,
    ngram_prob: float = 0.25,
    min_words: int = 4,
    pos_prob: float = 0.0,
    replacer: PosReplacer | None = None,
) -> list[str]:
    """``copies`` perturbed versions of every text of at least ``min_words`` words, joined with spaces
    (each a text the tokenizer splits back into the same words), duplicates of the text itself left out.
    One draw per word decides between masking (``mask_prob``), replacing (the next ``pos_prob``; needs a
    ``replacer``) and keeping it, so that copies drawn without replacement stay those of a given seed."""
    if pos_prob and replacer is None:
        raise ValueError("pos_prob needs a replacer (a part-of-speech lexicon)")
    out: list[str] = []
    for words in word_lists:
        if len(words) < min_words:
            continue
        for _ in range(copies):
            kept = [
                MASK_WORD
                if draw < mask_prob
                else replacer.replace(word, rng)
                if draw < mask_prob + pos_prob
                else word
                for word, draw in zip(words, rng.random(len(words)), strict=True)
            ]
            if rng.random() < ngram_prob:
                n = int(rng.integers(1, min(MAX_NGRAM, len(kept)) + 1))
                start = int(rng.integers(0, len(kept) - n + 1))
                kept = kept[start : start + n]
            if kept != list(words):
                out.append(" ".join(kept))
    return out


def lexicon_path(distill: DistillConfig | None, data_path: Callable[[str], Path]) -> Path | None:
    """The part-of-speech lexicon's file when ``distill`` draws replacements, else None."""
    if distill is None or not distill.augment or not distill.pos_prob:
        return None
    return data_path(distill.pos_lexicon)


def distill_copies(
    word_lists: Sequence[Sequence[str]],
    distill: DistillConfig,
    seed: int,
    data_path: Callable[[str], Path],
) -> list[str]:
    """The copies ``distill`` asks for (``augment`` per text, its probabilities), drawn from ``seed``, so a
    resumed run rebuilds the same ones; none when ``augment`` is 0. ``data_path`` resolves the lexicon's
    file name (the data folder's)."""
    if not distill.augment:
        return []
    lexicon = lexicon_path(distill, data_path)
    replacer = PosReplacer(word_lists, pos_lexicon(lexicon)) if lexicon is not None else None
    return perturbed_texts(
        word_lists,
        distill.augment,
        np.random.default_rng(seed),
        mask_prob=distill.mask_prob,
        ngram_prob=distill.ngram_prob,
        pos_prob=distill.pos_prob,
        replacer=replacer,
    )
