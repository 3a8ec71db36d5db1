"""Translation (sequence-to-sequence): SentencePiece subwords in, detokenized text out.

Holds :class:`TranslationCodec`, the one place where a source text becomes encoder input and target ids
become text; training builds its tensors with it too. The SentencePiece tokenizer is the shared one of
``service.subwords``.

SentencePiece models are trained with ``<pad>``=0, ``<unk>``=1, ``<bos>``=2, ``<eos>``=3, so piece ids are
the ids of the project's :class:`~service.text.Vocab` (the manifest also ships ``vocab.json`` files).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.manifest import ModelManifest
from service.subwords import SentencePieceTokenizer
from service.tasks.translation.contract import SRC_IDS, SRC_LENGTHS
from service.text import Vocab, pad_batch


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
