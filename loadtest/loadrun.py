"""Run the locust mix headless against a real rnnserve and summarise it per endpoint.

Starts ``python -m service`` (the README's serve command) on a free 127.0.0.1 port with the bundled
``models/`` unless ``--host`` names a running server, waits for ``/ready``, runs ``locustfile.py`` for a
bounded time, then reads locust's CSV into a table: requests/s and p50/p95/p99 per endpoint, failures.

    python -m loadtest.loadrun --run-time 60s --users 16 --doc docs/benchmarks.md
    python -m loadtest.loadrun --host http://127.0.0.1:8000 --run-time 10s

The server is started and stopped by ``loadtest.bench.server`` (shared with the other benchmarks).
Exit status 1 when any request failed (a non-2xx or a wrong answer), so CI can use it as is.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shlex
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from loadtest.bench.report import measured_with, replace_section
from loadtest.bench.server import REPO_ROOT, running_service
from training.machine import machine_description

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
REPORTS = HERE / "reports"
MARKER = "loadtest-mix"


@dataclass(frozen=True)
class EndpointStats:
    """One row of locust's ``*_stats.csv`` (times in milliseconds)."""

    name: str
    requests: int
    failures: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float


def read_stats(stats_csv: Path) -> list[EndpointStats]:
    """Per-endpoint rows and the ``Aggregated`` row, as locust wrote them."""

    def number(value: str) -> float:
        return float(value) if value not in ("", "N/A") else float("nan")

    with stats_csv.open(newline="", encoding="utf-8") as fh:
        return [
            EndpointStats(
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                requests_per_s=number(row["Requests/s"]),
                p50_ms=number(row["50%"]),
                p95_ms=number(row["95%"]),
                p99_ms=number(row["99%"]),
                mean_ms=number(row["Average Response Time"]),
            )
            for row in csv.DictReader(fh)
        ]


@dataclass(frozen=True)
class LoadRun:
    command: list[str]
    returncode: int
    stats: list[EndpointStats]
    failures_csv: Path
    html: Path
    output: str

    @property
    def failures(self) -> int:
        return sum(s.failures for s in self.stats if s.name != "Aggregated")


def run_locust(
    host: str,
    *,
    users: int,
    spawn_rate: float,
    run_time: str,
    out_dir: Path = REPORTS,
    prefix: str = "locust",
    timeout_s: float | None = None,
) -> LoadRun:
    """Headless locust for ``run_time`` (e.g. ``"10s"``, ``"1m"``); CSV and HTML reports under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_prefix, html = out_dir / prefix, out_dir / f"{prefix}.html"
    command = [
        sys.executable, "-m", "locust",
        "--locustfile", str(LOCUSTFILE),
        "--headless",
        "--host", host,
        "--users", str(users),
        "--spawn-rate", str(spawn_rate),
        "--run-time", run_time,
        "--stop-timeout", "10",
        "--csv", str(csv_prefix),
        "--html", str(html),
        "--only-summary",
        "--exit-code-on-error", "1",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=HERE)
    stats_csv = Path(f"{csv_prefix}_stats.csv")
    stats = read_stats(stats_csv) if stats_csv.is_file() else []
    return LoadRun(
        command, done.returncode, stats, Path(f"{csv_prefix}_failures.csv"), html, done.stdout + done.stderr
    )


def markdown_table(stats: list[EndpointStats]) -> str:
    lines = [
        "| endpoint | requests | requests/s | p50 ms | p95 ms | p99 ms | mean ms | failures |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in stats:
        name = "**all**" if s.name == "Aggregated" else f"`POST {s.name}`"
        lines.append(
            f"| {name} | {s.requests} | {s.requests_per_s:.1f} | {s.p50_ms:.0f} | {s.p95_ms:.0f} "
            f"| {s.p99_ms:.0f} | {s.mean_ms:.1f} | {s.failures} |"
        )
    return "\n".join(lines)


def _parse_seconds(run_time: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(run_time[:-1]) * units[run_time[-1]] if run_time[-1] in units else float(run_time)


def report(
    run: LoadRun, command: str, users: int, models: list[dict], load_before: float, machine: str
) -> str:
    """The markdown section: what ran, where, and the per-endpoint table."""
    answering = sorted(
        f"`{m['name']}` ({m['task']})" for m in models if m.get("state") == "ready" and m.get("default")
    )
    ready = ", ".join(answering) + " (each task's default model)"
    return "\n".join(
        [
            "Full locust mix (`loadtest/locustfile.py`, weights sentiment 50, tag 25, translate 15, generate"
            f" 10 over the endpoints the server serves), {users} closed-loop users without think time,"
            " request texts from `loadtest/payloads.json` (dev splits); every answer's shape is checked,"
            f" so a wrong answer counts as a failure. Models: {ready}.",
            f"Machine: {machine}; server and locust {version('locust')} share it; load average"
            f" before the run {load_before:.2f} (other processes may have been running on the same cores).",
            *measured_with(command),
            "",
            markdown_table(run.stats),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="a running server (default: start `python -m service` on a free port)")
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "models", help="model repository to serve")
    parser.add_argument("--run-time", default="60s")
    parser.add_argument("--users", type=int, default=16, help="concurrent closed-loop users")
    parser.add_argument("--spawn-rate", type=float, default=8)
    parser.add_argument(
        "--out-dir", type=Path, default=REPORTS, help="locust CSV/HTML reports and server log"
    )
    parser.add_argument(
        "--doc", type=Path, help=f"rewrite the <!-- {MARKER} --> section of this markdown file"
    )
    parser.add_argument("--env", action="append", default=[], help="extra RNNSERVE_*=value for the server")
    args = parser.parse_args(argv)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    env = {"RNNSERVE_MODEL_REPOSITORY": str(args.models), **dict(kv.split("=", 1) for kv in args.env)}
    with contextlib.ExitStack() as stack:
        host = args.host or stack.enter_context(running_service(env, log_path=args.out_dir / "server.log"))
        with urllib.request.urlopen(f"{host}/models", timeout=10) as response:
            models = json.load(response)["models"]
        run = run_locust(
            host,
            users=args.users,
            spawn_rate=args.spawn_rate,
            run_time=args.run_time,
            out_dir=args.out_dir,
            timeout_s=_parse_seconds(args.run_time) + 120,
        )
    print(markdown_table(run.stats))
    ok = run.returncode == 0 and run.failures == 0 and bool(run.stats)
    if not ok:
        print(run.output[-4000:], file=sys.stderr)
    if args.doc:
        command = "python -m loadtest.loadrun " + shlex.join(argv if argv is not None else sys.argv[1:])
        section = report(run, command.strip(), args.users, models, load_before, machine_description())
        replace_section(args.doc, MARKER, section)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
