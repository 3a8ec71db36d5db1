"""The HTTP floor: what uvicorn with a bare ASGI app answers on this machine, beside the service.

    python -m loadtest.bench_http_floor            # ~2 minutes; rewrites its section of docs/benchmarks.md

``loadtest/http_floor_app.py`` (no framework, no model: it reads each body, parses its JSON and answers a
fixed ``/sentiment`` answer) under uvicorn with as many processes as the service runs, against
``python -m service`` serving ``--model`` as the default sentiment model, with the same load generator,
clients and sentences, in alternating rounds. The floor bounds what any Python ASGI service can answer
here, whatever its model and handler cost; the load generator's own CPU per request is reported too,
since it shares the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loadtest.bench.http_load import run_load
from loadtest.bench.report import (
    cpu_us_per_request,
    markdown_table,
    measured_with,
    median_of,
    replace_section,
)
from loadtest.bench.server import REPO_ROOT, Service, free_port, running_service, stop_service, wait_ready
from loadtest.peers.servers import post_text
from service.config import Settings
from training.machine import machine_description

MARKER = "http-floor"
PAYLOADS = REPO_ROOT / "loadtest" / "payloads.json"


@contextmanager
def running_floor(processes: int, answer: bytes, log_path: Path) -> Iterator[Service]:
    port = free_port()
    env = {**os.environ, "RNNSERVE_FLOOR_ANSWER": answer.decode()}
    cmd = [sys.executable, "-m", "uvicorn", "loadtest.http_floor_app:app", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", str(processes), "--no-access-log", "--log-level", "warning"]
    log = open(log_path, "w")  # noqa: SIM115 - closed by stop_service
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    service = Service(f"http://127.0.0.1:{port}", proc.pid, proc, log_path, log)
    try:
        wait_ready(service, timeout=60)
        yield service
    finally:
        stop_service(service)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    service: Service,
    path: str,
    bodies: Path,
    clients: int,
    seconds: float,
    warmup: float,
    generators: int = 1,
) -> dict:
    server_before, client_before = service.cpu_seconds(), children_cpu_s()
    run = run_load(f"{service}{path}", bodies, clients, seconds, warmup, generators=generators)
    served = run["requests"] - run["errors"]
    run["server_cpu_us"] = cpu_us_per_request(service.cpu_seconds() - server_before, served, seconds, warmup)
    run["client_cpu_us"] = cpu_us_per_request(children_cpu_s() - client_before, served, seconds, warmup)
    return run


def alternate(
    servers: dict[str, Service],
    bodies: Path,
    rounds: int,
    client_counts: list[int],
    seconds: float,
    warmup: float,
    generators: int = 1,
) -> dict[tuple[str, int], list[dict]]:
    """Every client count on every server (``/sentiment``), ``rounds`` times, the server order reversed
    each round; ``generators`` load-generator processes share the clients."""
    runs: dict[tuple[str, int], list[dict]] = {}
    for k in range(rounds):
        order = list(servers) if k % 2 == 0 else list(reversed(servers))
        for clients in client_counts:
            for name in order:
                run = measure(servers[name], "/sentiment", bodies, clients, seconds, warmup, generators)
                runs.setdefault((name, clients), []).append(run)
                print(
                    f"round {k + 1} {name} {clients} clients: {run['rps']:,.0f} requests/s, server"
                    f" {run['server_cpu_us']:.0f} µs, load generator {run['client_cpu_us']:.0f} µs",
                    flush=True,
                )
    return runs


COLUMNS = ("rps", "p50_ms", "p99_ms", "server_cpu_us", "client_cpu_us")
HEADER = ["server", "clients", "requests/s", "p50 ms", "p99 ms", "server CPU µs/request"]
HEADER += ["load generator CPU µs/request", "errors"]


def table(runs: dict[tuple[str, int], list[dict]]) -> str:
    rows = []
    for (name, clients), rs in runs.items():
        m = median_of(rs, COLUMNS)
        latency = [f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}"]
        cpu = [f"{m['server_cpu_us']:.0f}", f"{m['client_cpu_us']:.0f}"]
        rows.append([name, clients, f"{m['rps']:,.0f}", *latency, *cpu, sum(r["errors"] for r in rs)])
    return markdown_table(HEADER, rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sentiment-gru", help="the service's default sentiment model")
    p.add_argument("--clients", type=int, nargs="+", default=[64])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    p.add_argument("--marker", default=MARKER)
    args = p.parse_args(argv)
    command = shlex.join(
        ["python", "-m", "loadtest.bench_http_floor", *(sys.argv[1:] if argv is None else argv)]
    )
    processes = Settings().process_count
    texts = json.loads(PAYLOADS.read_text(encoding="utf-8"))["sentiment"]
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory() as tmp:
        bodies = Path(tmp) / "bodies.jsonl"
        bodies.write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n", encoding="utf-8")
        env = {"RNNSERVE_DEFAULT_MODELS": json.dumps({"sentiment": args.model})}
        with running_service(env, log_path=Path(tmp) / "service.log") as service:
            # the floor answers every request with these bytes: the service's own answer, encoded as
            # Starlette's JSONResponse encodes it
            answer = json.dumps(
                post_text(f"{service}/sentiment", texts[0]), ensure_ascii=False, separators=(",", ":")
            ).encode()
            with running_floor(processes, answer, Path(tmp) / "floor.log") as floor:
                servers = {"uvicorn + bare ASGI app (floor)": floor, "rnnserve": service}
                runs = alternate(servers, bodies, args.rounds, args.clients, args.seconds, args.warmup)
    load_after = os.getloadavg()
    text = "\n".join(
        [
            f"`{args.model}` served by rnnserve; the floor answers its body without any work. {processes}"
            " serving processes each; one dev sentence per request (`loadtest/payloads.json`), closed-loop"
            " keep-alive clients in a separate process over 127.0.0.1; medians of"
            f" {args.rounds} alternating rounds of {args.seconds:g} s after {args.warmup:g} s warm-up.",
            f"Machine: {machine_description()}; load averages (1 min) {load_before[0]:.2f} before and"
            f" {load_after[0]:.2f} after.",
            *measured_with(command, started),
            "",
            table(runs),
        ]
    )
    replace_section(args.doc, args.marker, text)
    print(text)


if __name__ == "__main__":
    main()
