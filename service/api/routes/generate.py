"""``POST /generate``: continue a prompt character by character, as one JSON answer or as Server-Sent Events.

Streaming follows the text-generation-inference convention: ``data: {json}`` events, one per chunk of
characters (whatever was generated since the client last read), and a final event that carries
``finish_reason`` and the whole ``generated_text``. A client that disconnects, streaming or not, frees
its batch slot before the next decoding step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from service.api.body import DirectRoute, json_body_openapi, read_json
from service.generation.scheduler import FINISHED, GenerationRequest
from service.generation.schemas import GenerateRequest, GenerateResponse
from service.schemas import ERROR_RESPONSES

if TYPE_CHECKING:
    from service.generation.plugin import GenerationModel

TASK = "generation"
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
    model: GenerationModel = request.app.state.repository.resolve(TASK, payload.model)
    job = model.prepare(payload)
    scheduler = model.scheduler
    timeout = model.batching.timeout_s
    if payload.stream:
        scheduler.submit(job)
        try:
            await scheduler.wait_started(job, timeout)  # errors before the first byte are plain JSON errors
        except BaseException:
            job.cancel()
            raise
        return _EventStream(job, model.name)
    generation = asyncio.ensure_future(scheduler.generate(job, timeout))
    disconnected = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({generation, disconnected}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        disconnected.cancel()
        if not generation.done():  # the client left (or this handler was cancelled): free the slot
            generation.cancel()
            job.cancel()
    if not generation.done():
        with contextlib.suppress(asyncio.CancelledError):
            await generation
        return JSONResponse({"detail": "client disconnected"}, status_code=499)
    generation.result()  # re-raises a timeout or an inference error
    return JSONResponse(
        {"model": model.name, "text": job.text, "finish_reason": job.finish_reason, "tokens": job.tokens}
    )


class _EventStream(StreamingResponse):
    """An SSE response that cancels its generation however the response ends.

    Under ASGI 2.4 servers (uvicorn) a disconnect surfaces as an error from ``send`` at the next event,
    which leaves the body generator unfinished until garbage collection; the ``finally`` here frees the
    batch slot at once instead.
    """

    def __init__(self, job: GenerationRequest, model_name: str):
        super().__init__(
            _events(job, model_name),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.job = job

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.cancel()
            await self.body_iterator.aclose()


async def _disconnect(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _sse(data: dict) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _events(job: GenerationRequest, model_name: str) -> AsyncIterator[bytes]:
    """One event per chunk (all queued since the last read); cancellation (disconnect) frees the slot."""
    queue = job.events
    try:
        while True:
            chunk, finished, error = [await queue.get()], False, None
            while not queue.empty():
                chunk.append(queue.get_nowait())
            if chunk[-1] is FINISHED:
                finished = True
                chunk.pop()
            errors = [c for c in chunk if isinstance(c, BaseException)]
            if errors:
                error = errors[0]
                chunk = [c for c in chunk if not isinstance(c, BaseException)]
            text = "".join(chunk)
            if error is not None:
                yield _sse({"error": str(error), "error_type": getattr(error, "code", "internal_error")})
                return
            if finished:
                yield _sse(
                    {
                        "text": text,
                        "tokens": len(chunk),
                        "finish_reason": job.finish_reason,
                        "generated_text": job.text,
                        "generated_tokens": job.tokens,
                        "model": model_name,
                    }
                )
                return
            yield _sse({"text": text, "tokens": len(chunk), "finish_reason": None})
    finally:
        job.cancel()
