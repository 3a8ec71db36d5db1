"""Soak test: the full endpoint mix at ~70 % of capacity for a long time, watching for leaks and drift.

    python -m loadtest.soak --minutes 30                        # starts python -m service on models/
    python -m loadtest.soak --minutes 30 --rate 40              # a known rate: no capacity ramp
    python -m loadtest.soak --host http://127.0.0.1:8000 --pid 1234 --minutes 30
    python -m loadtest.soak --minutes 30 --doc docs/benchmarks.md    # also its section there + the plot

1. Capacity (unless ``--rate``): a closed-loop ramp (1, 2, 4, ... clients sending back to back,
   ``--ramp-step-s`` each) finds the highest rate of correct answers without errors (it stops at the
   first step with any: the server refuses work past its capacity); the soak runs at ``--load`` (0.7)
   of it.
2. Soak: requests arrive open-loop (Poisson, fixed seed) at that rate for ``--minutes`` (fractions
   allowed), drawn from the locust mix (``contract.ENDPOINTS``: sentiment 50 %, tag 25 %, translate
   15 %, generate 10 %, of the endpoints the server serves) with the locust payloads
   (``payloads.json``). Latency counts from the moment a request was due, so a server that falls
   behind shows it. A non-2xx, a transport error or a wrong answer (``contract.check_*``) is an error.
3. Every ``--sample-s`` (10) seconds it records the server's RSS, open files and threads (``/proc``)
   and the window's requests, errors, p50 and p99, into ``soak.csv``; at the end ``soak.png`` plots them.
4. The summary checks the bars: 0 errors; RSS growth over the last 20 minutes at most 5 %; p99 of the
   last 5 minutes at most 1.5 x that of the first 5. For runs shorter than 30 minutes the windows
   scale with the run (the last 2/3 and the first and last 1/6). Exit status 1 when a bar is missed.
   With ``--doc`` the summary rewrites the ``soak`` section of that file and the plot is copied to
   ``images/soak.png`` beside it.

Standard library, numpy and matplotlib (the ``train`` extra) only; the HTTP client is a few lines of
asyncio (as ``bench/http_load.py``), so the load generator costs the server little CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import random
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from loadtest.bench.procs import ProcessTree
from loadtest.bench.server import REPO_ROOT, running_service
from loadtest.contract import ENDPOINTS, Check, served_endpoints

HERE = Path(__file__).resolve().parent
PAYLOADS: dict[str, Any] = json.loads((HERE / "payloads.json").read_text(encoding="utf-8"))
BATCH_SHARE, BATCH_SIZE, MAX_NEW_TOKENS = 0.2, 4, 32  # as locustfile.py
FULL_RUN_S = 30 * 60
GROWTH_WINDOW_S, P99_WINDOW_S = 20 * 60, 5 * 60  # the bars' windows in a 30-minute run
MAX_RSS_GROWTH, MAX_P99_RATIO = 0.05, 1.5
CSV_FIELDS = [
    "t_s",
    "requests",
    "errors",
    "rps",
    "p50_ms",
    "p99_ms",
    "rss_mb",
    "open_files",
    "threads",
    "in_flight",
]


# ------------------------------------------------------------------------------------------ requests


@dataclass(frozen=True)
class Request:
    path: str
    body: dict[str, Any]
    check: Check


def request_maker(served: dict[str, frozenset[str]], seed: int) -> Callable[[], Request]:
    """Draws requests of the mix, restricted to the served endpoints, like the locust users do."""
    rng = random.Random(seed)
    mix = [e for e in ENDPOINTS if e.path in served]
    if not mix:
        raise SystemExit(f"the server serves none of {[e.path for e in ENDPOINTS]}")
    weights = [e.weight for e in mix]

    def texts(key: str) -> dict[str, Any]:
        if rng.random() < BATCH_SHARE:
            return {"texts": rng.sample(PAYLOADS[key], BATCH_SIZE)}
        return {"text": rng.choice(PAYLOADS[key])}

    def make() -> Request:
        endpoint = rng.choices(mix, weights)[0]
        if endpoint.path == "/sentiment":
            body = texts("sentiment")
        elif endpoint.path == "/tag":
            body = texts("tag")
        elif endpoint.path == "/translate":
            body = {"text": rng.choice(PAYLOADS["translate"])}
        else:
            body = {
                "prompt": rng.choice(PAYLOADS["generate"]),
                "max_new_tokens": MAX_NEW_TOKENS,
                "temperature": 0.8,
                "top_k": 40,
                "seed": rng.randrange(2**31),
            }
        return Request(endpoint.path, body, endpoint.check)

    return make


class Connections:
    """Keep-alive HTTP/1.1 connections to one server, reused last-in first-out. A connection idle for
    longer than ``max_idle_s`` is closed rather than reused (servers close idle ones: uvicorn after 5 s),
    and a request on a reused connection that the server closed meanwhile is sent again on a new one."""

    def __init__(self, base: str, headers: dict[str, str], max_idle_s: float = 2.0):
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.max_idle_s = max_idle_s
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        while self.idle:
            reader, writer, since = self.idle.pop()
            if time.perf_counter() - since <= self.max_idle_s and not reader.at_eof():
                return reader, writer, True
            writer.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return reader, writer, False

    async def post(self, path: str, body: dict[str, Any], timeout: float) -> tuple[int, bytes]:
        payload = json.dumps(body).encode()
        message = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"{self.extra}Content-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload
        async with asyncio.timeout(timeout):
            reader, writer, reused = await self._connection()
            try:
                writer.write(message)
                status, answer, keep = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError) as exc:
                writer.close()
                if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                    raise
                reader, writer = await asyncio.open_connection(self.host, self.port)  # closed while idle
                try:
                    writer.write(message)
                    status, answer, keep = await _read_response(reader)
                except BaseException:
                    writer.close()
                    raise
            except BaseException:
                writer.close()
                raise
        if keep:
            self.idle.append((reader, writer, time.perf_counter()))
        else:
            writer.close()
        return status, answer

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    return status, (await reader.readexactly(length) if length else b""), keep


@dataclass
class Outcome:
    at: float  # when it finished (seconds since the soak started)
    latency_s: float
    error: str | None
    path: str = ""


async def call(conns: Connections, request: Request, models: frozenset[str], timeout: float) -> str | None:
    """One request; ``None`` when the answer is right, else what went wrong."""
    try:
        status, answer = await conns.post(request.path, request.body, timeout)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
        return f"{request.path}: no answer ({type(exc).__name__})"
    if not 200 <= status < 300:
        return f"{request.path}: HTTP {status} {answer[:160]!r}"
    try:
        problems = request.check(request.body, json.loads(answer), models)
    except Exception as exc:  # a checker crash on a malformed answer is a wrong answer too
        problems = [f"unreadable answer ({type(exc).__name__})"]
    return f"{request.path}: wrong answer: {'; '.join(problems[:2])}" if problems else None


# ------------------------------------------------------------------------------------------ capacity


async def closed_loop(
    base: str, headers: dict[str, str], make: Callable[[], Request], served, clients: int, seconds: float
) -> tuple[float, int]:
    """``clients`` sending back to back for ``seconds``: (correct answers per second, errors)."""
    conns = Connections(base, headers)
    end = time.perf_counter() + seconds
    ok = errors = 0

    async def client() -> None:
        nonlocal ok, errors
        while time.perf_counter() < end:
            request = make()
            if await call(conns, request, served[request.path], 60) is None:
                ok += 1
            else:
                errors += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    conns.close()
    return ok / seconds, errors


async def measure_capacity(base, headers, make, served, step_s: float, max_clients: int) -> float:
    """Doubles the clients until the rate of correct answers has not risen by 5 % for two steps, or a step
    has errors (the server refuses work: past its capacity); the capacity is the best error-free rate."""
    best, clients, flat = 0.0, 1, 0
    while clients <= max_clients and flat < 2:
        rate, errors = await closed_loop(base, headers, make, served, clients, step_s)
        print(f"  ramp: {clients:3d} clients -> {rate:7.1f} correct answers/s, {errors} errors", flush=True)
        if errors:
            break
        flat = flat + 1 if rate < best * 1.05 else 0
        best = max(best, rate)
        clients *= 2
    return best


# ------------------------------------------------------------------------------------- process stats


def process_stats(pid: int | None) -> dict[str, float]:
    """RSS (MiB), open files and threads of the server from ``/proc``, summed over ``pid`` and its serving
    processes (NaN when unavailable)."""
    out = {"rss_mb": float("nan"), "open_files": float("nan"), "threads": float("nan")}
    if pid is None:
        return out
    totals = {"rss_mb": 0.0, "open_files": 0.0, "threads": 0.0}
    seen = False
    for member in ProcessTree(pid).pids():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    totals["rss_mb"] += int(line.split()[1]) / 1024
                elif line.startswith("Threads:"):
                    totals["threads"] += float(line.split()[1])
            totals["open_files"] += float(len(os.listdir(f"/proc/{member}/fd")))
            seen = True
    return totals if seen else out


# ---------------------------------------------------------------------------------------------- soak


@dataclass
class Soak:
    samples: list[dict[str, float]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0


async def soak(
    base: str,
    headers: dict[str, str],
    make: Callable[[], Request],
    served: dict[str, frozenset[str]],
    *,
    rate: float,
    seconds: float,
    sample_s: float,
    pid: int | None,
    seed: int,
    max_in_flight: int,
    timeout: float,
    on_sample: Callable[[dict[str, float]], None] = lambda s: None,
) -> Soak:
    result = Soak(duration_s=seconds)
    conns = Connections(base, headers)
    rng = random.Random(seed + 1)
    start = time.perf_counter()
    running: set[asyncio.Task] = set()
    window: list[Outcome] = []

    async def one(request: Request, due: float) -> None:
        error = await call(conns, request, served[request.path], timeout)
        done = time.perf_counter() - start
        outcome = Outcome(done, done - due, error, request.path)
        result.outcomes.append(outcome)
        window.append(outcome)
        if error is not None:
            result.errors[error[:200]] = result.errors.get(error[:200], 0) + 1

    async def sampler() -> None:
        nonlocal window
        next_at = sample_s
        while True:
            await asyncio.sleep(max(0.0, start + next_at - time.perf_counter()))
            done, window = window, []
            latencies = np.array([o.latency_s for o in done]) * 1000
            sample = {
                "t_s": round(next_at, 3),
                "requests": len(done),
                "errors": sum(o.error is not None for o in done),
                "rps": len(done) / sample_s,
                "p50_ms": float(np.percentile(latencies, 50)) if len(done) else float("nan"),
                "p99_ms": float(np.percentile(latencies, 99)) if len(done) else float("nan"),
                **process_stats(pid),
                "in_flight": len(running),
            }
            result.samples.append(sample)
            on_sample(sample)
            next_at += sample_s

    sampling = asyncio.create_task(sampler())
    due = 0.0
    while True:
        due += rng.expovariate(rate)
        if due >= seconds:
            break
        await asyncio.sleep(max(0.0, start + due - time.perf_counter()))
        request = make()
        if len(running) >= max_in_flight:  # the server fell far behind: that is an error, not a queue
            error = f"{request.path}: over {max_in_flight} requests in flight"
            result.errors[error] = result.errors.get(error, 0) + 1
            outcome = Outcome(time.perf_counter() - start, 0.0, error, request.path)
            result.outcomes.append(outcome)
            window.append(outcome)
            continue
        task = asyncio.create_task(one(request, due))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.wait(running, timeout=timeout + 5)
    await asyncio.sleep(max(0.0, start + seconds - time.perf_counter()))
    if len(result.samples) * sample_s < seconds - 1e-6:  # the last, partial window
        await asyncio.sleep(max(0.0, start + (len(result.samples) + 1) * sample_s - time.perf_counter()))
    sampling.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampling
    conns.close()
    return result


# ------------------------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Bar:
    name: str
    value: str
    ok: bool


def windows(seconds: float) -> tuple[float, float]:
    """The RSS-growth window (last 20 of 30 minutes) and the p99 windows (first/last 5 of 30 minutes),
    scaled down for shorter runs."""
    scale = min(1.0, seconds / FULL_RUN_S)
    return GROWTH_WINDOW_S * scale, P99_WINDOW_S * scale


def verdict(result: Soak) -> list[Bar]:
    seconds = result.duration_s
    growth_s, p99_s = windows(seconds)
    errors = sum(result.errors.values())
    bars = [Bar("errors", f"{errors} of {len(result.outcomes)} requests", errors == 0)]
    rss = [(s["t_s"], s["rss_mb"]) for s in result.samples if np.isfinite(s["rss_mb"])]
    if rss:
        start_t = seconds - growth_s
        base = next((v for t, v in rss if t >= start_t), rss[-1][1])
        growth = (rss[-1][1] - base) / base
        bars.append(
            Bar(
                f"RSS growth over the last {growth_s / 60:.1f} min",
                f"{base:.1f} -> {rss[-1][1]:.1f} MiB ({growth:+.1%}, bar {MAX_RSS_GROWTH:.0%})",
                growth <= MAX_RSS_GROWTH,
            )
        )
    else:
        bars.append(Bar("RSS growth", "no RSS samples (give --pid with --host)", False))
    ok_latency = [o for o in result.outcomes if o.error is None]
    first = [o.latency_s for o in ok_latency if o.at <= p99_s]
    last = [o.latency_s for o in ok_latency if o.at > seconds - p99_s]
    if first and last:
        p99_first, p99_last = (float(np.percentile(np.array(x) * 1000, 99)) for x in (first, last))
        ratio = p99_last / p99_first
        bars.append(
            Bar(
                f"p99 of the last {p99_s / 60:.1f} min vs the first",
                f"{p99_first:.1f} -> {p99_last:.1f} ms (x{ratio:.2f}, bar x{MAX_P99_RATIO})",
                ratio <= MAX_P99_RATIO,
            )
        )
    else:
        bars.append(Bar("p99 drift", "too few answers in the first or last window", False))
    return bars


def by_endpoint(result: Soak) -> list[list]:
    """Per endpoint: requests, errors, and p50/p99/max of the correct answers' latency (ms)."""
    by_path: dict[str, list[Outcome]] = {}
    for o in result.outcomes:
        by_path.setdefault(o.path, []).append(o)
    rows = []
    for path, mine in sorted(by_path.items()):
        ok = np.array([o.latency_s for o in mine if o.error is None]) * 1000
        p50, p99 = np.percentile(ok, [50, 99]) if ok.size else (float("nan"), float("nan"))
        top = float(ok.max()) if ok.size else float("nan")
        errors = sum(o.error is not None for o in mine)
        rows.append([f"`{path}`", len(mine), errors, f"{p50:.1f}", f"{p99:.1f}", f"{top:.1f}"])
    return rows


ENDPOINT_HEADER = ["endpoint", "requests", "errors", "p50 ms", "p99 ms", "max ms"]


def write_csv(path: Path, samples: list[dict[str, float]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for sample in samples:
            writer.writerow({k: (round(v, 3) if isinstance(v, float) else v) for k, v in sample.items()})


def plot(path: Path, samples: list[dict[str, float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["t_s"] / 60 for s in samples]
    fig, (lat, mem, load) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    lat.plot(minutes, [s["p50_ms"] for s in samples], label="p50")
    lat.plot(minutes, [s["p99_ms"] for s in samples], label="p99")
    lat.set_ylabel("latency (ms)")
    lat.legend(loc="upper left")
    lat.set_title(title)
    mem.plot(minutes, [s["rss_mb"] for s in samples], color="tab:red", label="RSS")
    mem.set_ylabel("RSS (MiB)")
    counts = mem.twinx()
    counts.plot(minutes, [s["open_files"] for s in samples], color="tab:gray", label="open files")
    counts.plot(minutes, [s["threads"] for s in samples], color="tab:green", label="threads")
    counts.set_ylabel("open files, threads")
    mem.legend(loc="upper left")
    counts.legend(loc="upper right")
    load.plot(minutes, [s["rps"] for s in samples], label="answers/s")
    width = 0.8 * (minutes[1] - minutes[0]) if len(minutes) > 1 else 0.1
    load.bar(minutes, [s["errors"] for s in samples], width=width, color="tab:red", label="errors")
    load.set_ylabel("per second / per sample")
    load.set_xlabel("minutes")
    load.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main


def _get_json(url: str, headers: dict[str, str]) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        return json.load(response)


def run(args: argparse.Namespace, base: str, pid: int | None) -> int:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    served = served_endpoints(
        _get_json(f"{base}/openapi.json", headers), _get_json(f"{base}/models", headers)["models"]
    )
    make = request_maker(served, args.seed)
    print(f"soak: {base} (pid {pid}), endpoints {sorted(served)}", flush=True)
    rate = args.rate
    if rate is None:
        print(f"measuring capacity (closed-loop ramp, {args.ramp_step_s:g} s a step)", flush=True)
        capacity = asyncio.run(
            measure_capacity(base, headers, make, served, args.ramp_step_s, args.max_clients)
        )
        rate = args.load * capacity
        print(
            f"capacity {capacity:.1f} answers/s; soaking at {args.load:.0%}: {rate:.1f} requests/s",
            flush=True,
        )
    seconds = args.minutes * 60
    args.out.mkdir(parents=True, exist_ok=True)
    print(
        f"soak: {rate:.1f} requests/s for {args.minutes:g} min, a sample every {args.sample_s:g} s",
        flush=True,
    )

    def show(s: dict[str, float]) -> None:
        print(
            f"  {s['t_s'] / 60:6.2f} min  {s['rps']:6.1f}/s  errors {s['errors']:3d}"
            f"  p50 {s['p50_ms']:7.1f} ms  p99 {s['p99_ms']:7.1f} ms  RSS {s['rss_mb']:7.1f} MiB"
            f"  files {s['open_files']:4.0f}  threads {s['threads']:3.0f}  in flight {s['in_flight']}",
            flush=True,
        )

    result = asyncio.run(
        soak(
            base,
            headers,
            make,
            served,
            rate=rate,
            seconds=seconds,
            sample_s=args.sample_s,
            pid=pid,
            seed=args.seed,
            max_in_flight=args.max_in_flight,
            timeout=args.timeout_s,
            on_sample=show,
        )
    )
    write_csv(args.out / "soak.csv", result.samples)
    plot(args.out / "soak.png", result.samples, f"soak: {rate:.1f} requests/s for {args.minutes:g} min")
    bars = verdict(result)
    print(
        f"\nsoak summary ({len(result.outcomes)} requests; {args.out / 'soak.csv'}, {args.out / 'soak.png'})"
    )
    for bar in bars:
        print(f"  {'PASS' if bar.ok else 'FAIL'}  {bar.name}: {bar.value}")
    for error, count in sorted(result.errors.items(), key=lambda kv: -kv[1])[:10]:
        print(f"    {count} x {error}")
    for row in by_endpoint(result):
        print("  " + "  ".join(f"{h} {v}" for h, v in zip(ENDPOINT_HEADER, row, strict=True)))
    if args.doc is not None:
        write_doc(args, rate, result, bars)
    return 0 if all(bar.ok for bar in bars) else 1


def write_doc(args: argparse.Namespace, rate: float, result: Soak, bars: list[Bar]) -> None:
    """The ``soak`` section of ``args.doc`` (command, machine, rate, bars) and the plot beside it."""
    from loadtest.bench.report import markdown_table, measured_with, replace_section
    from training.machine import machine_description

    image = args.doc.parent / "images" / "soak.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes((args.out / "soak.png").read_bytes())
    answered = sum(1 for o in result.outcomes if o.error is None)
    command = "python -m loadtest.soak " + " ".join(args.argv if args.argv is not None else sys.argv[1:])
    text = "\n".join(
        [
            f"{result.duration_s / 60:g} minutes at {rate:.1f} requests/s ({args.load:.0%} of the capacity"
            f" the ramp measured unless `--rate` was given): {len(result.outcomes)} requests, {answered}"
            f" answered correctly. Machine: {machine_description()};"
            f" load average {args.load_before:.2f} before and"
            f" {os.getloadavg()[0]:.2f} after.",
            *measured_with(command),
            "",
            markdown_table(
                ["bar", "measured", "met"], [[b.name, b.value, "yes" if b.ok else "**no**"] for b in bars]
            ),
            "",
            markdown_table(ENDPOINT_HEADER, by_endpoint(result)),
            "",
            "![soak: latency, memory, open files, threads and answers over time]"
            f"({image.relative_to(args.doc.parent)})",
        ]
    )
    replace_section(args.doc, "soak", text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0, help="soak length; fractions allowed (default 30)")
    p.add_argument("--rate", type=float, help="requests/s; default: --load x the capacity the ramp measures")
    p.add_argument("--load", type=float, default=0.7, help="share of the measured capacity (default 0.7)")
    p.add_argument("--ramp-step-s", type=float, default=10.0, help="seconds per ramp step (default 10)")
    p.add_argument("--max-clients", type=int, default=64, help="largest ramp step (default 64)")
    p.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples (default 10)")
    p.add_argument("--host", help="a running server; default: start python -m service on --models")
    p.add_argument("--pid", type=int, help="with --host: the server's process id, for RSS, files and threads")
    p.add_argument(
        "--models", type=Path, default=REPO_ROOT / "models", help="repository for the started server"
    )
    p.add_argument("--env", action="append", default=[], help="extra RNNSERVE_*=value for the started server")
    p.add_argument("--api-key", help="sent as Authorization: Bearer <key>")
    p.add_argument(
        "--out", type=Path, default=HERE / "reports" / "soak", help="folder for soak.csv and soak.png"
    )
    p.add_argument("--doc", type=Path, help="a markdown file whose `soak` section gets the summary")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-in-flight", type=int, default=512, help="beyond this many waiting requests: errors")
    p.add_argument(
        "--timeout-s", type=float, default=60.0, help="a request without an answer by then is an error"
    )
    args = p.parse_args(argv)
    args.argv, args.load_before = argv, os.getloadavg()[0]
    if args.minutes <= 0 or (args.rate is not None and args.rate <= 0) or args.sample_s <= 0:
        p.error("--minutes, --rate and --sample-s must be positive")
    if args.host:
        return run(args, args.host.rstrip("/"), args.pid)
    env = {"RNNSERVE_MODEL_REPOSITORY": str(args.models), **dict(kv.split("=", 1) for kv in args.env)}
    if args.api_key and "RNNSERVE_API_KEYS" not in env:
        env["RNNSERVE_API_KEYS"] = json.dumps([args.api_key])
    args.out.mkdir(parents=True, exist_ok=True)
    with running_service(env, log_path=args.out / "server.log") as base:
        return run(args, str(base), base.pid)


if __name__ == "__main__":
    sys.exit(main())
