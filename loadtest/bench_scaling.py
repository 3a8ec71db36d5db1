"""Served throughput against the number of serving processes, on one machine and one execution provider.

    python -m loadtest.bench_scaling                          # 1 and 2 processes here (~2 minutes)
    python -m loadtest.bench_scaling --workers 1 2 4 8 16 --generators 4 --model sentiment-gru
    python -m loadtest.bench_scaling --workers 1 2 4 8 16 --generators 4 --device cuda \
        --marker serving-scaling-cuda

One service per process count (``RNNSERVE_WORKERS``) runs side by side, each serving only the measured
sentiment model, with ONNX Runtime's threads per process as the service derives them (cores / processes)
unless ``--env RNNSERVE_ORT_INTRA_OP_THREADS=...`` sets them. Closed-loop clients post one dev sentence of
15-25 tokens per request over 127.0.0.1; rounds alternate between the services, so a change in the
machine's background load falls on all of them alike (an idle service costs no CPU). The figures are
medians over rounds. One load-generator process cannot keep many serving processes busy: ``--generators``
splits the clients over several (on a 2-core machine they compete with the server, so keep one).
Each service's ``/models`` must report the execution provider ``--device`` asks for, or the run stops.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import onnxruntime as ort

from loadtest.bench.models import pick_model, single_model_repository
from loadtest.bench.report import markdown_table, median_of, publish
from loadtest.bench.server import REPO_ROOT, running_service, server_settings
from loadtest.bench_http_floor import alternate
from loadtest.bench_sentiment import default_data_dir, sentences
from service.config import Settings
from service.runtime import CPU, CUDA
from service.tasks.sentiment.codec import SentimentCodec
from training.machine import machine_description

MARKER = "serving-scaling"
PROVIDERS = {"cpu": CPU, "cuda": CUDA}
KEYS = ("rps", "p50_ms", "p99_ms", "server_cpu_us")


def default_workers(cores: int) -> list[int]:
    """1, 2, 4, ... up to the core count, and the core count itself."""
    counts = [1]
    while counts[-1] * 2 <= cores:
        counts.append(counts[-1] * 2)
    return counts if counts[-1] == cores else [*counts, cores]


def served_provider(base: str, model: str) -> str | None:
    with urllib.request.urlopen(f"{base}/models", timeout=10) as answer:
        listing = json.load(answer)
    return next((m["provider"] for m in listing["models"] if m["name"] == model), None)


def table(results: dict[int, dict[int, list[dict[str, Any]]]], threads: dict[int, int]) -> str:
    """One row per (clients, processes): medians, the rounds' rates, and the speed-up over the fewest
    processes at the same client count."""
    rows = []
    for clients in sorted({c for per in results.values() for c in per}):
        base_rps = None
        for workers in sorted(results):
            runs = results[workers][clients]
            med = median_of(runs, KEYS)
            base_rps = base_rps or med["rps"]
            rows.append(
                [
                    workers,
                    threads[workers],
                    clients,
                    f"{med['rps']:,.0f}",
                    f"{med['rps'] / base_rps:.2f}",
                    f"{med['p50_ms']:.2f}",
                    f"{med['p99_ms']:.2f}",
                    f"{med['server_cpu_us']:.0f}",
                    sum(r["errors"] for r in runs),
                    ", ".join(f"{r['rps']:,.0f}" for r in runs),
                ]
            )
    header = [
        "processes",
        "ORT threads each",
        "clients",
        "requests/s",
        "× fewest processes",
        "p50 ms",
        "p99 ms",
        "server CPU µs/request",
        "errors",
        "rounds (requests/s)",
    ]
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=Settings().model_repository)
    p.add_argument("--model", default=None, help="default: the repository's default sentiment model")
    p.add_argument("--data", type=Path, default=default_data_dir() / "sentiment" / "dev.tsv")
    p.add_argument("--workers", type=int, nargs="+", default=default_workers(cores), help="process counts")
    p.add_argument("--clients", type=int, nargs="+", default=[64])
    p.add_argument("--device", choices=sorted(PROVIDERS), default="cpu")
    p.add_argument("--generators", type=int, default=max(1, cores // 8), help="load-generator processes")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument(
        "--env", action="append", default=[], help="RNNSERVE_*=value for every service (repeatable)"
    )
    p.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    p.add_argument("--marker", default=MARKER)
    p.add_argument("--json", type=Path, default=REPO_ROOT / "runs" / "bench_scaling.json")
    args = p.parse_args(argv)
    if min(args.workers) < 1 or args.generators < 1:
        p.error("--workers and --generators must be at least 1")
    if PROVIDERS[args.device] not in ort.get_available_providers():
        p.error(f"--device {args.device}: this ONNX Runtime has {ort.get_available_providers()}")

    manifest, version, version_dir = pick_model(args.models, "sentiment", args.model)
    name = manifest.name
    texts = sentences(args.data, SentimentCodec.from_manifest(manifest, version_dir))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        bodies = tmp / "bodies.jsonl"
        bodies.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
        common = {
            **dict(kv.split("=", 1) for kv in args.env),
            "RNNSERVE_MODEL_REPOSITORY": str(single_model_repository(args.models, name, tmp)),
            "RNNSERVE_DEFAULT_MODELS": json.dumps({"sentiment": name}),
            "RNNSERVE_DEVICE": args.device,
        }
        envs = {w: {**common, "RNNSERVE_WORKERS": str(w)} for w in args.workers}
        threads = {w: server_settings(env).ort_threads for w, env in envs.items()}
        services = {
            w: stack.enter_context(running_service(env, log_path=tmp / f"server-{w}.log"))
            for w, env in envs.items()
        }
        for w, base in services.items():
            provider = served_provider(base, name)
            if provider != PROVIDERS[args.device]:
                raise SystemExit(f"{w} processes serve {name} on {provider}, not {PROVIDERS[args.device]}")
        runs = alternate(
            {str(w): base for w, base in services.items()},
            bodies,
            args.rounds,
            args.clients,
            args.duration,
            args.warmup,
            args.generators,
        )
    results = {w: {c: runs[(str(w), c)] for c in args.clients} for w in args.workers}
    load_after = os.getloadavg()[0]
    command = shlex.join(
        ["python", "-m", "loadtest.bench_scaling", *(sys.argv[1:] if argv is None else argv)]
    )
    summary = (
        f"Model `{name}` version {version} on {PROVIDERS[args.device]}; {len(texts)} dev sentences of 15-25"
        " tokens, one text per request, closed-loop clients over 127.0.0.1 from"
        f" {args.generators} load-generator process{'es' if args.generators > 1 else ''} on the same machine;"
        f" one service per process count, side by side; medians of {args.rounds} alternating rounds of"
        f" {args.duration:g} s after {args.warmup:g} s warm-up. 1-minute load average {load_before:.2f}"
        f" before and {load_after:.2f} after."
    )
    publish(summary, machine_description(), command, started, table(results, threads), args.doc, args.marker)
    record = {
        "model": name,
        "version": version,
        "device": args.device,
        "threads": threads,
        "results": results,
        "medians": {w: {c: median_of(runs, KEYS) for c, runs in per.items()} for w, per in results.items()},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
