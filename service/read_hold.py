"""Backoff enforced on the connection: after a refusal, read nothing more from that connection for a while.

A 503 or 429 with ``Retry-After`` asks the client to wait; a client that ignores it sends its next
request at once, on the same keep-alive connection, and every such retry costs the serving process a
pass of its event loop and a refusal (~100-200 µs of CPU) taken from the requests already admitted.
With thousands of such clients the refusals take the cores and goodput falls (docs/experiments.md,
"Holding a refused connection").

``python -m service`` runs :class:`HoldingHttpToolsProtocol` (unless ``RNNSERVE_REFUSED_CONNECTION_HOLD_S``
is 0): each request's scope carries the ASGI extension ``rnnserve.hold_reading``, a call that the
request-context middleware makes when it sends such a refusal (:func:`hold_after_refusal`). Once that
answer is written the protocol stops reading the connection for ``min(hold, Retry-After)`` seconds, then
reads on. The refusal itself still goes out at once; a retry that arrives meanwhile waits in the kernel's
socket buffer at no cost, and is read and admitted or refused when the hold ends. Other connections are
unaffected.

It is HAProxy's tarpit turned to backoff. A proxy that keeps upstream connections alive may share them
between its clients (nginx ``keepalive``), and holding one would also hold the requests of other clients
the proxy sends down it, so a request that came through a proxy (one carrying ``Forwarded``,
``X-Forwarded-For`` or ``Via``) is never held; refusals that close the connection (``Connection: close``,
as during the drain) are not held either.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HOLD_EXTENSION = "rnnserve.hold_reading"
#: the statuses whose ``Retry-After`` a hold enforces
REFUSAL_STATUSES = frozenset({429, 503})
#: request headers a proxy adds: the connection may carry other clients' requests next
PROXY_HEADERS = frozenset({b"forwarded", b"x-forwarded-for", b"via"})


class HoldingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus the ``rnnserve.hold_reading`` extension on every request."""

    _hold_s = 0.0
    _hold_handle: asyncio.TimerHandle | None = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {HOLD_EXTENSION: self._hold_after_response}

    def _hold_after_response(self, seconds: float) -> None:
        self._hold_s = seconds

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a request already read: it is answered next, held or not
        super().on_response_complete()
        seconds, self._hold_s = self._hold_s, 0.0
        if seconds <= 0 or pipelined or self.transport.is_closing():
            return
        self.flow.pause_reading()
        self._hold_handle = self.loop.call_later(seconds, self._end_hold)
        _held.setdefault(self.loop, weakref.WeakSet()).add(self)

    def _end_hold(self) -> None:
        self._forget_hold()
        if not self.transport.is_closing():
            self.flow.resume_reading()

    def _forget_hold(self) -> None:
        if self._hold_handle is not None:
            self._hold_handle.cancel()
            self._hold_handle = None
        _held.get(self.loop, set()).discard(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget_hold()
        super().connection_lost(exc)


#: the held connections of each event loop (a serving process has one)
_held: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.WeakSet[HoldingHttpToolsProtocol]] = (
    weakref.WeakKeyDictionary()
)


def end_holds() -> None:
    """Reads on at once from every connection this event loop holds. The drain calls it: a retry waiting in
    a held connection is then read and answered (503 ``shutting_down``) before uvicorn closes the
    connections it finds idle, which would leave that retry unanswered."""
    for protocol in list(_held.get(asyncio.get_running_loop(), ())):
        protocol._end_hold()


def hold_after_refusal(
    scope: dict, status: int, headers: Iterable[tuple[bytes, bytes]], max_hold_s: float
) -> bool:
    """Asks the server to hold the connection after this answer when it is a refusal with ``Retry-After``
    that keeps the connection open, to a request that did not come through a proxy; whether it did (never
    under a server without the extension)."""
    hold: Callable[[float], None] | None = scope.get("extensions", {}).get(HOLD_EXTENSION)
    if hold is None or status not in REFUSAL_STATUSES:
        return False
    if any(name in PROXY_HEADERS for name, _ in scope.get("headers", ())):
        return False
    retry_after = None
    for name, value in headers:
        if name == b"retry-after":
            retry_after = value
        elif name == b"connection" and value.lower() == b"close":
            return False
    if retry_after is None or not retry_after.isdigit():
        return False
    hold(min(max_hold_s, float(retry_after)))
    return True
