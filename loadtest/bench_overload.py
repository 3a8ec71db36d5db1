"""Overload benchmark: goodput, latency of answered requests and the cost of rejections far past capacity.

    python -m loadtest.bench_overload            # ~5 minutes; rewrites its section of docs/benchmarks.md

For ``/sentiment`` (32 dev texts per request) and ``/generate`` (200 characters per request), closed-loop
clients that retry at once with no backoff, against ``python -m service`` as users run it (access log
off). Capacity C is the best goodput (answered requests/s) over a sweep of client counts (doubling until
goodput stops rising); the saturating count s is the smallest count that reaches 0.95 C. Then 4 s and
16 s clients: goodput against C, p99 of the answered requests, every rejection's status and whether it
carried ``Retry-After``, and the server CPU a rejection costs: (server CPU of the run - answered requests
x CPU per answer at capacity) / rejections.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from loadtest.bench.http_load import run_load
from loadtest.bench.report import markdown_table, replace_section
from loadtest.bench.server import REPO_ROOT, running_service
from training.machine import machine_description

MARKER = "overload"
PAYLOADS = REPO_ROOT / "loadtest" / "payloads.json"


def sentiment_bodies(per_request: int = 32) -> list[dict]:
    texts = json.loads(PAYLOADS.read_text(encoding="utf-8"))["sentiment"]
    return [{"texts": [texts[(i + j) % len(texts)] for j in range(per_request)]} for i in range(len(texts))]


def generate_bodies(tokens: int = 200) -> list[dict]:
    prompts = json.loads(PAYLOADS.read_text(encoding="utf-8"))["generate"]
    return [{"prompt": prompt, "max_new_tokens": tokens, "seed": i} for i, prompt in enumerate(prompts)]


def measured(
    service, url: str, bodies: Path, clients: int, duration: float, warmup: float, client_nice: int = 0
) -> dict:
    """One run with the server's CPU over it (seconds per measured second, warm-up excluded pro rata)."""
    cpu_before = service.cpu_seconds()
    run = run_load(url, bodies, clients, duration, warmup, client_nice)
    run["server_cpu_s_per_s"] = (service.cpu_seconds() - cpu_before) / (duration + warmup)
    run["clients"] = clients
    run["goodput"] = run["rps"]
    run["rejections_per_s"] = sum(n for s, n in run["statuses"].items() if s in ("429", "503")) / duration
    return run


def until_saturated(run: Callable[[int], dict], max_clients: int, rise: float = 0.05) -> list[dict]:
    """Runs 1, 2, 4, ... clients until goodput has not risen by ``rise`` for two steps in a row (a
    generation server keeps gaining up to its slot count, a batcher saturates within a few clients)."""
    sweep: list[dict] = []
    best, flat, clients = 0.0, 0, 1
    while clients <= max_clients and flat < 2:
        sweep.append(run(clients))
        goodput = sweep[-1]["goodput"]
        flat = flat + 1 if goodput < best * (1 + rise) else 0
        best = max(best, goodput)
        clients *= 2
    return sweep


def saturating_clients(sweep: list[dict]) -> int:
    """The fewest clients of the sweep that reach 95 % of its best goodput (the capacity C)."""
    capacity = max(r["goodput"] for r in sweep)
    return min(r["clients"] for r in sweep if r["goodput"] >= 0.95 * capacity)


def overload_rows(
    name: str, sweep: list[dict], overloads: list[dict], saturating: int
) -> tuple[list[list], dict]:
    capacity_run = max(sweep, key=lambda r: r["goodput"])
    capacity = capacity_run["goodput"]
    cpu_per_answer = capacity_run["server_cpu_s_per_s"] / max(capacity, 1e-9)
    rows = [
        [name, f"{r['clients']} (sweep)", r["goodput"], "", r["ok_p99_ms"], r["rejections_per_s"], "", ""]
        for r in sweep
    ]
    summary = {"capacity": capacity, "saturating_clients": saturating, "overload": []}
    for r in overloads:
        rejected = r["rejections_per_s"]
        spare = r["server_cpu_s_per_s"] - r["goodput"] * cpu_per_answer
        cpu_per_rejection_us = spare / rejected * 1e6 if rejected else float("nan")
        others = {s: n for s, n in r["statuses"].items() if s not in ("200", "429", "503")}
        rows.append(
            [
                name,
                f"{r['clients']} ({r['clients'] // saturating}× s)",
                r["goodput"],
                f"{r['goodput'] / capacity:.2f}",
                r["ok_p99_ms"],
                rejected,
                f"{cpu_per_rejection_us:,.0f}" if rejected else "—",
                f"{r['rejections_without_retry_after']}" + (f"; other statuses {others}" if others else ""),
            ]
        )
        summary["overload"].append(
            {
                "clients": r["clients"],
                "goodput_ratio": r["goodput"] / capacity,
                "ok_p99_ms": r["ok_p99_ms"],
                "cpu_per_rejection_us": cpu_per_rejection_us,
                "missing_retry_after": r["rejections_without_retry_after"],
                "other_statuses": others,
            }
        )
    return rows, summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument(
        "--sweep",
        type=int,
        nargs="+",
        help="client counts for capacity; default: 1, 2, 4, ... until goodput has not risen 5 %% for two"
        " steps (or --max-clients)",
    )
    p.add_argument("--max-clients", type=int, default=256, help="largest count of the default sweep")
    p.add_argument(
        "--saturating",
        type=int,
        help="the saturating count s to overload from (4 s, 16 s clients), instead of the sweep's: for"
        " comparing configurations at the same client counts",
    )
    p.add_argument(
        "--client-nice",
        type=int,
        default=0,
        help="run the load generator this many nice levels below the server (as if the clients ran on"
        " other machines; they share this machine's cores)",
    )
    p.add_argument("--marker", default=MARKER, help="the docs section to rewrite (a variant gets its own)")
    p.add_argument("--json", type=Path, default=REPO_ROOT / "runs" / "bench_overload.json")
    p.add_argument("--only", choices=["sentiment", "generate"], nargs="+", default=["sentiment", "generate"])
    p.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    p.add_argument("--env", action="append", default=[], help="RNNSERVE_*=value for the service (repeatable)")
    args = p.parse_args(argv)
    command = shlex.join(
        ["python", "-m", "loadtest.bench_overload", *(sys.argv[1:] if argv is None else argv)]
    )
    env = dict(kv.split("=", 1) for kv in args.env)
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    endpoints = {
        "sentiment": ("/sentiment", sentiment_bodies()),
        "generate": ("/generate", generate_bodies()),
    }
    rows: list[list] = []
    summaries = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_service(env, log_path=Path(tmp) / "server.log") as service,
    ):
        for name in args.only:
            path, bodies = endpoints[name]
            file = Path(tmp) / f"{name}.jsonl"
            file.write_text("\n".join(json.dumps(b) for b in bodies) + "\n", encoding="utf-8")
            url = f"{service}{path}"

            run = functools.partial(
                measured,
                service,
                url,
                file,
                duration=args.duration,
                warmup=args.warmup,
                client_nice=args.client_nice,
            )

            def one(clients: int) -> dict:
                result = run(clients=clients)  # noqa: B023
                print(f"{name} {clients} clients: {result['goodput']:.1f} answers/s", flush=True)  # noqa: B023
                return result

            sweep = [one(c) for c in args.sweep] if args.sweep else until_saturated(one, args.max_clients)
            capacity = max(r["goodput"] for r in sweep)
            saturating = args.saturating or saturating_clients(sweep)
            overloads = []
            for factor in (4, 16):
                overloads.append(run(clients=factor * saturating))
                r = overloads[-1]
                print(
                    f"{name} {r['clients']} clients: goodput {r['goodput']:.1f}/s "
                    f"({r['goodput'] / capacity:.2f} C), ok p99 {r['ok_p99_ms']:.0f} ms, "
                    f"statuses {r['statuses']}",
                    flush=True,
                )
            name_rows, summaries[name] = overload_rows(name, sweep, overloads, saturating)
            rows += name_rows
    load_after = os.getloadavg()
    header = [
        "endpoint",
        "clients",
        "answers/s",
        "goodput / C",
        "p99 of answered (ms)",
        "rejections/s",
        "CPU per rejection (µs)",
        "rejections without Retry-After",
    ]
    text = "\n".join(
        [
            f"Command: `{command}`; {started}; {machine_description()}; load average "
            f"{load_before[0]:.2f} before, {load_after[0]:.2f} after. {args.duration:g} s measured per run "
            f"after {args.warmup:g} s warm-up; `/sentiment` with 32 texts per request, `/generate` with 200 "
            "characters; clients retry at once, with no backoff"
            + (f"; the load generator at nice {args.client_nice}." if args.client_nice else "."),
            "",
            markdown_table(header, rows),
            "",
            *(
                f"- `{n}`: capacity C = {s['capacity']:.1f} answers/s, saturated at "
                f"{s['saturating_clients']} clients."
                for n, s in summaries.items()
            ),
        ]
    )
    replace_section(args.doc, args.marker, text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summaries, indent=2))
    print(text)


if __name__ == "__main__":
    main()
