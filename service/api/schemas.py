"""Request and response models of the core endpoints, and the base of every JSON request body.

Request bodies are strict: unknown fields are errors and no value is coerced to another type (``"5"`` is
not a number, ``0`` is not a boolean, ``true`` is not an integer; an integral number such as ``5.0`` is
an integer, as in JSON Schema). Each body states every rule the server enforces in its JSON schema,
including the ones that come from settings (characters per text, texts per request) or from the served
models: ``RequestBody.openapi_schema(context)`` builds it per app (``service.api.openapi``), so the
OpenAPI document always shows the configured values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict
from pydantic_core import PydanticCustomError

from service.config import LimitsConfig, Settings
from service.errors import InvalidInput, LimitExceeded

if TYPE_CHECKING:
    from service.repository import ModelRepository
    from service.serving import ServedModel

REF_TEMPLATE = "#/components/schemas/{model}"

# The characters Python's ``str.isspace`` (and so ``str.strip``) treats as white space, as a JSON-schema
# (ECMA 262) character class: a text matching NON_BLANK_PATTERN has a character outside it.
WHITESPACE_CLASS = (
    r"\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)
NON_BLANK_PATTERN = f"[^{WHITESPACE_CLASS}]"


def _json_integer(value: Any) -> Any:
    """An integer field takes JSON numbers only: ``true`` and ``"5"`` are errors, ``5.0`` is 5."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value  # the lax integer check then rejects 5.5 ("a number with a fractional part")


def json_int(**bounds: int) -> Any:
    """An integer request field with bounds (``ge``, ``le``, ...) inside the type, as a union member
    needs them for its JSON schema to say ``minimum``/``maximum``."""
    return Annotated[int, Strict(False), Field(**bounds), BeforeValidator(_json_integer)]


#: an integer request field (use it instead of ``int`` in request bodies)
JsonInt = json_int()


def absent() -> None:
    """``default_factory`` of an optional field that may be left out but not sent as ``null``."""
    return None


@dataclass(frozen=True)
class SchemaContext:
    """What a request body's OpenAPI schema may depend on: the settings and the loaded models."""

    settings: Settings
    repository: ModelRepository | None = None

    @property
    def limits(self) -> LimitsConfig:
        return self.settings.limits

    def ready_models(self, task: str) -> list[ServedModel]:
        if self.repository is None:
            return []
        return [e.model for e in self.repository.entries.values() if e.task == task and e.model is not None]


class RequestBody(BaseModel):
    """Base of the JSON request bodies: strict types, no unknown fields, schema per app."""

    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=())

    @classmethod
    def openapi_schema(cls, context: SchemaContext) -> dict[str, Any]:
        """The body's JSON schema with every rule this app enforces (override to add settings' limits)."""
        return cls.model_json_schema(ref_template=REF_TEMPLATE)


class TextsRequest(RequestBody):
    """Exactly one of ``text`` and ``texts``: the body shared by the text-in endpoints.

    Each endpoint subclasses it to add its own fields, examples and model description. ``allow_blank``:
    whether an empty or white-space-only text is answered (with the task's documented empty answer) or
    is a 422 naming it.
    """

    allow_blank: ClassVar[bool] = True

    text: str = Field(
        default_factory=absent,
        description="one text, at most RNNSERVE_LIMITS__MAX_TEXT_CHARS characters (default 5000)",
    )
    texts: list[str] = Field(
        default_factory=absent,
        min_length=1,
        description="several texts, answered in order: at most RNNSERVE_LIMITS__MAX_TEXTS (default 64),"
        " each at most RNNSERVE_LIMITS__MAX_TEXT_CHARS characters",
    )
    model: str | None = Field(None, description="a model from /models; default: the task's default")

    @classmethod
    def openapi_schema(cls, context: SchemaContext) -> dict[str, Any]:
        schema = super().openapi_schema(context)
        limits = context.limits
        properties = schema["properties"]
        one_text = {"type": "string", "maxLength": limits.max_text_chars}
        if not cls.allow_blank:
            one_text["pattern"] = NON_BLANK_PATTERN
        properties["text"].update(one_text)
        properties["text"]["description"] = f"one text of at most {limits.max_text_chars} characters" + (
            "" if cls.allow_blank else ", not empty or white space only"
        )
        properties["texts"].update(items=dict(one_text), maxItems=limits.max_texts)
        properties["texts"]["description"] = (
            f"1 to {limits.max_texts} texts, answered in order, each like `text`"
        )
        schema["oneOf"] = [{"required": ["text"]}, {"required": ["texts"]}]
        return schema

    def checked_texts(self, max_texts: int, max_chars: int) -> list[str]:
        """The request's texts, after the one-of and limit checks (each error names its field)."""
        if (self.text is None) == (self.texts is None):
            raise InvalidInput("give exactly one of 'text' and 'texts'", field="text")
        if self.text is not None:
            texts, names = [self.text], ["text"]
        else:
            texts = self.texts
            if len(texts) > max_texts:
                raise LimitExceeded(
                    f"texts has {len(texts)} items; the limit is {max_texts}", field="texts", limit=max_texts
                )
            names = [f"texts[{i}]" for i in range(len(texts))]
        for name, text in zip(names, texts, strict=True):
            if len(text) > max_chars:
                raise LimitExceeded(
                    f"{name} has {len(text)} characters; the limit is {max_chars}",
                    field=name,
                    limit=max_chars,
                )
            if not self.allow_blank and not text.strip():
                raise InvalidInput(f"{name} is empty or white space only", field=name)
        return texts


class ErrorDetail(BaseModel):
    code: str = Field(examples=["limit_exceeded"])
    message: str = Field(examples=["texts[2] has 6012 characters; the limit is 5000"])
    field: str | None = Field(None, examples=["texts[2]"])
    limit: int | float | None = Field(None, examples=[5000])


class ErrorResponse(BaseModel):
    error: ErrorDetail
    request_id: str | None = None


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    ready: bool
    defaults: dict[str, str] = Field(description="task -> default model")
    reasons: dict[str, str] = Field(default_factory=dict, description="task -> why it is not ready")


class ModelsResponse(BaseModel):
    pid: int = Field(description="the serving process that answered (one of RNNSERVE_WORKERS)")
    models: list[dict[str, Any]]


#: every error status a route may declare, with what it means (``error.code`` in brackets)
ERROR_STATUSES: dict[int, str] = {
    400: "the body is not JSON or not UTF-8 (`invalid_json`, `invalid_utf8`)",
    401: "no API key, or an unknown one (`unauthorized`; only when API keys are configured)",
    403: "the API key may not use this model (`forbidden`; only when keys are limited to models)",
    404: "`model` names no model of this task (`model_not_found`)",
    413: "the request body is larger than RNNSERVE_LIMITS__MAX_BODY_BYTES (`body_too_large`)",
    422: "a missing, unknown or mistyped field, or a value out of its range (`invalid_input`), or a text"
    " or list above its limit (`limit_exceeded`); the error names the field and the limit",
    499: "the client disconnected before the answer was ready (`client_disconnected`; nobody reads it)",
    500: "the model failed on this input (`inference_error`) or an unexpected error (`internal_error`)",
    503: "the model's queue is full (`queue_full`, with Retry-After), the model is loading (with"
    " Retry-After) or failed to load (`model_unavailable`), or the service is shutting down"
    " (`shutting_down`)",
    504: "the request did not finish within the task's RNNSERVE_BATCHING__<TASK>__TIMEOUT_S (`timeout`)",
}

#: what every inference route (one that resolves a model and runs it) can answer besides 200
INFERENCE_STATUSES: Sequence[int] = (400, 401, 403, 404, 413, 422, 499, 500, 503, 504)


def error_responses(statuses: Sequence[int] = INFERENCE_STATUSES) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: the JSON error body for each of ``statuses``."""
    return {code: {"model": ErrorResponse, "description": ERROR_STATUSES[code]} for code in statuses}


ERROR_RESPONSES = error_responses()
