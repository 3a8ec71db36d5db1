"""Request and response models of the core endpoints and of the sentiment task.

Task limits (characters per text, texts per request) are settings, so they are checked in the route
against ``app.state.settings`` rather than frozen into these models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.errors import InvalidInput, LimitExceeded


class ErrorDetail(BaseModel):
    code: str = Field(examples=["limit_exceeded"])
    message: str = Field(examples=["texts[2] has 6012 characters; the limit is 5000"])
    field: str | None = Field(None, examples=["texts[2]"])
    limit: int | float | None = Field(None, examples=[5000])


class ErrorResponse(BaseModel):
    error: ErrorDetail
    request_id: str | None = None


class TextsRequest(BaseModel):
    """Exactly one of ``text`` and ``texts``: the body shared by the text-in endpoints.

    Each endpoint subclasses it to add its own fields, examples and model description.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    text: str | None = Field(
        None, description="one text, at most RNNSERVE_LIMITS__MAX_TEXT_CHARS characters (default 5000)"
    )
    texts: list[str] | None = Field(
        None,
        min_length=1,
        description="several texts, answered in order: at most RNNSERVE_LIMITS__MAX_TEXTS (default 64),"
        " each at most RNNSERVE_LIMITS__MAX_TEXT_CHARS characters",
    )
    model: str | None = Field(None, description="a model from /models; default: the task's default")

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
        return texts


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    ready: bool
    defaults: dict[str, str] = Field(description="task -> default model")
    reasons: dict[str, str] = Field(default_factory=dict, description="task -> why it is not ready")


class ModelsResponse(BaseModel):
    models: list[dict[str, Any]]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "invalid JSON or invalid UTF-8",
        404: "unknown model",
        413: "request body too large",
        422: "wrong field type, missing field, or a limit exceeded (the error names the field and limit)",
        503: "queue full (with Retry-After) or model not ready",
        504: "request timed out",
    }.items()
}
