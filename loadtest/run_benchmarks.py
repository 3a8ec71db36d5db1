"""The one benchmark entry point: every benchmark, one after another, within a time budget.

Each benchmark is a module run as ``python -m <module> ... --doc docs/benchmarks.md`` that rewrites its own
marked section of the file (``loadtest.bench.report.replace_section``), so a partial run leaves the other
sections as they were; a module that writes a whole file of its own is run without ``--doc``. Benchmarks
whose module does not exist yet are skipped; each one gets the time left of the budget as its limit, and
one that fails or runs out of time does not stop the others.

    python -m loadtest.run_benchmarks                 # all, full length (~10 minutes here)
    python -m loadtest.run_benchmarks --quick         # all, shortened (~3 minutes)
    python -m loadtest.run_benchmarks --only loadtest-mix --budget-s 300
    python -m loadtest.run_benchmarks --list
    python -m loadtest.run_benchmarks --only peers    # opt-in benchmarks run only when named

Opt-in benchmarks (``opt_in=True``: the comparison with TorchServe and Ray Serve, which installs them, and
replicas behind nginx, which needs the system's nginx) are not part of a default run or of its budget.

Exit status 1 when a benchmark failed or ran out of time.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtest.bench.server import REPO_ROOT

DOC = REPO_ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: how to run it in full and quickly, and about how long the full run takes."""

    name: str
    module: str
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()
    typical_s: float = 120.0
    # True: ``--doc`` names the shared file and the module rewrites only its own marked section of it.
    # False: the module writes a whole file of its own (its default ``--doc``), so it is not given ours.
    writes_section: bool = True
    # True: run only when named with ``--only`` (not part of the default run nor of its budget).
    opt_in: bool = False

    def available(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False

    def command(self, doc: Path, quick: bool) -> list[str]:
        extra = self.quick_args if quick else self.args
        # relative to the repository (the modules run there): the command each one records stays portable
        shown = doc.resolve().relative_to(REPO_ROOT) if doc.resolve().is_relative_to(REPO_ROOT) else doc
        doc_args = ["--doc", str(shown)] if self.writes_section else []
        return [sys.executable, "-m", self.module, *extra, *doc_args]


#: for the benchmarks whose section lives in docs/experiments.md (the measurements that chose a design)
_INTO_EXPERIMENTS = ("--doc", "docs/experiments.md")
_SENTIMENT_STORM = (
    *("--only", "sentiment", "--sweep", "4", "16", "--saturating", "16"),
    *("--marker", "overload-sentiment-storm", "--json", "runs/bench_overload_sentiment_storm.json"),
)
_UNHELD_OVERLOAD = (
    *("--env", "RNNSERVE_REFUSED_CONNECTION_HOLD_S=0"),
    *("--env", "RNNSERVE_BATCHING__GENERATION__MAX_QUEUE_WAIT_S=1"),
    *("--marker", "overload-without-hold", "--json", "runs/bench_overload_without_hold.json"),
)

BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "sentiment-serving",
        "loadtest.bench_sentiment",
        quick_args=("--duration", "3", "--warmup", "1", "--repeats", "1"),
        typical_s=180,
    ),
    # bench_generate writes all of docs/benchmarks_generation.md (not a section of docs/benchmarks.md) yet.
    Benchmark(
        "generation",
        "loadtest.bench_generate",
        quick_args=("--duration", "4", "--warmup", "1"),
        typical_s=150,
        writes_section=False,
    ),
    Benchmark(
        "translation",
        "loadtest.bench_translate",
        quick_args=("--sentences", "64", "--duration", "3", "--warmup", "1"),
        typical_s=120,
    ),
    Benchmark(
        "overload",
        "loadtest.bench_overload",
        quick_args=("--duration", "3", "--warmup", "1", "--sweep", "1", "4"),
        typical_s=330,
    ),
    # The storm on /sentiment from 16 clients (the default sweep saturates it at 2-4, where 16x still fits in
    # its queue): 64 and 256 clients retrying at once; its own section.
    Benchmark(
        "overload-sentiment-storm",
        "loadtest.bench_overload",
        args=_SENTIMENT_STORM,
        quick_args=(*_SENTIMENT_STORM, "--duration", "3", "--warmup", "1"),
        typical_s=60,
    ),
    # The same storm with no refused connection held and generation's queue bound at 1 s, as for the other
    # tasks (its own section; opt-in: it would take a third of the default run's budget for a comparison).
    Benchmark(
        "overload-without-hold",
        "loadtest.bench_overload",
        args=_UNHELD_OVERLOAD,
        quick_args=(*_UNHELD_OVERLOAD, "--duration", "3", "--warmup", "1", "--sweep", "1", "4"),
        typical_s=330,
        opt_in=True,
    ),
    # Throughput against the number of serving processes (1, 2, 4, ... up to the cores).
    Benchmark(
        "scaling",
        "loadtest.bench_scaling",
        quick_args=("--duration", "3", "--warmup", "1", "--rounds", "1"),
        typical_s=80,
    ),
    Benchmark(
        "protocols",
        "loadtest.bench_protocols",
        quick_args=("--duration", "3", "--warmup", "1", "--repeats", "1"),
        typical_s=150,
    ),
    Benchmark(
        "http-floor",
        "loadtest.bench_http_floor",
        quick_args=("--seconds", "3", "--warmup", "1", "--rounds", "1"),
        typical_s=90,
    ),
    # How new connections spread over the serving processes; rewrites its section of docs/experiments.md.
    Benchmark(
        "connection-spread",
        "loadtest.bench_connection_spread",
        args=_INTO_EXPERIMENTS,
        quick_args=("--tries", "3", *_INTO_EXPERIMENTS),
        typical_s=40,
        writes_section=False,
    ),
    # What the connections queued on a serving process that dies get, with net.ipv4.tcp_migrate_req at 0
    # and 1: run as root it sets the kernel setting for the run and puts it back, hence opt-in; rewrites
    # its section of docs/experiments.md.
    Benchmark(
        "process-death",
        "loadtest.bench_process_death",
        args=_INTO_EXPERIMENTS,
        quick_args=("--tries", "2", *_INTO_EXPERIMENTS),
        typical_s=60,
        writes_section=False,
        opt_in=True,
    ),
    Benchmark(
        "loadtest-mix",
        "loadtest.loadrun",
        args=("--run-time", "60s", "--users", "16"),
        quick_args=("--run-time", "15s", "--users", "8"),
        typical_s=90,
    ),
    # Installs TorchServe and Ray Serve into venvs of their own (once) and runs ~18 minutes: opt-in.
    Benchmark(
        "peers",
        "loadtest.bench_peers",
        quick_args=("--seconds", "3", "--warmup", "1", "--rounds", "1", "--clients", "1", "64"),
        typical_s=1100,
        opt_in=True,
    ),
    # Needs the system's nginx; rewrites its section of docs/deployment.md (--write-docs), not ours.
    Benchmark(
        "failover",
        "loadtest.bench_failover",
        args=("--write-docs",),
        quick_args=("--write-docs", "--seconds", "20", "--after-restart-s", "8"),
        typical_s=90,
        writes_section=False,
        opt_in=True,
    ),
)


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # "ok", "failed (exit N)", "timed out", "skipped: ..."
    seconds: float


def run(
    benchmarks: Sequence[Benchmark], doc: Path, budget_s: float, quick: bool = False, min_left_s: float = 5.0
) -> list[Outcome]:
    """Runs ``benchmarks`` in order; one is not started with less than ``min_left_s`` of the budget left."""
    deadline = time.monotonic() + budget_s
    outcomes: list[Outcome] = []
    for bench in benchmarks:
        left = deadline - time.monotonic()
        if not bench.available():
            outcomes.append(Outcome(bench.name, f"skipped: no module {bench.module}", 0.0))
            continue
        if left < min_left_s:
            outcomes.append(Outcome(bench.name, "skipped: out of time budget", 0.0))
            continue
        command = bench.command(doc, quick)
        print(f"== {bench.name}: {' '.join(command[1:])} (limit {left:.0f} s)", flush=True)
        start = time.monotonic()
        # Its own process group, so a timeout also stops the servers and load generators it started.
        process = subprocess.Popen(command, cwd=REPO_ROOT, start_new_session=True)
        try:
            returncode = process.wait(timeout=left)
            status = "ok" if returncode == 0 else f"failed (exit {returncode})"
        except subprocess.TimeoutExpired:
            _stop_group(process)
            status = "timed out"
        outcomes.append(Outcome(bench.name, status, time.monotonic() - start))
    return outcomes


def _stop_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--doc", type=Path, default=DOC, help="the markdown file whose sections are rewritten"
    )
    parser.add_argument("--budget-s", type=float, default=900.0, help="total time bound in seconds")
    parser.add_argument("--quick", action="store_true", help="shortened runs (smoke-level figures)")
    parser.add_argument("--only", action="append", help="benchmark name (repeatable); default: all")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    if args.list:
        for bench in BENCHMARKS:
            state = "available" if bench.available() else "not there yet"
            state += " (opt-in: --only)" if bench.opt_in else ""
            print(f"{bench.name:20} python -m {bench.module:28} ~{bench.typical_s:.0f} s  {state}")
        return 0
    unknown = set(args.only or ()) - {b.name for b in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; --list shows them")
    chosen = (
        [b for b in BENCHMARKS if b.name in args.only]
        if args.only
        else [b for b in BENCHMARKS if not b.opt_in]
    )
    outcomes = run(chosen, args.doc, args.budget_s, args.quick)
    print("\n== summary")
    for outcome in outcomes:
        print(f"{outcome.name:20} {outcome.status:40} {outcome.seconds:6.0f} s")
    return 1 if any(o.status in ("timed out",) or o.status.startswith("failed") for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
