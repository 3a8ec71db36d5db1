"""Container health probe: exit 0 when the service answers 200 on its health path, 1 otherwise.

Standard library only (slim images have no curl). The port comes from ``RNNSERVE_PORT`` like the
service's own; the path defaults to ``/health`` (liveness), ``/ready`` is the readiness one.

    python deploy/healthcheck.py [PATH]
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = "8000"
TIMEOUT_S = 3.0


def probe(url: str, timeout_s: float = TIMEOUT_S) -> bool:
    """True when ``url`` answers HTTP 200 within ``timeout_s``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/health"
    port = os.environ.get("RNNSERVE_PORT", DEFAULT_PORT)
    return 0 if probe(f"http://127.0.0.1:{port}{path}") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
