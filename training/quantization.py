"""fp32 or int8: quantize an export's graphs and ship int8 only where the dev metric and the outputs hold.

Shared by every task's export. A task gives its graphs (one or several ``.onnx`` files), a function that
scores a set of graphs on its splits (through ONNX Runtime, so the figures are those of the shipped files),
and one that returns outputs to compare on a fixed set of examples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.manifest import QuantizationReport
from training.config import ExportConfig
from training.export import quantize_int8, quantize_weights_int8

Graphs = Mapping[str, Path]
Metrics = dict[str, dict[str, float]]

METHODS = {
    "weights": "weight-only int8 (training.export.quantize_weights_int8): MatMul/Gemm/RNN weights with one "
    "scale per output unit, embedding tables one per row; folded to fp32 at load, fp32 arithmetic",
    "dynamic": "onnxruntime quantize_dynamic, int8 weights (MatMul, LSTM, embedding Gather) and int8 "
    "activations with one scale per tensor",
}
WEIGHT_OPS = ("MatMul", "Gemm", "LSTM", "GRU", "RNN")


def quantize(source: Path, target: Path, method: str) -> Path:
    """int8 copy of one graph by ``method`` (see :data:`METHODS`)."""
    if method == "dynamic":
        return quantize_int8(source, target)
    return quantize_weights_int8(source, target, dequantize_ops=WEIGHT_OPS)


@dataclass(frozen=True)
class PrecisionChoice:
    graphs: dict[str, Path]
    metrics: Metrics
    report: QuantizationReport | None


def max_abs_diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def choose_precision(
    fp32: Graphs,
    cfg: ExportConfig,
    evaluate: Callable[[Graphs], Metrics],
    metric: str,
    outputs: Callable[[Graphs], Sequence[np.ndarray]],
    compared: str,
    higher_is_better: bool = True,
) -> PrecisionChoice:
    """Evaluates the fp32 graphs and, unless ``cfg.quantize == "never"``, their int8 versions (written
    beside them as ``<stem>.int8.onnx``).

    ``quantize = "auto"`` ships int8 when the dev ``metric`` drops by at most ``cfg.quantize_max_drop``
    and ``compared`` outputs differ by at most ``cfg.quantize_tolerance``; ``"always"`` ships int8 but
    still fails past the tolerance.
    """
    fp32 = dict(fp32)
    fp32_metrics = evaluate(fp32)
    if cfg.quantize == "never":
        return PrecisionChoice(fp32, fp32_metrics, None)
    int8 = {
        key: quantize(path, path.with_suffix(".int8.onnx"), cfg.quantize_method) for key, path in fp32.items()
    }
    int8_metrics = evaluate(int8)
    diff = max_abs_diff(outputs(fp32), outputs(int8))
    drop = fp32_metrics["dev"][metric] - int8_metrics["dev"][metric]
    if not higher_is_better:
        drop = -drop
    if cfg.quantize == "always" and diff > cfg.quantize_tolerance:
        raise AssertionError(
            f"int8 differs from fp32 by {diff:.3g} > {cfg.quantize_tolerance:g} on {compared}"
        )
    ship_int8 = cfg.quantize == "always" or (drop <= cfg.quantize_max_drop and diff <= cfg.quantize_tolerance)

    def flat(metrics: Metrics) -> dict[str, float]:
        return {f"{split}_{metric}": values[metric] for split, values in metrics.items() if metric in values}

    report = QuantizationReport(
        method=METHODS[cfg.quantize_method],
        max_abs_diff=diff,
        tolerance=cfg.quantize_tolerance,
        metrics={
            "fp32": flat(fp32_metrics),
            "int8": flat(int8_metrics),
            "shipped": {
                "graph": "int8" if ship_int8 else "fp32",
                "rule": f"quantize={cfg.quantize}: int8 if dev {metric} drops <= {cfg.quantize_max_drop} "
                f"and max abs {compared} diff <= {cfg.quantize_tolerance}",
            },
        },
        fp32_size_bytes=sum(path.stat().st_size for path in fp32.values()),
    )
    return (
        PrecisionChoice(int8, int8_metrics, report)
        if ship_int8
        else PrecisionChoice(fp32, fp32_metrics, report)
    )
