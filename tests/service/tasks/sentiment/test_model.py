"""The sentiment batch function: length buckets, order restored, answers independent of batch-mates."""

from __future__ import annotations

import pytest

from service.config import BatchingConfig, Settings
from service.manifest import ModelManifest
from service.runtime import create_session
from service.tasks.sentiment.model import build
from tests.service.tiny_onnx import make_tiny_sentiment


class RecordingSession:
    def __init__(self, session):
        self.session = session
        self.widths: list[tuple[int, int]] = []

    def run(self, outputs, feeds):
        self.widths.append(feeds["input_ids"].shape)
        return self.session.run(outputs, feeds)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    model_dir = make_tiny_sentiment(root)
    manifest = ModelManifest.load(model_dir)
    settings = Settings(model_repository=root, device="cpu")
    session = create_session(model_dir / "1" / "model.onnx", manifest.graphs["model"], settings)
    served = build(manifest, 1, model_dir / "1", {"model": session}, settings)
    served.sessions["model"] = RecordingSession(session)
    return served


def _text(n: int) -> str:
    return " ".join(["good", "film", "dull"][i % 3] for i in range(n))


def test_a_batch_is_split_into_length_buckets_and_answered_in_order(model):
    model.batching = BatchingConfig(bucket_ratio=2.0)
    texts = [_text(30), _text(1), _text(28), _text(2), _text(1)]
    model.sessions["model"].widths.clear()
    batched = model.predict_batch(texts)
    assert sorted(model.sessions["model"].widths) == [(2, 30), (3, 2)]  # no short text padded to 30
    alone = [model.predict_batch([t])[0] for t in texts]
    for b, a in zip(batched, alone, strict=True):
        assert b["label"] == a["label"]
        assert b["scores"]["positive"] == pytest.approx(a["scores"]["positive"], abs=1e-6)


def test_a_huge_bucket_ratio_makes_one_call(model):
    model.batching = BatchingConfig(bucket_ratio=1e9)
    model.sessions["model"].widths.clear()
    model.predict_batch([_text(30), _text(1)])
    assert model.sessions["model"].widths == [(2, 30)]


def test_warmup_runs_without_error(model):
    model.warmup()
