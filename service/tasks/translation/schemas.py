"""Request and response bodies of ``POST /translate``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas import JsonInt, TextsRequest

MAX_BEAM_SIZE, MAX_LENGTH = 8, 512


class TranslateRequest(TextsRequest):
    """Exactly one of ``text`` and ``texts``; decoding parameters are range-checked (422 naming the field).
    A text without source tokens (empty or white space only) has the empty answer: translation ``""``
    with score 0.0 (and empty token lists and attention when asked for)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"text": "A man is riding a bicycle.", "beam_size": 5}]}
    )

    model: str | None = Field(None, description="a translation model from /models; default: the default one")
    beam_size: JsonInt = Field(5, ge=1, le=MAX_BEAM_SIZE, description="1: greedy decoding")
    max_length: JsonInt = Field(100, ge=1, le=MAX_LENGTH, description="target subwords at most (with <eos>)")
    length_penalty: float = Field(1.0, ge=0.0, le=2.0, description="scores are log-prob / length**penalty")
    return_attention: bool = Field(False, description="also return subword tokens and attention weights")


class TranslateResult(BaseModel):
    translation: str
    score: float = Field(
        description="length-normalized log-probability of the translation (0.0 for an empty text)"
    )
    source_tokens: list[str] | None = None
    target_tokens: list[str] | None = None
    attention: list[list[float]] | None = Field(None, description="[target token][source token] weights")


class TranslateResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    results: list[TranslateResult]
