"""``POST /sentiment``: one text or a list of texts in, one labelled result per text out, in order."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.body import DirectRoute, json_body_openapi, read_json
from service.schemas import ERROR_RESPONSES, SentimentRequest, SentimentResponse

TASK = "sentiment"
router = APIRouter(tags=[TASK], route_class=DirectRoute)

_EXAMPLES = {
    "one text": {"summary": "one text", "value": {"text": "a gripping , beautifully acted film ."}},
    "several texts": {
        "summary": "several texts, answered in order",
        "value": {"texts": ["a gripping , beautifully acted film .", "dull and far too long ."]},
    },
    "named model": {
        "summary": "a model other than the default (a name from /models)",
        "value": {"text": "not bad at all .", "model": "sentiment-gru"},
    },
}


@router.post(
    "/sentiment",
    response_model=SentimentResponse,
    responses=ERROR_RESPONSES,
    summary="Classify the sentiment of one or several texts",
    openapi_extra=json_body_openapi(SentimentRequest, _EXAMPLES),
)
async def sentiment(request: Request) -> JSONResponse:
    payload = await read_json(request, SentimentRequest)
    limits = request.app.state.settings.limits
    texts = payload.checked_texts(limits.max_texts, limits.max_text_chars)
    model = request.app.state.repository.resolve(TASK, payload.model)
    results = await model.infer_many(texts)
    return JSONResponse({"model": model.name, "results": results})
