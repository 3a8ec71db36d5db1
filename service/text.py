"""The one text-processing implementation, shared by training and serving.

Tokenizers that keep character offsets into the original text, a JSON-backed vocabulary with
special tokens, and padding to ``(ids, lengths)`` arrays. numpy and the standard library only, so the
service imports it without torch.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)


@dataclass(frozen=True, slots=True)
class Token:
    """A token and its ``[start, end)`` character span in the original text."""

    text: str
    start: int
    end: int


class Tokenizer(Protocol):
    def tokenize(self, text: str) -> list[Token]: ...

    def words(self, text: str) -> list[str]:
        """The token texts of ``tokenize``, without offsets (what encoding for a model needs; faster)."""
        ...

    def spec(self) -> dict[str, Any]: ...


# Penn-Treebank-like word splitting, the style of SST-2 and CoNLL-2003: clitics ("n't", "'s", "'re")
# become tokens of their own, abbreviations ("U.S.") and numbers ("3.5", "1-0") stay whole,
# hyphenated words stay whole, and any other non-space character is a token by itself.
_WORD_PATTERN = re.compile(
    r"""
      \w+(?=n't\b)                      # "does" of "doesn't"
    | n't\b                             # "n't"
    | '(?:s|re|ve|ll|d|m)\b             # clitics
    | (?:[^\W\d_]\.){2,}                # abbreviations: U.S.  e.g.
    | \d+(?:[.,:/-]\d+)*                # numbers: 3.5  1,000  1-0  12/03
    | \w+(?:[-'’]\w+)*                  # words, hyphenated words, o'clock
    | \.\.\.+ | --+                     # ellipsis, dashes
    | \S                                # anything else, one character at a time
    """,
    re.VERBOSE | re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class WordTokenizer:
    """Regex word tokenizer with offsets; optionally lower-cases the token texts (not the offsets)."""

    lowercase: bool = False

    def tokenize(self, text: str) -> list[Token]:
        tokens = []
        for match in _WORD_PATTERN.finditer(text):
            word = match.group()
            tokens.append(Token(word.lower() if self.lowercase else word, match.start(), match.end()))
        return tokens

    def words(self, text: str) -> list[str]:
        words = _WORD_PATTERN.findall(text)  # the pattern has no groups: whole matches
        return [w.lower() for w in words] if self.lowercase else words

    def spec(self) -> dict[str, Any]:
        return {"type": "word", "lowercase": self.lowercase}


@dataclass(frozen=True, slots=True)
class WhitespaceTokenizer:
    """Splits on whitespace only: for text that is already tokenized (CoNLL columns, SST-2)."""

    lowercase: bool = False

    def tokenize(self, text: str) -> list[Token]:
        return [
            Token(m.group().lower() if self.lowercase else m.group(), m.start(), m.end())
            for m in re.finditer(r"\S+", text)
        ]

    def words(self, text: str) -> list[str]:
        words = text.split()  # str.isspace, as the pattern's \S
        return [w.lower() for w in words] if self.lowercase else words

    def spec(self) -> dict[str, Any]:
        return {"type": "whitespace", "lowercase": self.lowercase}


@dataclass(frozen=True, slots=True)
class CharTokenizer:
    """One token per Unicode code point (character-level language models)."""

    def tokenize(self, text: str) -> list[Token]:
        return [Token(ch, i, i + 1) for i, ch in enumerate(text)]

    def words(self, text: str) -> list[str]:
        return list(text)

    def spec(self) -> dict[str, Any]:
        return {"type": "char"}


_TOKENIZERS: dict[str, type] = {
    "word": WordTokenizer,
    "whitespace": WhitespaceTokenizer,
    "char": CharTokenizer,
}


def register_tokenizer(name: str, factory: type) -> None:
    """Adds a tokenizer type (e.g. SentencePiece) that ``build_tokenizer`` can rebuild from a spec."""
    _TOKENIZERS[name] = factory


def build_tokenizer(spec: dict[str, Any], base_dir: Path | None = None) -> Tokenizer:
    """Rebuilds a tokenizer from the ``spec()`` stored in a model manifest.

    ``base_dir`` resolves file options (``*_file``) relative to the model's version folder.
    """
    options = dict(spec)
    kind = options.pop("type")
    if kind not in _TOKENIZERS:
        raise ValueError(f"unknown tokenizer type {kind!r}; known: {sorted(_TOKENIZERS)}")
    if base_dir is not None:
        for key, value in options.items():
            if key.endswith("_file") and isinstance(value, str):
                options[key] = str(base_dir / value)
    return _TOKENIZERS[kind](**options)


class Vocab:
    """Token <-> id mapping with ``<pad>``=0, ``<unk>``=1, ``<bos>``=2, ``<eos>``=3."""

    def __init__(self, tokens: Sequence[str]):
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with the special tokens {SPECIALS}")
        self.itos: list[str] = list(tokens)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate tokens in vocabulary")

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    @classmethod
    def build(
        cls, sequences: Iterable[Iterable[str]], min_freq: int = 1, max_size: int | None = None
    ) -> Vocab:
        """Most frequent tokens first (ties broken alphabetically, so builds are reproducible)."""
        counts = Counter(tok for seq in sequences for tok in seq)
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(SPECIALS))]
        return cls([*SPECIALS, *ranked])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Iterable[str], add_bos: bool = False, add_eos: bool = False) -> list[int]:
        ids = [self.stoi.get(t, self.unk_id) for t in tokens]
        if add_bos:
            ids.insert(0, self.bos_id)
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Iterable[int], strip_specials: bool = True) -> list[str]:
        out = []
        for i in ids:
            tok = self.itos[int(i)]
            if strip_specials and tok in SPECIALS:
                if tok == EOS:
                    break
                continue
            out.append(tok)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"specials": list(SPECIALS), "tokens": self.itos}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vocab:
        return cls(data["tokens"])

    def save(self, path: Path | str) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path | str) -> Vocab:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int = Vocab.pad_id, min_length: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pads id sequences into ``(ids [B, T] int64, lengths [B] int64)``.

    ``T`` is the longest length (at least ``min_length``, so an empty sequence still has a column).
    """
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    width = max(int(lengths.max(initial=0)), min_length)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
    return ids, lengths


def char_ids_of(chars: Vocab, words: Iterable[str], max_chars: int) -> list[list[int]]:
    """Each word's first ``max_chars`` characters' ids (an empty word: one ``<unk>``)."""
    return [chars.encode(word[:max_chars]) or [chars.unk_id] for word in words]


def pad_nested(
    sequences: Sequence[Sequence[Sequence[int]]], pad_id: int = Vocab.pad_id
) -> tuple[np.ndarray, np.ndarray]:
    """Pads per-token character ids into ``(ids [B, T, C] int64, lengths [B, T] int64)``."""
    batch = len(sequences)
    width = max((len(s) for s in sequences), default=0) or 1
    depth = max((len(w) for s in sequences for w in s), default=0) or 1
    ids = np.full((batch, width, depth), pad_id, dtype=np.int64)
    lengths = np.zeros((batch, width), dtype=np.int64)
    for b, seq in enumerate(sequences):
        for t, word in enumerate(seq):
            ids[b, t, : len(word)] = word
            lengths[b, t] = len(word)
    return ids, lengths
