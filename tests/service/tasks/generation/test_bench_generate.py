"""The generation benchmark's load generator and report, on the tiny model for a second (not a timed test)."""

from __future__ import annotations

import asyncio

from loadtest.bench_generate import _load, held_out_prompts, write_doc
from tests.service.tasks.generation.conftest import live_server
from tests.service.tasks.generation.tiny_model import TEXT


def test_load_generator_counts_tokens_and_first_events(tiny_generation, tmp_path):
    text = tmp_path / "input.txt"
    text.write_text(TEXT)
    prompts = held_out_prompts(text, tiny_generation.codec)
    assert prompts and all(len(p) <= 40 for p in prompts)
    with live_server(tiny_generation.root) as (base, _):
        plain = asyncio.run(_load(base, prompts, clients=2, stream=False, warmup=0.2, duration=1.0))
        stream = asyncio.run(_load(base, prompts, clients=2, stream=True, warmup=0.2, duration=1.0))
    for result in (plain, stream):
        assert result["errors"] == 0 and result["requests"] > 0
        assert result["tokens_per_s"] > 0 and result["p50_ms"] <= result["p99_ms"]
    assert stream["ttft_p50_ms"] <= stream["p50_ms"] and "ttft_p50_ms" not in plain

    scenarios = {"lone": plain, "concurrent": plain, "lone_stream": stream, "concurrent_stream": stream}
    results = {
        "model": "generation-tiny",
        "version": 1,
        "architecture": "tiny",
        "machine": "test",
        "load_before": "0",
        "duration_s": 1.0,
        "warmup_s": 0.2,
        "in_process_ort": {"1": 100.0, "16": 1000.0},
        "in_process_ort_same_settings_batch16": 950.0,
        "same_settings_threads": "1",
        "server_env": "defaults",
        "serving_processes": 2,
        "in_process_ort_per_cpu_s_batch16": 2000.0,
        "in_process_batch16_all": [1000.0, 900.0],
        "scenarios": scenarios,
        "bars": [{"name": "x", "value": 3.5, "target": 3.0, "met": True}],
    }
    doc = tmp_path / "bench.md"
    write_doc(doc, results, "python -m loadtest.bench_generate")
    written = doc.read_text()
    assert "16 clients, streaming (SSE)" in written and "| x | 3.50 | ≥ 3.00 | yes |" in written
    assert "server (uvicorn, 2 serving processes)" in written
    assert "(1 intra-op\nthread), the bar's reference: batch 16 950 tokens/s" in written
