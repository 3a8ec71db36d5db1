"""A real ``python -m service`` for tests that signal or kill it: started, awaited until ready."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from loadtest.bench.server import free_port


def start_service(
    env: dict[str, str], capture: bool = True, timeout: float = 90
) -> tuple[subprocess.Popen, str]:
    """``(process, base URL)`` of a ready server on a free loopback port; ``env`` adds ``RNNSERVE_*``
    settings; with ``capture`` its log is readable (text) from ``process.stdout``."""
    port = free_port()
    output = (
        {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
        if capture
        else {
            "stdout": subprocess.DEVNULL,
            "stderr": subprocess.DEVNULL,
        }
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "service"], env={**os.environ, "RNNSERVE_PORT": str(port), **env}, **output
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise AssertionError("server did not become ready")
        time.sleep(0.05)
