"""Connections queued on a serving process that dies: answered by another process, or reset.

    python -m loadtest.bench_process_death                      # 2 processes, 64 connections, 5 tries
    python -m loadtest.bench_process_death --doc docs/experiments.md

Each serving process listens on a socket of its own (``SO_REUSEPORT``, ``service.listener``). When one dies
(a crash, or uvicorn's supervisor killing one that stopped answering its health check), the connections
the kernel had queued on its socket, handshake done but not yet accepted, are reset, unless the Linux
sysctl ``net.ipv4.tcp_migrate_req`` (5.14 and later) is 1: the kernel then hands them to another socket of
the group. Each try stops one serving process (SIGSTOP: it accepts nothing more), opens N connections at
once with a request each (about half queue on the stopped process), kills it (SIGKILL), and counts the
requests answered, the connections reset or closed without an answer, and those still waiting at the
timeout; then it waits for the supervisor's replacement. Run as root, it measures the sysctl at 0 and at
1 and puts it back; otherwise at the value set.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from loadtest.bench.models import single_model_repository
from loadtest.bench.report import publish
from loadtest.bench.server import REPO_ROOT, Service, start_service, stop_service, wait_ready
from service.listener import MIGRATE_REQ
from training.machine import machine_description

REQUEST = b"GET /models HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


@dataclass
class Outcome:
    answered: int = 0
    reset: int = 0
    no_answer: int = 0
    by_pid: dict[int, int] = field(default_factory=dict)


async def _one(port: int, timeout_s: float) -> int | str:
    """The answering process's pid, or ``"reset"`` / ``"no answer"``."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout_s)
        writer.close()
    except TimeoutError:
        return "no answer"
    except OSError:
        return "reset"
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return "reset"  # closed before an answer (an empty read) or refused
    return int(json.loads(body)["pid"])


async def _burst(port: int, connections: int, victim: int, kill_after_s: float, timeout_s: float) -> Outcome:
    tasks = [asyncio.ensure_future(_one(port, timeout_s)) for _ in range(connections)]
    await asyncio.sleep(kill_after_s)  # every handshake done: each connection waits in a socket's queue
    os.kill(victim, signal.SIGKILL)
    outcome = Outcome()
    for result in await asyncio.gather(*tasks):
        if result == "reset":
            outcome.reset += 1
        elif result == "no answer":
            outcome.no_answer += 1
        else:
            outcome.answered += 1
            outcome.by_pid[int(result)] = outcome.by_pid.get(int(result), 0) + 1
    return outcome


def serving_pids(base: str, workers: int, timeout_s: float = 120) -> set[int]:
    """The serving processes' pids, once each has answered (a new connection reaches one of them, and
    ``/models`` names it)."""
    deadline = time.monotonic() + timeout_s
    seen: set[int] = set()
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"found {len(seen)} of {workers} serving processes")
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(f"{base}/models", timeout=5)
            if response.status_code == 200:
                seen.add(int(response.json()["pid"]))
        seen = {pid for pid in seen if Path(f"/proc/{pid}").exists()}
    return seen


def measure(service: Service, workers: int, connections: int, tries: int, timeout_s: float) -> list[Outcome]:
    outcomes = []
    for _ in range(tries):
        wait_ready(service)
        victim = min(serving_pids(service, workers))
        os.kill(victim, signal.SIGSTOP)
        outcomes.append(asyncio.run(_burst(service.port, connections, victim, 1.0, timeout_s)))
        while Path(f"/proc/{victim}").exists() and Path(f"/proc/{victim}/stat").read_text().split()[2] != "Z":
            time.sleep(0.05)
    return outcomes


def table(results: dict[str, list[Outcome]], connections: int) -> str:
    lines = [
        "| `net.ipv4.tcp_migrate_req` | answered: median | reset | no answer |"
        " per try (answered/reset/no answer) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for setting, outcomes in results.items():
        per_try = ", ".join(f"{o.answered}/{o.reset}/{o.no_answer}" for o in outcomes)
        lines.append(
            f"| {setting} | {statistics.median(o.answered for o in outcomes):g} of {connections} |"
            f" {statistics.median(o.reset for o in outcomes):g} |"
            f" {statistics.median(o.no_answer for o in outcomes):g} | {per_try} |"
        )
    return "\n".join(lines)


def _settings_to_measure() -> list[str]:
    """0 and 1 where this process may set the sysctl (root), else the value set; none without it."""
    if not MIGRATE_REQ.exists():
        return []
    current = MIGRATE_REQ.read_text().strip()
    return ["0", "1"] if os.access(MIGRATE_REQ, os.W_OK) else [current]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--tries", type=int, default=5)
    p.add_argument("--timeout-s", type=float, default=15.0, help="a request not answered by then: no answer")
    p.add_argument("--doc", type=Path, help="write the table into this docs file, in section --marker")
    p.add_argument("--marker", default="process-death")
    args = p.parse_args(argv)
    settings = _settings_to_measure()
    if not settings:
        sys.exit("net.ipv4.tcp_migrate_req is not there (Linux 5.14 and later)")
    command = shlex.join(
        ["python", "-m", "loadtest.bench_process_death", *(sys.argv[1:] if argv is None else argv)]
    )
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    before = MIGRATE_REQ.read_text().strip()
    results: dict[str, list[Outcome]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repository = single_model_repository(REPO_ROOT / "models", "sentiment-gru", Path(tmp))
        env = {"RNNSERVE_WORKERS": str(args.workers), "RNNSERVE_MODEL_REPOSITORY": str(repository)}
        service = start_service(env, Path(tmp) / "service.log")
        try:
            for value in settings:
                if value != MIGRATE_REQ.read_text().strip():
                    MIGRATE_REQ.write_text(value)
                results[value] = measure(service, args.workers, args.connections, args.tries, args.timeout_s)
        finally:
            stop_service(service)
            if MIGRATE_REQ.read_text().strip() != before:
                MIGRATE_REQ.write_text(before)
    summary = (
        f"{args.workers} serving processes (`sentiment-gru`), a socket each; each try stops one of them"
        f" (SIGSTOP), opens {args.connections} connections at once with a `GET /models` each, kills the"
        f" stopped process 1 s later (SIGKILL) and counts the answers ({args.timeout_s:g} s timeout);"
        f" {args.tries} tries per row, the supervisor's replacement ready before each."
    )
    results_table = table(results, args.connections)
    publish(summary, machine_description(), command, started, results_table, args.doc, args.marker)


if __name__ == "__main__":
    main()
