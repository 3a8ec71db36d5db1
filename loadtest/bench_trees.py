"""Before and after a code change: the same load on ``python -m service`` run from several source trees.

    git worktree add /tmp/before <commit>
    python -m loadtest.bench_trees --tree before=/tmp/before --tree after=.      # prints the table
    python -m loadtest.bench_trees --tree before=/tmp/before --tree after=. --env RNNSERVE_ACCESS_LOG=true
    python -m loadtest.bench_trees --tree one=. --tree two=. --tree-env two:RNNSERVE_WORKERS=1  # settings

Each tree's service is started once (with this tree's ``models/`` and the same settings), then every
client count runs on every tree, ``--rounds`` times, the tree order reversed each round, with the load
generator of ``bench_http_floor``; the table gives medians, server CPU per request and the load
generator's. ``--doc``/``--marker`` write it into a docs section as well.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadtest.bench.report import measured_with, replace_section
from loadtest.bench.server import REPO_ROOT, start_service, stop_service, wait_ready
from loadtest.bench_http_floor import PAYLOADS, alternate, table
from training.machine import machine_description


def parse_tree(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name or not (Path(path) / "service" / "__main__.py").is_file():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH to a checkout of this project, got {value!r}")
    return name, Path(path).resolve()


def parse_tree_env(value: str) -> tuple[str, str, str]:
    name, sep, setting = value.partition(":")
    key, eq, setting_value = setting.partition("=")
    if not sep or not eq or not key.startswith("RNNSERVE_"):
        raise argparse.ArgumentTypeError(f"expected NAME:RNNSERVE_KEY=VALUE, got {value!r}")
    return name, key, setting_value


def commit_of(tree: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip()[:72] or "(not a git checkout)"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=parse_tree, action="append", required=True, help="NAME=PATH (repeat)")
    p.add_argument("--model", default="sentiment-gru", help="the default sentiment model of every tree")
    p.add_argument("--clients", type=int, nargs="+", default=[64])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--env", action="append", default=[], help="RNNSERVE_*=value for every tree (repeatable)")
    p.add_argument(
        "--tree-env",
        type=parse_tree_env,
        action="append",
        default=[],
        help="NAME:RNNSERVE_*=value for one tree (repeatable): the same tree under other settings",
    )
    p.add_argument("--doc", type=Path, help="write the table into this docs file, in section --marker")
    p.add_argument("--marker", default="bench-trees")
    args = p.parse_args(argv)
    trees = dict(args.tree)
    tree_env: dict[str, dict[str, str]] = {name: {} for name in trees}
    for name, key, value in args.tree_env:
        if name not in trees:
            p.error(f"--tree-env names {name!r}, which is not a --tree")
        tree_env[name][key] = value
    command = shlex.join(["python", "-m", "loadtest.bench_trees", *(sys.argv[1:] if argv is None else argv)])
    texts = json.loads(PAYLOADS.read_text(encoding="utf-8"))["sentiment"]
    env = {
        "RNNSERVE_MODEL_REPOSITORY": str(REPO_ROOT / "models"),
        "RNNSERVE_DEFAULT_MODELS": json.dumps({"sentiment": args.model}),
        **dict(item.split("=", 1) for item in args.env),
    }
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        bodies = Path(tmp) / "bodies.jsonl"
        bodies.write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n", encoding="utf-8")
        services = {}
        for name, tree in trees.items():
            service = start_service(env | tree_env[name], Path(tmp) / f"{name}.log", tree=tree)
            stack.callback(stop_service, service)
            wait_ready(service)
            services[name] = service
        runs = alternate(services, bodies, args.rounds, args.clients, args.seconds, args.warmup)
    load_after = os.getloadavg()
    settings = _settings({k: v for k, v in env.items() if k != "RNNSERVE_MODEL_REPOSITORY"})
    text = "\n".join(
        [
            f"`{args.model}`, one dev sentence per request (`loadtest/payloads.json`), closed-loop keep-alive"
            f" clients over 127.0.0.1; medians of {args.rounds} alternating rounds of {args.seconds:g} s"
            f" after {args.warmup:g} s warm-up. Settings: {settings}.",
            "Trees: "
            + "; ".join(
                f"{name}: `{commit_of(tree)}`"
                + (f" with {_settings(tree_env[name])}" if tree_env[name] else "")
                for name, tree in trees.items()
            )
            + ".",
            f"Machine: {machine_description()}; load averages (1 min) {load_before[0]:.2f} before and"
            f" {load_after[0]:.2f} after.",
            *measured_with(command, started),
            "",
            table(runs),
        ]
    )
    if args.doc:
        replace_section(args.doc, args.marker, text)
    print(text)


def _settings(env: dict[str, str]) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in env.items())


if __name__ == "__main__":
    main()
