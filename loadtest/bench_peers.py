"""rnnserve against TorchServe and Ray Serve: same ONNX files, same codec, same ORT session options.

    python -m loadtest.bench_peers        # 3 rounds x 3 client counts x 10 s x 2 models (~15-20 min)
    python -m loadtest.bench_peers --seconds 2 --rounds 1 --clients 1 16 --models sentiment-gru  # smoke
    python -m loadtest.run_benchmarks --only peers --budget-s 1800   # the full run, opt-in entry

Not part of ``make test`` nor of the default ``make bench`` budget (opt-in: ``python -m
loadtest.run_benchmarks --only peers``). It installs TorchServe 0.12 and Ray Serve 2.60 into their own
virtual environments under ``--cache`` (once; ``loadtest/peers/install.py``), then per model starts the
three servers side by side on 127.0.0.1:

- rnnserve: ``python -m service`` exactly as users run it (its defaults and the caller's ``RNNSERVE_*``
  settings; the access log off, as in ``bench_sentiment``), whatever process model it has;
- TorchServe: a ``BaseHandler`` subclass (``loadtest/peers/torchserve_handler.py``) with TorchServe's
  batching (``batchSize`` 64), ``maxBatchDelay`` (``--torchserve-delays``, 2 and 5 ms) and Python workers
  (``--torchserve-workers``, 1 and one per core) chosen by one run each at the top client count;
- Ray Serve: a deployment (``loadtest/peers/ray_app.py``) with ``@serve.batch(max_batch_size=64,
  batch_wait_timeout_s=0.002)``, ``max_ongoing_requests`` raised to 256, replicas (``--ray-replicas``,
  1 and one per core) chosen the same way.

A peer with several variants is started once with all of them (each is checked for parity), measured, and
restarted with the best alone, so nothing idle runs beside what is measured.

Every peer handler runs ``loadtest.peers.engine.SentimentEngine``: the project's ``SentimentCodec`` and an
ONNX Runtime session made by ``service.runtime.create_session`` (the service's ``session_options``: one
intra-op thread by default, ``session.disable_quant_qdq``), and answers the body ``/sentiment`` answers.
Before measuring, each server must give rnnserve's labels and scores (to 1e-6) on ``--parity`` dev
sentences. Then ``--rounds`` rounds of closed-loop runs (``loadtest/bench/http_load.py`` in its own
process, one 15-25-token dev sentence of ``loadtest/payloads.json`` per request) for every client count
and server, the servers' order rotated each round; medians are reported, with the server CPU per request
(user + system time of the server's whole process tree over the run).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loadtest.bench.http_load import run_load
from loadtest.bench.models import pick_model
from loadtest.bench.report import cpu_us_per_request, markdown_table, measured_with, replace_section
from loadtest.bench.server import REPO_ROOT
from loadtest.bench_sentiment import InProcessOrt
from loadtest.peers import install
from loadtest.peers.servers import (
    Server,
    post_text,
    running_ray,
    running_rnnserve,
    running_torchserve,
)
from service.config import Settings
from service.tasks.sentiment.codec import SentimentCodec

MARKER = "peers"
PAYLOADS = REPO_ROOT / "loadtest" / "payloads.json"
DEFAULT_MODELS = ("sentiment-lstm-x5", "sentiment-gru")
SERVERS = ("rnnserve", "torchserve", "ray")
NAMES = {"rnnserve": "rnnserve", "torchserve": "TorchServe", "ray": "Ray Serve"}
KEYS = ("rps", "p50_ms", "p95_ms", "p99_ms", "server_cpu_us")


# ---------------------------------------------------------------- pure parts


def select_texts(
    texts: Sequence[str], n_tokens: Callable[[str], int], lo: int = 15, hi: int = 25
) -> list[str]:
    return [t for t in texts if lo <= n_tokens(t) <= hi]


def n_tokens(codec: SentimentCodec, text: str) -> int:
    return len(codec.encode(text))


def compare_answers(reference: Sequence[dict], answers: Sequence[dict], tol: float = 1e-6) -> list[str]:
    """Differences between two lists of ``/sentiment`` bodies (one text each): labels must be equal and
    every score within ``tol``. Returns one line per difference (empty: parity)."""
    problems = []
    if len(reference) != len(answers):
        return [f"{len(answers)} answers for {len(reference)} texts"]
    for i, (ref, got) in enumerate(zip(reference, answers, strict=True)):
        try:
            (r,), (g,) = ref["results"], got["results"]
            if r["label"] != g["label"]:
                problems.append(f"text {i}: label {g['label']!r}, rnnserve {r['label']!r}")
            if set(r["scores"]) != set(g["scores"]):
                problems.append(f"text {i}: labels {sorted(g['scores'])}, rnnserve {sorted(r['scores'])}")
                continue
            worst = max(
                abs(r["score"] - g["score"]), *(abs(r["scores"][k] - g["scores"][k]) for k in r["scores"])
            )
            if worst > tol:
                problems.append(f"text {i}: scores differ by {worst:.3g} (> {tol:g})")
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"text {i}: not a /sentiment answer ({exc!r}): {str(got)[:200]}")
    return problems


def max_score_difference(reference: Sequence[dict], answers: Sequence[dict]) -> float:
    worst = 0.0
    for ref, got in zip(reference, answers, strict=True):
        r, g = ref["results"][0], got["results"][0]
        worst = max(worst, *(abs(r["scores"][k] - g["scores"][k]) for k in r["scores"]))
    return worst


def pick_best(trials: dict[Any, dict]) -> Any:
    """The variant with the most requests/s (ties: the lower p99)."""
    return max(trials, key=lambda k: (trials[k]["rps"], -trials[k]["p99_ms"]))


def rotated(items: Sequence[Any], k: int) -> list[Any]:
    k %= max(len(items), 1)
    return [*items[k:], *items[:k]]


def medians(runs: Sequence[dict]) -> dict[str, float]:
    out = {k: statistics.median(r[k] for r in runs) for k in KEYS}
    out["errors"] = sum(r["errors"] for r in runs)
    return out


def ratio_rows(results: dict, models: Sequence[str], clients: Sequence[int], peer: str) -> list[list]:
    """rnnserve / ``peer`` per model and client count: requests/s (> 1: rnnserve serves more),
    p50 and p99 latency and CPU per request (< 1: rnnserve is faster / cheaper)."""
    rows = []
    for model in models:
        for c in clients:
            a, b = results[model][c].get("rnnserve"), results[model][c].get(peer)
            if not a or not b:
                continue
            rows.append(
                [
                    f"`{model}`",
                    c,
                    f"{a['rps'] / b['rps']:.2f}" if b["rps"] else "-",
                    f"{a['p50_ms'] / b['p50_ms']:.2f}",
                    f"{a['p99_ms'] / b['p99_ms']:.2f}",
                    f"{a['server_cpu_us'] / b['server_cpu_us']:.2f}",
                ]
            )
    return rows


def result_rows(results: dict, models: Sequence[str], clients: Sequence[int], servers: Sequence[str]) -> list:
    rows = []
    for model in models:
        for c in clients:
            for s in servers:
                r = results[model][c].get(s)
                if r is None:
                    continue
                rows.append(
                    [
                        f"`{model}`",
                        c,
                        NAMES[s],
                        f"{r['rps']:,.0f}",
                        f"{r['p50_ms']:.2f}",
                        f"{r['p99_ms']:.2f}",
                        f"{r['server_cpu_us']:.0f}",
                        r["errors"],
                    ]
                )
    return rows


def in_process_ceiling(version_dir: Path, manifest, texts: list[str]) -> dict[int, dict[int, float]]:
    """The served graph alone in this process (inputs pre-encoded), sentences/s by intra-op threads (1 and
    2) and batch size: what no server of this model can exceed here."""
    return {
        threads: {
            b: round(r) for b, r in InProcessOrt(version_dir, manifest, texts, settings).sweep().items()
        }
        for threads, settings in (
            (1, Settings(ort_intra_op_threads=1)),
            (2, Settings(ort_intra_op_threads=2)),
        )
    }


def ceiling_sentence(ceiling: dict, results: dict, clients: int) -> str:
    threads, batch, best = max(
        ((int(t), int(b), r) for t, by_batch in ceiling.items() for b, r in by_batch.items()),
        key=lambda x: x[2],
    )
    by_clients = results.get(clients) or results.get(str(clients)) or {}
    served = (by_clients.get("rnnserve") or {}).get("rps")
    share = f"; rnnserve at {clients} clients: {served / best:.0%} of it" if served else ""
    return (
        "In-process ceiling (ONNX Runtime alone, inputs pre-encoded, best batch of 1-128 with 1 or 2 intra-op"
        f" threads): {best:,.0f} sentences/s at batch {batch} with {plural(threads, 'thread')}{share}."
    )


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}{'es' if word.endswith('s') else 's'}"


def fmt_load(load: Sequence[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in load)


def render(info: dict) -> str:
    """The section of ``docs/benchmarks.md`` between the ``peers`` markers."""
    models, clients, servers = info["models"], info["clients"], info["servers"]
    v = info["versions"]
    lines = [
        f"{info['texts']} dev sentences of 15-25 tokens (`loadtest/payloads.json`), one text per request"
        ' (`{"text": ...}`, the same body and answer for all three servers), closed-loop keep-alive'
        " clients in a separate process over 127.0.0.1.",
        f"Medians of {plural(info['rounds'], 'round')} of {info['seconds']:g} s"
        f" (after {info['warmup']:g} s warm-up) per row; each round runs every client count on every"
        " server, in an order rotated per round.",
        "",
        "Servers, all on ONNX Runtime " + v.get("onnxruntime", "?") + ", one intra-op thread per session"
        " (the service's `session_options`), the project's `SentimentCodec`:",
        "",
    ]
    for model in models:
        cfg = info["config"][model]
        parts = [f"`{model}` version {cfg['version']}:"]
        parts.append(f"rnnserve `python -m service` ({plural(cfg['rnnserve']['processes'], 'process')});")
        if "torchserve" in cfg:
            t = cfg["torchserve"]
            tuned = ", ".join(f"{k}: {r:,.0f} requests/s" for k, r in t.get("tuning", {}).items())
            parts.append(
                f"TorchServe {plural(t['workers'], 'worker')}, batch {t['batch_size']}, `max_batch_delay`"
                f" {t['max_batch_delay_ms']} ms"
                + (f" (the best at {max(clients)} clients of {tuned})" if tuned else "")
                + f", {t['processes']} processes;"
            )
        if "ray" in cfg:
            r = cfg["ray"]
            tuned = ", ".join(f"{k}: {x:,.0f} requests/s" for k, x in r.get("tuning", {}).items())
            parts.append(
                f"Ray Serve {plural(r['replicas'], 'replica')}, `@serve.batch` {r['max_batch_size']} /"
                f" {r['batch_wait_timeout_s'] * 1000:g} ms,"
                f" `max_ongoing_requests` {r['max_ongoing_requests']}"
                + (f" (the best at {max(clients)} clients of {tuned})" if tuned else "")
                + f", {r['processes']} processes."
            )
        if cfg["parity"]:
            parity = ", ".join(f"{NAMES[s]} {d:.1e}" for s, d in cfg["parity"].items())
            parts.append(
                f"Parity on {info['parity']} sentences: same labels, largest score difference from rnnserve:"
                f" {parity}."
            )
        idle = ", ".join(f"{NAMES[s]} {u:.1f}%" for s, u in cfg["idle_cpu_pct"].items())
        parts.append(f"Idle CPU (% of one core, while no server was loaded): {idle}.")
        if cfg.get("ceiling"):
            parts.append(ceiling_sentence(cfg["ceiling"], info["results"][model], max(clients)))
        lines += ["- " + " ".join(parts)]
    ray = f" Ray {v['ray']};" if "ray" in v else ""  # (not installed when only TorchServe ran)
    lines += [
        "",
        f"Versions: TorchServe {v.get('torchserve', '?')} (torch {v.get('torch', '?')},"
        f" {v.get('java', 'java ?')}),{ray} Python {v.get('python', '?')}.",
        f"Machine: {info['machine']}; load averages (1 / 5 / 15 min) {fmt_load(info['load_before'])}"
        f" before and {fmt_load(info['load_after'])} after the runs (other processes shared the cores"
        " when these exceed what the benchmark itself puts on them, about 2).",
        *measured_with(info["command"], info["date"]),
        "",
        markdown_table(
            [
                "model",
                "clients",
                "server",
                "requests/s",
                "p50 ms",
                "p99 ms",
                "server CPU µs/request",
                "errors",
            ],
            result_rows(info["results"], models, clients, servers),
        ),
    ]
    for peer in ("torchserve", "ray"):
        if peer not in servers:
            continue
        focus = sorted({min(clients), max(clients)})  # 1 and 64 by default
        lines += [
            "",
            f"rnnserve / {NAMES[peer]} at {' and '.join(map(str, focus))} client{'s' * (focus != [1])}"
            " (requests/s above 1 and latency or CPU below 1 favour rnnserve):",
            "",
            markdown_table(
                ["model", "clients", "requests/s", "p50", "p99", "CPU/request"],
                ratio_rows(info["results"], models, focus, peer),
            ),
        ]
    breakdown = info.get("breakdown")
    if breakdown:
        c = max(clients)
        parts = []
        for model in models:
            for s in servers:
                names = breakdown.get(model, {}).get(s)
                if names:
                    shown = ", ".join(f"{n} {us:.0f}" for n, us in names.items())
                    parts.append(f"`{model}` {NAMES[s]}: {shown}")
        lines += [
            "",
            f"Server CPU µs/request at {c} clients by process name (last round): " + "; ".join(parts) + ".",
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------- measuring


def measure(server: Server, bodies: Path, clients: int, seconds: float, warmup: float) -> dict:
    before = server.tree.by_name()
    r = run_load(server.url, bodies, clients, seconds, warmup)
    after = server.tree.by_name()
    delta = {n: after.get(n, 0.0) - before.get(n, 0.0) for n in after}
    r["server_cpu_us"] = cpu_us_per_request(sum(delta.values()), r["requests"], seconds, warmup)
    r["cpu_us_by_name"] = {
        n: cpu_us_per_request(d, r["requests"], seconds, warmup)
        for n, d in sorted(delta.items(), key=lambda kv: -kv[1])
        if d > 0
    }
    return r


def check_parity(server: Server, texts: Sequence[str], reference: Sequence[dict], tol: float) -> float:
    answers = [post_text(server.url, t) for t in texts]
    problems = compare_answers(reference, answers, tol)
    if problems:
        raise SystemExit(
            f"{server.label} ({server.url}) disagrees with rnnserve:\n  " + "\n  ".join(problems[:10])
        )
    return max_score_difference(reference, answers)


def idle_cpu_pct(servers: dict[str, Server], seconds: float) -> dict[str, float]:
    before = {k: s.cpu_seconds() for k, s in servers.items()}
    time.sleep(seconds)
    return {k: (s.cpu_seconds() - before[k]) / seconds * 100 for k, s in servers.items()}


def tune(
    servers: dict[Any, Server],
    label: Callable[[Any], str],
    bodies: Path,
    clients: int,
    seconds: float,
    warmup: float,
) -> tuple[Any, dict[str, float]]:
    """One run per variant at ``clients``; returns the best variant and each variant's requests/s."""
    trials = {}
    for key, server in servers.items():
        trials[key] = measure(server, bodies, clients, seconds, warmup)
        print(
            f"  tuning {server.label}: {trials[key]['rps']:.0f} req/s, p99 {trials[key]['p99_ms']:.1f} ms",
            flush=True,
        )
    best = pick_best(trials)
    return best, {label(k): trials[k]["rps"] for k in trials}


def start_tuned(
    start: Callable[[list], contextlib.AbstractContextManager[dict[Any, Server]]],
    variants: list,
    label: Callable[[Any], str],
    args: argparse.Namespace,
    bodies: Path,
    parity: Callable[[Server], float],
    stack: contextlib.ExitStack,
) -> tuple[Server, dict[str, float], float]:
    """Starts every variant, checks parity, keeps the best at the top client count (one run each), and
    restarts the peer with that variant alone, so that nothing idle runs beside it."""
    tuning: dict[str, float] = {}
    if len(variants) > 1:
        with start(variants) as servers:
            for s in servers.values():
                parity(s)
            best, tuning = tune(servers, label, bodies, max(args.clients), args.seconds, args.warmup)
        variants = [best]
    (server,) = stack.enter_context(start(variants)).values()
    return server, tuning, parity(server)


def main(argv: list[str] | None = None) -> None:
    cores = os.cpu_count() or 1
    counts = sorted({1, cores})  # workers / replicas tried by default: one, and one per core
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--repository", type=Path, default=Settings().model_repository)
    p.add_argument("--peers", nargs="*", choices=["torchserve", "ray"], default=["torchserve", "ray"])
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--parity", type=int, default=50, help="sentences checked against rnnserve first")
    p.add_argument("--tolerance", type=float, default=1e-6)
    p.add_argument("--batch-size", type=int, default=64, help="peers' batch size (the service's default)")
    p.add_argument("--torchserve-workers", type=int, nargs="+", default=counts)
    p.add_argument("--torchserve-delays", type=int, nargs="+", default=[2, 5], help="max_batch_delay ms")
    p.add_argument("--torchserve-queue", type=int, default=1000, help="job_queue_size")
    p.add_argument("--ray-replicas", type=int, nargs="+", default=counts)
    p.add_argument("--ray-batch-wait-ms", type=float, default=2.0)
    p.add_argument("--ray-max-ongoing", type=int, default=256, help="max_ongoing_requests per replica")
    p.add_argument("--ray-temp-dir", default="/tmp/ray-bench", help="short: Ray's AF_UNIX sockets live there")
    p.add_argument("--idle-seconds", type=float, default=3.0)
    p.add_argument("--cache", type=Path, default=install.DEFAULT_CACHE)
    p.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    p.add_argument("--no-doc", action="store_true", help="print the section, do not rewrite --doc")
    p.add_argument("--json", type=Path, default=REPO_ROOT / "runs" / "bench_peers.json")
    args = p.parse_args(argv)
    from training.machine import machine_description

    # A SIGTERM (e.g. run_benchmarks' time limit) unwinds the servers' context managers, which stop the
    # peers' process trees: they run in sessions of their own, out of reach of a signal to our group.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    for name in args.peers:
        install.install_peer(install.PEERS[name], args.cache)
    versions = {
        "python": sys.version.split()[0],
        "onnxruntime": install.pinned_serving_deps(["onnxruntime"])[0],
    }
    versions["onnxruntime"] = versions["onnxruntime"].split("==")[-1]
    if "torchserve" in args.peers:
        versions |= install.installed_versions(
            install.PEERS["torchserve"], args.cache, ["torchserve", "torch"]
        )
        versions["java"] = install.java_version() or "java ?"
    if "ray" in args.peers:
        versions |= install.installed_versions(install.PEERS["ray"], args.cache, ["ray"])
    servers_order = ["rnnserve", *args.peers]

    load_before = os.getloadavg()
    results: dict[str, dict[int, dict[str, dict]]] = {}
    config: dict[str, dict] = {}
    breakdown: dict[str, dict[str, dict[str, float]]] = {}
    runs_json: dict[str, Any] = {}
    n_texts = 0
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp_s:
        tmp = Path(tmp_s)
        for model in args.models:
            manifest, version, version_dir = pick_model(args.repository, "sentiment", model)
            codec = SentimentCodec.from_manifest(manifest, version_dir)
            payloads = json.loads(PAYLOADS.read_text(encoding="utf-8"))["sentiment"]
            texts = select_texts(payloads, functools.partial(n_tokens, codec))
            n_texts = len(texts)
            parity_texts = texts[: args.parity]
            bodies = tmp / f"bodies-{model}.jsonl"
            bodies.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
            workdir = tmp / model
            workdir.mkdir()
            print(f"== {model} v{version}: {len(texts)} sentences of 15-25 tokens", flush=True)
            cfg: dict[str, Any] = {"version": version, "parity": {}}
            cfg["ceiling"] = in_process_ceiling(version_dir, manifest, texts)
            print(f"  in-process ceiling (sentences/s by threads and batch): {cfg['ceiling']}", flush=True)
            with contextlib.ExitStack() as stack:
                servers: dict[str, Server] = {}
                servers["rnnserve"] = stack.enter_context(running_rnnserve(args.repository, model, workdir))
                cfg["rnnserve"] = dict(servers["rnnserve"].details)
                reference = [post_text(servers["rnnserve"].url, t) for t in parity_texts]

                parity = functools.partial(
                    check_parity, texts=parity_texts, reference=reference, tol=args.tolerance
                )
                if "torchserve" in args.peers:
                    server, tuning, diff = start_tuned(
                        functools.partial(
                            running_torchserve,
                            args.cache,
                            args.repository,
                            model,
                            workdir,
                            batch_size=args.batch_size,
                            job_queue_size=args.torchserve_queue,
                        ),
                        [(w, d) for w in args.torchserve_workers for d in args.torchserve_delays],
                        lambda k: f"{plural(k[0], 'worker')} / {k[1]} ms",
                        args,
                        bodies,
                        parity,
                        stack,
                    )
                    servers["torchserve"] = server
                    cfg["torchserve"] = {**server.details, "tuning": tuning}
                    cfg["parity"]["torchserve"] = diff
                if "ray" in args.peers:
                    server, tuning, diff = start_tuned(
                        functools.partial(
                            running_ray,
                            args.cache,
                            args.repository,
                            model,
                            workdir,
                            batch_size=args.batch_size,
                            batch_wait_s=args.ray_batch_wait_ms / 1000,
                            max_ongoing_requests=args.ray_max_ongoing,
                            temp_dir=args.ray_temp_dir,
                        ),
                        list(args.ray_replicas),
                        lambda k: plural(k, "replica"),
                        args,
                        bodies,
                        parity,
                        stack,
                    )
                    servers["ray"] = server
                    cfg["ray"] = {**server.details, "tuning": tuning}
                    cfg["parity"]["ray"] = diff
                for s in servers.values():
                    s.details["processes"] = s.tree.processes()
                cfg["rnnserve"]["processes"] = servers["rnnserve"].details["processes"]
                for k in args.peers:
                    cfg[k]["processes"] = servers[k].details["processes"]
                cfg["idle_cpu_pct"] = idle_cpu_pct(servers, args.idle_seconds)
                print(f"  parity: {cfg['parity']}; idle CPU %: {cfg['idle_cpu_pct']}", flush=True)

                runs: dict[int, dict[str, list[dict]]] = {
                    c: {s: [] for s in servers_order} for c in args.clients
                }
                for rnd in range(args.rounds):
                    for clients in args.clients:
                        for s in rotated(servers_order, rnd):
                            r = measure(servers[s], bodies, clients, args.seconds, args.warmup)
                            runs[clients][s].append(r)
                            print(
                                f"  [{rnd + 1}/{args.rounds}] {NAMES[s]:10} {clients:3} clients:"
                                f" {r['rps']:7.0f} req/s,"
                                f" p50 {r['p50_ms']:7.2f} ms, p99 {r['p99_ms']:7.2f} ms,"
                                f" CPU {r['server_cpu_us']:6.0f} µs/req, errors {r['errors']}",
                                flush=True,
                            )
            results[model] = {c: {s: medians(v) for s, v in per.items() if v} for c, per in runs.items()}
            breakdown[model] = {s: runs[max(args.clients)][s][-1]["cpu_us_by_name"] for s in servers_order}
            config[model] = cfg
            runs_json[model] = {str(c): per for c, per in runs.items()}

    shown_argv = argv if argv is not None else sys.argv[1:]
    info = {
        "models": args.models,
        "clients": args.clients,
        "servers": servers_order,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "texts": n_texts,
        "parity": args.parity,
        "versions": versions,
        "config": config,
        "results": results,
        "breakdown": breakdown,
        "machine": machine_description(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": ("python -m loadtest.bench_peers " + " ".join(shown_argv)).strip(),
    }
    section = render(info)
    if not args.no_doc:
        replace_section(args.doc, MARKER, section)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**info, "runs": runs_json}, indent=1, default=str))
    print(section)


if __name__ == "__main__":
    main()
