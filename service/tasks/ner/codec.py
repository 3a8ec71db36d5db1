"""NER tagging (many-to-many): text -> tokens with offsets -> word + char ids -> emissions -> BIO tags.

The codec is the single place where text becomes tagger input and emission scores become tokens and
entities; training builds its tensors with ``encode_tokens``/``collate`` too. The network's ONNX graph
stops at per-token emission scores ``[B, T, K]``; decoding runs here in numpy:

* CRF models: Viterbi with the learned transition matrix and start/end scores (``transitions.json`` in the
  version folder), with BIO-invalid moves (``O -> I-X``, ``B-X/I-X -> I-Y``, start ``-> I-X``) forbidden,
  so every decode is valid BIO. Token confidence is the CRF marginal (forward-backward) of the chosen tag.
* softmax models: per-token argmax, then :func:`repair_bio` (an ``I-X`` that cannot continue becomes
  ``B-X``). Token confidence is the softmax probability of the chosen tag.

An entity's ``score`` is the **mean** confidence of its tokens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.manifest import ModelManifest
from service.tasks.ner.contract import CHAR_IDS, LENGTHS, TRANSITIONS_KEY, WORD_IDS
from service.text import Token, Tokenizer, Vocab, build_tokenizer, char_ids_of, pad_batch, pad_nested

OUTSIDE = "O"
#: score added to forbidden transitions; finite so sums stay finite, large enough to never win
FORBIDDEN = -1e4
_DIGITS = re.compile(r"\d")


# --- tag schemes ----------------------------------------------------------------------------------------
def _split(tag: str) -> tuple[str, str]:
    """``"B-PER" -> ("B", "PER")``, ``"O" -> ("O", "")``."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in ("B", "I") or not kind:
        raise ValueError(f"not a BIO/IOB tag: {tag!r}")
    return prefix, kind


def iob1_to_bio(tags: Sequence[str]) -> list[str]:
    """IOB1 (CoNLL-2003: ``B-`` only between two adjacent entities of one type) -> BIO/IOB2."""
    out: list[str] = []
    previous = OUTSIDE
    for tag in tags:
        prefix, kind = _split(tag)
        if prefix == "I":
            p_prefix, p_kind = _split(previous)
            if p_prefix == OUTSIDE or p_kind != kind:
                tag = f"B-{kind}"
        out.append(tag)
        previous = tag
    return out


def can_follow(previous: str | None, tag: str) -> bool:
    """Whether ``tag`` may follow ``previous`` in BIO (``None``: sentence start)."""
    prefix, kind = _split(tag)
    if prefix != "I":
        return True
    if previous is None:
        return False
    p_prefix, p_kind = _split(previous)
    return p_prefix != OUTSIDE and p_kind == kind


def is_valid_bio(tags: Sequence[str]) -> bool:
    previous: str | None = None
    for tag in tags:
        if not can_follow(previous, tag):
            return False
        previous = tag
    return True


def repair_bio(tags: Sequence[str]) -> list[str]:
    """An ``I-X`` that cannot continue the previous tag starts an entity instead (``B-X``)."""
    out: list[str] = []
    for tag in tags:
        if not can_follow(out[-1] if out else None, tag):
            tag = f"B-{_split(tag)[1]}"
        out.append(tag)
    return out


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities of a valid BIO sequence as ``(label, first token, last token + 1)``."""
    spans: list[tuple[str, int, int]] = []
    for i, tag in enumerate(tags):
        prefix, kind = _split(tag)
        if prefix == "B":
            spans.append((kind, i, i + 1))
        elif prefix == "I":
            label, start, _ = spans[-1]
            spans[-1] = (label, start, i + 1)
    return spans


def transition_masks(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(allowed [K, K] from -> to, allowed_start [K])`` of BIO (any tag may end a sentence)."""
    allowed = np.array([[can_follow(a, b) for b in labels] for a in labels], dtype=bool)
    start = np.array([can_follow(None, b) for b in labels], dtype=bool)
    return allowed, start


# --- CRF decoding in numpy ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CrfScores:
    """Transition scores ``transitions[i, j]`` (tag i -> tag j), ``start[j]``, ``end[i]``."""

    transitions: np.ndarray
    start: np.ndarray
    end: np.ndarray

    def constrained(self, labels: Sequence[str]) -> CrfScores:
        allowed, allowed_start = transition_masks(labels)
        return CrfScores(
            np.where(allowed, self.transitions, FORBIDDEN).astype(np.float64),
            np.where(allowed_start, self.start, FORBIDDEN).astype(np.float64),
            np.asarray(self.end, dtype=np.float64),
        )

    def to_json(self, labels: Sequence[str]) -> dict[str, Any]:
        return {
            "labels": list(labels),
            "transitions": np.asarray(self.transitions, dtype=float).tolist(),
            "start": np.asarray(self.start, dtype=float).tolist(),
            "end": np.asarray(self.end, dtype=float).tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], labels: Sequence[str]) -> CrfScores:
        if list(data["labels"]) != list(labels):
            raise ValueError(f"transitions are for labels {data['labels']}, the model has {list(labels)}")
        k = len(labels)
        scores = cls(*(np.asarray(data[key], dtype=np.float64) for key in ("transitions", "start", "end")))
        if scores.transitions.shape != (k, k) or scores.start.shape != (k,) or scores.end.shape != (k,):
            raise ValueError(f"transition shapes do not match {k} labels")
        return scores


def viterbi(emissions: np.ndarray, crf: CrfScores) -> tuple[list[int], float]:
    """Best tag path of ``emissions [T, K]`` (T >= 1) and its score."""
    emissions = np.asarray(emissions, dtype=np.float64)
    score = crf.start + emissions[0]
    backpointers = []
    for t in range(1, len(emissions)):
        candidates = score[:, None] + crf.transitions  # [from, to]
        best = candidates.argmax(axis=0)
        backpointers.append(best)
        score = candidates[best, np.arange(len(best))] + emissions[t]
    score = score + crf.end
    last = int(score.argmax())
    path = [last]
    for best in reversed(backpointers):
        path.append(int(best[path[-1]]))
    path.reverse()
    return path, float(score[last])


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    peak = x.max(axis=axis, keepdims=True)
    return (peak + np.log(np.exp(x - peak).sum(axis=axis, keepdims=True))).squeeze(axis)


def crf_marginals(emissions: np.ndarray, crf: CrfScores) -> np.ndarray:
    """Per-token tag marginals ``[T, K]`` of the CRF (forward-backward in log space)."""
    emissions = np.asarray(emissions, dtype=np.float64)
    steps = len(emissions)
    alpha = np.empty_like(emissions)
    beta = np.empty_like(emissions)
    alpha[0] = crf.start + emissions[0]
    for t in range(1, steps):
        alpha[t] = _logsumexp(alpha[t - 1][:, None] + crf.transitions, axis=0) + emissions[t]
    beta[-1] = crf.end
    for t in range(steps - 2, -1, -1):
        beta[t] = _logsumexp(crf.transitions + (emissions[t + 1] + beta[t + 1])[None, :], axis=1)
    log_z = _logsumexp(alpha[-1] + crf.end, axis=0)
    return np.exp(alpha + beta - log_z)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --- the codec ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodedText:
    tokens: list[Token]
    word_ids: list[int]
    char_ids: list[list[int]]


@dataclass(frozen=True)
class NerCodec:
    tokenizer: Tokenizer
    words: Vocab
    chars: Vocab
    labels: tuple[str, ...]
    crf: CrfScores | None = None  # None: softmax model (argmax + BIO repair)
    lowercase_words: bool = True
    zero_digits: bool = False  # word lookup maps every digit to 0 (chars keep the digits)
    max_tokens: int = 512
    max_word_chars: int = 30

    def __post_init__(self) -> None:
        for label in self.labels:
            _split(label)  # every label is O or B-/I-
        if self.crf is not None:
            object.__setattr__(self, "_decoding", self.crf.constrained(self.labels))

    def word_key(self, text: str) -> str:
        if self.zero_digits:
            text = _DIGITS.sub("0", text)
        return text.lower() if self.lowercase_words else text

    def encode_tokens(self, words: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        """Word ids and per-word char ids (chars of the original, cased word, truncated)."""
        word_ids = self.words.encode(self.word_key(w) for w in words)
        return word_ids, char_ids_of(self.chars, words, self.max_word_chars)

    def encode(self, text: str) -> EncodedText:
        """Tokens (with offsets into ``text``) truncated to ``max_tokens``; may be empty."""
        tokens = self.tokenizer.tokenize(text)[: self.max_tokens]
        word_ids, char_ids = self.encode_tokens([t.text for t in tokens])
        return EncodedText(tokens, word_ids, char_ids)

    def collate(
        self, word_ids: Sequence[Sequence[int]], char_ids: Sequence[Sequence[Sequence[int]]]
    ) -> dict[str, np.ndarray]:
        ids, lengths = pad_batch(word_ids, self.words.pad_id)
        chars, _ = pad_nested(char_ids, self.chars.pad_id)
        if chars.shape[1] < ids.shape[1]:  # all sequences empty: keep T equal
            chars = np.zeros((ids.shape[0], ids.shape[1], chars.shape[2]), dtype=np.int64)
        return {WORD_IDS: ids, CHAR_IDS: chars, LENGTHS: lengths}

    def best_tags(self, emissions: np.ndarray) -> list[str]:
        """The tags of :meth:`decode_tags` without the confidences (evaluation)."""
        if len(emissions) == 0:
            return []
        if self.crf is not None:
            return [self.labels[i] for i in viterbi(emissions, self._decoding)[0]]  # type: ignore[attr-defined]
        return repair_bio([self.labels[i] for i in np.asarray(emissions).argmax(axis=1).tolist()])

    def decode_tags(self, emissions: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Valid BIO tags of one sentence's emissions ``[T, K]`` and each tag's confidence ``[T]``."""
        if len(emissions) == 0:
            return [], np.zeros(0)
        if self.crf is not None:
            decoding: CrfScores = self._decoding  # type: ignore[attr-defined]
            path, _ = viterbi(emissions, decoding)
            probabilities = crf_marginals(emissions, decoding)
            tags = [self.labels[i] for i in path]
        else:
            probabilities = softmax(np.asarray(emissions, dtype=np.float64))
            path = probabilities.argmax(axis=1).tolist()
            tags = repair_bio([self.labels[i] for i in path])
        confidence = probabilities[np.arange(len(path)), path]
        return tags, confidence

    def decode(self, text: str, encoded: EncodedText, emissions: np.ndarray) -> dict[str, Any]:
        """``{"tokens": [{text, start, end, tag}], "entities": [{text, label, start, end, score}]}``."""
        tags, confidence = self.decode_tags(emissions[: len(encoded.tokens)])
        tokens = encoded.tokens
        return {
            "tokens": [
                {"text": text[t.start : t.end], "start": t.start, "end": t.end, "tag": tag}
                for t, tag in zip(tokens, tags, strict=True)
            ],
            "entities": [
                {
                    "text": text[tokens[first].start : tokens[last - 1].end],
                    "label": label,
                    "start": tokens[first].start,
                    "end": tokens[last - 1].end,
                    "score": float(confidence[first:last].mean()),
                }
                for label, first, last in bio_spans(tags)
            ],
        }

    @classmethod
    def from_manifest(cls, manifest: ModelManifest, version_dir: Path) -> NerCodec:
        labels = tuple(manifest.labels)
        crf = None
        if TRANSITIONS_KEY in manifest.files:
            data = json.loads((version_dir / manifest.files[TRANSITIONS_KEY]).read_text(encoding="utf-8"))
            crf = CrfScores.from_json(data, labels)
        options = manifest.task_options
        return cls(
            tokenizer=build_tokenizer(manifest.tokenizer, version_dir),
            words=Vocab.load(version_dir / manifest.files["vocab"]),
            chars=Vocab.load(version_dir / manifest.files["chars"]),
            labels=labels,
            crf=crf,
            lowercase_words=bool(options.get("lowercase_words", True)),
            zero_digits=bool(options.get("zero_digits", False)),
            max_tokens=int(options.get("max_tokens", 512)),
            max_word_chars=int(options.get("max_word_chars", 30)),
        )
