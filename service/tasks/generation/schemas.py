"""Request and response bodies of ``POST /generate``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_STOP_SEQUENCES, MAX_STOP_CHARS = 8, 64


class GenerateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        protected_namespaces=(),
        json_schema_extra={"examples": [{"prompt": "ROMEO:", "max_new_tokens": 200, "temperature": 0.8}]},
    )

    prompt: str = Field("", description="text to continue; may be empty (the model then starts from scratch)")
    max_new_tokens: int = Field(200, ge=1, le=1000, description="characters to generate at most")
    temperature: float = Field(1.0, ge=0, le=100, description="0: greedy (argmax); higher: more random")
    top_k: int = Field(0, ge=0, description="sample among the k most likely characters; 0: no limit")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass; 1: no limit")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="same seed, same text; none: random")
    stop: list[str] = Field(
        default_factory=list,
        max_length=MAX_STOP_SEQUENCES,
        description="generation ends once the text ends with one of these (it is kept in the text)",
    )
    stream: bool = Field(False, description="answer with Server-Sent Events, one per chunk of characters")
    model: str | None = Field(
        None, description="a generation model from /models; default: the task's default"
    )


class GenerateResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    text: str = Field(description="the generated characters (the prompt is not repeated)")
    finish_reason: Literal["length", "stop"]
    tokens: int = Field(description="characters generated")


class StreamChunk(BaseModel):
    """One SSE ``data:`` payload. The last one has ``finish_reason`` set and the totals."""

    model_config = ConfigDict(protected_namespaces=())

    text: str = Field(description="characters generated since the previous event")
    tokens: int = Field(description="characters in this event")
    finish_reason: Literal["length", "stop"] | None = None
    generated_text: str | None = Field(None, description="last event only: the whole text")
    generated_tokens: int | None = Field(None, description="last event only: characters generated")
    model: str | None = Field(None, description="last event only")
