"""The translation benchmark: options, the report section, and a short real run on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.bench_translate import HEADING, format_report, main, parse_args, write_section
from tests.service.tasks.translation.tiny_model import pairs, shared_tiny_translation


def test_options_default_to_a_bounded_run_and_reject_nonsense():
    args = parse_args([])
    assert args.sentences == 200 and args.duration == 8.0 and args.batch == 32 and args.clients == 16
    assert args.data.name == "test2016.en" and args.doc.name == "benchmarks.md"
    for bad in (["--sentences", "0"], ["--batch", "0"], ["--duration", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def _results(http: list[dict]) -> dict:
    row = {"batch": 1, "beam": 5, "sentences": 40, "sentences_per_s": 12.345, "call_p50_ms": 80.0,
           "call_p99_ms": 120.5}  # fmt: skip
    return {
        "model": "translation-x", "version": 2, "graphs": "int8 graphs, 8.1 MB", "sentence_count": 1000,
        "mean_tokens": 15.25, "machine": "2-core CPU, no GPU", "load_before": 1.0, "load_after": 2.0,
        "date": "2026-01-01 00:00 UTC", "command": "python -m loadtest.bench_translate --sentences 40",
        "limit_sentences": 40, "duration_s": 5.0, "warmup_s": 1.0, "server_env": "defaults",
        "in_process": [row, {**row, "batch": 32, "sentences_per_s": 99.0}], "http": http,
    }  # fmt: skip


def test_report_lists_every_scenario_with_command_and_machine():
    http = [{"concurrency": 16, "beam": 1, "requests": 300, "rps": 60.0, "p50_ms": 250.0, "p99_ms": 400.0,
             "errors": 0}]  # fmt: skip
    text = format_report(_results(http))
    assert "python -m loadtest.bench_translate --sentences 40" in text and "2-core CPU, no GPU" in text
    assert "| 1 sentence per call | 5 | 40 | 12.3 | 80.0 | 120.5 |" in text
    assert "| 32 sentences per call | 5 | 40 | 99.0 |" in text
    assert "| 16 | 1 | 300 | 60.0 | 250.0 | 400.0 | 0 |" in text
    assert "Over HTTP" not in format_report(_results([]))


def test_the_section_gets_a_heading_once_and_is_rewritten_in_place(tmp_path: Path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nother section\n")
    write_section(doc, "translation-serving", "first")
    write_section(doc, "translation-serving", "second")
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nother section\n")
    assert text.count(HEADING) == 1 and "second" in text and "first" not in text


def test_a_short_run_on_the_tiny_model_in_process_and_over_http(tmp_path: Path):
    tiny = shared_tiny_translation()
    data = tmp_path / "test2016.en"
    data.write_text("".join(f"{en}\n" for en, _ in pairs()[:10]))
    doc, out = tmp_path / "benchmarks.md", tmp_path / "bench.json"
    args = ["--models", str(tiny.root), "--data", str(data), "--sentences", "12", "--duration", "0.5"]
    args += ["--warmup", "0.2", "--batch", "4", "--clients", "3", "--doc", str(doc), "--json", str(out)]
    results = main(args)
    assert results["model"] == tiny.name and json.loads(out.read_text())["model"] == tiny.name
    assert [(r["batch"], r["beam"]) for r in results["in_process"]] == [(1, 1), (4, 1), (1, 5), (4, 5)]
    assert all(0 < r["sentences"] <= 12 and r["sentences_per_s"] > 0 for r in results["in_process"])
    assert [(r["concurrency"], r["beam"]) for r in results["http"]] == [(1, 1), (3, 1), (1, 5), (3, 5)]
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in results["http"])
    assert "<!-- translation-serving:start -->" in doc.read_text()
