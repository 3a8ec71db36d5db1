"""Fixtures: one tiny character LM trained and exported per session, served in-process or by uvicorn."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from service.main import create_app
from service.registry import default_plugins
from service.tasks.generation.plugin import PLUGIN
from tests.service.conftest import serving, settings_for
from tests.service.tasks.generation.tiny_model import TinyGeneration


@pytest.fixture(scope="session")
def tiny_generation(tmp_path_factory: pytest.TempPathFactory) -> TinyGeneration:
    pytest.importorskip("torch", reason="the generation tests train a tiny model with the training extra")
    from tests.service.tasks.generation.tiny_model import make_generation_repository

    return make_generation_repository(tmp_path_factory.mktemp("generation"))


def plugins():
    """The default registry plus the generation plug-in (once, whether or not the registry lists it)."""
    registered = default_plugins()
    return registered if any(p.task == PLUGIN.task for p in registered) else [*registered, PLUGIN]


@pytest.fixture
def gen_client(tiny_generation: TinyGeneration):
    with serving(settings_for(tiny_generation.root), plugins=plugins()) as client:
        yield client


@contextmanager
def live_server(root: Path, **overrides) -> Iterator[tuple[str, object]]:
    """A real uvicorn server on a free port (the test client cannot stream or disconnect mid-response).

    Yields ``(base_url, app)``."""
    app = create_app(settings_for(root, access_log=False, **overrides), plugins())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and app.state.repository.loading_done):
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def live(tiny_generation: TinyGeneration):
    with live_server(tiny_generation.root) as server:
        yield server
