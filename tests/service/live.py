"""A real ``python -m service`` for tests that signal or kill it: started, awaited until ready."""

from __future__ import annotations

import subprocess

from loadtest.bench.server import start_service as start
from loadtest.bench.server import wait_ready


def start_service(
    env: dict[str, str], capture: bool = True, timeout: float = 90
) -> tuple[subprocess.Popen, str]:
    """``(process, base URL)`` of a ready server on a free loopback port (``loadtest.bench.server``);
    ``env`` adds ``RNNSERVE_*`` settings; with ``capture`` its log is readable (text) from
    ``process.stdout``."""
    service = start(env, capture=capture)
    try:
        wait_ready(service, timeout)
    except RuntimeError as error:
        service.process.kill()
        raise AssertionError(f"server did not become ready: {error}") from None
    return service.process, str(service)
