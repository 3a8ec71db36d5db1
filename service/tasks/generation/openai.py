"""OpenAI-compatible text completions on the generation models: ``POST /v1/completions``, ``GET /v1/models``.

The same models and step scheduler as ``/generate``: a request of ``n`` completions is submitted as ``n``
generations together, which run as rows of the same step batch (completion ``i`` uses ``seed + i``).
Tokens are characters (the models are character level): ``max_tokens`` counts characters and ``usage``
counts the prompt's characters and the characters generated. As in OpenAI's API, a stop sequence ends
the text but is not part of it (``/generate`` keeps it).

Every field of OpenAI's request is known: the supported ones are honoured, the others (``logprobs``,
``echo``, ``best_of`` ...) are accepted only at the value that changes nothing (``null``, ``false``, ``0``,
``best_of`` 1 ...) and are otherwise a 400 naming them; fields OpenAI does not define are a 400 too,
except ``top_k`` (as in vLLM). The OpenAPI document states each of these rules. Errors have OpenAI's
shape ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.api.body import DirectRoute, json_body_openapi, read_json
from service.api.schemas import JsonInt, RequestBody, SchemaContext
from service.api.streaming import disconnected
from service.errors import (
    BadRequest,
    LimitExceeded,
    ModelNotFound,
    ServiceError,
    public_message,
)
from service.logs import request_id_var
from service.tasks.generation.contract import TASK
from service.tasks.generation.schemas import MAX_STOP_SEQUENCES, GenerateRequest

OWNER = "rnnserve"
MAX_SEED = 2**63 - 1
DEFAULT_MAX_TOKENS = 16  # OpenAI's default

#: OpenAI fields this server implements only at their no-op value: field -> the values accepted
NEUTRAL_ONLY = {
    "best_of": "null or 1",
    "echo": "null or false",
    "logprobs": "null",
    "suffix": "null or empty",
    "presence_penalty": "null or 0",
    "frequency_penalty": "null or 0",
    "logit_bias": "null or {}",
}
#: the same rules as JSON schemas (for the OpenAPI document)
_NEUTRAL_SCHEMAS: dict[str, dict[str, Any]] = {
    "best_of": {"enum": [1, None]},
    "echo": {"enum": [False, None]},
    "logprobs": {"type": "null"},
    "suffix": {"anyOf": [{"type": "string", "maxLength": 0}, {"type": "null"}]},
    "presence_penalty": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 0}, {"type": "null"}]},
    "frequency_penalty": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 0}, {"type": "null"}]},
    "logit_bias": {"anyOf": [{"type": "object", "maxProperties": 0}, {"type": "null"}]},
}
#: OpenAI's names for /generate's fields, in error messages
_RENAMED = {"max_new_tokens": "max_tokens"}


class UnsupportedParameter(BadRequest):
    code = "unsupported_parameter"


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    include_usage: bool | None = Field(None, description="a last chunk with `usage` (and no choices)")
    include_obfuscation: Any = Field(None, description="only false or null (no obfuscation) is supported")


class CompletionRequest(RequestBody):
    """OpenAI's completion request. Types are checked here, ranges by ``/generate``'s ``GenerateRequest``;
    ``openapi_schema`` states both, and which values of the unsupported fields are accepted."""

    model_config = ConfigDict(
        extra="allow",  # unknown fields are refused by name (``Completions``), not by pydantic
        json_schema_extra={"examples": [{"model": "generation-lstm", "prompt": "ROMEO:", "max_tokens": 64}]},
    )

    model: str = Field(description="a generation model (GET /v1/models)")
    prompt: Any = Field(None, description="the text to continue; null: the empty prompt")
    max_tokens: JsonInt | None = Field(None, description="characters to generate at most; default 16")
    temperature: float | None = Field(None, description="0: greedy; default 1")
    top_p: float | None = Field(None, description="nucleus sampling mass; default 1")
    top_k: JsonInt | None = Field(
        None, description="not OpenAI's (as in vLLM): sample among the k best; 0: off"
    )
    n: JsonInt | None = Field(None, description="completions of the prompt; default 1")
    stream: bool | None = Field(None, description="Server-Sent Events, ending with `data: [DONE]`")
    stream_options: StreamOptions | None = None
    stop: Any = Field(None, description="a string or a list of strings; the text ends before the first one")
    seed: JsonInt | None = Field(None, description="completion i uses seed + i")
    user: str | None = Field(None, description="accepted; not used")
    # accepted only at their neutral value (NEUTRAL_ONLY)
    best_of: Any = None
    echo: Any = None
    logprobs: Any = None
    suffix: Any = None
    presence_penalty: Any = None
    frequency_penalty: Any = None
    logit_bias: Any = None

    @classmethod
    def openapi_schema(cls, context: SchemaContext) -> dict[str, Any]:
        """Every rule: ``/generate``'s ranges under OpenAI's names, the prompt's length and characters
        for the loaded models, ``n`` up to the texts limit, the unsupported fields' accepted values."""
        schema = super().openapi_schema(context)
        schema["additionalProperties"] = False
        generate = GenerateRequest.openapi_schema(context)["properties"]
        properties = schema["properties"]

        def rules(source: dict[str, Any], *keys: str) -> dict[str, Any]:
            return {k: source[k] for k in ("type", *keys) if k in source}

        def nullable(field: str, rule: dict[str, Any]) -> None:
            properties[field] = {
                "anyOf": [rule, {"type": "null"}],
                "description": properties[field]["description"],
            }

        bounds = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
        nullable("prompt", rules(generate["prompt"], "maxLength", "pattern"))
        nullable("max_tokens", rules(generate["max_new_tokens"], *bounds))
        for field in ("temperature", "top_p", "top_k"):
            nullable(field, rules(generate[field], *bounds))
        nullable("seed", rules(generate["seed"]["anyOf"][0], *bounds))
        nullable("n", {"type": "integer", "minimum": 1, "maximum": context.limits.max_texts})
        one_stop = rules(generate["stop"]["items"], "minLength", "maxLength")
        nullable(
            "stop",
            {"anyOf": [one_stop, {"type": "array", "items": one_stop, "maxItems": MAX_STOP_SEQUENCES}]},
        )
        properties["stream_options"] = {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "include_usage": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
                        "include_obfuscation": {"enum": [False, None]},
                    },
                    "additionalProperties": False,
                },
                {"type": "null"},
            ]
        }
        for field, rule in _NEUTRAL_SCHEMAS.items():
            properties[field] = {**rule, "description": f"accepted only as {NEUTRAL_ONLY[field]}"}
        schema.pop("$defs", None)
        return schema


def _is_neutral(field: str, value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return field == "echo" and value is False
    if field == "best_of":
        return value == 1
    if field == "suffix":
        return value == ""
    if field in ("presence_penalty", "frequency_penalty"):
        return isinstance(value, int | float) and value == 0
    if field == "logit_bias":
        return value == {}
    return False


def _prompt(prompt: Any) -> str:
    if prompt is None:
        return ""
    if not isinstance(prompt, str):
        raise BadRequest(
            "prompt: must be a string (a list of prompts or token arrays is not supported; tokens are "
            "characters here)",
            field="prompt",
        )
    return prompt


def _stops(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(item, str) for item in stop):
        return stop
    raise BadRequest("stop: must be a string or a list of strings", field="stop")


def _seed(seed: int | None, i: int) -> int | None:
    """Completion ``i``'s seed: ``seed + i`` (within the valid range), or random without a seed."""
    return None if seed is None else (seed + i) % (MAX_SEED + 1)


class Completions:
    """A checked request: the model, one ``GenerateRequest`` per completion, and how to answer."""

    def __init__(self, request: Request, body: CompletionRequest):
        extra = sorted(body.model_extra or {})
        if extra:
            raise UnsupportedParameter(f"unknown parameter(s): {', '.join(extra)}", field=extra[0])
        unsupported = [f for f in NEUTRAL_ONLY if not _is_neutral(f, getattr(body, f))]
        if unsupported:
            accepted = "; ".join(f"{f}: {NEUTRAL_ONLY[f]}" for f in unsupported)
            raise UnsupportedParameter(
                f"unsupported parameter(s): {', '.join(unsupported)} (accepted only as {accepted})",
                field=unsupported[0],
            )
        options = body.stream_options
        if options is not None and not _is_neutral("echo", options.include_obfuscation):
            raise UnsupportedParameter(
                "stream_options.include_obfuscation: only false or null is supported", field="stream_options"
            )
        self.stream = bool(body.stream)
        self.include_usage = bool(options and options.include_usage)  # (no effect unless streaming)
        self.prompt = _prompt(body.prompt)
        n = 1 if body.n is None else body.n
        if n < 1:
            raise BadRequest("n: must be at least 1", field="n")
        limit = request.app.state.settings.limits.max_texts
        if n > limit:
            raise LimitExceeded(f"n is {n}; the limit is {limit}", field="n", limit=limit)
        self.n = n
        self.stops = _stops(body.stop)
        try:
            base = GenerateRequest.model_validate(
                {
                    "prompt": self.prompt,
                    "max_new_tokens": DEFAULT_MAX_TOKENS if body.max_tokens is None else body.max_tokens,
                    "temperature": 1.0 if body.temperature is None else body.temperature,
                    "top_p": 1.0 if body.top_p is None else body.top_p,
                    "top_k": 0 if body.top_k is None else body.top_k,
                    "seed": body.seed,
                    "stop": self.stops,
                    "stream": self.stream,
                }
            )
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            loc = [_RENAMED.get(str(part), str(part)) for part in error["loc"]]
            raise BadRequest(f"{'.'.join(loc)}: {error['msg']}", field=loc[0]) from None
        self.model = request.app.state.repository.resolve(TASK, body.model)
        if n == 1:
            self.payloads = [base]
        else:  # completion i of n: seed + i
            self.payloads = [base.model_copy(update={"seed": _seed(body.seed, i)}) for i in range(n)]
        self.id = f"cmpl-{request_id_var.get() or int(time.time() * 1e6)}"
        self.created = int(time.time())

    def text(self, result: dict[str, Any]) -> str:
        """A finished generation's text without the stop sequence that ended it."""
        text = result["text"]
        return strip_stop(text, self.stops) if result["finish_reason"] == "stop" else text

    @property
    def prompt_tokens(self) -> int:
        """The prompt's characters (counted once, whatever ``n``)."""
        return len(self.prompt)

    def usage(self, prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    def answer(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        choices = [
            {"index": i, "text": self.text(r), "logprobs": None, "finish_reason": r["finish_reason"]}
            for i, r in enumerate(results)
        ]
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model.name,
            "choices": choices,
            "usage": self.usage(self.prompt_tokens, sum(r["tokens"] for r in results)),
        }

    async def events(self) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        """The model's streaming events as ``(choice index, event)``; raises before the first one if the
        generations cannot start (so the error is still a plain answer)."""
        if len(self.payloads) > 1:
            return await self.model.stream_many(self.payloads)
        return _indexed(await self.model.stream(self.payloads[0]))

    async def chunks(self, events: AsyncIterator[tuple[int, dict[str, Any]]]) -> AsyncIterator[bytes]:
        """``data:`` lines in OpenAI's ``text_completion`` chunk format, then ``data: [DONE]``."""
        head = (
            f'data: {{"id":{json.dumps(self.id)},"object":"text_completion","created":{self.created},'
            f'"model":{json.dumps(self.model.name)},"choices":[{{"index":'
        )
        usage = ',"usage":null' if self.include_usage else ""
        trimmer = StopTrimmer(self.stops) if self.stops else None
        completion_tokens = 0
        try:
            async for index, event in events:
                if "error" in event:
                    yield _sse({"error": _error_body(event["error"], event.get("error_type"), None)})
                    return
                text, reason = event["text"], event["finish_reason"]
                if trimmer is not None:
                    text = trimmer.release(index, text, reason)
                if reason is None:
                    if text:
                        chunk = f'{head}{index},"text":{json.dumps(text, ensure_ascii=False)},'
                        yield f'{chunk}"logprobs":null,"finish_reason":null}}]{usage}}}\n\n'.encode()
                    continue
                completion_tokens += event["generated_tokens"]
                chunk = f'{head}{index},"text":{json.dumps(text, ensure_ascii=False)},"logprobs":null,'
                yield f'{chunk}"finish_reason":"{reason}"}}]{usage}}}\n\n'.encode()
            if self.include_usage:
                yield _sse(
                    {
                        "id": self.id,
                        "object": "text_completion",
                        "created": self.created,
                        "model": self.model.name,
                        "choices": [],
                        "usage": self.usage(self.prompt_tokens, completion_tokens),
                    }
                )
            yield b"data: [DONE]\n\n"
        finally:
            await events.aclose()


class StopTrimmer:
    """Streams choices without their stop sequence: of each choice's text it releases everything but a
    tail that may begin a stop sequence (held back until the next characters tell), and at a ``stop``
    finish the text before the sequence."""

    def __init__(self, stops: list[str]):
        self.stops = stops
        self.held: dict[int, str] = {}

    def release(self, index: int, text: str, finish_reason: str | None) -> str:
        pending = self.held.pop(index, "") + text
        if finish_reason == "stop":
            return strip_stop(pending, self.stops)
        if finish_reason is not None:
            return pending
        keep = held_back(pending, self.stops)
        if keep:
            self.held[index] = pending[len(pending) - keep :]
        return pending[: len(pending) - keep]


def strip_stop(text: str, stops: list[str]) -> str:
    """``text`` without the stop sequence it ends with (the longest, if several match)."""
    for stop in sorted(stops, key=len, reverse=True):
        if text.endswith(stop):
            return text[: -len(stop)]
    return text


def held_back(text: str, stops: list[str]) -> int:
    """How many characters at the end of ``text`` may be the beginning of a stop sequence: the length
    of its longest suffix that is a proper prefix of one of ``stops``."""
    keep = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), keep, -1):
            if text.endswith(stop[:k]):
                keep = k
                break
    return keep


async def _indexed(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[tuple[int, dict[str, Any]]]:
    try:
        async for event in events:
            yield 0, event
    finally:
        await events.aclose()


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class CompletionStream(StreamingResponse):
    """An SSE response over encoded chunks that closes their iterator however the response ends (the
    client leaving included), which cancels the generations and frees their slots."""

    def __init__(self, chunks: AsyncIterator[bytes]):
        self.chunks = chunks
        super().__init__(
            chunks,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.chunks.aclose()


# -- errors ----------------------------------------------------------------------------------------
_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}


def _error_body(message: str, code: str | None, param: str | None, status: int = 500) -> dict[str, Any]:
    kind = _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"message": public_message(message), "type": kind, "param": param, "code": code}


def error_response(exc: ServiceError) -> JSONResponse:
    """OpenAI's error shape; a malformed request (the service's 422) is a 400, as in OpenAI's API."""
    status = 400 if exc.status_code == 422 else exc.status_code
    body = {"error": _error_body(exc.message, exc.code, exc.field, status)}
    return JSONResponse(body, status_code=status, headers=exc.headers or None)


# -- routes ----------------------------------------------------------------------------------------
router = APIRouter(tags=["OpenAI-compatible completions"], route_class=DirectRoute)

_EXAMPLES = {
    "one completion": {
        "summary": "one completion, seeded",
        "value": {"model": "generation-lstm", "prompt": "ROMEO:", "max_tokens": 100, "seed": 1},
    },
    "several, streamed": {
        "summary": "three completions of one prompt, streamed, until a blank line",
        "value": {
            "model": "generation-lstm",
            "prompt": "JULIET:",
            "max_tokens": 200,
            "n": 3,
            "stop": "\n\n",
            "stream": True,
        },
    },
}


class ErrorDetail(BaseModel):
    message: str
    type: str | None = Field(None, description="invalid_request_error, permission_error, server_error ...")
    param: str | None = Field(None, description="the request field at fault")
    code: str | None = Field(None, description="e.g. unsupported_parameter, model_not_found, queue_full")


class ErrorResponse(BaseModel):
    """OpenAI's error shape. (Errors answered before the route runs, such as a missing API key or a
    declared body above the limit, have the service's own shape, which also has ``error.message``.)"""

    error: ErrorDetail


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class CompletionUsage(BaseModel):
    prompt_tokens: int = Field(description="the prompt's characters")
    completion_tokens: int = Field(description="characters generated")
    total_tokens: int


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = Field(None, description="null in stream chunks")


class ModelObject(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelObject]


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "invalid JSON, a field of the wrong type or out of range, an unsupported or unknown field",
        403: "the API key may not use this model (only when keys are limited to models)",
        404: "`model` is not a generation model",
        413: "the request body is larger than RNNSERVE_LIMITS__MAX_BODY_BYTES",
        499: "the client left before the answer (its generations were cancelled)",
        500: "the model failed, or an unexpected error",
        503: "the model is loading or failed, its queue is full (Retry-After), or the service is draining",
        504: "no slot within the task's timeout",
    }.items()
}
_MODEL = {"name": "model", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _created(request: Request, name: str) -> int:
    try:
        path = request.app.state.settings.model_repository / name / "config.json"
        return int(path.stat().st_mtime)
    except OSError:
        return 0


def _model_object(request: Request, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _created(request, name), "owned_by": OWNER}


@router.get(
    "/v1/models", response_model=ModelList, summary="The generation models (what /v1/completions accepts)"
)
async def list_models(request: Request) -> JSONResponse:
    entries = request.app.state.repository.entries.values()
    data = [_model_object(request, e.name) for e in entries if e.task == TASK]
    return JSONResponse({"object": "list", "data": data})


@router.get(
    "/v1/models/{model}",
    response_model=ModelObject,
    summary="One generation model",
    responses={404: _ERRORS[404]},
    openapi_extra={"parameters": [_MODEL]},
)
async def retrieve_model(request: Request) -> JSONResponse:
    name = request.path_params["model"]
    entry = request.app.state.repository.entries.get(name)
    if entry is None or entry.task != TASK:
        return error_response(ModelNotFound(f"the model '{name}' does not exist", field="model"))
    return JSONResponse(_model_object(request, name))


@router.post(
    "/v1/completions",
    summary="Complete a prompt (OpenAI's text completions; optionally streamed)",
    response_model=CompletionResponse,
    responses={
        200: {
            "description": "a `text_completion`; with `stream`, Server-Sent Events: `data:` lines of the"
            " same object (one choice's new text each, `usage` null or absent), then `data: [DONE]`",
            "content": {"text/event-stream": {}},
        },
        **_ERRORS,
    },
    openapi_extra=json_body_openapi(CompletionRequest, _EXAMPLES),
)
async def completions(request: Request) -> Response:
    try:
        call = Completions(request, await read_json(request, CompletionRequest))
        if call.stream:
            return CompletionStream(call.chunks(await call.events()))
        results = await call.model.generate_many(call.payloads, partial(disconnected, request))
    except ServiceError as exc:
        return error_response(exc)
    return JSONResponse(call.answer(results))
