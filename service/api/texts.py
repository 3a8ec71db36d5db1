"""The request path shared by the text-in endpoints (``/sentiment``, ``/tag``, ``/translate``)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from service.api.body import read_json
from service.api.schemas import TextsRequest


async def answer_texts(request: Request, task: str, schema: type[TextsRequest]) -> JSONResponse:
    """Parse and check the body, pick the model, run every text through its batcher, answer in order."""
    payload = await read_json(request, schema)
    limits = request.app.state.settings.limits
    texts = payload.checked_texts(limits.max_texts, limits.max_text_chars)
    model = request.app.state.repository.resolve(task, payload.model)
    results = await model.infer_many(model.request_items(payload, texts))
    return JSONResponse({"model": model.name, "results": results})
