"""Translation (sequence-to-sequence): SentencePiece subwords in, detokenized text out.

Registers the ``sentencepiece`` tokenizer type with the shared registry of ``service.text`` (so a
manifest's ``tokenizer`` spec rebuilds it) and holds :class:`TranslationCodec`, the one place where a source
text becomes encoder input and target ids become text; training builds its tensors with it too.

SentencePiece models are trained with ``<pad>``=0, ``<unk>``=1, ``<bos>``=2, ``<eos>``=3, so piece ids are
the ids of the project's :class:`~service.text.Vocab` (the manifest also ships ``vocab.json`` files).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

from service.manifest import ModelManifest
from service.tasks.translation.contract import SRC_IDS, SRC_LENGTHS
from service.text import BOS, EOS, PAD, UNK, Token, Vocab, pad_batch, register_tokenizer


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


register_tokenizer("sentencepiece", SentencePieceTokenizer)


def train_sentencepiece(lines: Iterable[str], prefix: Path, vocab_size: int) -> SentencePieceTokenizer:
    """Trains ``<prefix>.model`` with the project's special-token ids (training only).

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
    )
    path = prefix.parent / f"{prefix.name}.model"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.getvalue())
    return SentencePieceTokenizer(str(path))


def vocab_of(tokenizer: SentencePieceTokenizer) -> Vocab:
    return Vocab(tokenizer.pieces())


@dataclass(frozen=True)
class TranslationCodec:
    source: SentencePieceTokenizer
    target: SentencePieceTokenizer
    max_source_tokens: int = 256

    @property
    def target_vocab_size(self) -> int:
        return self.target.processor.get_piece_size()

    def encode_source(self, text: str) -> list[int]:
        """Source ids ending in ``<eos>``, truncated to ``max_source_tokens``."""
        ids = self.source.encode_ids(text)[: self.max_source_tokens - 1]
        return [*ids, Vocab.eos_id]

    def encode_target(self, text: str) -> list[int]:
        """Target ids without ``<bos>``/``<eos>`` (training adds them)."""
        return self.target.encode_ids(text)

    def collate(self, encoded: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        ids, lengths = pad_batch(encoded, Vocab.pad_id)
        return {SRC_IDS: ids, SRC_LENGTHS: lengths}

    def decode(self, ids: Sequence[int]) -> str:
        """Target ids -> detokenized text; stops at ``<eos>``, drops other specials."""
        out = []
        for i in ids:
            if i == Vocab.eos_id:
                break
            if i > Vocab.eos_id:
                out.append(int(i))
        return self.target.detokenize(out)

    def source_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.source.processor.id_to_piece(int(i)) for i in ids]

    def target_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.target.processor.id_to_piece(int(i)) for i in ids]

    @classmethod
    def from_manifest(cls, manifest: ModelManifest, version_dir: Path) -> TranslationCodec:
        options = manifest.task_options
        return cls(
            source=SentencePieceTokenizer(str(version_dir / manifest.files["source_spm"])),
            target=SentencePieceTokenizer(str(version_dir / manifest.files["target_spm"])),
            max_source_tokens=int(options.get("max_source_tokens", 256)),
        )
