"""ONNX export: the model repository entry is valid, ORT matches PyTorch, and int8 stays within tolerance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from service.manifest import ModelManifest, version_dirs
from service.tasks.sentiment.codec import SentimentCodec
from tests.utils.model_factory import make_sentiment_repository
from training.export import ort_session


def probabilities(model_dir: Path, texts: list[str]) -> np.ndarray:
    manifest = ModelManifest.load(model_dir)
    _, version_dir = version_dirs(model_dir)[-1]
    codec = SentimentCodec.from_manifest(manifest, version_dir)
    session = ort_session(version_dir / manifest.graphs["model"].file)
    return session.run(["probabilities"], codec.collate([codec.encode(t) for t in texts]))[0]


def test_exported_entry_is_a_valid_repository_model(sentiment_model_repo: Path) -> None:
    model_dir = sentiment_model_repo / "sentiment-tiny"
    manifest = ModelManifest.load(model_dir)
    assert manifest.task == "sentiment" and manifest.default
    assert manifest.labels == ["negative", "positive"]
    graph = manifest.graphs["model"]
    assert [(t.name, t.dtype, t.dims) for t in graph.inputs] == [
        ("input_ids", "int64", [-1, -1]),
        ("lengths", "int64", [-1]),
    ]
    assert [(t.name, t.dtype, t.dims) for t in graph.outputs] == [("probabilities", "float32", [-1, 2])]
    assert manifest.parity is not None and manifest.parity.max_abs_diff <= 1e-4
    assert manifest.parity.examples > 0
    assert manifest.size_bytes == (model_dir / "1" / graph.file).stat().st_size
    assert manifest.parameters > 0 and manifest.training is not None
    onnx.checker.check_model(str(model_dir / "1" / graph.file))
    assert json.loads((model_dir / "1" / manifest.files["vocab"]).read_text())["tokens"][:2] == [
        "<pad>",
        "<unk>",
    ]


def test_served_predictions_make_sense_and_ignore_padding(sentiment_model_repo: Path) -> None:
    model_dir = sentiment_model_repo / "sentiment-tiny"
    texts = ["a great and lovely film", "the plot is dull and awful", "good"]
    batch = probabilities(model_dir, texts)
    alone = np.concatenate([probabilities(model_dir, [t]) for t in texts])
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, atol=1e-5)
    assert batch[0].argmax() == 1 and batch[1].argmax() == 0


@pytest.mark.parametrize(("cell", "bidirectional"), [("rnn", False), ("gru", True)])
def test_export_parity_other_cells(tmp_path: Path, cell: str, bidirectional: bool) -> None:
    model_dir = make_sentiment_repository(
        tmp_path, name=f"t-{cell}", cell=cell, bidirectional=bidirectional, epochs=1
    )
    manifest = ModelManifest.load(model_dir)
    assert manifest.parity.max_abs_diff <= manifest.parity.tolerance
    assert manifest.metrics["dev"]["accuracy"] == pytest.approx(manifest.metrics["pytorch"]["dev_accuracy"])
    # dynamic axes: other batch sizes and sequence lengths than the export example
    out = probabilities(model_dir, ["good " * 40, "bad", "fine and dull film"] * 3)
    assert out.shape == (9, 2)


def test_quantized_parity_within_recorded_tolerance(tmp_path: Path) -> None:
    model_dir = make_sentiment_repository(tmp_path, name="t-int8", quantize="always", epochs=2)
    manifest = ModelManifest.load(model_dir)
    report = manifest.quantization
    assert report is not None and report.metrics["shipped"]["graph"] == "int8"
    assert report.max_abs_diff <= report.tolerance
    assert {"dev_accuracy", "test_accuracy"} <= report.metrics["fp32"].keys() == report.metrics["int8"].keys()
    assert manifest.metrics["dev"]["accuracy"] == report.metrics["int8"]["dev_accuracy"]
    graph = onnx.load(str(model_dir / "1" / "model.onnx"))
    int8 = {i.name for i in graph.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    dequantized = {n.input[0] for n in graph.graph.node if n.op_type == "DequantizeLinear"}
    assert int8 and int8 & dequantized  # weight-only int8 (RNN and MatMul weights), fp32 arithmetic
    # a text's probabilities do not depend on its batch neighbours (no shared activation scale)
    texts = ["good " * 30, "bad", "a fine and dull film", "not good at all , really"]
    together = probabilities(model_dir, texts)
    alone = [probabilities(model_dir, [t])[0] for t in texts]
    np.testing.assert_allclose(together, np.stack(alone), atol=1e-6)
