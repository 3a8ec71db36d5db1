"""Domain errors: what models, batchers and request parsing raise (no HTTP framework imported here).

Every error body has the same shape::

    {"error": {"code": "...", "message": "...", "field": "texts[3]" | null, "limit": 5000 | null},
     "request_id": "..."}

Task plug-ins raise the ``ServiceError`` subclasses below (or their own subclasses), each carrying its
status code; ``service.api.errors`` turns them into responses. Any other exception becomes a 500
``internal_error`` in ``service.middleware`` (logged with its traceback and the request id).

Messages that reach a client go through :func:`public_message`: one line, no traceback, and no file
paths (a path is cut to its last component), however the underlying exception was worded; the log keeps
the full story.
"""

from __future__ import annotations

import re
from typing import Any

from service.logs import request_id_var


class ServiceError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        limit: int | float | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.field = field
        self.limit = limit
        self.headers = headers or {}


class BadRequest(ServiceError):
    status_code, code = 400, "bad_request"


class InvalidInput(ServiceError):
    status_code, code = 422, "invalid_input"


class LimitExceeded(ServiceError):
    status_code, code = 422, "limit_exceeded"


class Unauthorized(ServiceError):
    """No API key, or one the service does not know (``WWW-Authenticate: Bearer`` tells how to send one)."""

    status_code, code = 401, "unauthorized"


class Forbidden(ServiceError):
    """A valid API key that may not use the requested model."""

    status_code, code = 403, "forbidden"


class BodyTooLarge(ServiceError):
    status_code, code = 413, "body_too_large"


class ModelNotFound(ServiceError):
    status_code, code = 404, "model_not_found"


class ModelUnavailable(ServiceError):
    """The model exists but is loading or failed to load."""

    status_code, code = 503, "model_unavailable"


class QueueFull(ServiceError):
    status_code, code = 503, "queue_full"


class ShuttingDown(ServiceError):
    status_code, code = 503, "shutting_down"


class RequestTimeout(ServiceError):
    status_code, code = 504, "timeout"


class InferenceError(ServiceError):
    status_code, code = 500, "inference_error"


class ClientDisconnected(ServiceError):
    """The client left before its answer was ready (nginx's 499; nobody reads the answer)."""

    status_code, code = 499, "client_disconnected"


# Two or more path separators: an absolute or relative file path (``/srv/models/x/1/vocab.json``,
# ``onnxruntime/core/providers/cpu/rnn/lstm.cc:12``, ``C:\\models\\x``). ``/models`` alone is left as is.
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/]?[\w.~+@-]+)?(?:[\\/][\w.~+@-]+){2,}[\\/]?")
_TRACEBACK = "Traceback (most recent call last):"
MAX_MESSAGE_CHARS = 1000


def public_message(message: str) -> str:
    """``message`` as a client may see it: a traceback reduced to its last line, one line, file paths
    cut to their last component, at most ``MAX_MESSAGE_CHARS`` characters."""
    text = str(message)
    head, traceback, tail = text.partition(_TRACEBACK)
    if traceback:  # keep what came before it and the exception line at its end
        last = [line for line in tail.splitlines() if line.strip()]
        text = head + (" " + last[-1] if last else "")
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    # the regex only where a path can be (two separators): it is the slow part of every error answer,
    # and the service's own messages (a refusal under overload, thousands a second) have none
    if text.count("/") + text.count("\\") >= 2:
        text = _PATH.sub(lambda m: re.split(r"[\\/]", m.group(0).rstrip("/\\"))[-1], text)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def error_body(code: str, message: str, field: str | None = None, limit: Any = None) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": public_message(message), "field": field, "limit": limit},
        "request_id": request_id_var.get(),
    }


def internal_error_body() -> dict[str, Any]:
    """The body of a 500 for an error no handler answered: nothing of the error itself."""
    return error_body("internal_error", "internal server error")


def field_path(loc: tuple[Any, ...]) -> str:
    """``("body", "texts", 3)`` -> ``"texts[3]"``; the whole body is ``"body"``."""
    out = ""
    for part in (p for p in loc if p != "body"):
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"
