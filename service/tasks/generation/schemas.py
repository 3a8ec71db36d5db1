"""Request and response bodies of ``POST /generate``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.api.schemas import JsonInt, RequestBody, SchemaContext, json_int
from service.tasks.generation.contract import TASK
from service.text import SPECIALS

MAX_STOP_SEQUENCES, MAX_STOP_CHARS = 8, 64
MAX_TOP_K = 2**63 - 1
Seed = json_int(ge=0, le=2**63 - 1)


class GenerateRequest(RequestBody):
    """The prompt's length and characters depend on the served models: ``openapi_schema`` states the
    limit and the characters every ready generation model accepts."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"prompt": "ROMEO:", "max_new_tokens": 200, "temperature": 0.8}]},
    )

    prompt: str = Field("", description="text to continue; may be empty (the model then starts from scratch)")
    max_new_tokens: JsonInt = Field(200, ge=1, le=1000, description="characters to generate at most")
    temperature: float = Field(1.0, ge=0, le=100, description="0: greedy (argmax); higher: more random")
    top_k: JsonInt = Field(
        0, ge=0, le=MAX_TOP_K, description="sample among the k most likely characters; 0: no limit"
    )
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass; 1: no limit")
    seed: Seed | None = Field(None, description="same seed, same text; none: random")
    stop: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_STOP_CHARS)]] = Field(
        default_factory=list,
        max_length=MAX_STOP_SEQUENCES,
        description=f"generation ends once the text ends with one of these (it is kept in the text); at"
        f" most {MAX_STOP_SEQUENCES} sequences of 1 to {MAX_STOP_CHARS} characters",
    )
    stream: bool = Field(False, description="answer with Server-Sent Events, one per chunk of characters")
    model: str | None = Field(
        None, description="a generation model from /models; default: the task's default"
    )

    @classmethod
    def openapi_schema(cls, context: SchemaContext) -> dict[str, Any]:
        """``prompt``: at most the smallest prompt limit of the ready generation models (else the
        settings' text limit), made of the characters they all know (when they reject the others)."""
        schema = super().openapi_schema(context)
        prompt = schema["properties"]["prompt"]
        models = context.ready_models(TASK)
        limits = [getattr(m, "max_prompt_chars", context.limits.max_text_chars) for m in models]
        prompt["maxLength"] = min(limits, default=context.limits.max_text_chars)
        known = None
        for model in models:
            codec = getattr(model, "codec", None)
            if codec is None or getattr(codec, "unknown", "reject") != "reject":
                continue
            chars = {ch for ch in codec.vocab.stoi if len(ch) == 1 and ch not in SPECIALS}
            known = chars if known is None else known & chars
        prompt["description"] += f"; at most {prompt['maxLength']} characters"
        if known is not None:
            chars = "".join(f"\\u{ord(ch):04x}" for ch in sorted(known))
            prompt["pattern"] = f"^[{chars}]*$" if chars else "^$"
            prompt["description"] += ", each one the models know (`pattern`; others are a 422 naming them)"
        return schema


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
