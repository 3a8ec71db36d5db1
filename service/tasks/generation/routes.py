"""``POST /generate``: continue a prompt character by character, as one JSON answer or as Server-Sent Events.

Streaming follows the text-generation-inference convention: ``data: {json}`` events, one per chunk of
characters (whatever was generated since the client last read), and a final event that carries
``finish_reason`` and the whole ``generated_text``. A client that disconnects, streaming or not, frees
its batch slot before the next decoding step.
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.body import DirectRoute, json_body_openapi, read_json
from service.api.responses import JsonAnswer
from service.api.schemas import ERROR_RESPONSES
from service.api.streaming import EventStream, disconnected
from service.tasks.generation.contract import TASK
from service.tasks.generation.schemas import GenerateRequest, GenerateResponse

router = APIRouter(tags=[TASK], route_class=DirectRoute)

_EXAMPLES = {
    "continue a prompt": {
        "summary": "continue a prompt",
        "value": {"prompt": "ROMEO:\n", "max_new_tokens": 200, "temperature": 0.8, "top_k": 20, "seed": 1},
    },
    "greedy, with a stop sequence": {
        "summary": "greedy decoding until a blank line",
        "value": {"prompt": "First Citizen:\n", "temperature": 0, "stop": ["\n\n"]},
    },
    "from nothing, streamed": {
        "summary": "an empty prompt, streamed as Server-Sent Events",
        "value": {"prompt": "", "max_new_tokens": 300, "stream": True, "seed": 7},
    },
}

_STREAM_DOC = {
    "description": "JSON, or with `stream: true` Server-Sent Events `data: {text, tokens, finish_reason}`",
    "content": {"text/event-stream": {}},
}


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={**ERROR_RESPONSES, 200: _STREAM_DOC},
    summary="Generate text from a prompt (optionally streamed as Server-Sent Events)",
    openapi_extra=json_body_openapi(GenerateRequest, _EXAMPLES),
)
async def generate(request: Request) -> Response:
    payload = await read_json(request, GenerateRequest)
    model = request.app.state.repository.resolve(TASK, payload.model)
    if payload.stream:
        return EventStream(await model.stream(payload))
    return JsonAnswer(await model.generate(payload, partial(disconnected, request)))
