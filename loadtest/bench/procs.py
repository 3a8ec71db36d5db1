"""CPU time of a server as a process tree (Linux ``/proc``): a root process and all its descendants.

A server may be one process (uvicorn), a launcher with a Java frontend and Python workers (TorchServe), or
a driver with GCS, raylet, proxy, controller and replica workers (Ray); counting the tree covers whatever
process model each one has. Each process contributes ``utime + stime + cutime + cstime``: when a child in
the tree exits and is reaped by its parent, its time moves into the parent's ``cutime``/``cstime``, so the
tree's total neither loses nor double-counts it. (A child reparented outside the tree, e.g. to init,
is lost once it exits; none of the servers here does that while running.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    name: str
    ticks: int  # utime + stime + cutime + cstime, in clock ticks


def parse_stat(text: str) -> ProcStat:
    """One ``/proc/<pid>/stat`` line; the name (field 2) may hold spaces and parentheses."""
    head, rest = text.split(" (", 1)
    name, tail = rest.rsplit(")", 1)
    f = tail.split()
    # after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return ProcStat(int(head), int(f[1]), name, int(f[11]) + int(f[12]) + int(f[13]) + int(f[14]))


def running(pid: int, proc: Path = PROC) -> bool:
    """Whether the process exists and has not exited (a zombie, exited and not yet reaped, has)."""
    try:
        state = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def start_time(pid: int, proc: Path = PROC) -> int | None:
    """When a process started (clock ticks after boot), to tell it from a later one with the same pid."""
    try:
        return int((proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def read_all(proc: Path = PROC) -> dict[int, ProcStat]:
    out: dict[int, ProcStat] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            out[int(entry.name)] = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
    return out


def descendants(stats: Mapping[int, ProcStat], roots: Iterable[int]) -> set[int]:
    """The roots (those alive) and every process below them."""
    children: dict[int, list[int]] = {}
    for s in stats.values():
        children.setdefault(s.ppid, []).append(s.pid)
    seen: set[int] = set()
    todo = [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, ()))
    return seen


def tree_ticks(stats: Mapping[int, ProcStat], roots: Iterable[int]) -> int:
    return sum(stats[p].ticks for p in descendants(stats, roots))


def tree_by_name(stats: Mapping[int, ProcStat], roots: Iterable[int]) -> dict[str, int]:
    """Ticks per process name in the tree (for a breakdown: java, python, raylet, gcs_server, ...)."""
    out: dict[str, int] = {}
    for p in descendants(stats, roots):
        out[stats[p].name] = out.get(stats[p].name, 0) + stats[p].ticks
    return out


class ProcessTree:
    """CPU seconds used so far by a root process and its descendants."""

    def __init__(self, *roots: int, proc: Path = PROC):
        self.roots, self.proc = roots, proc
        self.hz = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self) -> float:
        return tree_ticks(read_all(self.proc), self.roots) / self.hz

    def pids(self) -> set[int]:
        """The live processes of the tree, roots included."""
        return descendants(read_all(self.proc), self.roots)

    def processes(self) -> int:
        return len(self.pids())

    def by_name(self) -> dict[str, float]:
        """CPU seconds so far per process name (one reading of ``/proc``; their sum is ``cpu_seconds``)."""
        return {k: v / self.hz for k, v in tree_by_name(read_all(self.proc), self.roots).items()}
