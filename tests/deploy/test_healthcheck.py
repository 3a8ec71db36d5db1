"""The container health probe against a real server: 200 is healthy, anything else or nothing is not."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.deploy.dockerfile import REPO_ROOT

PROBE = REPO_ROOT / "deploy" / "healthcheck.py"


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response({"/health": 200, "/ready": 503}.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def probe(port: int, *args: str) -> int:
    env = {"RNNSERVE_PORT": str(port), "PATH": ""}
    return subprocess.run([sys.executable, str(PROBE), *args], env=env, timeout=30).returncode


def test_probe_follows_the_answer(port: int) -> None:
    assert probe(port) == 0
    assert probe(port, "/health") == 0
    assert probe(port, "/ready") == 1
    assert probe(port, "/missing") == 1


def test_probe_fails_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    assert probe(closed) == 1
