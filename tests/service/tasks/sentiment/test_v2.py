"""The sentiment v2 adapter: metadata names the label order, results become typed tensors."""

from __future__ import annotations

from types import SimpleNamespace

from service.tasks.sentiment.v2 import ADAPTER

MANIFEST = SimpleNamespace(name="sentiment-x", task="sentiment", labels=["negative", "positive"])
RESULTS = [
    {"label": "positive", "score": 0.9, "scores": {"negative": 0.1, "positive": 0.9}},
    {"label": "negative", "score": 0.7, "scores": {"positive": 0.3, "negative": 0.7}},
]


def test_metadata_states_tensors_and_label_order() -> None:
    metadata = ADAPTER.metadata(MANIFEST, 3)
    assert metadata["versions"] == ["3"]
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"][1] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}
    assert metadata["parameters"] == {
        "task": "sentiment",
        "labels": ["negative", "positive"],
        "request_parameters": {},
    }


def test_probabilities_follow_the_manifest_label_order_row_major() -> None:
    model = SimpleNamespace(manifest=MANIFEST)
    assert ADAPTER.encode("probabilities", RESULTS, model) == {
        "name": "probabilities",
        "datatype": "FP32",
        "shape": [2, 2],
        "data": [0.1, 0.9, 0.7, 0.3],
    }
    assert ADAPTER.encode("label", RESULTS, model)["data"] == ["positive", "negative"]


def test_sentiment_takes_no_parameters_but_tolerates_tritons_own() -> None:
    assert ADAPTER.options(None) is None
    assert ADAPTER.options({"binary_data_output": True}) is None
