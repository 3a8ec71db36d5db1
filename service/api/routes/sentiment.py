"""``POST /sentiment``: one text or a list of texts in, one labelled result per text out, in order."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.body import DirectRoute, json_body_openapi, read_json
from service.errors import InvalidInput, LimitExceeded
from service.schemas import ERROR_RESPONSES, SentimentRequest, SentimentResponse, TextsRequest

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


def texts_of(payload: TextsRequest, max_texts: int, max_chars: int) -> list[str]:
    """The request's texts, after the one-of and limit checks (each error names its field)."""
    if (payload.text is None) == (payload.texts is None):
        raise InvalidInput("give exactly one of 'text' and 'texts'", field="text")
    if payload.text is not None:
        texts, names = [payload.text], ["text"]
    else:
        texts = payload.texts
        if len(texts) > max_texts:
            raise LimitExceeded(
                f"texts has {len(texts)} items; the limit is {max_texts}", field="texts", limit=max_texts
            )
        names = [f"texts[{i}]" for i in range(len(texts))]
    for name, text in zip(names, texts, strict=True):
        if len(text) > max_chars:
            raise LimitExceeded(
                f"{name} has {len(text)} characters; the limit is {max_chars}", field=name, limit=max_chars
            )
    return texts


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
    texts = texts_of(payload, limits.max_texts, limits.max_text_chars)
    model = request.app.state.repository.resolve(TASK, payload.model)
    results = await model.infer_many(texts)
    return JSONResponse({"model": model.name, "results": results})
