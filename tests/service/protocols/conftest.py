"""One real ``python -m service`` on the bundled models for the protocol tests (started once per session).

The clients under test (tritonclient, openai) talk HTTP to it exactly as they would to any server. The
sentiment queue is kept small so that a request of more texts than it holds gets 503 ``queue_full``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.bench.server import Service, running_service

MODELS = Path(__file__).resolve().parents[3] / "models"
SENTIMENT_QUEUE = 8


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The base URL of a service whose every model is loaded (``/ready`` waits for the defaults only)."""
    if not any(MODELS.glob("*/config.json")):
        pytest.skip("no model bundled in models/")
    log = tmp_path_factory.mktemp("protocols") / "server.log"
    env = {
        "RNNSERVE_MODEL_REPOSITORY": str(MODELS),
        "RNNSERVE_DEVICE": "cpu",
        "RNNSERVE_BATCHING__SENTIMENT__MAX_QUEUE_SIZE": str(SENTIMENT_QUEUE),
        # one serving process: the tests read its scheduler's counters and fill its queue through /models
        "RNNSERVE_WORKERS": "1",
    }
    try:
        with running_service(env, log_path=log) as base:
            deadline = time.monotonic() + 120
            while any(m["state"] == "loading" for m in httpx.get(f"{base}/models").json()["models"]):
                assert time.monotonic() < deadline, "models did not finish loading"
                time.sleep(0.1)
            yield base
    except RuntimeError as error:
        raise RuntimeError(f"{error}\n{log.read_text()[-3000:]}") from None


@pytest.fixture(scope="session")
def http(server: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as client:
        yield client
