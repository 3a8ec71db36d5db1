"""Where a serving process spends its CPU under load: py-spy samples, summed by function and by stage.

    python -m loadtest.profile_path                          # sentiment-gru, 64 clients, one text each
    python -m loadtest.profile_path --overload               # x5, 128 clients, 32 texts: mostly refusals
    python -m loadtest.profile_path --model sentiment-lstm-x5 --seconds 20 --out runs/profile.json

Starts ``python -m service`` as one serving process (``RNNSERVE_WORKERS=1``, access log on, as users run
it), drives it from a separate load-generator process over 127.0.0.1 (``loadtest.bench.http_load``),
and records the process with py-spy (``pip install py-spy``; it needs ptrace, as root or with
``CAP_SYS_PTRACE``) for ``--seconds`` after a warm-up. Prints the share of samples per stage of the
request path (each sample counted once, in the first stage of ``STAGES`` its stack matches, innermost
frame first), then the functions with the most samples (inclusive and self). Shares are of all samples
of all threads, waiting ones included (an idle event loop samples as ``Runner.run``).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from loadtest.bench.http_load import run_load
from loadtest.bench.server import REPO_ROOT, running_service
from loadtest.bench_overload import sentiment_bodies

# (stage, pattern on one frame "function (file)"); a sample goes to the first stage any of its frames
# matches, looking from the innermost frame outwards, so a model call inside a route counts as the model.
STAGES: tuple[tuple[str, str], ...] = (
    ("model call (ONNX Runtime)", r"^Session\.run "),
    ("tokenize and encode", r"\(service/(text|tasks/\w+/codec)\.py\)"),
    ("error answer", r"^(public_message|error_body|error_response|service_error_response) "),
    ("access log and metrics", r"^(Logger\.\w+|Metrics\.observe_request|RequestContextMiddleware\._record) "),
    (
        "request body and validation",
        r"^(read_json|Request\.body|Request\.stream|BaseModel\.model_validate\w*) ",
    ),
    ("routing", r"^(_IncludedRouter\.\w+|_EffectiveRouteContext\.matches|\w*Route\w*\.matches) "),
    ("response encoding", r"^(JSONResponse\.\w+|Response\.__init__|dumps) "),
    ("batching and futures", r"\(service/(batching|scheduler|serving)\.py\)|^_chain_future"),
    ("service request handling", r"\(service/(api/|middleware|admission|auth|repository|tasks/)"),
    ("framework (FastAPI, Starlette)", r"\((fastapi|starlette)/"),
    ("HTTP (uvicorn)", r"\(uvicorn/"),
    ("waiting (idle threads, event loop select)", r"^(Runner\.run|Condition\.wait|Queue\.get|Event\.wait) "),
)
_COMPILED = tuple((stage, re.compile(pattern)) for stage, pattern in STAGES)


def _frames(stack: str) -> list[str]:
    """py-spy raw frames without line numbers, outermost first (the first entry is the thread)."""
    return [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")[1:]]


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, pattern in _COMPILED:
            if pattern.search(frame):
                return stage
    return "other"


def summarize(raw: str, top: int = 25) -> dict:
    """Shares (percent of all samples) by stage, and the top functions inclusive and self."""
    total = 0
    stages: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), _frames(stack)
        total += n
        stages[stage_of(frames)] += n
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            own[frames[-1]] += n
    if not total:
        raise ValueError("no samples")

    def shares(counter: collections.Counter[str], k: int | None = None) -> dict[str, float]:
        return {name: round(100 * n / total, 1) for name, n in counter.most_common(k)}

    return {
        "samples": total,
        "stages": shares(stages),
        "inclusive": shares(inclusive, top),
        "self": shares(own, top),
    }


def record(pid: int, seconds: float, out: Path, rate: int = 200) -> str:
    beside = Path(sys.executable).parent / "py-spy"  # the venv's, when it is not on PATH
    py_spy = str(beside) if beside.is_file() else shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    cmd = [py_spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", str(rate), "-f", "raw"]
    cmd += ["-o", str(out), "--nonblocking"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 60)
    return out.read_text(encoding="utf-8")


def profile(args: argparse.Namespace, tmp: Path) -> dict:
    bodies = tmp / "bodies.jsonl"
    if args.overload:
        lines = [json.dumps(b) for b in sentiment_bodies()]
    else:
        payloads = json.loads((REPO_ROOT / "loadtest" / "payloads.json").read_text(encoding="utf-8"))
        lines = [json.dumps({"text": t}) for t in payloads["sentiment"]]
    bodies.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {
        "RNNSERVE_WORKERS": "1",
        "RNNSERVE_ACCESS_LOG": "true",
        "RNNSERVE_DEFAULT_MODELS": json.dumps({"sentiment": args.model}),
    }
    result: dict = {}
    with running_service(env, log_path=tmp / "server.log") as base:
        load_s = args.warmup + args.seconds + 2
        load = threading.Thread(
            target=lambda: result.update(run_load(f"{base}/sentiment", bodies, args.clients, load_s, 0.0))
        )
        load.start()
        threading.Event().wait(args.warmup)
        raw = record(base.pid, args.seconds, tmp / "profile.txt")
        load.join()
    summary = summarize(raw, args.top)
    summary["load"] = {k: result.get(k) for k in ("rps", "p50_ms", "p99_ms", "statuses")}
    summary["setup"] = {
        "model": args.model,
        "clients": args.clients,
        "texts_per_request": 32 if args.overload else 1,
        "seconds": args.seconds,
    }
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", default=None, help="default: sentiment-gru, or sentiment-lstm-x5 with --overload"
    )
    p.add_argument("--clients", type=int, default=None, help="default: 64, or 128 with --overload")
    p.add_argument("--overload", action="store_true", help="32 texts per request, far past capacity")
    p.add_argument("--seconds", type=float, default=15.0, help="recorded seconds")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "profile_path.json")
    args = p.parse_args(argv)
    args.model = args.model or ("sentiment-lstm-x5" if args.overload else "sentiment-gru")
    args.clients = args.clients or (128 if args.overload else 64)
    with tempfile.TemporaryDirectory() as tmp:
        summary = profile(args, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    load = summary["load"]
    print(f"{summary['setup']}; {summary['samples']} samples; load: {load}")
    for title in ("stages", "inclusive", "self"):
        print(f"\n{title} (% of samples)")
        for name, share in summary[title].items():
            print(f"  {share:5.1f}  {name}")


if __name__ == "__main__":
    main()
