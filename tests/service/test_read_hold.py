"""A refused keep-alive connection is not read again before its hold ends; other connections are not held."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from service.metrics import Metrics
from service.middleware import RequestContextMiddleware
from service.read_hold import HOLD_EXTENSION, HoldingHttpToolsProtocol, end_holds, hold_after_refusal
from tests.service.bundled import bundled_repository
from tests.service.faults import free_port, wait_until
from tests.service.live import start_service

HOLD_S = 0.6


async def _app(scope, receive, send) -> None:
    """``/refuse``: 503 with Retry-After 1; ``/close``: the same with ``Connection: close``;
    ``/refuse-long``: 503 with Retry-After 30; ``/end-holds`` ends the holds; else 200."""
    if scope["type"] != "http":
        return
    headers = [(b"content-length", b"2")]
    status = 200
    if scope["path"] == "/refuse":
        status, headers = 503, [*headers, (b"retry-after", b"1")]
    elif scope["path"] == "/close":
        status, headers = 503, [*headers, (b"retry-after", b"1"), (b"connection", b"close")]
    elif scope["path"] == "/refuse-long":
        status, headers = 503, [*headers, (b"retry-after", b"30")]
    elif scope["path"] == "/end-holds":  # what the drain does at SIGTERM
        end_holds()
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


@contextmanager
def _server(
    hold_s: float, protocol: type | str = HoldingHttpToolsProtocol, metrics: Metrics | None = None
) -> Iterator[int]:
    app = RequestContextMiddleware(
        _app, metrics or Metrics(), max_body_bytes=1024, access_log=False, refused_connection_hold_s=hold_s
    )
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", http=protocol, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, "server start")
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def _post(
    sock: socket.socket, path: str, body: bytes, extra_headers: str = ""
) -> tuple[int, dict[str, str], float]:
    """Status, headers and seconds to the whole answer of one POST on a kept-alive connection."""
    started = time.perf_counter()
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra_headers}"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(rest) < int(headers["content-length"]):
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), headers, time.perf_counter() - started


def _ask(sock: socket.socket, path: str, extra_headers: str = "") -> tuple[int, float, bool]:
    """Status, seconds to the answer, and whether the server closed the connection after it."""
    status, _, elapsed = _post(sock, path, b"", extra_headers)
    sock.settimeout(0.05)
    try:
        closed = sock.recv(1) == b""
    except TimeoutError:
        closed = False
    sock.settimeout(10)
    return status, elapsed, closed


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_the_next_request_on_a_refused_connection_waits_for_the_hold():
    metrics = Metrics()
    with _server(HOLD_S, metrics=metrics) as port, _connect(port) as sock:
        assert _ask(sock, "/ok")[:2][0] == 200
        status, answered_in, closed = _ask(sock, "/refuse")
        assert status == 503 and answered_in < HOLD_S / 2 and not closed  # the refusal itself is not held
        status, answered_in, _ = _ask(sock, "/ok")
        assert status == 200 and answered_in >= HOLD_S * 0.9
        status, answered_in, _ = _ask(sock, "/ok")  # the hold has ended: the connection reads at once
        assert status == 200 and answered_in < HOLD_S / 2
    assert metrics.registry.get_sample_value("rnnserve_held_connections_total") == 1


def test_other_connections_are_answered_during_a_hold():
    with _server(HOLD_S) as port, _connect(port) as held, _connect(port) as other:
        assert _ask(held, "/refuse")[0] == 503
        started = time.perf_counter()
        held.sendall(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        status, answered_in, _ = _ask(other, "/ok")
        assert status == 200 and answered_in < HOLD_S / 2
        held.settimeout(HOLD_S * 3)
        assert held.recv(4096).startswith(b"HTTP/1.1 200")
        assert time.perf_counter() - started >= HOLD_S * 0.9


def test_the_drain_ends_every_hold_at_once():
    """At SIGTERM a retry waiting on a held connection is read (and refused as shutting down) before uvicorn
    closes the connections it finds idle, which would leave it unanswered."""
    with _server(10.0) as port, _connect(port) as held, _connect(port) as other:
        assert _ask(held, "/refuse-long")[0] == 503  # held for 10 s
        started = time.perf_counter()
        held.sendall(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        time.sleep(0.2)
        assert _ask(other, "/end-holds")[0] == 200
        held.settimeout(5)
        assert held.recv(4096).startswith(b"HTTP/1.1 200")
        assert time.perf_counter() - started < 3


def test_the_hold_is_at_most_retry_after():
    seen: list[float] = []
    scope = {"extensions": {HOLD_EXTENSION: seen.append}}
    assert hold_after_refusal(scope, 503, [(b"retry-after", b"2")], max_hold_s=5.0)
    assert hold_after_refusal(scope, 429, [(b"retry-after", b"3")], max_hold_s=0.5)
    assert seen == [2.0, 0.5]


@pytest.mark.parametrize("header", ["X-Forwarded-For: 10.0.0.7", "Forwarded: for=10.0.0.7", "Via: 1.1 lb"])
def test_a_request_that_came_through_a_proxy_is_not_held(header):
    """The proxy may send another client's request down the same connection next."""
    metrics = Metrics()
    with _server(HOLD_S, metrics=metrics) as port, _connect(port) as sock:
        assert _ask(sock, "/refuse", f"{header}\r\n")[0] == 503
        status, answered_in, _ = _ask(sock, "/ok", f"{header}\r\n")
        assert status == 200 and answered_in < HOLD_S / 2
    assert metrics.registry.get_sample_value("rnnserve_held_connections_total") == 0


@pytest.mark.parametrize(
    "status, headers",
    [
        (503, [(b"retry-after", b"1"), (b"connection", b"close")]),  # the drain's refusals close
        (503, []),  # no Retry-After: nothing to enforce
        (500, [(b"retry-after", b"1")]),
        (200, [(b"retry-after", b"1")]),
    ],
)
def test_answers_that_are_not_held(status, headers):
    seen: list[float] = []
    assert not hold_after_refusal({"extensions": {HOLD_EXTENSION: seen.append}}, status, headers, 1.0)
    assert seen == []


def test_a_refusal_that_closes_the_connection_is_not_held():
    metrics = Metrics()
    with _server(HOLD_S, metrics=metrics) as port, _connect(port) as sock:
        status, _, closed = _ask(sock, "/close")
        assert status == 503 and closed
    assert metrics.registry.get_sample_value("rnnserve_held_connections_total") == 0


@pytest.mark.parametrize("hold_s, protocol", [(0.0, HoldingHttpToolsProtocol), (HOLD_S, "httptools")])
def test_without_the_setting_or_the_protocol_nothing_is_held(hold_s, protocol):
    with _server(hold_s, protocol) as port, _connect(port) as sock:
        assert _ask(sock, "/refuse")[0] == 503
        status, answered_in, _ = _ask(sock, "/ok")
        assert status == 200 and answered_in < HOLD_S / 2


def test_python_m_service_runs_the_protocol_unless_the_setting_is_0():
    from service.__main__ import uvicorn_options
    from service.config import Settings

    assert "http" not in uvicorn_options(Settings(refused_connection_hold_s=0), 2)
    assert uvicorn_options(Settings(), 2)["http"] is HoldingHttpToolsProtocol  # 1 s by default
    options = uvicorn_options(Settings(refused_connection_hold_s=7.5), 2)
    assert options["http"] is HoldingHttpToolsProtocol
    assert options["timeout_keep_alive"] > 7.5  # a held connection is not closed as idle


@pytest.mark.timeout(300)
def test_python_m_service_holds_a_refused_connection(tmp_path):
    """As users run it (two serving processes): a refusal with Retry-After holds its connection, and the
    hold is counted in /metrics."""
    server, base = start_service(
        {
            "RNNSERVE_MODEL_REPOSITORY": str(bundled_repository(tmp_path / "models", ["sentiment-gru"])),
            "RNNSERVE_WORKERS": "2",
            "RNNSERVE_REFUSED_CONNECTION_HOLD_S": str(HOLD_S),
            "RNNSERVE_BATCHING__SENTIMENT__MAX_QUEUE_SIZE": "1",  # two texts never fit: 503 queue_full
        },
        capture=False,
    )
    try:
        with _connect(httpx.URL(base).port) as sock:
            status, headers, answered_in = _post(sock, "/sentiment", b'{"texts": ["good", "bad"]}')
            assert status == 503 and headers["retry-after"] == "1" and answered_in < HOLD_S / 2
            status, _, answered_in = _post(sock, "/sentiment", b'{"text": "good"}')
            assert status == 200 and answered_in >= HOLD_S * 0.9
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert "rnnserve_held_connections_total 1.0" in metrics
    finally:
        server.terminate()
        server.wait(60)
