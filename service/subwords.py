"""Subword tokenizers over SentencePiece models, shared by the tasks that use them.

``sentencepiece`` splits a whole text into pieces (translation). ``word_pieces`` keeps the words of the
word tokenizer and spells only the rare and unseen ones in pieces (sentiment): a word the model never saw
then shares what it learned about its parts ("unwatchable" -> ``▁un ##watch ##able``) instead of
collapsing to ``<unk>``. Both types register with the shared registry of ``service.text``, so a manifest's
``tokenizer`` spec rebuilds them. SentencePiece models are trained with ``<pad>``=0, ``<unk>``=1,
``<bos>``=2, ``<eos>``=3, the ids of the project's :class:`~service.text.Vocab`.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

from service.text import BOS, EOS, PAD, UNK, Token, WordTokenizer, register_tokenizer

#: marks a piece that continues a word; the first piece of a word carries SentencePiece's "▁" instead
CONTINUES = "##"
#: the files of a word_pieces tokenizer, in its model's version folder
PIECES_FILE, WORDS_FILE = "pieces.model", "words.txt"
#: spellings remembered per tokenizer (texts bring endless new words: emptied when full)
SPELLING_CACHE = 65_536


@dataclass(frozen=True)
class SentencePieceTokenizer:
    """Subword tokenizer over a trained SentencePiece model; keeps character offsets like the others."""

    model_file: str
    processor: spm.SentencePieceProcessor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "processor", spm.SentencePieceProcessor(model_file=str(self.model_file)))

    def tokenize(self, text: str) -> list[Token]:
        proto = self.processor.encode(text, return_type="proto")
        # byte offsets -> character offsets
        char_at = np.cumsum([0] + [len(ch.encode("utf-8")) for ch in text]).tolist()
        to_char = {b: i for i, b in enumerate(char_at)}
        return [Token(p.piece, to_char.get(p.begin, 0), to_char.get(p.end, len(text))) for p in proto.pieces]

    def words(self, text: str) -> list[str]:
        return self.processor.encode(text, out_type=str)

    def encode_ids(self, text: str) -> list[int]:
        return self.processor.encode(text)

    def detokenize(self, ids: Iterable[int]) -> str:
        return self.processor.decode([int(i) for i in ids])

    def pieces(self) -> list[str]:
        return [self.processor.id_to_piece(i) for i in range(self.processor.get_piece_size())]

    def spec(self) -> dict[str, Any]:
        return {"type": "sentencepiece", "model_file": Path(self.model_file).name}


def train_sentencepiece(
    lines: Iterable[str], prefix: Path, vocab_size: int, **options: Any
) -> SentencePieceTokenizer:
    """Trains ``<prefix>.model`` with the project's special-token ids (training only); ``options`` are
    further ``SentencePieceTrainer`` settings.

    The model is written through ``model_writer`` rather than ``model_prefix``, which SentencePiece would
    record inside the model: the same lines then give byte-identical files wherever they are trained.
    """
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(lines)),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        pad_piece=PAD,
        unk_piece=UNK,
        bos_piece=BOS,
        eos_piece=EOS,
        hard_vocab_limit=False,
        minloglevel=2,
        **options,
    )
    path = prefix.parent / f"{prefix.name}.model"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.getvalue())
    return SentencePieceTokenizer(str(path))


@dataclass(frozen=True)
class RareWordPieceTokenizer:
    """The word tokenizer's words; a word not in ``words_file`` (one per line) is spelled in the pieces
    of ``model_file`` instead: its first piece with SentencePiece's "▁", the others after ``CONTINUES``.
    A piece's offsets are its characters' within the word (the whole word's when lower-casing changed
    the word's length)."""

    model_file: str
    words_file: str
    lowercase: bool = True
    base: WordTokenizer = field(init=False, repr=False, compare=False)
    whole: frozenset[str] = field(init=False, repr=False, compare=False)
    processor: spm.SentencePieceProcessor = field(init=False, repr=False, compare=False)
    _spelled: dict[str, list[str]] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        whole = Path(self.words_file).read_text(encoding="utf-8").split("\n")  # words hold no "\n"
        object.__setattr__(self, "base", WordTokenizer(lowercase=self.lowercase))
        object.__setattr__(self, "whole", frozenset(whole))
        object.__setattr__(self, "processor", spm.SentencePieceProcessor(model_file=str(self.model_file)))

    def spell(self, word: str) -> list[str]:
        """``word`` itself if it is a whole word, else its pieces."""
        if word in self.whole:
            return [word]
        spelled = self._spelled.get(word)
        if spelled is None:
            first, *rest = self.processor.encode(word, out_type=str) or [word]
            spelled = [first, *(CONTINUES + piece for piece in rest)]
            if len(self._spelled) >= SPELLING_CACHE:
                self._spelled.clear()
            self._spelled[word] = spelled
        return spelled

    def words(self, text: str) -> list[str]:
        out: list[str] = []
        for word in self.base.words(text):
            out.extend(self.spell(word))
        return out

    def tokenize(self, text: str) -> list[Token]:
        tokens: list[Token] = []
        for token in self.base.tokenize(text):
            pieces = self.spell(token.text)
            if len(pieces) == 1:
                tokens.append(token)
                continue
            widths = [len(p.removeprefix("▁").removeprefix(CONTINUES)) for p in pieces]
            if sum(widths) != token.end - token.start:
                tokens.extend(Token(p, token.start, token.end) for p in pieces)
                continue
            start = token.start
            for piece, width in zip(pieces, widths, strict=True):
                tokens.append(Token(piece, start, start + width))
                start += width
        return tokens

    @classmethod
    def in_folder(cls, folder: Path, lowercase: bool = True) -> RareWordPieceTokenizer:
        """The tokenizer of the files ``train_word_pieces`` wrote into ``folder``."""
        return cls(str(folder / PIECES_FILE), str(folder / WORDS_FILE), lowercase=lowercase)

    def files(self) -> list[Path]:
        return [Path(self.model_file), Path(self.words_file)]

    def spec(self) -> dict[str, Any]:
        return {
            "type": "word_pieces",
            "model_file": Path(self.model_file).name,
            "words_file": Path(self.words_file).name,
            "lowercase": self.lowercase,
        }


def train_word_pieces(
    texts: Iterable[str], folder: Path, pieces: int, whole_word_min_freq: int, lowercase: bool = True
) -> RareWordPieceTokenizer:
    """A :class:`RareWordPieceTokenizer` for ``texts`` (training only): the words seen at least
    ``whole_word_min_freq`` times stay whole (``words.txt``); ``pieces.model`` has about ``pieces`` pieces,
    trained on every distinct word, so rare training words are spelled as unseen ones will be."""
    base = WordTokenizer(lowercase=lowercase)
    counts = Counter(word for text in texts for word in base.words(text))
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    folder.mkdir(parents=True, exist_ok=True)
    whole = "".join(f"{w}\n" for w in ranked if counts[w] >= whole_word_min_freq)
    (folder / WORDS_FILE).write_text(whole, encoding="utf-8")
    # "identity": pieces are the word's own characters, so they concatenate back to it (and give offsets)
    train_sentencepiece(ranked, folder / Path(PIECES_FILE).stem, pieces, normalization_rule_name="identity")
    return RareWordPieceTokenizer.in_folder(folder, lowercase)


register_tokenizer("sentencepiece", SentencePieceTokenizer)
register_tokenizer("word_pieces", RareWordPieceTokenizer)
