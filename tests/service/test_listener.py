"""Serving processes' listening sockets: one per process in a SO_REUSEPORT group."""

from __future__ import annotations

import pickle
import selectors
import socket

import pytest

from service import listener

pytestmark = pytest.mark.skipif(not listener.supported(), reason="Linux SO_REUSEPORT")


def test_each_process_gets_a_socket_of_its_own_on_the_supervisors_port() -> None:
    with listener.ReusePortListener.for_address("127.0.0.1", 0) as held:
        port = held.getsockname()[1]
        # what a serving process gets: uvicorn's supervisor pickles its sockets into each one it starts
        first, second = pickle.loads(pickle.dumps(held)), pickle.loads(pickle.dumps(held))
        with first, second:
            for sock in (first, second):
                assert type(sock) is socket.socket and sock.fileno() != held.fileno()
                assert sock.getsockname() == ("127.0.0.1", port)
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
                assert not sock.get_inheritable()
                sock.listen(128)
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
            accepted = {first: 0, second: 0}
            with selectors.DefaultSelector() as selector:
                for sock in accepted:
                    sock.setblocking(False)
                    selector.register(sock, selectors.EVENT_READ)
                while sum(accepted.values()) < len(clients):
                    for key, _ in selector.select(timeout=5):
                        conn, _ = key.fileobj.accept()
                        conn.close()
                        accepted[key.fileobj] += 1
            for client in clients:
                client.close()
    # the supervisor's socket is bound but not listening, so it takes none; the kernel spreads the rest
    assert all(count > 0 for count in accepted.values()), accepted


def test_the_supervisors_socket_holds_the_port_without_taking_connections() -> None:
    with listener.ReusePortListener.for_address("127.0.0.1", 0) as held:
        port = held.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):  # nobody listens yet
            socket.create_connection(("127.0.0.1", port), timeout=2)
        with socket.socket() as other, pytest.raises(OSError):  # a socket without the option cannot bind it
            other.bind(("127.0.0.1", port))


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "another-group"])
def test_a_port_another_server_listens_on_is_refused(reuse_port: bool) -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # another rnnserve on the port: its sockets are in a SO_REUSEPORT group
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen(8)
        with pytest.raises(OSError, match="in use"):
            listener.ReusePortListener.for_address("127.0.0.1", other.getsockname()[1])


@pytest.mark.parametrize("value, migrate", [("1\n", True), ("0\n", False)])
def test_whether_queued_connections_survive_a_process_follows_the_kernel_setting(tmp_path, value, migrate):
    setting = tmp_path / "tcp_migrate_req"
    setting.write_text(value)
    assert listener.queued_connections_migrate(setting) is migrate
    assert listener.queued_connections_migrate(tmp_path / "absent") is None  # before Linux 5.14
