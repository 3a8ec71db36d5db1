"""Request and response bodies of ``POST /tag``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas import TextsRequest


class TagRequest(TextsRequest):
    """Exactly one of ``text`` and ``texts`` (raw text: tokenized by the service, offsets kept). A text
    without tokens (empty or white space only) has the empty answer: no tokens, no entities."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"text": "EU rejects German call to boycott British lamb ."}]}
    )

    model: str | None = Field(None, description="an NER model from /models; default: the task's default")


class TaggedToken(BaseModel):
    text: str
    start: int = Field(description="character offset into the input text")
    end: int = Field(description="exclusive end offset: text[start:end] is the token")
    tag: str = Field(description="BIO tag, e.g. B-PER, I-PER, O")


class Entity(BaseModel):
    text: str = Field(description="equals the input text[start:end]")
    label: str = Field(description="entity type: PER, ORG, LOC, MISC for CoNLL-2003 models")
    start: int
    end: int
    score: float = Field(description="mean confidence (CRF marginal or softmax probability) of its tokens")


class TagResult(BaseModel):
    tokens: list[TaggedToken]
    entities: list[Entity]


class TagResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    results: list[TagResult]
