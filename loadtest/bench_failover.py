"""Replicas behind nginx, run for real: what clients see while replicas drain, die and come back.

    python -m loadtest.bench_failover                  # 3 replicas, 60 s of load (about 80 s in all)
    python -m loadtest.bench_failover --write-docs     # and rewrites its section of docs/deployment.md

``--replicas`` ``python -m service`` replicas (``RNNSERVE_WORKERS=1``: one process each, whose port opens
when its models are warm) on free loopback ports, behind ``deploy/nginx.conf`` run by the system's nginx
(``loadtest/bench/nginx.py`` renders it for those ports). ``--clients`` closed-loop keep-alive clients
POST one text to ``/sentiment`` or ``/tag`` (2:1, as in the locust mix) through nginx, each request with
an ``X-Request-ID`` of its own, and every outcome is logged with its timestamps. During the run:

1. at 20 % of ``--seconds``, SIGTERM to replica 1: it stops accepting and drains what it holds;
2. at 40 %, SIGKILL to replica 2: its requests in flight break, nginx retries them on another replica;
3. at 60 %, both come back: replica 1 restarted at its address (nginx's passive health check takes it
   back once ``fail_timeout`` has passed) and replica 2 replaced by one at a new address, for which the
   conf is rendered again and nginx reloaded (what ``docker compose --scale`` needs).

Load goes on for at least ``--after-restart-s`` once all are back. A request is lost when no HTTP answer
came (a connection error, or nothing within ``--timeout``); an answer is wrong when a 200 fails the load
test's contract check or any answer carries another ``X-Request-ID``. Per phase: answers/s, statuses, lost
and wrong requests, requests nginx retried on another replica (from its access log), the replicas that
answered, p50/p99 of answered requests. Exit status 1 when a request hung, an answer was wrong, or a
request was lost other than an answer already under way when its replica was killed (nginx has passed its
header on and can only close the client's connection; no proxy can retry it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtest.bench.http_load import percentiles
from loadtest.bench.nginx import Balancer, fail_timeout_s, nginx_version, running_balancer
from loadtest.bench.report import markdown_table, replace_section
from loadtest.bench.server import REPO_ROOT, Service, start_service, stop_service, wait_ready
from loadtest.contract import check_sentiment, check_tag
from training.machine import machine_description

MARKER = "failover"
DOC = REPO_ROOT / "docs" / "deployment.md"
PAYLOADS = REPO_ROOT / "loadtest" / "payloads.json"
#: one serving process per replica, one ONNX Runtime thread (compose: a 1-CPU limit per replica)
# as the compose replicas: one process each, the port closed until the models are warm
REPLICA_ENV = {
    "RNNSERVE_WORKERS": "1",
    "RNNSERVE_ORT_INTRA_OP_THREADS": "1",
    "RNNSERVE_LISTEN_WHEN_READY": "true",
}
CHECKS: dict[str, Callable[[dict, Any], list[str]]] = {"/sentiment": check_sentiment, "/tag": check_tag}
LOST = ("connection", "timeout")


class Clock:
    """Seconds since the load started: one origin for every outcome and event."""

    def __init__(self) -> None:
        self.origin = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.origin

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self()))


@dataclass(frozen=True)
class Request:
    path: str
    payload: dict[str, Any]

    def encode(self, host: str, request_id: str) -> bytes:
        body = json.dumps(self.payload).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"X-Request-ID: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


def request_mix() -> list[Request]:
    """Two ``/sentiment`` texts for each ``/tag`` text, from ``loadtest/payloads.json``."""
    payloads = json.loads(PAYLOADS.read_text(encoding="utf-8"))
    sentiment, tag = payloads["sentiment"], payloads["tag"]
    mix: list[Request] = []
    for i, text in enumerate(tag):
        mix.append(Request("/sentiment", {"text": sentiment[(2 * i) % len(sentiment)]}))
        mix.append(Request("/sentiment", {"text": sentiment[(2 * i + 1) % len(sentiment)]}))
        mix.append(Request("/tag", {"text": text}))
    return mix


@dataclass(frozen=True)
class Outcome:
    """One request as the client saw it; times in seconds since the load started."""

    request_id: str
    path: str
    started: float
    finished: float
    status: int  # 0: no HTTP answer
    problem: str = ""  # "connection" or "timeout" (lost), "wrong ...", "empty body"; "" when fine
    resent: int = 0  # 1: sent again on a new connection after a kept-alive one closed under it

    @property
    def lost(self) -> bool:
        return self.problem in LOST

    @property
    def wrong(self) -> bool:
        return bool(self.problem) and not self.lost


class ClosedBeforeAnswer(ConnectionError):
    """The connection closed before any byte of the answer came."""


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise
        raise ClosedBeforeAnswer from e
    except (ConnectionResetError, BrokenPipeError) as e:
        raise ClosedBeforeAnswer from e


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 response."""
    status_line, *lines = (await _read_head(reader)).decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        if value:
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are sent here: the empty line
            return b"".join(parts)
        parts.append((await reader.readexactly(size + 2))[:-2])


class Connection:
    """One keep-alive connection, opened on first use and again after a failure or ``Connection: close``.

    A server may close a kept-alive connection while a request is on its way (nginx does so to idle
    connections at a reload); like browsers and urllib3 for idempotent requests, ``send`` then sends the
    request once more on a new connection. Only then: a new connection that fails is a failure."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, request: Request, request_id: str) -> tuple[int, dict[str, str], bytes, int]:
        """Status, headers, body, and how often the request was sent again (0 or 1)."""
        reused = self._streams is not None
        try:
            return (*await self._exchange(request, request_id), 0)
        except ClosedBeforeAnswer:
            self.close()
            if not reused:
                raise
        return (*await self._exchange(request, request_id), 1)

    async def _exchange(self, request: Request, request_id: str) -> tuple[int, dict[str, str], bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.write(request.encode(f"{self.host}:{self.port}", request_id))
        status, headers, body = await _read_response(reader)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


def answer_problem(
    request: Request, request_id: str, status: int, headers: dict[str, str], body: bytes
) -> str:
    """What is wrong with an answer ("" when nothing): the id, the 200 body's shape, an empty error body."""
    if headers.get("x-request-id") != request_id:
        return f"wrong request id {headers.get('x-request-id')!r}"
    if status != 200:
        return "" if body else "empty body"
    try:
        problems = CHECKS[request.path](request.payload, json.loads(body))
    except ValueError:
        problems = ["not JSON"]
    return f"wrong answer: {problems[0]}" if problems else ""


async def _client(
    k: int,
    url: tuple[str, int],
    mix: Sequence[Request],
    timeout: float,
    clock: Clock,
    stop: asyncio.Event,
    log: list[Outcome],
) -> None:
    """Sends requests back to back until ``stop``; each one's outcome goes to ``log``."""
    conn, n = Connection(*url), 0
    while not stop.is_set():
        request, request_id = mix[(k * 7919 + n) % len(mix)], f"failover-{k}-{n}"
        n += 1
        started, resent = clock(), 0
        try:
            status, headers, body, resent = await asyncio.wait_for(conn.send(request, request_id), timeout)
            problem = answer_problem(request, request_id, status, headers, body)
        except TimeoutError:
            status, problem = 0, "timeout"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            status, problem = 0, "connection"
        log.append(Outcome(request_id, request.path, started, clock(), status, problem, resent))
        if status == 0:
            conn.close()
            await asyncio.sleep(0.05)  # no tight loop while nothing answers
    conn.close()


@dataclass
class Cluster:
    """Replicas (``replicas[i]`` is replica i + 1, replaced in place on restart) behind one balancer."""

    replicas: list[Service]
    balancer: Balancer
    workdir: Path
    env: dict[str, str]

    def ports(self) -> list[int]:
        return [r.port for r in self.replicas]

    def start_replica(self, index: int, name: str, port: int | None = None) -> Service:
        """A new replica in slot ``index`` (``port``: the old address; else a new one), not yet ready."""
        self.replicas[index] = start_service(self.env, self.workdir / f"{name}.log", port=port)
        return self.replicas[index]


@contextmanager
def running_cluster(count: int, workdir: Path, env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """``count`` ready replicas and nginx in front of them; everything stopped on exit."""
    env = {**REPLICA_ENV, **(env or {})}
    replicas: list[Service] = []
    try:
        for i in range(count):  # started together, waited for after: loading overlaps
            replicas.append(start_service(env, workdir / f"replica-{i + 1}.log"))
        for replica in replicas:
            wait_ready(replica)
        with running_balancer(workdir, [r.port for r in replicas]) as balancer:
            yield Cluster(replicas, balancer, workdir, env)
    finally:
        for replica in replicas:
            stop_service(replica)


@dataclass(frozen=True)
class Schedule:
    """When things happen, in seconds since the load started."""

    sigterm_at: float
    sigkill_at: float
    restart_at: float
    seconds: float  # the load ends at max(seconds, back + after_restart_s)
    after_restart_s: float

    @classmethod
    def for_run(cls, seconds: float, after_restart_s: float) -> Schedule:
        return cls(0.2 * seconds, 0.4 * seconds, 0.6 * seconds, seconds, after_restart_s)


@dataclass
class Run:
    outcomes: list[Outcome]
    events: dict[str, float]  # SIGTERM, SIGKILL, restart, restarted ready, back (after the reload), end
    access: list[dict[str, Any]] = field(default_factory=list)  # nginx's access log
    addresses: dict[str, str] = field(default_factory=dict)  # "127.0.0.1:port" -> replica name
    _nginx: dict[str, dict[str, Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._nginx = {e["request_id"]: e for e in self.access}

    def tried(self, request_id: str) -> list[str]:
        """The replica addresses nginx tried for a request, in order (its access log's ``upstream``)."""
        entry = self._nginx.get(request_id)
        return [a.strip() for a in entry["upstream"].split(",") if a.strip()] if entry else []

    def answered_by(self, request_id: str) -> str | None:
        return (self.tried(request_id) or [None])[-1]

    def cut_short(self, outcome: Outcome) -> bool:
        """Lost although nginx had started passing on a 200: the replica died in the middle of the answer,
        too late for a retry (nginx can only close the client's connection)."""
        entry = self._nginx.get(outcome.request_id)
        return outcome.lost and entry is not None and entry["status"] == 200


def _bring_back(cluster: Cluster, clock: Clock, events: dict[str, float]) -> None:
    """Replica 1 at its own address (taken back by the passive health check), replica 2 replaced by one at
    a new address and nginx reloaded for it. Blocking: run in a thread while the load goes on."""
    drained, killed = cluster.replicas[:2]
    assert drained.process is not None
    drained.process.wait(timeout=60)  # SIGTERM again would cut its drain short: let it end by itself
    for old in (drained, killed):
        stop_service(old)  # both have exited: reaps them and closes their logs
    same = cluster.start_replica(0, "replica-1-restarted", port=cluster.replicas[0].port)
    new = cluster.start_replica(1, "replica-2-replacement")
    wait_ready(same)
    wait_ready(new)
    events["restarted ready"] = clock()
    # nginx keeps a replica that failed max_fails times out for fail_timeout; wait that long (and a bit) so
    # replica 1 is taken back by the health check alone, before the reload resets every replica's state.
    time.sleep(fail_timeout_s() + 1)
    cluster.balancer.reload(cluster.ports())


async def drive(cluster: Cluster, schedule: Schedule, clients: int, timeout: float) -> Run:
    """Closed-loop load through nginx with the schedule's signals and restarts; every outcome logged."""
    mix, log, events, stop, clock = request_mix(), [], {}, asyncio.Event(), Clock()
    addresses = {f"127.0.0.1:{p}": f"replica {i + 1}" for i, p in enumerate(cluster.ports())}
    url = ("127.0.0.1", cluster.balancer.port)
    load = asyncio.gather(*(_client(k, url, mix, timeout, clock, stop, log) for k in range(clients)))
    try:
        await clock.sleep_until(schedule.sigterm_at)
        _signal(cluster.replicas[0], signal.SIGTERM)
        events["SIGTERM"] = clock()
        await clock.sleep_until(schedule.sigkill_at)
        _signal(cluster.replicas[1], signal.SIGKILL)
        events["SIGKILL"] = clock()
        await clock.sleep_until(schedule.restart_at)
        events["restart"] = clock()
        await asyncio.to_thread(_bring_back, cluster, clock, events)
        events["back"] = clock()
        addresses[f"127.0.0.1:{cluster.replicas[1].port}"] = "replica 2 (new address)"
        await clock.sleep_until(max(schedule.seconds, events["back"] + schedule.after_restart_s))
    finally:
        stop.set()
        await load
    events["end"] = clock()
    return Run(sorted(log, key=lambda o: o.started), events, cluster.balancer.access_entries(), addresses)


def _signal(replica: Service, signum: signal.Signals) -> None:
    assert replica.process is not None, "a replica started here"
    replica.process.send_signal(signum)


# --- the report -------------------------------------------------------------------------------------


PHASES = (
    ("all up", None, "SIGTERM"),
    ("after SIGTERM (replica 1 drains)", "SIGTERM", "SIGKILL"),
    ("after SIGKILL (replica 2)", "SIGKILL", "restart"),
    ("restarting (health check, reload)", "restart", "back"),
    ("after restart", "back", "end"),
)


def phase_bounds(events: dict[str, float]) -> list[tuple[str, float, float]]:
    return [(name, events[a] if a else 0.0, events[b]) for name, a, b in PHASES]


def in_phase(run: Run, start: float, end: float) -> list[Outcome]:
    """The requests that ended in [start, end): one in flight at an event counts after it."""
    return [o for o in run.outcomes if start <= o.finished < end]


def phase_summary(run: Run, name: str, start: float, end: float) -> dict[str, Any]:
    outcomes = in_phase(run, start, end)
    answered = [o for o in outcomes if not o.lost]
    ok = [o for o in outcomes if o.status == 200 and not o.problem]
    return {
        "phase": name,
        "start_s": start,
        "seconds": end - start,
        "requests": len(outcomes),
        "answers_per_s": len(ok) / max(end - start, 1e-9),
        "statuses": dict(sorted(Counter(o.status for o in answered).items())),
        "lost_connection": sum(o.problem == "connection" for o in outcomes),
        "lost_timeout": sum(o.problem == "timeout" for o in outcomes),
        "cut_short": sum(run.cut_short(o) for o in outcomes),
        "wrong": sum(o.wrong for o in outcomes),
        "retried_by_nginx": sum(len(run.tried(o.request_id)) > 1 for o in outcomes),
        "resent_by_client": sum(o.resent for o in outcomes),
        "replicas_answering": sorted(
            {run.addresses.get(a, a) for o in ok if (a := run.answered_by(o.request_id))}
        ),
        **percentiles([o.finished - o.started for o in answered]),
    }


def summarize(run: Run) -> list[dict[str, Any]]:
    return [phase_summary(run, *bounds) for bounds in phase_bounds(run.events)]


def failures(run: Run) -> list[Outcome]:
    """What the conf should have prevented: a hang, a wrong answer, or a lost request other than an
    answer cut short by SIGKILL (which no proxy can retry once it has passed the answer's header on)."""
    return [o for o in run.outcomes if o.problem == "timeout" or o.wrong or (o.lost and not run.cut_short(o))]


def verdict(run: Run, phases: list[dict[str, Any]]) -> list[str]:
    """A line per event: what clients saw."""
    all_up, term, kill, restarting, back = phases
    ratio = back["answers_per_s"] / max(all_up["answers_per_s"], 1e-9)
    return [
        f"SIGTERM (drain): {_outcomes(term)}.",
        f"SIGKILL: {_outcomes(kill)}.",
        f"Restart: {_replica_1_back(run)}. While restarting: {_outcomes(restarting)}.",
        f"After the reload: {len(back['replicas_answering'])} replicas answered, throughput "
        f"{ratio:.0%} of the all-up phase; {_outcomes(back)}.",
    ]


def _outcomes(phase: dict[str, Any]) -> str:
    text = f"{_losses(phase)}; {_non_200(phase)}; {phase['retried_by_nginx']} requests retried by nginx"
    if phase["resent_by_client"]:
        text += (
            f"; {phase['resent_by_client']} resent by the client (a kept-alive connection closed by nginx)"
        )
    return text


def _replica_1_back(run: Run) -> str:
    """When replica 1, restarted at its old address, took requests through nginx again."""
    replica_1 = next(a for a, name in run.addresses.items() if name == "replica 1")
    restart, ready = run.events["restart"], run.events["restarted ready"]
    again = [o for o in run.outcomes if o.started >= restart and run.answered_by(o.request_id) == replica_1]
    answered = [o.finished for o in again if not o.lost]
    if not answered:
        return "replica 1 (restarted at its address) took no request again"
    seen = min(answered)
    how = (
        "before the reload, by nginx's passive health check"
        if seen < run.events["back"]
        else "after the reload"
    )
    loading = sum(o.status == 503 and o.finished < ready for o in again)
    return (
        f"replica 1 (restarted at its address) answered through nginx again at {seen:.1f} s, {how}; its "
        f"/ready turned 200 at {ready:.1f} s, and before that it answered {loading} requests with 503"
    )


def _losses(phase: dict[str, Any]) -> str:
    lost = phase["lost_connection"] + phase["lost_timeout"]
    text = f"{lost} lost"
    if lost:
        text += f" ({phase['lost_connection']} connection errors, {phase['lost_timeout']} timeouts"
        text += (
            f"; {phase['cut_short']} of them answers cut short by the kill)" if phase["cut_short"] else ")"
        )
    return text + (f", {phase['wrong']} wrong answers" if phase["wrong"] else "")


def _non_200(phase: dict[str, Any]) -> str:
    others = {s: n for s, n in phase["statuses"].items() if s != 200}
    return (
        "every answer 200" if not others else "answers " + ", ".join(f"{n}× {s}" for s, n in others.items())
    )


def table(phases: list[dict[str, Any]]) -> str:
    header = [
        "phase", "s", "answers/s", "statuses", "lost (conn / timeout)", "retried by nginx",
        "resent by client", "replicas answering", "p50 ms", "p99 ms",
    ]  # fmt: skip
    rows = [
        [
            p["phase"],
            f"{p['seconds']:.1f}",
            p["answers_per_s"],
            ", ".join(f"{s}: {n}" for s, n in p["statuses"].items()) or "—",
            f"{p['lost_connection']} / {p['lost_timeout']}",
            p["retried_by_nginx"],
            p["resent_by_client"],
            len(p["replicas_answering"]),
            p["p50_ms"],
            p["p99_ms"],
        ]
        for p in phases
    ]
    return markdown_table(header, rows)


def report_text(
    args: argparse.Namespace, run: Run, phases: list[dict[str, Any]], context: dict[str, Any]
) -> str:
    e, cores = run.events, os.cpu_count() or 1
    busy = (
        f" The machine was busy with other work (load average above its {cores} cores before the run): "
        "answers/s and latencies are indicative only, the counts are what matters."
        if context["load_before"] > cores
        else ""
    )
    return "\n".join(
        [
            f"Command: `python -m loadtest.bench_failover --replicas {args.replicas} --seconds "
            f"{args.seconds:g} --after-restart-s {args.after_restart_s:g} --clients {args.clients}`; "
            f"{context['started']}; {machine_description()}; {context['nginx']}; load average "
            f"{context['load_before']:.2f} before, {context['load_after']:.2f} after.{busy} Events (seconds "
            f"into the load): SIGTERM {e['SIGTERM']:.1f}, SIGKILL {e['SIGKILL']:.1f}, restart "
            f"{e['restart']:.1f}, restarted replicas ready {e['restarted ready']:.1f}, nginx reloaded "
            f"{e['back']:.1f}, end {e['end']:.1f}. A phase holds the requests that ended in it; answers/s "
            "counts correct 200s; p50/p99 over answered requests.",
            "",
            table(phases),
            "",
            *(f"- {line}" for line in verdict(run, phases)),
        ]
    )


def fresh_workdir(out: Path) -> Path:
    """``out`` without its suffix, emptied: the replicas' logs, nginx's conf and logs, every request."""
    workdir = out.with_suffix("")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    return workdir


def write_outputs(out: Path, run: Run, phases: list[dict[str, Any]], text: str) -> Path:
    """The summary to ``out`` (JSON) and every request, with the replicas nginx tried, to the work folder
    (JSONL)."""
    requests = out.with_suffix("") / "requests.jsonl"
    with requests.open("w", encoding="utf-8") as f:
        for o in run.outcomes:
            f.write(json.dumps({**asdict(o), "upstreams": run.tried(o.request_id)}) + "\n")
    summary = {"events": run.events, "phases": phases, "addresses": run.addresses, "report": text}
    out.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return requests


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, default=3, help="at least 2 (replica 1 gets SIGTERM, 2 SIGKILL)")
    p.add_argument("--seconds", type=float, default=60.0, help="load time; events at 20, 40 and 60 %% of it")
    p.add_argument(
        "--after-restart-s", type=float, default=15.0, help="load at least this long once all are back"
    )
    p.add_argument("--clients", type=int, default=8, help="closed-loop clients")
    p.add_argument(
        "--timeout", type=float, default=15.0, help="seconds without an answer that make a request lost"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "runs" / "bench_failover.json",
        help="the summary (JSON); the logs and every request go to the folder of the same name",
    )
    p.add_argument("--write-docs", action="store_true", help="rewrite the failover section of --doc")
    p.add_argument("--doc", type=Path, default=DOC)
    p.add_argument(
        "--env", action="append", default=[], help="RNNSERVE_*=value for every replica (repeatable)"
    )
    args = p.parse_args(argv)
    if args.replicas < 2:
        p.error("--replicas must be at least 2")
    context = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nginx": nginx_version(),
        "load_before": os.getloadavg()[0],
    }
    schedule = Schedule.for_run(args.seconds, args.after_restart_s)
    workdir = fresh_workdir(args.out)
    with running_cluster(args.replicas, workdir, dict(kv.split("=", 1) for kv in args.env)) as cluster:
        run = asyncio.run(drive(cluster, schedule, args.clients, args.timeout))
    context["load_after"] = os.getloadavg()[0]
    phases = summarize(run)
    text = report_text(args, run, phases, context)
    requests = write_outputs(args.out, run, phases, text)
    if args.write_docs:
        replace_section(args.doc, MARKER, text)
    print(text)
    print(f"\n{args.out} (summary), {requests} (every request)")
    return 1 if failures(run) else 0


if __name__ == "__main__":
    raise SystemExit(main())
