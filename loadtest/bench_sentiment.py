"""Sentiment serving benchmark: dynamic batching on vs off, 1 and 64 clients, against in-process ORT.

    python -m loadtest.bench_sentiment            # ~3 minutes; rewrites the table in docs/benchmarks.md

It serves whatever default sentiment model ``models/`` holds (or ``--models``/``--model``), sends ~20-token
dev sentences (15-25 tokens) from a separate load-generator process over 127.0.0.1, repeats each run
``--repeats`` times and reports medians. "Batching off" is the same service with ``max_batch_size=1``.
Bounded in time: (4 configurations x repeats x (warmup + duration)) plus server start-ups.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from loadtest.bench.http_load import run_load
from loadtest.bench.models import pick_model
from loadtest.bench.report import (
    cpu_us_per_request,
    markdown_table,
    measured_with,
    median_of,
    replace_section,
)
from loadtest.bench.server import REPO_ROOT, running_service
from service.config import Settings
from service.runtime import create_session
from service.tasks.sentiment.codec import SentimentCodec
from service.tasks.sentiment.contract import PROBABILITIES
from training.machine import machine_description

MARKER = "sentiment-serving"


def default_data_dir() -> Path:
    return Path(os.environ.get("RNNSERVE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def sentences(dev_tsv: Path, codec: SentimentCodec, lo: int = 15, hi: int = 25) -> list[str]:
    rows = dev_tsv.read_text(encoding="utf-8").splitlines()[1:]
    texts = [r.split("\t")[0] for r in rows if r.strip()]
    chosen = [t for t in texts if lo <= len(codec.encode(t)) <= hi]
    if len(chosen) < 50:
        raise SystemExit(f"only {len(chosen)} dev sentences with {lo}-{hi} tokens")
    return chosen


class InProcessOrt:
    """The served graph in this process, same settings as the service: sentences/s per batch size."""

    BATCHES = (1, 4, 16, 32, 64, 128)

    def __init__(self, version_dir: Path, manifest, texts: list[str], settings: Settings | None = None):
        spec = manifest.graphs["model"]
        self.session = create_session(version_dir / spec.file, spec, settings or Settings())
        codec = SentimentCodec.from_manifest(manifest, version_dir)
        encoded = [codec.encode(t) for t in texts]
        self.feeds = {
            b: [codec.collate([encoded[(i * b + j) % len(encoded)] for j in range(b)]) for i in range(16)]
            for b in self.BATCHES
        }

    def sweep(self, seconds: float = 1.0) -> dict[int, float]:
        """Model call only (inputs pre-encoded and padded)."""
        out: dict[int, float] = {}
        for batch, feeds in self.feeds.items():
            self.session.run([PROBABILITIES], feeds[0])
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds or n < 3:
                self.session.run([PROBABILITIES], feeds[n % len(feeds)])
                n += 1
            out[batch] = n * batch / (time.perf_counter() - t0)
        return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=Settings().model_repository)
    p.add_argument("--model", default=None, help="default: the repository's default sentiment model")
    p.add_argument("--data", type=Path, default=default_data_dir() / "sentiment" / "dev.tsv")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=1.5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    p.add_argument("--json", type=Path, default=REPO_ROOT / "runs" / "bench_sentiment.json")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        help="RNNSERVE_*=value applied to both services and the in-process baseline (repeatable)",
    )
    p.add_argument("--marker", default=MARKER, help="the docs section to rewrite (a variant gets its own)")
    args = p.parse_args(argv)
    extra_env = dict(kv.split("=", 1) for kv in args.env)
    os.environ.update(extra_env)  # Settings() below and the service subprocesses both read it

    manifest, version, version_dir = pick_model(args.models, "sentiment", args.model)
    name = manifest.name
    codec = SentimentCodec.from_manifest(manifest, version_dir)
    texts = sentences(args.data, codec)
    mean_tokens = statistics.mean(len(codec.encode(t)) for t in texts)
    load_before = os.getloadavg()
    print(f"model {name} v{version}; {len(texts)} dev sentences, mean {mean_tokens:.1f} tokens", flush=True)

    common = {
        "RNNSERVE_MODEL_REPOSITORY": str(args.models),
        "RNNSERVE_DEFAULT_MODELS": json.dumps({"sentiment": name}),
    }
    configs = {"on": common, "off": {**common, "RNNSERVE_BATCHING__SENTIMENT__MAX_BATCH_SIZE": "1"}}
    in_process = InProcessOrt(version_dir, manifest, texts)
    runs: dict[str, list[dict]] = {f"{c}-{n}": [] for n in (args.clients, 1) for c in configs}
    ort_runs: list[dict[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        bodies = Path(tmp) / "bodies.jsonl"
        bodies.write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n", encoding="utf-8")
        # Both services run side by side and the runs alternate, so a change in the machine's background
        # load hits both configurations alike; an idle service costs no CPU.
        bases = {
            c: stack.enter_context(running_service(env, log_path=Path(tmp) / f"server-{c}.log"))
            for c, env in configs.items()
        }
        for repeat in range(args.repeats):
            ort_runs.append(in_process.sweep())
            rates = {b: round(v) for b, v in ort_runs[-1].items()}
            print(f"[{repeat + 1}/{args.repeats}] in-process ORT sentences/s by batch size: {rates}")
            for clients in (args.clients, 1):
                for c, base in bases.items():
                    cpu_before = base.cpu_seconds()
                    r = run_load(f"{base}/sentiment", bodies, clients, args.duration, args.warmup)
                    # server CPU per request over warm-up and measurement: robust to other processes' load
                    r["server_cpu_us"] = cpu_us_per_request(
                        base.cpu_seconds() - cpu_before, r["requests"], args.duration, args.warmup
                    )
                    runs[f"{c}-{clients}"].append(r)
                    print(
                        f"[{repeat + 1}/{args.repeats}] batching {c}, {clients} clients: "
                        f"{r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms",
                        flush=True,
                    )
    keys = ("rps", "p50_ms", "p95_ms", "p99_ms", "server_cpu_us")
    results = {
        k: {"runs": v, **median_of(v, keys), "errors": sum(r["errors"] for r in v)} for k, v in runs.items()
    }
    ort = {b: statistics.median(r[b] for r in ort_runs) for b in InProcessOrt.BATCHES}
    best_batch = max(ort, key=ort.get)
    # ORT's own default thread pool (one intra-op thread per core), for the thread-count default
    pool = InProcessOrt(version_dir, manifest, texts, Settings(ort_intra_op_threads=0)).sweep()

    on64, off64 = results[f"on-{args.clients}"], results[f"off-{args.clients}"]
    on1, off1 = results["on-1"], results["off-1"]
    bars = [
        (
            f"{args.clients} clients: batching throughput ≥ 2× batching off",
            on64["rps"] / off64["rps"],
            2.0,
            "≥",
        ),
        (
            f"{args.clients} clients: batching p99 < batching off p99",
            on64["p99_ms"] / off64["p99_ms"],
            1.0,
            "<",
        ),
        ("1 client: batching p50 ≤ 1.10 × batching off p50", on1["p50_ms"] / off1["p50_ms"], 1.10, "≤"),
        (
            f"{args.clients} clients: service ≥ 50% of in-process ORT at best batch",
            on64["rps"] / ort[best_batch],
            0.5,
            "≥",
        ),
    ]
    rows = [
        [
            f"batching {k.split('-')[0]}",
            int(k.split("-")[1]),
            f"{r['rps']:,.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p95_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['server_cpu_us']:.0f}",
            r["errors"],
        ]
        for k, r in results.items()
    ]
    command = "python -m loadtest.bench_sentiment " + " ".join(argv if argv is not None else sys.argv[1:])
    doc = "\n".join(
        [
            f"Model `{name}` version {version}; {len(texts)} dev sentences of 15-25 tokens"
            f" (mean {mean_tokens:.1f}), one text per request,"
            " closed-loop clients in a separate process over 127.0.0.1.",
            f"Medians of {args.repeats} runs of {args.duration:g} s"
            f" (after {args.warmup:g} s warm-up) per row.",
            f"Machine: {machine_description()}; 1-minute load average {load_before[0]:.2f} before and"
            f" {os.getloadavg()[0]:.2f} after the runs (other processes shared the cores when these exceed"
            " what the benchmark itself puts on them, about 2).",
            *measured_with(command),
            "",
            markdown_table(
                [
                    "service",
                    "clients",
                    "requests/s",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "server CPU µs/request",
                    "errors",
                ],
                rows,
            ),
            "",
            "In-process ONNX Runtime, same model and thread settings, model call only (sentences/s): "
            + ", ".join(f"batch {b}: {v:,.0f}" for b, v in ort.items())
            + f"; best: batch {best_batch}"
            + f" ({1e6 / ort[best_batch]:.0f} µs of model time per sentence)."
            + " The same with ORT's default thread pool (`RNNSERVE_ORT_INTRA_OP_THREADS=0`, one run): "
            + ", ".join(f"batch {b}: {v:,.0f}" for b, v in pool.items())
            + ".",
            "",
            markdown_table(
                ["bar", "measured", "target", "met"],
                [
                    [
                        b,
                        f"{v:.2f}",
                        f"{op} {t:g}",
                        "yes" if (v >= t if op == "≥" else v < t if op == "<" else v <= t) else "**no**",
                    ]
                    for b, v, t, op in bars
                ],
            ),
        ]
    )
    replace_section(args.doc, args.marker, doc)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"model": name, "version": version, "ort": ort, "ort_pool": pool, "results": results}, indent=1
        )
    )
    print(doc)


if __name__ == "__main__":
    main()
