"""One listening socket per serving process (``SO_REUSEPORT``), so the kernel spreads connections evenly.

uvicorn's supervisor binds one socket and every serving process accepts from it. A process whose event
loop is idle wakes first and accepts every connection waiting, so a burst of new connections (a client
pool opening, a balancer reconnecting) lands on one process: with two processes, 8 keep-alive clients
were split 8/0, 7/1 or 6/2 in four of five tries here and 64 clients 45/19 at worst. Those connections
stay where they landed, so one process works at its limit while the other idles.

With :class:`ReusePortListener` as the supervisor's socket, each serving process it starts (and each
replacement) gets a listening socket of its own on the same address, bound with ``SO_REUSEPORT``: the
kernel (Linux) then assigns each new connection to one of them by a hash of its addresses. uvicorn's
supervisor is unchanged: it hands its sockets to each process by pickling them, and this socket pickles
as "bind a socket like me". In the supervisor it stays bound without listening, which holds the port and
takes no connections. A process that dies takes the connections waiting in its own queue with it (they
are reset; the clients reconnect), unless the kernel hands them to another socket of the group: Linux
5.14 and later do with the sysctl ``net.ipv4.tcp_migrate_req`` at 1 (:func:`queued_connections_migrate`;
``python -m loadtest.bench_process_death`` measures both).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

#: Linux 5.14+: 1 hands the connections queued on a closed socket of a SO_REUSEPORT group to another
MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def supported() -> bool:
    """Linux spreads connections over a ``SO_REUSEPORT`` group; other systems give them all to one."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def queued_connections_migrate(setting: Path = MIGRATE_REQ) -> bool | None:
    """Whether the connections queued on a serving process that dies go to another process's socket
    instead of being reset; ``None`` where the kernel has no such setting (or it cannot be read)."""
    try:
        return setting.read_text().strip() != "0"
    except OSError:
        return None


def _reuse_port_socket(family: int, address: Any, cls: type[socket.socket] = socket.socket) -> socket.socket:
    sock = cls(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: accepted sockets get TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def bind_for_process(family: int, address: Any) -> socket.socket:
    """In a serving process: its own socket on the supervisor's address (the server starts listening)."""
    sock = _reuse_port_socket(family, address)
    sock.set_inheritable(False)
    return sock


class ReusePortListener(socket.socket):
    """The supervisor's socket: bound (not listening); each process it is pickled into binds its own."""

    @classmethod
    def for_address(cls, host: str, port: int) -> ReusePortListener:
        """Raises ``OSError`` (address in use) when something already listens there, as a plain bind
        would: without this check a second service started on the port would join the group."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if port:
            with socket.socket(family, socket.SOCK_STREAM) as probe:  # SO_REUSEADDR: TIME_WAIT is no owner
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        return _reuse_port_socket(family, (host, port), cls)  # type: ignore[return-value]

    def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
        # the bound port, not the asked one: with port 0 every process must share the port picked here
        return bind_for_process, (int(self.family), self.getsockname())
