"""fp32 or int8: the choice follows the dev metric and the output tolerance, and the report says why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.config import ExportConfig
from training.export import ort_session
from training.quantization import Graphs, Metrics, choose_precision

FEED = {"x": np.random.default_rng(1).normal(size=(8, 64)).astype(np.float32)}


def matmul_graph(path: Path) -> Path:
    weight = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def outputs(graphs: Graphs) -> list[np.ndarray]:
    return [ort_session(graphs["model"]).run(["y"], FEED)[0]]


def scorer(int8_dev: float):
    """Dev metric 0.9 for fp32 graphs and ``int8_dev`` for int8 ones (told apart by their file name)."""

    def evaluate(graphs: Graphs) -> Metrics:
        int8 = graphs["model"].name.endswith(".int8.onnx")
        return {"dev": {"acc": int8_dev if int8 else 0.9}, "test": {"acc": 0.5}}

    return evaluate


@pytest.mark.parametrize(
    ("quantize", "int8_dev", "tolerance", "shipped"),
    [
        ("auto", 0.899, 1.0, "int8"),  # drop 0.001 <= 0.005, outputs close enough
        ("auto", 0.8, 1.0, "fp32"),  # the dev metric does not hold
        ("auto", 0.9, 1e-9, "fp32"),  # the outputs move more than the tolerance
        ("always", 0.5, 1.0, "int8"),
    ],
)
def test_choice_follows_metric_and_tolerance(tmp_path: Path, quantize, int8_dev, tolerance, shipped) -> None:
    fp32 = matmul_graph(tmp_path / "model.onnx")
    cfg = ExportConfig(name="t", quantize=quantize, quantize_max_drop=0.005, quantize_tolerance=tolerance)
    choice = choose_precision({"model": fp32}, cfg, scorer(int8_dev), "acc", outputs, compared="output")
    report = choice.report
    assert report is not None and report.metrics["shipped"]["graph"] == shipped
    assert report.metrics["fp32"] == {"dev_acc": 0.9, "test_acc": 0.5}
    assert report.metrics["int8"]["dev_acc"] == int8_dev
    assert choice.graphs["model"].name == ("model.int8.onnx" if shipped == "int8" else "model.onnx")
    assert choice.metrics["dev"]["acc"] == (int8_dev if shipped == "int8" else 0.9)
    assert 0 < report.max_abs_diff < 1.0 and report.fp32_size_bytes == fp32.stat().st_size
    assert choice.graphs["model"].stat().st_size < fp32.stat().st_size or shipped == "fp32"


def test_never_skips_quantization(tmp_path: Path) -> None:
    fp32 = matmul_graph(tmp_path / "model.onnx")
    choice = choose_precision(
        {"model": fp32}, ExportConfig(name="t", quantize="never"), scorer(0.0), "acc", outputs, "output"
    )
    assert choice.report is None and choice.graphs == {"model": fp32}
    assert not (tmp_path / "model.int8.onnx").exists()


def test_always_still_fails_past_the_tolerance(tmp_path: Path) -> None:
    fp32 = matmul_graph(tmp_path / "model.onnx")
    cfg = ExportConfig(name="t", quantize="always", quantize_tolerance=1e-9)
    with pytest.raises(AssertionError, match="int8 differs from fp32"):
        choose_precision({"model": fp32}, cfg, scorer(0.9), "acc", outputs, "output")


def test_lower_is_better_metrics_count_a_rise_as_the_drop(tmp_path: Path) -> None:
    fp32 = matmul_graph(tmp_path / "model.onnx")

    def loss(graphs: Graphs) -> Metrics:
        return {"dev": {"loss": 1.2 if graphs["model"].name.endswith(".int8.onnx") else 1.0}}

    cfg = ExportConfig(name="t", quantize="auto", quantize_max_drop=0.1, quantize_tolerance=1.0)
    choice = choose_precision({"model": fp32}, cfg, loss, "loss", outputs, "output", higher_is_better=False)
    assert choice.report.metrics["shipped"]["graph"] == "fp32"  # loss rose by 0.2 > 0.1
