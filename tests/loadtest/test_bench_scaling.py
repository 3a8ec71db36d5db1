"""The process-count benchmark: which counts it measures, a short real run, and its table."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import pytest

from loadtest.bench_scaling import default_workers, main, table
from tests.service.tiny_onnx import make_tiny_sentiment


def test_the_default_counts_double_up_to_the_cores() -> None:
    assert default_workers(1) == [1]
    assert default_workers(2) == [1, 2]
    assert default_workers(16) == [1, 2, 4, 8, 16]
    assert default_workers(12) == [1, 2, 4, 8, 12]


def test_the_table_gives_medians_and_the_speed_up_over_the_fewest_processes() -> None:
    def run(rps: float) -> dict:
        return {"rps": rps, "p50_ms": 2.0, "p99_ms": 5.0, "server_cpu_us": 300.0, "errors": 0}

    results = {1: {64: [run(100), run(120), run(90)]}, 2: {64: [run(210), run(150), run(190)]}}
    text = table(results, {1: 2, 2: 1})
    assert "| 1 | 2 | 64 | 100 | 1.00 |" in text
    assert "| 2 | 1 | 64 | 190 | 1.90 |" in text and "210, 150, 190" in text


def test_a_short_run_measures_every_count_on_the_provider_asked_for(tmp_path: Path) -> None:
    models = tmp_path / "models"
    make_tiny_sentiment(models)
    dev = tmp_path / "dev.tsv"
    sentence = "the film is a good one with a dull plot and fine acting all through it"
    rows = (" ".join(sentence.split()[: 15 + i % 2]) + "\t1\n" for i in range(60))  # 15 and 16 tokens
    dev.write_text("sentence\tlabel\n" + "".join(rows))
    doc = tmp_path / "bench.md"
    argv = ["--models", str(models), "--data", str(dev), "--workers", "1", "2", "--clients", "4"]
    argv += ["--rounds", "1", "--duration", "0.5", "--warmup", "0.3", "--doc", str(doc)]
    record = main([*argv, "--json", str(tmp_path / "scaling.json")])
    assert record["model"] == "sentiment-tiny" and record["threads"][2] >= 1
    for workers in (1, 2):
        (run,) = record["results"][workers][4]
        assert run["rps"] > 0 and run["errors"] == 0 and run["server_cpu_us"] > 0
    text = doc.read_text()
    assert "<!-- serving-scaling:start -->" in text and "on CPUExecutionProvider" in text
    assert json.loads((tmp_path / "scaling.json").read_text())["device"] == "cpu"


def test_a_provider_this_onnx_runtime_lacks_stops_the_run_before_any_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    models = tmp_path / "models"
    make_tiny_sentiment(models)
    with pytest.raises(SystemExit):
        main(["--models", str(models), "--device", "cuda", "--workers", "1", "--doc", str(tmp_path / "b.md")])
    assert not (tmp_path / "b.md").exists()
    assert "--device cuda: this ONNX Runtime has ['CPUExecutionProvider']" in capsys.readouterr().err
