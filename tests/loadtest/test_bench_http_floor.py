"""The HTTP floor's bare app (parses, answers the fixed body) and its report table."""

from __future__ import annotations

import asyncio

from loadtest import http_floor_app
from loadtest.bench_http_floor import table


def _call(method: str, chunks: list[bytes]) -> list[dict]:
    sent: list[dict] = []
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(http_floor_app.app({"type": "http", "method": method}, receive, send))
    return sent


def test_the_floor_reads_the_whole_body_and_answers_the_fixed_body():
    start, body = _call("POST", [b'{"text": "a', b' film"}'])
    assert start["status"] == 200
    assert body["body"] == http_floor_app.ANSWER
    assert dict(start["headers"])[b"content-length"] == str(len(http_floor_app.ANSWER)).encode()


def test_the_floor_parses_what_it_is_sent():
    start, _ = _call("POST", [b'{"text": '])
    assert start["status"] == 400


def test_the_table_gives_medians_per_server_and_client_count():
    runs = {
        ("floor", 64): [
            {"rps": r, "p50_ms": 1.0, "p99_ms": 2.0, "server_cpu_us": c, "client_cpu_us": 50.0, "errors": 0}
            for r, c in ((100.0, 10.0), (300.0, 30.0), (200.0, 20.0))
        ]
    }
    row = table(runs).splitlines()[-1]
    assert row.startswith("| floor | 64 | 200 | 1.00 | 2.00 | 20 | 50 | 0 |")
