"""How new keep-alive connections spread over the serving processes: one shared socket against one each.

    python -m loadtest.bench_connection_spread                       # 2 processes, 8/16/64 connections
    python -m loadtest.bench_connection_spread --workers 4 --tries 20 --doc docs/experiments.md

Starts ``python -m service`` with ``RNNSERVE_REUSE_PORT=false`` (uvicorn's one shared socket) and with
``true`` (a socket per process, ``service.listener``), opens N connections at once, as a client pool
does, asks each which process it reached (``GET /models`` answers with its ``pid``) and counts them per
process. A closed-loop client keeps its connection, so a process that took more connections does more
of the work for as long as they last. The table gives, per setting and N, the share of the busiest
process (median and worst over the tries; an even spread is 1/processes) and how often one process got
all N.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from loadtest.bench.report import publish
from loadtest.bench.server import REPO_ROOT, start_service, stop_service, wait_ready
from training.machine import machine_description


async def _spread(base: str, connections: int) -> list[int]:
    """Connections per process, busiest first, for ``connections`` opened together."""

    async def one() -> int:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            return (await client.get("/models")).json()["pid"]

    pids = await asyncio.gather(*(one() for _ in range(connections)))
    return sorted(collections.Counter(pids).values(), reverse=True)


def measure(base: str, counts: list[int], tries: int, workers: int) -> dict[int, list[list[int]]]:
    out: dict[int, list[list[int]]] = {}
    for n in counts:
        out[n] = [asyncio.run(_spread(base, n)) for _ in range(tries)]
        for spread in out[n]:
            spread += [0] * (workers - len(spread))
    return out


def table(results: dict[str, dict[int, list[list[int]]]], workers: int) -> str:
    lines = [
        "| listening sockets | connections | busiest process's share: median | worst | all on one process |"
        " examples |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for setting, by_count in results.items():
        for n, spreads in by_count.items():
            shares = [spread[0] / n for spread in spreads]
            alone = sum(spread[0] == n for spread in spreads)
            examples = ", ".join("/".join(map(str, s)) for s in spreads[:5])
            lines.append(
                f"| {setting} | {n} | {statistics.median(shares):.0%} | {max(shares):.0%} |"
                f" {alone} of {len(spreads)} | {examples} |"
            )
    lines.append(f"\nAn even spread gives the busiest process {1 / workers:.0%}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--connections", type=int, nargs="+", default=[8, 16, 64])
    p.add_argument("--tries", type=int, default=10)
    p.add_argument("--doc", type=Path, help="write the table into this docs file, in section --marker")
    p.add_argument("--marker", default="connection-spread")
    args = p.parse_args(argv)
    command = shlex.join(
        ["python", "-m", "loadtest.bench_connection_spread", *(sys.argv[1:] if argv is None else argv)]
    )
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    settings = {"one shared (`RNNSERVE_REUSE_PORT=false`)": "false", "one per process (default)": "true"}
    results: dict[str, dict[int, list[list[int]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, reuse in settings.items():
            env = {
                "RNNSERVE_WORKERS": str(args.workers),
                "RNNSERVE_REUSE_PORT": reuse,
                "RNNSERVE_MODEL_REPOSITORY": str(REPO_ROOT / "models"),
            }
            service = start_service(env, Path(tmp) / f"{reuse}.log")
            with contextlib.ExitStack() as stack:
                stack.callback(stop_service, service)
                wait_ready(service)
                results[label] = measure(service, args.connections, args.tries, args.workers)
    summary = (
        f"{args.workers} serving processes; each try opens the connections at once and asks each which"
        f" process answers; {args.tries} tries per row."
    )
    results_table = table(results, args.workers)
    publish(summary, machine_description(), command, started, results_table, args.doc, args.marker)


if __name__ == "__main__":
    main()
