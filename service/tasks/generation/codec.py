"""Text generation (one-to-many): the character codec shared by training and serving.

A prompt becomes ``[<bos>, c_1, ..., c_n]`` (training windows start the same way, from a zero state), and
generated ids become text one character each. Characters outside the vocabulary follow a policy:

* ``"reject"`` (default): :class:`UnknownCharactersError` naming them (the API answers 422);
* ``"drop"``: they are removed from the prompt (documented lossy mapping).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from service.manifest import ModelManifest
from service.text import SPECIALS, Vocab

UnknownPolicy = Literal["reject", "drop"]


class UnknownCharactersError(ValueError):
    """The prompt holds characters the model never saw."""

    def __init__(self, characters: Iterable[str]):
        self.characters = sorted(set(characters))
        super().__init__(
            "the prompt contains characters this model does not know: "
            + ", ".join(repr(ch) for ch in self.characters)
        )


@dataclass(frozen=True)
class CharCodec:
    vocab: Vocab
    unknown: UnknownPolicy = "reject"

    def unknown_characters(self, text: str) -> list[str]:
        return sorted({ch for ch in text if ch not in self.vocab.stoi or ch in SPECIALS})

    def encode(self, prompt: str) -> list[int]:
        """``[<bos>, ids of the prompt's characters]``; never empty, so an empty prompt is valid."""
        missing = self.unknown_characters(prompt)
        if missing:
            if self.unknown == "reject":
                raise UnknownCharactersError(missing)
            prompt = "".join(ch for ch in prompt if ch not in missing)
        return [self.vocab.bos_id, *(self.vocab.stoi[ch] for ch in prompt)]

    def decode_token(self, token_id: int) -> str:
        """One generated id -> its character (special tokens produce no text)."""
        token = self.vocab.itos[token_id]
        return "" if token in SPECIALS else token

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.decode_token(int(i)) for i in ids)

    @property
    def special_ids(self) -> list[int]:
        return [self.vocab.stoi[s] for s in SPECIALS]

    @classmethod
    def from_manifest(cls, manifest: ModelManifest, version_dir: Path) -> CharCodec:
        return cls(
            vocab=Vocab.load(version_dir / manifest.files["vocab"]),
            unknown=manifest.task_options.get("unknown_characters", "reject"),
        )
