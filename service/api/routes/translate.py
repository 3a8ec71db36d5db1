"""``POST /translate``: English text(s) in, French translation(s) out, in order."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.body import DirectRoute, json_body_openapi, read_json
from service.schemas import ERROR_RESPONSES
from service.translation.schemas import TranslateRequest, TranslateResponse
from service.translation.search import SearchParams

TASK = "translation"
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
    payload = await read_json(request, TranslateRequest)
    limits = request.app.state.settings.limits
    texts = payload.checked_texts(limits.max_texts, limits.max_text_chars)
    model = request.app.state.repository.resolve(TASK, payload.model)
    params = SearchParams(
        beam_size=payload.beam_size,
        max_length=payload.max_length,
        length_penalty=payload.length_penalty,
        return_attention=payload.return_attention,
    )
    results = await model.infer_many([(text, params) for text in texts])
    return JSONResponse({"model": model.name, "results": results})
