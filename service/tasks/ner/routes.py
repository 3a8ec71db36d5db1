"""``POST /tag``: named entities of one text or a list of texts, one result per text, in order.

Same request shape, limits and errors as ``/sentiment`` (``text`` or ``texts``, optional ``model``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.body import DirectRoute, json_body_openapi
from service.api.schemas import ERROR_RESPONSES
from service.api.texts import answer_texts
from service.tasks.ner.contract import TASK
from service.tasks.ner.schemas import TagRequest, TagResponse

router = APIRouter(tags=[TASK], route_class=DirectRoute)


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
    return await answer_texts(request, TASK, TagRequest)
