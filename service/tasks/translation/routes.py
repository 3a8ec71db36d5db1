"""``POST /translate``: English text(s) in, French translation(s) out, in order."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.body import DirectRoute, json_body_openapi
from service.api.schemas import ERROR_RESPONSES
from service.api.texts import answer_texts
from service.tasks.translation.contract import TASK
from service.tasks.translation.schemas import TranslateRequest, TranslateResponse

router = APIRouter(tags=[TASK], route_class=DirectRoute)

_EXAMPLES = {
    "one text": {"summary": "one text, beam search", "value": {"text": "A man is riding a bicycle."}},
    "several texts, greedy": {
        "summary": "several texts, greedy decoding",
        "value": {"texts": ["Two dogs play in the snow.", "A woman is reading."], "beam_size": 1},
    },
    "attention": {
        "summary": "with subword tokens and attention weights",
        "value": {"text": "A child is smiling.", "return_attention": True},
    },
}


@router.post(
    "/translate",
    response_model=TranslateResponse,
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
    summary="Translate English text to French",
    openapi_extra=json_body_openapi(TranslateRequest, _EXAMPLES),
)
async def translate(request: Request) -> JSONResponse:
    return await answer_texts(request, TASK, TranslateRequest)
