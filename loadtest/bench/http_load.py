"""Closed-loop HTTP/1.1 load generator: ``concurrency`` keep-alive clients POST bodies for ``duration`` s.

Run as its own process (``python -m loadtest.bench.http_load ...``) so it does not share an interpreter
with the server. It speaks minimal HTTP/1.1 over asyncio streams instead of using an HTTP client library:
on a 2-core machine the generator competes with the server for CPU, and a ~20-line request/response loop
costs a fraction of what httpx or locust spend per request, and gives sub-millisecond timing (locust
rounds to whole milliseconds). Responses are still checked: any non-2xx status counts as an error.

Output: one JSON object on stdout with ``requests``, ``errors``, ``rps``, ``p50_ms``, ``p95_ms``,
``p99_ms``, ``mean_ms`` and ``statuses`` of the answers received in the measured window (the ``duration``
seconds after ``warmup``; a request counts where its answer falls, as a throughput does: counting only
requests sent and answered inside the window would leave out a window's length of slow ones), and for
overload runs ``ok_p50_ms``/``ok_p99_ms`` (answered requests only) and ``rejections_without_retry_after``
(503 and 429 answers that lack the header). A client retries at once after any answer (no backoff).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


def percentiles(latencies_s: list[float] | np.ndarray) -> dict[str, float]:
    if len(latencies_s) == 0:
        return {
            "p50_ms": float("nan"),
            "p95_ms": float("nan"),
            "p99_ms": float("nan"),
            "mean_ms": float("nan"),
        }
    ms = np.asarray(latencies_s) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(ms.mean())}


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body, and whether a ``Retry-After`` header came with it."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, retry_after = 0, False
    for line in lines[1:]:
        name = line[:15].lower()
        if name == b"content-length:":
            length = int(line[15:])
        elif name.startswith(b"retry-after:"):
            retry_after = True
    body = await reader.readexactly(length) if length else b""
    return status, body, retry_after


async def _client(
    host: str,
    port: int,
    path: str,
    bodies: list[bytes],
    offset: int,
    start: float,
    warm_end: float,
    end: float,
    latencies: list[float],
    statuses: dict[int, int],
    ok_latencies: list[float],
    missing_retry_after: list[int],
) -> None:
    heads = [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]
    i = offset
    writer = None
    while time.perf_counter() < end:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                statuses[0] = statuses.get(0, 0) + 1  # status 0: no connection
                await asyncio.sleep(0.05)
                continue
        t0 = time.perf_counter()
        writer.write(heads[i % len(heads)])
        i += 1
        retry_after = False
        try:
            status, _, retry_after = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError):
            status = 0
            writer.close()
            writer = None
        t1 = time.perf_counter()
        if warm_end <= t1 <= end:  # answered inside the window, whenever sent (as bench_generate)
            latencies.append(t1 - t0)
            statuses[status] = statuses.get(status, 0) + 1
            if 200 <= status < 300:
                ok_latencies.append(t1 - t0)
            elif status in (429, 503) and not retry_after:
                missing_retry_after.append(status)
    if writer is not None:
        writer.close()


async def run_load_async(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    duration: float,
    warmup: float,
    latencies_out: Path | None = None,
) -> dict:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    ok_latencies: list[float] = []
    missing_retry_after: list[int] = []
    start = time.perf_counter()
    warm_end, end = start + warmup, start + warmup + duration
    await asyncio.gather(
        *(
            _client(
                host,
                port,
                path,
                bodies,
                k * 7919,
                start,
                warm_end,
                end,
                latencies,
                statuses,
                ok_latencies,
                missing_retry_after,
            )
            for k in range(concurrency)
        )
    )
    if latencies_out is not None:  # for a caller that merges several generators' percentiles
        np.savez(latencies_out, all=np.asarray(latencies), ok=np.asarray(ok_latencies))
    return summary(statuses, latencies, ok_latencies, len(missing_retry_after), concurrency, duration)


def summary(
    statuses: dict[int, int],
    latencies: list[float] | np.ndarray,
    ok_latencies: list[float] | np.ndarray,
    missing_retry_after: int,
    concurrency: int,
    duration: float,
) -> dict:
    """The generator's result: counts by status, rates and latency percentiles."""
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return {
        "concurrency": concurrency,
        "duration_s": duration,
        "requests": len(latencies),
        "errors": sum(statuses.values()) - ok,
        "rps": ok / duration,
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        **percentiles(latencies),
        **{f"ok_{k}": v for k, v in percentiles(ok_latencies).items()},
        "rejections_without_retry_after": missing_retry_after,
    }


def _command(url: str, bodies: Path, clients: int, duration: float, warmup: float) -> list[str]:
    cmd = [sys.executable, "-m", "loadtest.bench.http_load", "--url", url, "--bodies", str(bodies)]
    return [*cmd, "--concurrency", str(clients), "--duration", str(duration), "--warmup", str(warmup)]


def run_load(
    url: str,
    bodies: Path,
    clients: int,
    duration: float,
    warmup: float,
    nice: int = 0,
    generators: int = 1,
) -> dict:
    """Runs this generator in a process of its own (so it shares no interpreter with the caller or the
    server) and returns its result: ``clients`` closed-loop clients posting ``bodies`` (JSONL) to ``url``.
    ``nice`` > 0 runs it below the server's priority, as if the clients ran on other machines.
    ``generators`` > 1 splits the clients over that many processes, for servers that one process's
    event loop cannot keep busy (many cores); their counts add up and their latencies are merged."""
    if generators > 1:
        return _run_split(url, bodies, clients, duration, warmup, nice, generators)
    done = subprocess.run(
        _command(url, bodies, clients, duration, warmup),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + warmup + 120,
        preexec_fn=(lambda: os.nice(nice)) if nice > 0 else None,
    )
    return json.loads(done.stdout)


def _run_split(
    url: str, bodies: Path, clients: int, duration: float, warmup: float, nice: int, generators: int
) -> dict:
    shares = [clients // generators + (1 if k < clients % generators else 0) for k in range(generators)]
    shares = [n for n in shares if n]
    with tempfile.TemporaryDirectory() as tmp:
        procs = [
            subprocess.Popen(
                [*_command(url, bodies, n, duration, warmup), "--latencies", f"{tmp}/{k}.npz"],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=(lambda: os.nice(nice)) if nice > 0 else None,
            )
            for k, n in enumerate(shares)
        ]
        try:
            outs = [p.communicate(timeout=duration + warmup + 120) for p in procs]
        finally:  # a generator that hangs past its time is stopped with the others, not left running
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        for proc, (_, err) in zip(procs, outs, strict=True):
            if proc.returncode:
                raise subprocess.CalledProcessError(proc.returncode, proc.args, stderr=err)
        parts = [json.loads(out) for out, _ in outs]
        arrays = [np.load(f"{tmp}/{k}.npz") for k in range(len(shares))]
        latencies = np.concatenate([a["all"] for a in arrays])
        ok_latencies = np.concatenate([a["ok"] for a in arrays])
    statuses: dict[int, int] = {}
    for part in parts:
        for status, n in part["statuses"].items():
            statuses[int(status)] = statuses.get(int(status), 0) + n
    missing = sum(part["rejections_without_retry_after"] for part in parts)
    merged = summary(statuses, latencies, ok_latencies, missing, clients, duration)
    return {**merged, "generators": len(shares)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8000/sentiment")
    p.add_argument("--bodies", type=Path, required=True, help="JSONL file: one request body per line")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds run before measuring")
    p.add_argument("--latencies", type=Path, default=None, help="also save the latencies here (.npz)")
    args = p.parse_args(argv)
    bodies = [line.encode() for line in args.bodies.read_text(encoding="utf-8").splitlines() if line.strip()]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        run_load_async(args.url, bodies, args.concurrency, args.duration, args.warmup, args.latencies)
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
