"""``python -m service``: uvicorn on the settings' host and port (what ``make serve`` runs).

``RNNSERVE_WORKERS`` serving processes share the port (default: one per core). With more than one,
uvicorn's supervisor starts them, replaces one that dies, and on SIGTERM stops them all, each draining
its own queues first. On Linux each listens on a socket of its own (``service.listener``). A shared run
folder holds their metrics (prometheus_client's multiprocess mode) and the state each publishes for
``/ready`` and ``/models`` (``service.workers``).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import tempfile
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from service import listener
from service.config import Settings, get_settings
from service.logs import configure_logging
from service.metrics import MULTIPROCESS_ENV
from service.read_hold import HoldingHttpToolsProtocol
from service.workers import WORKERS_DIR_ENV

log = logging.getLogger(__name__)


def uvicorn_options(settings: Settings, workers: int) -> dict[str, Any]:
    """The options ``python -m service`` gives uvicorn."""
    options: dict[str, Any] = {
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.shutdown_timeout_s),
        "workers": workers,
    }
    if settings.refused_connection_hold_s > 0:
        # The held connection must outlive the hold: uvicorn closes a connection idle for the keep-alive
        # timeout (5 s by default), and a held one reads nothing.
        options["http"] = HoldingHttpToolsProtocol
        options["timeout_keep_alive"] = max(5, math.ceil(settings.refused_connection_hold_s) + 5)
    return options


def _run(settings: Settings, workers: int) -> None:
    options = uvicorn_options(settings, workers)
    if workers == 1:
        uvicorn.run("service.main:create_app", **options)
    elif settings.reuse_port and listener.supported():
        config = uvicorn.Config("service.main:create_worker_app", **options)
        try:
            sock = listener.ReusePortListener.for_address(settings.host, settings.port)
        except OSError as exc:
            log.error("cannot bind %s:%d: %s", settings.host, settings.port, exc)
            sys.exit(STARTUP_FAILURE)
        host, port = sock.getsockname()[:2]
        log.info(
            "listening on http://%s:%d: %d serving processes, a socket each (SO_REUSEPORT)",
            host,
            port,
            workers,
        )
        if listener.queued_connections_migrate() is False:
            log.info(
                "net.ipv4.tcp_migrate_req is 0: the connections queued on a serving process that dies are"
                " reset; at 1 the kernel hands them to another process (docs/service.md, Process model)"
            )
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.run("service.main:create_worker_app", **options)


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    workers = settings.process_count
    if workers == 1:
        _run(settings, 1)
        return
    run_dir = tempfile.mkdtemp(prefix="rnnserve-")
    metrics_dir, workers_dir = os.path.join(run_dir, "metrics"), os.path.join(run_dir, "workers")
    os.mkdir(metrics_dir)
    os.mkdir(workers_dir)
    os.environ[MULTIPROCESS_ENV] = metrics_dir  # inherited by the serving processes
    os.environ[WORKERS_DIR_ENV] = workers_dir
    try:
        _run(settings, workers)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
