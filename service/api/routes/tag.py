"""``POST /tag``: named entities of one text or a list of texts, one result per text, in order.

Same request shape, limits and errors as ``/sentiment`` (``text`` or ``texts``, optional ``model``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from service.api.body import DirectRoute, json_body_openapi, read_json
from service.schemas import ERROR_RESPONSES, TextsRequest

TASK = "ner"
router = APIRouter(tags=[TASK], route_class=DirectRoute)


class TagRequest(TextsRequest):
    """Exactly one of ``text`` and ``texts`` (raw text: tokenized by the service, offsets kept)."""

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


_EXAMPLES = {
    "one text": {
        "summary": "one text",
        "value": {"text": "EU rejects German call to boycott British lamb ."},
    },
    "several texts": {
        "summary": "several texts, answered in order",
        "value": {"texts": ["Peter Blackburn works in Brussels .", "Japan beat Syria 2-1 ."]},
    },
}


@router.post(
    "/tag",
    response_model=TagResponse,
    responses=ERROR_RESPONSES,
    summary="Tag the named entities of one or several texts",
    openapi_extra=json_body_openapi(TagRequest, _EXAMPLES),
)
async def tag(request: Request) -> JSONResponse:
    payload = await read_json(request, TagRequest)
    limits = request.app.state.settings.limits
    texts = payload.checked_texts(limits.max_texts, limits.max_text_chars)
    model = request.app.state.repository.resolve(TASK, payload.model)
    results = await model.infer_many(texts)
    return JSONResponse({"model": model.name, "results": results})
