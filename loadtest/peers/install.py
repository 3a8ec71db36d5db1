"""Virtual environments of the peer servers under a cache folder, installed once (idempotent).

Each peer gets its own venv (``<cache>/<peer>-venv``) with the peer's packages plus the serving
dependencies the project's codec and session options need (``onnxruntime``, ``numpy``, ``sentencepiece``,
``pydantic``, ``pydantic-settings``), pinned to the versions of the calling interpreter so every server
runs the same ONNX Runtime build. The project itself is not installed: it is put on ``PYTHONPATH``.
A venv whose marker file lists the same requirements is reused as it is.

    python -m loadtest.peers.install [--cache DIR] [--peers torchserve ray]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path.home() / ".cache" / "rnnserve-peers"
MARKER = "rnnserve-peer.json"
# What the codec (service.tasks.sentiment.codec, service.manifest, service.text) and the session options
# (service.runtime -> service.config) import; FastAPI, uvicorn and prometheus-client are not needed.
SERVING_DEPS = ("onnxruntime", "numpy", "sentencepiece", "pydantic", "pydantic-settings")
# Debian's Java runtimes, most preferred first (TorchServe 0.12 needs Java 11 or newer).
JRE_CANDIDATES = ("openjdk-17-jre-headless", "openjdk-21-jre-headless", "openjdk-25-jre-headless")


@dataclass(frozen=True)
class PeerEnv:
    name: str
    packages: tuple[str, ...]
    needs_java: bool = False

    def venv(self, cache: Path) -> Path:
        return cache / f"{self.name}-venv"

    def python(self, cache: Path) -> Path:
        return self.venv(cache) / "bin" / "python"

    def bin(self, cache: Path, tool: str) -> Path:
        return self.venv(cache) / "bin" / tool


PEERS: dict[str, PeerEnv] = {
    # torch: TorchServe's BaseHandler imports it; the pinned version is the CPU wheel this machine keeps
    # locally (the bare name would pull a multi-GB CUDA build). The handler itself never calls torch.
    "torchserve": PeerEnv(
        "torchserve",
        ("torchserve==0.12.*", "torch-model-archiver==0.12.*", "pyyaml", "torch==2.13.0"),
        needs_java=True,
    ),
    "ray": PeerEnv("ray", ("ray[serve]==2.60.*",)),
}


def pinned_serving_deps(names: Sequence[str] = SERVING_DEPS) -> list[str]:
    """``name==version`` as installed in this interpreter (so the peers run the same ORT), else ``name``."""
    out = []
    for name in names:
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
    return out


def requirements(peer: PeerEnv) -> list[str]:
    return [*peer.packages, *pinned_serving_deps()]


def is_installed(venv: Path, reqs: Sequence[str]) -> bool:
    marker = venv / MARKER
    if not (venv / "bin" / "python").exists() or not marker.exists():
        return False
    try:
        return json.loads(marker.read_text())["requirements"] == list(reqs)
    except (ValueError, KeyError):
        return False


def _run(cmd: Sequence[str], **kw) -> None:
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def install_peer(peer: PeerEnv, cache: Path) -> Path:
    """Creates and fills the peer's venv unless an identical one is there; returns the venv folder."""
    venv, reqs = peer.venv(cache), requirements(peer)
    if is_installed(venv, reqs):
        print(f"{peer.name}: {venv} is installed ({', '.join(reqs)})", flush=True)
    else:
        cache.mkdir(parents=True, exist_ok=True)
        if not (venv / "bin" / "python").exists():
            # the base interpreter, not this venv's: a venv made from a venv links to the same base anyway
            _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv])
        _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--upgrade", "pip"])
        _run([venv / "bin" / "python", "-m", "pip", "install", *reqs])
        (venv / MARKER).write_text(json.dumps({"requirements": reqs}, indent=1))
    if peer.needs_java:
        ensure_java()
    return venv


def java_version() -> str | None:
    """The first line of ``java -version``, or None when there is no java on PATH."""
    java = shutil.which("java")
    if not java:
        return None
    done = subprocess.run([java, "-version"], capture_output=True, text=True)
    text = (done.stderr or done.stdout).strip()
    return text.splitlines()[0] if done.returncode == 0 and text else None


def pick_jre(policies: dict[str, str]) -> str | None:
    """The first of ``JRE_CANDIDATES`` whose ``apt-cache policy`` output has a candidate version."""
    for name in JRE_CANDIDATES:
        match = re.search(r"Candidate:\s*(\S+)", policies.get(name, ""))
        if match and match.group(1) != "(none)":
            return name
    return None


def ensure_java() -> str:
    found = java_version()
    if found:
        print(f"java: {found}", flush=True)
        return found
    _run(["apt-get", "update"])
    policies = {
        name: subprocess.run(["apt-cache", "policy", name], capture_output=True, text=True).stdout
        for name in JRE_CANDIDATES
    }
    jre = pick_jre(policies)
    if jre is None:
        raise SystemExit(f"no Java runtime for TorchServe: none of {JRE_CANDIDATES} is available from apt")
    _run(
        ["apt-get", "install", "-y", "--no-install-recommends", jre],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    found = java_version()
    if not found:
        raise SystemExit(f"installed {jre} but `java -version` still fails")
    return found


def installed_versions(peer: PeerEnv, cache: Path, dists: Sequence[str]) -> dict[str, str]:
    """Versions of ``dists`` in the peer's venv (for the report)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run(
        [str(peer.python(cache)), "-c", code, *dists], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--peers", nargs="+", choices=sorted(PEERS), default=sorted(PEERS))
    args = p.parse_args(argv)
    for name in args.peers:
        install_peer(PEERS[name], args.cache)


if __name__ == "__main__":
    main()
