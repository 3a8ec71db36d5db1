"""Optional API keys: ``Authorization: Bearer <key>`` on every route, and per-key model lists.

Off unless keys are configured (``RNNSERVE_API_KEYS``, ``RNNSERVE_API_KEYS_FILE``, or both). Then
:class:`AuthMiddleware`, one pure-ASGI middleware for the whole app (so a route added later is covered
without doing anything), answers ``401 unauthorized`` with ``WWW-Authenticate: Bearer`` to a request
without a known key, unless its path is public:

* the paths in ``RNNSERVE_PUBLIC_PATHS`` (by default the probes: ``/health``, ``/ready`` and their v2
  twins);
* the try-it page and the API documentation (``/``, ``/ui``, ``/ui/``, ``/ui/static/...``, ``/docs``,
  ``/redoc``, ``/openapi.json``): they hold no data, and the page asks for a key that it sends with
  every API call;
* a route that opts out in its declaration with ``openapi_extra={"security": []}``, the OpenAPI way of
  saying that an operation needs no credentials (the document then says so too).

Keys are compared in constant time (``hmac.compare_digest`` on SHA-256 digests, against every key). A
key limited to some models (``{"key": ["sentiment-gru"]}``; ``"*"`` is every model) gets ``403
forbidden`` from :func:`authorize_model`, which the repository calls wherever a request's model is
resolved, whatever the protocol or route.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.body import iter_api_routes
from service.config import ALL_MODELS, Settings, normalize_api_keys
from service.errors import Forbidden, error_body
from service.middleware import send_json

SCHEME = "Bearer"
REALM = "rnnserve"
#: always answered without a key: the try-it page and the API documentation
ALWAYS_PUBLIC = frozenset({"/", "/ui", "/ui/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
PUBLIC_PREFIXES = ("/ui/static/",)

# The models the current request's key may use (None: every model); set by AuthMiddleware.
_allowed_models: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar(
    "allowed_models", default=None
)


def load_api_keys(settings: Settings) -> dict[str, frozenset[str] | None]:
    """Every configured key -> the models it may use (None: all). Raises ``ValueError`` (without the
    keys in the message) when the keys file cannot be read or is malformed: the service then refuses to
    start rather than serve without the keys it was given."""
    keys: dict[str, list[str]] = dict(settings.api_keys)
    if settings.api_keys_file is not None:
        path = Path(settings.api_keys_file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read the API keys file {path}: {type(exc).__name__}") from None
        try:
            keys.update(normalize_api_keys(data))
        except ValueError as exc:
            raise ValueError(f"API keys file {path}: {exc}") from None
    return {key: None if ALL_MODELS in models else frozenset(models) for key, models in keys.items()}


def limits_models(keys: dict[str, frozenset[str] | None]) -> bool:
    """Whether some key may use only some models (so a 403 can happen)."""
    return any(models is not None for models in keys.values())


def authorize_model(name: str) -> None:
    """Raises ``Forbidden`` (403, naming the ``model`` field) when the request's key may not use model
    ``name``. A no-op without keys or for a key allowed every model."""
    allowed = _allowed_models.get()
    if allowed is not None and name not in allowed:
        raise Forbidden(f"this API key may not use model {name!r}", field="model")


def is_public_path(path: str, public: Iterable[str]) -> bool:
    """Whether ``path`` (a request path or a route's path template) is answered without a key, by the
    settings (``public``) or the built-in list; route opt-outs are checked by the middleware."""
    return path in ALWAYS_PUBLIC or path.startswith(PUBLIC_PREFIXES) or path in set(public)


def _opted_out(routes: Iterable[Any]) -> tuple[frozenset[str], tuple[re.Pattern[str], ...]]:
    """Paths (and path patterns) of the routes that declare ``openapi_extra={"security": []}``."""
    exact, patterns = set(), []
    for route in iter_api_routes(routes):
        extra = getattr(route, "openapi_extra", None) or {}
        if extra.get("security") != []:
            continue
        if "{" in route.path:
            patterns.append(compile_path(route.path)[0])
        else:
            exact.add(route.path)
    return frozenset(exact), tuple(patterns)


class AuthMiddleware:
    """401 for a request without a known key on a non-public path; remembers the key's models."""

    def __init__(self, app: ASGIApp, keys: dict[str, frozenset[str] | None], public_paths: Iterable[str]):
        self.app = app
        self.public = frozenset(public_paths) | ALWAYS_PUBLIC
        self._keys = [(hashlib.sha256(k.encode()).digest(), models) for k, models in keys.items()]
        self._opted_out: tuple[frozenset[str], tuple[re.Pattern[str], ...]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._is_public(scope):
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope)
        known, models = self._lookup(presented) if presented is not None else (False, None)
        if not known:
            if scope["type"] == "websocket":  # no route uses one today; refused all the same
                await send({"type": "websocket.close", "code": 1008})
            elif presented is None:
                await _unauthorized(send, "an API key is required: send 'Authorization: Bearer <key>'", None)
            else:
                await _unauthorized(send, "the API key is not valid", "invalid_token")
            return
        token = _allowed_models.set(models)
        try:
            await self.app(scope, receive, send)
        finally:
            _allowed_models.reset(token)

    def _lookup(self, presented: str) -> tuple[bool, frozenset[str] | None]:
        """Compares the key's digest with every configured key's (no early exit: constant time)."""
        digest = hashlib.sha256(presented.encode()).digest()
        known, models = False, None
        for key_digest, key_models in self._keys:
            if hmac.compare_digest(digest, key_digest):
                known, models = True, key_models
        return known, models

    def _is_public(self, scope: Scope) -> bool:
        path = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        if path in self.public or path.startswith(PUBLIC_PREFIXES):
            return True
        if self._opted_out is None:  # the routes are all known once the first request arrives
            self._opted_out = _opted_out(getattr(scope.get("app"), "routes", ()))
        exact, patterns = self._opted_out
        return path in exact or any(p.match(path) for p in patterns)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
            credentials = credentials.strip()
            if scheme.lower() == SCHEME.lower() and credentials:
                return credentials
            return None
    return None


async def _unauthorized(send: Send, message: str, error: str | None) -> None:
    challenge = f'{SCHEME} realm="{REALM}"' + (f', error="{error}"' if error else "")
    await send_json(
        send,
        401,
        error_body("unauthorized", message, "authorization"),
        headers=[(b"www-authenticate", challenge.encode())],
    )
