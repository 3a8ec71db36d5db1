"""Request and response bodies of ``POST /sentiment``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas import TextsRequest


class SentimentRequest(TextsRequest):
    """Exactly one of ``text`` and ``texts``; an empty or white-space-only text has no sentiment (422)."""

    allow_blank: ClassVar[bool] = False

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"text": "a gripping , beautifully acted film ."}]}
    )

    model: str | None = Field(None, description="a sentiment model from /models; default: the task's default")


class SentimentResult(BaseModel):
    label: str = Field(description="the most probable label: 'negative' or 'positive' for SST-2 models")
    score: float = Field(description="probability of the label")
    scores: dict[str, float] = Field(description="probability of every label")


class SentimentResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    results: list[SentimentResult]
