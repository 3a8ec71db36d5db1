"""``deploy/nginx.conf`` run for real by the system's nginx, in front of local replicas.

The shipped file is the template, so what runs is what compose runs. Rendering substitutes only what
differs on one machine: the upstream ``server`` line (one per replica port, with the line's own
parameters), the ``listen`` port (loopback only), and the writable paths (pid file, access log, temp
folders) into a work folder, so nginx runs as root without touching ``/etc/nginx`` or ``/var``.
A reload (the conf rendered for other ports, then SIGHUP) is what ``nginx -s reload`` does after a
compose scale.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from loadtest.bench.procs import read_all
from loadtest.bench.server import REPO_ROOT, free_port, stop_process

NGINX_CONF = REPO_ROOT / "deploy" / "nginx.conf"
TEMP_FOLDERS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_SERVER_LINE = re.compile(r"^(?P<indent>[ \t]*)server[ \t]+[\w.-]+:\d+(?P<params>[^;\n]*);", re.M)
_LISTEN_LINE = re.compile(r"^(?P<indent>[ \t]*)listen[ \t]+\d+;", re.M)
_PID_LINE = re.compile(r"^(?P<indent>[ \t]*)pid[ \t]+\S+;", re.M)
_ACCESS_LOG_LINE = re.compile(r"^(?P<indent>[ \t]*)access_log[ \t]+off;", re.M)
_HTTP_BLOCK = re.compile(r"^http[ \t]*\{\n", re.M)


def find_nginx() -> str | None:
    """The nginx binary (Debian puts it in /usr/sbin, which a non-root PATH may lack)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")


def nginx_version() -> str:
    """``nginx/1.22.1`` (what ``nginx -v`` prints), or ``not installed``."""
    binary = find_nginx()
    if binary is None:
        return "not installed"
    done = subprocess.run([binary, "-v"], capture_output=True, text=True)
    return done.stderr.strip().removeprefix("nginx version: ")


def fail_timeout_s(template: str | None = None) -> float:
    """The upstream's ``fail_timeout`` (how long a failed replica stays out), in seconds."""
    text = template if template is not None else NGINX_CONF.read_text(encoding="utf-8")
    match = _SERVER_LINE.search(text)
    found = re.search(r"fail_timeout=(\d+)s?\b", match["params"]) if match else None
    return float(found[1]) if found else 10.0  # nginx's default


def _sub_once(pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str], text: str) -> str:
    """``pattern.sub`` that insists on exactly one match: the template changed if it finds another count."""
    out, count = pattern.subn(replace, text)
    if count != 1:
        raise ValueError(f"{NGINX_CONF.name}: expected one line matching {pattern.pattern!r}, found {count}")
    return out


def render(template: str, upstream_ports: Sequence[int], listen_port: int, workdir: Path) -> str:
    """The conf for replicas on ``127.0.0.1:<upstream_ports>``, listening on ``127.0.0.1:<listen_port>``."""

    def servers(m: re.Match[str]) -> str:
        return "\n".join(f"{m['indent']}server 127.0.0.1:{p}{m['params']};" for p in upstream_ports)

    temp = "".join(f"    {name}_temp_path {workdir / name};\n" for name in TEMP_FOLDERS)
    text = _sub_once(_SERVER_LINE, servers, template)
    text = _sub_once(_LISTEN_LINE, lambda m: f"{m['indent']}listen 127.0.0.1:{listen_port};", text)
    text = _sub_once(_PID_LINE, lambda m: f"{m['indent']}pid {workdir / 'nginx.pid'};", text)
    text = _sub_once(
        _ACCESS_LOG_LINE, lambda m: f"{m['indent']}access_log {workdir / 'access.log'} balancer;", text
    )
    return _sub_once(_HTTP_BLOCK, lambda m: m[0] + temp, text)


def _children(pid: int) -> set[int]:
    return {s.pid for s in read_all().values() if s.ppid == pid}


class Balancer:
    """nginx with the rendered conf, in the foreground (``daemon off``) as a child of this process."""

    def __init__(self, workdir: Path, upstream_ports: Sequence[int], port: int | None = None):
        binary = find_nginx()
        if binary is None:
            raise RuntimeError("nginx is not installed (Debian: apt-get install nginx)")
        self.workdir, self.port = workdir, port or free_port()
        if os.geteuid() == 0:  # workers run as nobody: let them reach their temp folders in here
            workdir.chmod(workdir.stat().st_mode | 0o011)
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = workdir / "nginx.conf"
        self.access_log = workdir / "access.log"
        self.error_log = workdir / "error.log"
        self._command = [binary, "-p", f"{workdir}/", "-e", str(self.error_log), "-c", str(self.conf)]
        self.process: subprocess.Popen | None = None
        self._write(upstream_ports)

    def _write(self, upstream_ports: Sequence[int]) -> None:
        template = NGINX_CONF.read_text(encoding="utf-8")
        self.conf.write_text(render(template, upstream_ports, self.port, self.workdir), encoding="utf-8")
        done = subprocess.run([*self._command, "-t", "-q"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"nginx -t refused {self.conf}: {done.stderr.strip()}")

    def start(self, timeout: float = 30) -> None:
        self.process = subprocess.Popen(
            [*self._command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start (see {self.error_log})")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/nginx-health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def reload(self, upstream_ports: Sequence[int], timeout: float = 30) -> None:
        """What ``nginx -s reload`` does: the conf for the new ports, checked, then SIGHUP to the master.
        Returns once new workers run and the old ones have exited: until then an old worker may still
        accept a connection and serve it with the old conf (old workers finish what they hold first)."""
        assert self.process is not None, "start() first"
        self._write(upstream_ports)
        old = _children(self.process.pid)
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while (children := _children(self.process.pid)) & old or not children - old:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not reload (see {self.error_log})")
            time.sleep(0.05)

    def stop(self, grace_s: float = 10) -> None:
        """Graceful stop (SIGQUIT: workers finish their requests), SIGKILL after ``grace_s``."""
        if self.process is not None:
            stop_process(self.process, signal.SIGQUIT, grace_s)

    def access_entries(self) -> list[dict]:
        """The access log (``log_format balancer``: one JSON object per request)."""
        if not self.access_log.exists():
            return []
        lines = self.access_log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


@contextmanager
def running_balancer(workdir: Path, upstream_ports: Sequence[int]) -> Iterator[Balancer]:
    """A started :class:`Balancer` over ``upstream_ports``, stopped on exit."""
    balancer = Balancer(workdir, upstream_ports)
    try:
        balancer.start()
        yield balancer
    finally:
        balancer.stop()
