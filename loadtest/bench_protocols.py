"""Protocol overhead: the Open Inference Protocol (v2) and the OpenAI completions API against the task routes.

    python -m loadtest.bench_protocols     # ~4 minutes; rewrites its section of docs/benchmarks.md

1. Sentiment, 64 closed-loop clients (``loadtest.bench.http_load``): the same dev sentences (15-25
   tokens) as ``POST /sentiment {"text": ...}`` and as ``POST /v2/models/<name>/infer`` with a BYTES
   ``text`` tensor of shape ``[1]``, in alternating rounds against one service. Measured: answered
   requests/s and the server's CPU time per answered request (its whole process tree). Bar: a v2 request
   costs at most 1.15 × the task route's CPU.
2. Generation, 16 clients streaming 200 characters each (temperature 1, a seed per request, prompts from
   the held-out tail of Tiny Shakespeare): ``/generate`` with ``"stream": true`` against
   ``/v1/completions`` with ``"stream": true``, in alternating rounds against one service. Measured:
   generated tokens/s over the window. Bar: OpenAI streaming reaches at least 0.9 × ``/generate``.

Medians of ``--repeats`` rounds; the service runs with its defaults (one process per core).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from loadtest.bench.http_load import run_load
from loadtest.bench.models import pick_model
from loadtest.bench.report import markdown_table, measured_with, replace_section
from loadtest.bench.server import REPO_ROOT, running_service
from loadtest.bench_generate import held_out_prompts
from loadtest.bench_generate import run_load as run_generation
from loadtest.bench_sentiment import default_data_dir, sentences
from service.tasks.generation.codec import CharCodec
from service.tasks.sentiment.codec import SentimentCodec
from training.machine import machine_description

MARKER = "protocols"
V2_CPU_BAR = 1.15
OPENAI_TOKENS_BAR = 0.9


def v2_body(text: str) -> dict:
    return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]}


def sentiment_rounds(args: argparse.Namespace, tmp: Path) -> dict[str, list[dict]]:
    manifest, _, version_dir = pick_model(args.models, "sentiment", args.sentiment_model)
    texts = sentences(
        args.data / "sentiment" / "dev.tsv", SentimentCodec.from_manifest(manifest, version_dir)
    )
    bodies = {"task route": tmp / "task.jsonl", "v2": tmp / "v2.jsonl"}
    bodies["task route"].write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n")
    bodies["v2"].write_text("\n".join(json.dumps(v2_body(t)) for t in texts) + "\n")
    paths = {"task route": "/sentiment", "v2": f"/v2/models/{manifest.name}/infer"}
    env = {
        "RNNSERVE_MODEL_REPOSITORY": str(args.models),
        "RNNSERVE_DEFAULT_MODELS": json.dumps({"sentiment": manifest.name}),
    }
    runs: dict[str, list[dict]] = {k: [] for k in paths}
    with running_service(env, log_path=tmp / "sentiment-server.log") as base:
        for repeat in range(args.repeats):
            for protocol, path in paths.items():
                cpu_before = base.cpu_seconds()
                r = run_load(f"{base}{path}", bodies[protocol], args.clients, args.duration, args.warmup)
                answered = sum(n for s, n in r["statuses"].items() if s.startswith("2"))
                answered_all = answered * (args.duration + args.warmup) / args.duration
                r["server_cpu_us"] = (base.cpu_seconds() - cpu_before) / max(answered_all, 1) * 1e6
                runs[protocol].append(r)
                print(
                    f"[{repeat + 1}/{args.repeats}] sentiment {protocol}: {r['rps']:.0f} req/s,"
                    f" {r['server_cpu_us']:.0f} µs CPU/request, errors {r['errors']}",
                    flush=True,
                )
    runs["model"] = [{"name": manifest.name}]
    return runs


def generation_rounds(args: argparse.Namespace, tmp: Path) -> dict[str, list[dict]]:
    manifest, _, version_dir = pick_model(args.models, "generation", args.generation_model)
    prompts = held_out_prompts(
        args.data / "generation" / "input.txt", CharCodec.from_manifest(manifest, version_dir)
    )
    prompts_file = tmp / "prompts.json"
    prompts_file.write_text(json.dumps(prompts))
    env = {
        "RNNSERVE_MODEL_REPOSITORY": str(args.models),
        "RNNSERVE_DEFAULT_MODELS": json.dumps({"generation": manifest.name}),
    }
    runs: dict[str, list[dict]] = {"/generate": [], "OpenAI": []}
    with running_service(env, log_path=tmp / "generation-server.log") as base:
        for repeat in range(args.repeats):
            for protocol, openai_model in (("/generate", None), ("OpenAI", manifest.name)):
                r = run_generation(
                    base,
                    prompts_file,
                    args.stream_clients,
                    True,
                    args.warmup,
                    args.duration,
                    pid=base.pid,
                    openai_model=openai_model,
                )
                runs[protocol].append(r)
                print(
                    f"[{repeat + 1}/{args.repeats}] generation {protocol} streaming: "
                    f"{r['tokens_per_s']:.0f} tokens/s, errors {r['errors']}",
                    flush=True,
                )
    runs["model"] = [{"name": manifest.name}]
    return runs


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _rows(named_runs, columns) -> list[list]:
    """One table row per ``(name, runs)``: the median of each ``(key, format)`` column, then the errors."""
    return [
        [name, *(format(median(runs, key), spec) for key, spec in columns), sum(r["errors"] for r in runs)]
        for name, runs in named_runs
    ]


def report(args: argparse.Namespace, sentiment: dict, generation: dict, load: tuple[float, float]) -> str:
    task, v2 = sentiment["task route"], sentiment["v2"]
    plain, openai = generation["/generate"], generation["OpenAI"]
    cpu_ratio = median(v2, "server_cpu_us") / median(task, "server_cpu_us")
    token_ratio = median(openai, "tokens_per_s") / median(plain, "tokens_per_s")
    sentiment_rows = _rows(
        (("`POST /sentiment`", task), ("`POST /v2/models/{model_name}/infer`", v2)),
        (("rps", ",.0f"), ("p50_ms", ".2f"), ("p99_ms", ".2f"), ("server_cpu_us", ".0f")),
    )
    generation_rows = _rows(
        (('`/generate`, `"stream": true`', plain), ("`/v1/completions`, `stream`", openai)),
        (("tokens_per_s", ",.0f"), ("ttft_p50_ms", ".1f"), ("p50_ms", ".0f"), ("tokens_per_cpu_s", ",.0f")),
    )
    bars = [
        ["v2 infer: server CPU per request vs the task route", f"{cpu_ratio:.3f}", f"≤ {V2_CPU_BAR}"],
        [
            "OpenAI streaming: tokens/s vs `/generate` streaming",
            f"{token_ratio:.3f}",
            f"≥ {OPENAI_TOKENS_BAR}",
        ],
    ]
    met = [cpu_ratio <= V2_CPU_BAR, token_ratio >= OPENAI_TOKENS_BAR]
    command = "python -m loadtest.bench_protocols " + " ".join(
        sys.argv[1:] if args.argv is None else args.argv
    )
    return "\n".join(
        [
            f"Sentiment model `{sentiment['model'][0]['name']}`, {args.clients} closed-loop clients, one dev"
            f" sentence of 15-25 tokens per request; generation model `{generation['model'][0]['name']}`,"
            f" {args.stream_clients} clients streaming 200 characters each. Each protocol pair alternates"
            f" in one service; medians of {args.repeats} rounds of {args.duration:g} s (after"
            f" {args.warmup:g} s warm-up). Server CPU counts the whole service process tree.",
            f"Machine: {machine_description()}; 1-minute load average {load[0]:.2f} before and"
            f" {load[1]:.2f} after.",
            *measured_with(command),
            "",
            markdown_table(
                ["sentiment", "requests/s", "p50 ms", "p99 ms", "server CPU µs/request", "errors"],
                sentiment_rows,
            ),
            "",
            markdown_table(
                [
                    "generation (streaming)",
                    "tokens/s",
                    "first event p50 ms",
                    "p50 ms per request",
                    "tokens per server CPU s",
                    "errors",
                ],
                generation_rows,
            ),
            "",
            markdown_table(
                ["bar", "measured", "target", "met"],
                [[*row, "yes" if ok else "**no**"] for row, ok in zip(bars, met, strict=True)],
            ),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=REPO_ROOT / "models")
    p.add_argument("--sentiment-model", default=None, help="default: the repository's default")
    p.add_argument("--generation-model", default=None, help="default: the repository's default")
    p.add_argument("--data", type=Path, default=default_data_dir(), help="the dataset root")
    p.add_argument("--clients", type=int, default=64, help="sentiment clients")
    p.add_argument("--stream-clients", type=int, default=16, help="generation clients")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per round")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    p.add_argument("--json", type=Path, default=REPO_ROOT / "runs" / "bench_protocols.json")
    args = p.parse_args(argv)
    args.argv = argv
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        sentiment = sentiment_rounds(args, Path(tmp))
        generation = generation_rounds(args, Path(tmp))
    doc = report(args, sentiment, generation, (load_before, os.getloadavg()[0]))
    replace_section(args.doc, MARKER, doc)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"sentiment": sentiment, "generation": generation}, indent=1))
    print(doc)


if __name__ == "__main__":
    main()
