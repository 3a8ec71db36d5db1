"""Starting, probing and stopping the three servers as process trees, all speaking the same protocol.

Every server answers ``POST <url>`` with ``{"text": ...}`` by the body ``POST /sentiment`` answers
(``{"model": ..., "results": [{"label", "score", "scores"}]}``), so one load generator, one body file and
one parity check serve all of them. CPU time is that of the server's whole process tree
(``loadtest.bench.procs``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.bench.procs import ProcessTree, descendants, read_all, start_time
from loadtest.bench.server import REPO_ROOT, free_port, running_service
from loadtest.peers.install import PEERS


@dataclass
class Server:
    """A running server: its label, the URL one text is POSTed to, and the process tree it runs as."""

    label: str
    url: str
    tree: ProcessTree
    details: dict = field(default_factory=dict)  # what the report says about its configuration

    def cpu_seconds(self) -> float:
        return self.tree.cpu_seconds()


def post_text(url: str, text: str, timeout: float = 10.0) -> dict:
    data = json.dumps({"text": text}).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def wait_answering(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    """Until ``url`` answers a text with 200 (the model is loaded and warm), or the process ends."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            post_text(url, "good .", timeout=5)
            return
        except (OSError, urllib.error.HTTPError, ValueError):
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode} (log: {log})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: no answer within {timeout:.0f} s (log: {log})")
        time.sleep(0.5)


def stop_tree(proc: subprocess.Popen, group: bool, grace_s: float = 30.0, linger_s: float = 10.0) -> None:
    """SIGTERM to the root (or its whole process group), wait ``grace_s`` for it and then up to
    ``linger_s`` for its descendants, then SIGKILL whatever of the tree is left.

    Only the processes this benchmark started are signalled: the tree below ``proc``, read before, each
    checked by its start time so that a pid reused meanwhile is left alone."""
    tree = {p: start_time(p) for p in descendants(read_all(), [proc.pid]) - {proc.pid}}
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    deadline = time.monotonic() + linger_s
    while time.monotonic() < deadline and any(start_time(p) == t for p, t in tree.items()):
        time.sleep(0.2)
    for pid, started in tree.items():
        if started is not None and start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def peer_env(cache: Path) -> dict[str, str]:
    """The caller's environment (``RNNSERVE_*`` included: the engine's ``Settings()`` reads it) with the
    repository on ``PYTHONPATH``."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


# ---------------------------------------------------------------- rnnserve


@contextmanager
def running_rnnserve(repository: Path, model: str, workdir: Path) -> Iterator[Server]:
    """``python -m service`` as users run it: defaults, ``RNNSERVE_*`` from the caller, access log off."""
    env = {
        "RNNSERVE_MODEL_REPOSITORY": str(repository),
        "RNNSERVE_DEFAULT_MODELS": json.dumps({"sentiment": model}),
    }
    with running_service(env, log_path=workdir / "rnnserve.log") as base:
        tree = ProcessTree(base.pid)
        yield Server("rnnserve", f"{base}/sentiment", tree, {"processes": tree.processes()})


# ---------------------------------------------------------------- TorchServe


def torchserve_properties(
    ports: dict[str, int], model_store: Path, workers: int, job_queue_size: int, log4j: Path
) -> str:
    """``config.properties``: everything on 127.0.0.1, the archives in ``model_store`` loaded at start."""
    lines = {
        "inference_address": f"http://127.0.0.1:{ports['inference']}",
        "management_address": f"http://127.0.0.1:{ports['management']}",
        "metrics_address": f"http://127.0.0.1:{ports['metrics']}",
        "grpc_inference_address": "127.0.0.1",
        "grpc_management_address": "127.0.0.1",
        "grpc_inference_port": ports["grpc_inference"],
        "grpc_management_port": ports["grpc_management"],
        "model_store": model_store,
        "load_models": "all",
        "default_workers_per_model": workers,
        "job_queue_size": job_queue_size,
        "disable_token_authorization": "true",
        "enable_model_api": "false",
        # no periodic system-metrics subprocess; request metrics to the in-memory Prometheus registry
        # (as the service keeps them) instead of log files
        "disable_system_metrics": "true",
        "metrics_mode": "prometheus",
        "async_logging": "true",
        "install_py_dep_per_model": "false",
        "vmargs": f"-Dlog4j.configurationFile=file://{log4j}",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def torchserve_model_config(workers: int, batch_size: int, max_batch_delay_ms: int) -> str:
    """The archive's ``model-config.yaml`` (YAML by hand: flat scalars only)."""
    return (
        f"minWorkers: {workers}\n"
        f"maxWorkers: {workers}\n"
        f"batchSize: {batch_size}\n"
        f"maxBatchDelay: {max_batch_delay_ms}\n"
        "responseTimeout: 120\n"
    )


# TorchServe's default log4j2.xml, less the per-request access log (the service runs with its access log
# off too) and the debug level of the frontend's own logger; warnings and errors are still written.
TORCHSERVE_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
  <Appenders>
    <File name="ts_log" fileName="${env:LOG_LOCATION:-logs}/ts_log.log">
      <PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/>
    </File>
    <File name="model_log" fileName="${env:LOG_LOCATION:-logs}/model_log.log">
      <PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="ACCESS_LOG" level="off"/>
    <Logger name="TS_METRICS" level="off"/>
    <Logger name="MODEL_METRICS" level="off"/>
    <Logger name="io.netty" level="error"/>
    <Logger name="org.apache" level="off"/>
    <Logger name="MODEL_LOG" level="warn" additivity="false"><AppenderRef ref="model_log"/></Logger>
    <Logger name="org.pytorch.serve" level="warn" additivity="false"><AppenderRef ref="ts_log"/></Logger>
    <Root level="warn"><AppenderRef ref="ts_log"/></Root>
  </Loggers>
</Configuration>
"""


def torchserve_variant(model: str, workers: int, delay_ms: int) -> str:
    """The TorchServe model name of one (workers, batch delay) variant of ``model``."""
    return f"{model}-w{workers}-d{delay_ms}"


def build_archives(
    cache: Path,
    workdir: Path,
    repository: Path,
    model: str,
    variants: list[tuple[int, int]],
    batch_size: int,
) -> Path:
    """One ``.mar`` per (workers, batch delay) variant (same handler, same model files) in
    ``workdir/model-store``."""
    archiver = PEERS["torchserve"].bin(cache, "torch-model-archiver")
    store = workdir / "model-store"
    store.mkdir(parents=True, exist_ok=True)
    handler = Path(__file__).with_name("torchserve_handler.py")
    for workers, delay in variants:
        name = torchserve_variant(model, workers, delay)
        src = workdir / f"src-{name}"
        src.mkdir(exist_ok=True)
        (src / "peer.json").write_text(json.dumps({"repository": str(repository.resolve()), "model": model}))
        (src / "model-config.yaml").write_text(torchserve_model_config(workers, batch_size, delay))
        cmd = [
            str(archiver),
            "--model-name",
            name,
            "--version",
            "1.0",
            "--handler",
            str(handler),
            "--extra-files",
            str(src / "peer.json"),
            "--config-file",
            str(src / "model-config.yaml"),
            "--export-path",
            str(store),
            "--force",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, env=peer_env(cache))
        if done.returncode:
            raise RuntimeError(f"torch-model-archiver failed for {name}: {done.stderr.strip()[-2000:]}")
    return store


@contextmanager
def running_torchserve(
    cache: Path,
    repository: Path,
    model: str,
    workdir: Path,
    variants: list[tuple[int, int]],
    batch_size: int = 64,
    job_queue_size: int = 1000,
    timeout: float = 300,
) -> Iterator[dict[tuple[int, int], Server]]:
    """TorchServe (``torchserve --start --foreground``) serving one model per (workers, batch delay ms)
    variant of ``model``; yields ``{(workers, delay_ms): Server}``, all sharing one process tree
    (launcher, Java frontend, Python workers)."""
    workdir = workdir / "torchserve"
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "logs").mkdir(parents=True)
    (workdir / "tmp").mkdir()
    store = build_archives(cache, workdir, repository, model, variants, batch_size)
    ports = {
        k: free_port() for k in ("inference", "management", "metrics", "grpc_inference", "grpc_management")
    }
    log4j = workdir / "log4j2.xml"
    log4j.write_text(TORCHSERVE_LOG4J2)
    config = workdir / "config.properties"
    default_workers = variants[0][0]
    config.write_text(torchserve_properties(ports, store, default_workers, job_queue_size, log4j))
    env = {
        **peer_env(cache),
        "LOG_LOCATION": str(workdir / "logs"),
        "METRICS_LOCATION": str(workdir / "logs"),
        # TorchServe keeps its pid file in the temp dir: a folder of our own, so it never meets another
        "TMPDIR": str(workdir / "tmp"),
        "TEMP": str(workdir / "tmp"),
    }
    env["PATH"] = f"{PEERS['torchserve'].venv(cache) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    cmd = [
        str(PEERS["torchserve"].bin(cache, "torchserve")),
        "--start",
        "--foreground",
        "--ncs",
        "--disable-token-auth",
        "--ts-config",
        str(config),
        "--model-store",
        str(store),
    ]
    log_path = workdir / "stdout.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            base = f"http://127.0.0.1:{ports['inference']}"
            servers = {}
            for workers, delay in variants:
                url = f"{base}/predictions/{torchserve_variant(model, workers, delay)}"
                wait_answering(url, proc, timeout, log_path)
                servers[workers, delay] = Server(
                    f"TorchServe ({workers} worker(s), {delay} ms)",
                    url,
                    ProcessTree(proc.pid),
                    {"workers": workers, "batch_size": batch_size, "max_batch_delay_ms": delay},
                )
            for s in servers.values():
                s.details["processes"] = s.tree.processes()
            yield servers
        finally:
            stop_tree(proc, group=True)


# ---------------------------------------------------------------- Ray Serve

RAY_ENV = {
    # Ray's node address is the loopback one (no probing for an outward address; Ray's own switch for
    # Windows/macOS, honoured on Linux too)
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    # Ray starts its workers (proxy, controller, replicas) at nice 15 by default, behind the load generator
    # and the other servers; Ray's own job submission sets 0, and so does this benchmark
    "RAY_worker_niceness": "0",
}


def ray_route(replicas: int) -> str:
    """The route of the application with ``replicas`` replicas (one application per replica count)."""
    return f"/sentiment-r{replicas}"


@contextmanager
def running_ray(
    cache: Path,
    repository: Path,
    model: str,
    workdir: Path,
    replicas: list[int],
    batch_size: int = 64,
    batch_wait_s: float = 0.002,
    max_ongoing_requests: int = 256,
    temp_dir: str = "/tmp/ray-bench",
    timeout: float = 300,
) -> Iterator[dict[int, Server]]:
    """Ray Serve (``loadtest.peers.ray_app`` as the driver) on a local Ray instance, one application per
    replica count; yields ``{replicas: Server}``, all sharing one process tree: the driver with GCS,
    raylet, its agents and the workers (proxy, controller, replicas)."""
    port = free_port()
    cmd = [
        str(PEERS["ray"].python(cache)),
        "-m",
        "loadtest.peers.ray_app",
        "--port",
        str(port),
        "--repository",
        str(repository.resolve()),
        "--model",
        model,
        "--replicas",
        *(str(n) for n in replicas),
        "--max-batch-size",
        str(batch_size),
        "--batch-wait-s",
        str(batch_wait_s),
        "--max-ongoing-requests",
        str(max_ongoing_requests),
        "--num-cpus",
        str(os.cpu_count() or 1),
        "--temp-dir",
        temp_dir,
    ]
    log_path = workdir / "ray.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env={**peer_env(cache), **RAY_ENV},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            servers = {}
            for n in replicas:
                url = f"http://127.0.0.1:{port}{ray_route(n)}"
                wait_answering(url, proc, timeout, log_path)
                servers[n] = Server(
                    f"Ray Serve ({n} replica(s))",
                    url,
                    ProcessTree(proc.pid),
                    {
                        "replicas": n,
                        "max_batch_size": batch_size,
                        "batch_wait_timeout_s": batch_wait_s,
                        "max_ongoing_requests": max_ongoing_requests,
                    },
                )
            for s in servers.values():
                s.details["processes"] = s.tree.processes()
            yield servers
        finally:
            stop_tree(proc, group=False, grace_s=20)
