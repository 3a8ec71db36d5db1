"""Fixtures: tiny model repositories built in tmp dirs, and a started app on top of them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app
from tests.service.tiny_onnx import make_tiny_sentiment

TINY = "sentiment-tiny"


def write_broken_models(root: Path) -> None:
    """One entry per way a model can be broken; none of them is a task default."""
    graph = make_tiny_sentiment(root, "broken-graph", default=False)
    (graph / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    bad_json = root / "broken-config"
    bad_json.mkdir()
    (bad_json / "config.json").write_text('{"name": "broken-config", "task": ')
    (root / "no-config" / "1").mkdir(parents=True)
    unknown = make_tiny_sentiment(root, "unknown-task", default=False)
    cfg = (unknown / "config.json").read_text().replace('"task": "sentiment"', '"task": "astrology"')
    (unknown / "config.json").write_text(cfg)


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sentiment-tiny`` (default), ``sentiment-tiny-b`` with versions 1 and 2, and broken entries."""
    root = tmp_path_factory.mktemp("models")
    make_tiny_sentiment(root, TINY, default=True, seed=0)
    make_tiny_sentiment(root, "sentiment-tiny-b", version=1, default=False, seed=1)
    make_tiny_sentiment(root, "sentiment-tiny-b", version=2, default=False, seed=2)
    write_broken_models(root)
    return root


def settings_for(root: Path, **overrides) -> Settings:
    overrides.setdefault("gc_freeze", False)  # a test process creates many apps; keep its heap collectable
    return Settings(model_repository=root, device="cpu", ort_intra_op_threads=1, **overrides)


def metric_sample(metrics: str, series: str) -> float | None:
    """The value of one series in ``/metrics`` text: ``series`` is its name and labels as the exposition
    writes them, e.g. ``rnnserve_batch_size_count{model="m"}``; ``None`` when it is not there."""
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/ready").status_code != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready: {client.get('/ready').json()}")
        time.sleep(0.01)


def wait_loaded(client: TestClient, timeout: float = 30.0) -> None:
    """Until the loading pass is over, whatever its outcome."""
    deadline = time.monotonic() + timeout
    while not client.app.state.repository.loading_done:
        assert time.monotonic() < deadline, "loading did not finish"
        time.sleep(0.01)


@contextmanager
def serving(settings: Settings, plugins=None, ready: bool = True) -> Iterator[TestClient]:
    with TestClient(create_app(settings, plugins)) as client:
        if ready:
            wait_ready(client)
        yield client


@pytest.fixture
def client(tiny_repo: Path) -> Iterator[TestClient]:
    with serving(settings_for(tiny_repo)) as c:
        yield c


@pytest.fixture(scope="session")
def trained_sentiment(tmp_path_factory: pytest.TempPathFactory):
    """A tiny sentiment model trained with the training package, exported, and kept in PyTorch too.

    The same steps as ``tests.utils.model_factory.make_sentiment_repository``, which returns only the
    exported folder; the parity test also needs the trained ``torch`` module. Returns
    ``(repository_root, model_name, probability_module)``.
    """
    pytest.importorskip("torch", reason="the parity test needs the training extra")
    from tests.utils.model_factory import sentiment_config, train_sentiment, write_sentiment_splits
    from training.tasks.sentiment.network import ProbabilityModel

    work = tmp_path_factory.mktemp("trained")
    root = work / "models"
    name = "sentiment-trained"
    data = write_sentiment_splits(work / "data")
    config = sentiment_config(data, name=name, cell="lstm", bidirectional=True, pooling="max")
    _, model, _ = train_sentiment(config, work, root)
    return root, name, ProbabilityModel(model).eval()
