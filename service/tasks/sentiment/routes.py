"""``POST /sentiment``: one text or a list of texts in, one labelled result per text out, in order."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.body import DirectRoute, json_body_openapi
from service.api.schemas import ERROR_RESPONSES
from service.api.texts import answer_texts
from service.tasks.sentiment.contract import TASK
from service.tasks.sentiment.schemas import SentimentRequest, SentimentResponse

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
    return await answer_texts(request, TASK, SentimentRequest)
