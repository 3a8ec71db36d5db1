"""The pieces of a model's row in docs/models.md: sizes, measured latencies, and the default row."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.manifest import ModelManifest
from training.export import ort_session


def format_bytes(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"


def measure_latency_ms(graph: Path, feed: dict[str, np.ndarray], warmup: int = 10, runs: int = 50) -> float:
    """Median wall time of one ``session.run`` with one intra-op thread, in milliseconds."""
    return measure_latencies_ms(graph, [feed], warmup, runs)[0]


def measure_latencies_ms(
    graph: Path, feeds: Sequence[dict[str, np.ndarray]], warmup: int = 10, runs: int = 50
) -> list[float]:
    """``measure_latency_ms`` for each feed (e.g. batch 1 and batch 32), on one session."""
    session = ort_session(graph, threads=1)
    latencies = []
    for feed in feeds:
        for _ in range(warmup):
            session.run(None, feed)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - start)
        latencies.append(1000 * statistics.median(times))
    return latencies


def default_row(model_dir: Path, manifest: ModelManifest) -> dict[str, str]:
    def metric(split: str) -> str:
        values = manifest.metrics.get(split, {})
        return ", ".join(f"{k} {v:.4g}" for k, v in values.items() if isinstance(v, float)) or "—"

    return {
        "model": f"`{manifest.name}`" + (" (default)" if manifest.default else ""),
        "dev": metric("dev"),
        "test": metric("test"),
        "parameters": f"{manifest.parameters:,}",
        "ONNX size": format_bytes(manifest.size_bytes),
    }
