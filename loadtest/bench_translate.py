"""Translation serving benchmark: sentences/s in-process (the service's model class) and over HTTP.

    python -m loadtest.bench_translate            # ~1.5 minutes; rewrites its section of docs/benchmarks.md

Serves the repository's default translation model (or ``--models``/``--model``) on test2016 source sentences
(Multi30k, English), one sentence per request:

* in-process: the service's ``TranslationModel.predict_batch`` (codec, ONNX Runtime sessions with the
  service's settings, numpy greedy/beam search; no HTTP, no batcher), one sentence per call and ``--batch``
  sentences per call (file order, as a full queue would hand them over), beam 1 and beam 5;
* over HTTP: ``POST /translate`` against ``python -m service`` on 127.0.0.1 from a separate closed-loop
  load-generator process (``loadtest.bench.http_load``) with 1 and ``--clients`` clients, beam 1 and 5.

Bounded: every in-process scenario stops after ``--sentences`` sentences or ``--duration`` seconds, whichever
comes first; every HTTP scenario runs ``--warmup`` + ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.bench.http_load import run_load
from loadtest.bench.models import single_model_repository
from loadtest.bench.report import markdown_table, measured_with, replace_section
from loadtest.bench.server import REPO_ROOT, running_service
from training.machine import machine_description

MARKER = "translation-serving"
BEAMS = (1, 5)
HEADING = "## Translation serving (`POST /translate`)"


def default_data_dir() -> Path:
    return Path(os.environ.get("RNNSERVE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=REPO_ROOT / "models")
    p.add_argument("--model", default=None, help="default: the repository's default translation model")
    p.add_argument("--data", type=Path, default=default_data_dir() / "translation" / "test2016.en")
    p.add_argument("--sentences", type=int, default=200, help="sentences per in-process scenario (at most)")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per scenario (at most, in-process)")
    p.add_argument("--warmup", type=float, default=2.0, help="HTTP seconds before measuring")
    p.add_argument("--batch", type=int, default=32, help="sentences per in-process call when batched")
    p.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    p.add_argument("--skip-http", action="store_true", help="in-process scenarios only")
    p.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    p.add_argument("--marker", default=MARKER, help="the docs section to rewrite")
    p.add_argument("--json", type=Path, default=REPO_ROOT / "runs" / "bench_translate.json")
    p.add_argument("--env", action="append", default=[], help="extra RNNSERVE_*=value (repeatable)")
    args = p.parse_args(argv)
    if args.sentences < 1 or args.batch < 1 or args.clients < 1 or args.duration <= 0:
        p.error("--sentences, --batch, --clients and --duration must be positive")
    return args


def load_sentences(path: Path) -> list[str]:
    sentences = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not sentences:
        raise SystemExit(f"no sentences in {path}")
    return sentences


# --- the model, as the service builds it ------------------------------------------------------------------
def load_model(models: Path, name: str | None):
    """(model name, version, TranslationModel) built like the service's repository builds it."""
    from loadtest.bench.models import pick_model
    from service.config import Settings
    from service.runtime import create_session
    from service.tasks.translation.plugin import PLUGIN

    manifest, version, version_dir = pick_model(models, "translation", name)
    settings = Settings(model_repository=models)
    sessions = {k: create_session(version_dir / s.file, s, settings) for k, s in manifest.graphs.items()}
    model = PLUGIN.build(manifest, version, version_dir, sessions, settings)
    model.warmup()
    return manifest.name, version, model


def in_process_rate(
    model, sentences: Sequence[str], batch: int, beam: int, limit: int, seconds: float
) -> dict[str, Any]:
    """Sentences/s of ``predict_batch`` on up to ``limit`` sentences in calls of ``batch``, stopping after
    ``seconds``; also the mean and p50/p99 latency of one call."""
    from service.tasks.translation.search import SearchParams

    params = SearchParams(beam_size=beam)
    done, calls = 0, []
    started = time.perf_counter()
    while done < limit and time.perf_counter() - started < seconds:
        chunk = [sentences[(done + i) % len(sentences)] for i in range(min(batch, limit - done))]
        t0 = time.perf_counter()
        for result in model.predict_batch([(text, params) for text in chunk]):
            if isinstance(result, BaseException):
                raise result
        calls.append(time.perf_counter() - t0)
        done += len(chunk)
    elapsed = time.perf_counter() - started
    ms = sorted(c * 1000 for c in calls)
    return {
        "batch": batch,
        "beam": beam,
        "sentences": done,
        "seconds": elapsed,
        "sentences_per_s": done / elapsed,
        "call_p50_ms": statistics.median(ms),
        "call_p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
    }


# --- over HTTP ---------------------------------------------------------------------------------------------
def http_bodies(sentences: Sequence[str], beam: int) -> str:
    return "".join(json.dumps({"text": s, "beam_size": beam}) + "\n" for s in sentences)


def http_rate(base: str, bodies: Path, clients: int, duration: float, warmup: float) -> dict[str, Any]:
    return run_load(f"{base}/translate", bodies, clients, duration, warmup)


# --- the report --------------------------------------------------------------------------------------------


def format_report(results: dict[str, Any]) -> str:
    """The markdown section: setup, command, then one table per path."""
    rows = [
        [
            "1 sentence per call" if r["batch"] == 1 else f"{r['batch']} sentences per call",
            r["beam"],
            r["sentences"],
            f"{r['sentences_per_s']:,.1f}",
            f"{r['call_p50_ms']:,.1f}",
            f"{r['call_p99_ms']:,.1f}",
        ]
        for r in results["in_process"]
    ]
    lines = [
        f"Model `{results['model']}` version {results['version']} ({results['graphs']}); "
        f"{results['sentence_count']} test2016 source sentences (mean {results['mean_tokens']:.1f} "
        "source subwords), decoding with the service's defaults besides the beam (max length 100, "
        "length penalty 1.0).",
        f"Machine: {results['machine']}; 1-minute load average {results['load_before']:.2f} before and "
        f"{results['load_after']:.2f} after the runs (the cores were shared with other work when these "
        "exceed what the benchmark itself puts on them, about 2).",
        *measured_with(results["command"], results["date"]),
        "",
        "In-process, the service's `TranslationModel.predict_batch` (ONNX Runtime with the service's session "
        "settings, numpy search; no HTTP, no batcher), sentences in file order, at most "
        f"{results['limit_sentences']} sentences or {results['duration_s']:g} s per row:",
        "",
        markdown_table(
            ["calls", "beam", "sentences", "sentences/s", "p50 ms per call", "p99 ms per call"], rows
        ),
    ]
    if results.get("http"):
        http_rows = [
            [
                r["concurrency"],
                r["beam"],
                r["requests"],
                f"{r['rps']:,.1f}",
                f"{r['p50_ms']:,.1f}",
                f"{r['p99_ms']:,.1f}",
                r["errors"],
            ]
            for r in results["http"]
        ]
        lines += [
            "",
            f"Over HTTP, `POST /translate` with one sentence per request, closed-loop clients in a separate "
            f"process over 127.0.0.1, {results['duration_s']:g} s measured after {results['warmup_s']:g} s "
            f"of warm-up per row; server settings: {results['server_env']}:",
            "",
            markdown_table(
                ["clients", "beam", "requests", "sentences/s", "p50 ms", "p99 ms", "errors"], http_rows
            ),
        ]
    return "\n".join(lines)


def write_section(doc: Path, marker: str, section: str) -> None:
    """Rewrites the marked section; a first run appends it under its own heading."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    if f"<!-- {marker}:start -->" not in text:
        doc.write_text(text.rstrip() + ("\n\n" if text.strip() else "") + HEADING + "\n", encoding="utf-8")
    replace_section(doc, marker, section)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ.update(dict(kv.split("=", 1) for kv in args.env))  # Settings() and the server read them
    name, version, model = load_model(args.models, args.model)
    sentences = load_sentences(args.data)
    mean_tokens = statistics.mean(len(model.codec.encode_source(s)) for s in sentences)
    load_before = os.getloadavg()[0]
    print(f"model {name} v{version}; {len(sentences)} sentences, mean {mean_tokens:.1f} subwords", flush=True)
    in_process = []
    for beam in BEAMS:
        for batch in (1, args.batch):
            r = in_process_rate(model, sentences, batch, beam, args.sentences, args.duration)
            print(f"in-process batch {batch} beam {beam}: {r['sentences_per_s']:.1f} sentences/s", flush=True)
            in_process.append(r)
    http = []
    if not args.skip_http:
        env = {"RNNSERVE_DEFAULT_MODELS": json.dumps({"translation": name}), "RNNSERVE_DEVICE": "cpu"}
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            env["RNNSERVE_MODEL_REPOSITORY"] = str(single_model_repository(args.models, name, tmp))
            with running_service(env, log_path=tmp / "server.log") as base:
                for beam in BEAMS:
                    bodies = tmp / f"beam{beam}.jsonl"
                    bodies.write_text(http_bodies(sentences, beam), encoding="utf-8")
                    for clients in (1, args.clients):
                        r = {"beam": beam, **http_rate(base, bodies, clients, args.duration, args.warmup)}
                        print(
                            f"HTTP {clients} clients beam {beam}: {r['rps']:.1f} sentences/s, "
                            f"p50 {r['p50_ms']:.0f} ms, errors {r['errors']}",
                            flush=True,
                        )
                        http.append(r)
    graphs = model.manifest.quantization
    shipped = graphs.metrics.get("shipped", {}).get("graph", "fp32") if graphs else "fp32"
    results = {
        "model": name,
        "version": version,
        "graphs": f"{shipped} graphs, {model.manifest.size_bytes / 1e6:.1f} MB",
        "sentence_count": len(sentences),
        "mean_tokens": mean_tokens,
        "machine": machine_description(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m loadtest.bench_translate "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "limit_sentences": args.sentences,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "server_env": " ".join(args.env) or "defaults",
        "in_process": in_process,
        "http": http,
    }
    section = format_report(results)
    write_section(args.doc, args.marker, section)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(section)
    return results


if __name__ == "__main__":
    main()
