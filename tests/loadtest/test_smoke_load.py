"""CI smoke load test: the real server (``python -m service``, bundled ``models/``) under the locust mix.

About 10 s of headless locust on a free 127.0.0.1 port; any failed request (a non-2xx or an answer of the
wrong shape) fails the test. A second test proves the shape checks turn a wrong 200 answer into failures.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from loadtest.bench.server import REPO_ROOT, running_service
from loadtest.contract import served_endpoints
from loadtest.loadrun import run_locust

MODELS = REPO_ROOT / "models"
BUNDLED = sorted(p.parent.name for p in MODELS.glob("*/config.json"))


def _get(url: str):
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.mark.skipif(not BUNDLED, reason="no model bundled in models/ yet")
def test_smoke_load_of_the_bundled_models_has_no_failures(tmp_path: Path) -> None:
    server_log = tmp_path / "server.log"
    env = {"RNNSERVE_MODEL_REPOSITORY": str(MODELS), "RNNSERVE_ORT_INTRA_OP_THREADS": "1"}
    with running_service(env, log_path=server_log) as host:
        expected = served_endpoints(_get(f"{host}/openapi.json"), _get(f"{host}/models")["models"])
        # 10 users: locust splits users by weight, so the lightest endpoint (10%) gets at least one
        run = run_locust(host, users=10, spawn_rate=10, run_time="10s", out_dir=tmp_path, timeout_s=120)
    assert expected, f"the server serves no endpoint of the mix; bundled: {BUNDLED}"
    assert run.returncode == 0, run.output[-3000:]
    rows = {s.name: s for s in run.stats}
    assert set(rows) == {*expected, "Aggregated"}, "requests went exactly to the served endpoints"
    for path in expected:
        assert rows[path].requests > 0, path
        assert rows[path].failures == 0, (path, run.failures_csv.read_text())
    assert rows["Aggregated"].failures == 0
    assert run.html.is_file()


FAKE_ROUTES = {
    "/openapi.json": {"paths": {"/sentiment": {"post": {"tags": ["sentiment"]}}}},
    "/models": {"models": [{"name": "fake", "task": "sentiment", "state": "ready"}]},
}


class WrongAnswers(BaseHTTPRequestHandler):
    """Serves /sentiment with 200 answers that have one result too few."""

    def _send(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(FAKE_ROUTES[self.path])

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send({"model": "fake", "results": []})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def wrong_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), WrongAnswers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_wrong_answer_is_a_failure(wrong_server: str, tmp_path: Path) -> None:
    run = run_locust(wrong_server, users=1, spawn_rate=1, run_time="2s", out_dir=tmp_path, timeout_s=60)
    assert run.returncode == 1
    rows = {s.name: s for s in run.stats}
    assert set(rows) == {"/sentiment", "Aggregated"}, "only the served endpoint is in the mix"
    assert rows["/sentiment"].requests > 0
    assert rows["/sentiment"].failures == rows["/sentiment"].requests
    assert "wrong answer: 0 results for 1 texts" in run.failures_csv.read_text()
