"""The NER batch function: length buckets, order restored, empty texts, non-finite emissions per item."""

from __future__ import annotations

import numpy as np
import pytest

from service.config import BatchingConfig, Settings
from service.errors import InferenceError
from service.manifest import ModelManifest
from service.runtime import create_session
from service.tasks.ner.codec import is_valid_bio
from service.tasks.ner.contract import EMISSIONS
from service.tasks.ner.model import build
from tests.service.tasks.ner.test_routes import make_tiny_ner


class RecordingSession:
    def __init__(self, session):
        self.session = session
        self.shapes: list[tuple[int, ...]] = []
        self.poison: int | None = None  # word id whose row gets NaN emissions

    def run(self, outputs, feeds):
        self.shapes.append(feeds["char_ids"].shape)
        (emissions,) = self.session.run(outputs, feeds)
        if self.poison is not None:
            emissions[(feeds["word_ids"] == self.poison).any(axis=1)] = np.nan
        return [emissions]


@pytest.fixture(scope="module", params=[True, False], ids=["crf", "softmax"])
def model(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("ner-plugin")
    model_dir = make_tiny_ner(root, "ner-tiny", crf=request.param, default=True)
    manifest = ModelManifest.load(model_dir)
    settings = Settings(model_repository=root, device="cpu")
    session = create_session(model_dir / "1" / "model.onnx", manifest.graphs["model"], settings)
    served = build(manifest, 1, model_dir / "1", {"model": session}, settings)
    served.sessions["model"] = RecordingSession(session)
    return served


def _text(n: int) -> str:
    return " ".join(["Peter", "lives", "in", "Paris"][i % 4] for i in range(n))


def test_a_batch_is_split_into_length_buckets_and_answered_in_order(model):
    model.batching = BatchingConfig(bucket_ratio=2.0)
    texts = [_text(30), _text(1), "", _text(28), _text(2), _text(1)]
    model.sessions["model"].shapes.clear()
    batched = model.predict_batch(texts)
    assert sorted(s[:2] for s in model.sessions["model"].shapes) == [(2, 30), (3, 2)]
    assert batched[2] == {"tokens": [], "entities": []}
    for text, b in zip(texts, batched, strict=True):
        assert b == model.predict_batch([text])[0]
        assert is_valid_bio([t["tag"] for t in b["tokens"]])


def test_non_finite_emissions_fail_only_their_item(model):
    session = model.sessions["model"]
    session.poison = model.codec.words.stoi["paris"]
    try:
        answers = model.predict_batch(["Peter lives", "in Paris", "Peter"])
    finally:
        session.poison = None
    assert isinstance(answers[1], InferenceError) and "non-finite" in str(answers[1])
    assert answers[0]["tokens"] and answers[2]["tokens"]


def test_the_graph_output_is_the_emission_contract(model):
    assert [o.name for o in model.manifest.graphs["model"].outputs] == [EMISSIONS]
    model.warmup()
