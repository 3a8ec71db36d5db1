"""The HTTP benchmark utilities: percentiles, report sections, and a short real load run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.bench.http_load import percentiles, run_load
from loadtest.bench.report import markdown_table, median_of, replace_section
from loadtest.bench.server import REPO_ROOT, running_service, server_settings
from tests.service.tiny_onnx import make_tiny_sentiment


def test_percentiles_in_milliseconds():
    p = percentiles([i / 1000 for i in range(1, 101)])
    assert p["p50_ms"] == pytest.approx(50.5) and p["p99_ms"] == pytest.approx(99.01)


def test_median_of_runs():
    runs = [
        {"rps": r, "p50_ms": p, "p95_ms": 1, "p99_ms": 1} for r, p in [(1.0, 5.0), (3.0, 1.0), (2.0, 3.0)]
    ]
    assert median_of(runs)["rps"] == 2.0 and median_of(runs)["p50_ms"] == 3.0


def test_server_settings_are_what_the_started_service_reads(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RNNSERVE_ORT_INTRA_OP_THREADS", "2")
    one = server_settings({"RNNSERVE_WORKERS": "1"})
    assert one.process_count == 1 and one.ort_threads == 2
    overridden = server_settings({"RNNSERVE_WORKERS": "3", "RNNSERVE_ORT_INTRA_OP_THREADS": "1"})
    assert overridden.process_count == 3 and overridden.ort_threads == 1
    assert "RNNSERVE_WORKERS" not in os.environ  # this process's environment is left as it was


def test_replace_section_is_idempotent_and_keeps_the_rest(tmp_path: Path):
    doc = tmp_path / "b.md"
    doc.write_text("# Benchmarks\n\nintro\n")
    replace_section(doc, "x", "first")
    replace_section(doc, "x", markdown_table(["a", "b"], [["r", 1.25]]))
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n") and "first" not in text
    assert text.count("<!-- x:start -->") == 1 and "| r | 1.2 |" in text


def test_load_generator_against_a_live_service(tmp_path: Path):
    make_tiny_sentiment(tmp_path / "models")
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text('{"text": "a good film"}\n{"text": "a dull plot"}\n')
    env = {"RNNSERVE_MODEL_REPOSITORY": str(tmp_path / "models"), "RNNSERVE_DEVICE": "cpu"}
    with running_service(env) as base:
        cmd = [sys.executable, "-m", "loadtest.bench.http_load", "--url", f"{base}/sentiment", "--bodies",
               str(bodies), "--concurrency", "4", "--duration", "1", "--warmup", "0.2"]  # fmt: skip
        out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60)
        # the same clients split over three generator processes (a server with many cores)
        split = run_load(f"{base}/sentiment", bodies, 4, duration=1, warmup=0.2, generators=3)
    for result in (json.loads(out.stdout), split):
        assert (
            result["requests"] > 0
            and result["errors"] == 0
            and result["statuses"] == {"200": result["requests"]}
        )
        assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
        assert result["rps"] == pytest.approx(result["requests"] / 1)
    assert split["generators"] == 3 and split["concurrency"] == 4
