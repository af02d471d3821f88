"""uws_py.reuseport on plain loopback sockets: steering a SO_REUSEPORT group to one socket,
the program going inert once that index is out of range, and reading an accept queue."""

from __future__ import annotations

import os
import socket

from uws_py import reuseport

HOST = "127.0.0.1"


def listener(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((HOST, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def accepted_by(port: int, listeners: dict, connections: int = 40) -> dict:
    """Opens connections, then counts how many each listener accepts."""
    clients = [socket.create_connection((HOST, port), timeout=5.0) for _ in range(connections)]
    counts = {name: 0 for name in listeners}
    for name, sock in listeners.items():
        while True:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                break
            conn.close()
            counts[name] += 1
    for client in clients:
        client.close()
    return counts


def test_steered_group_sends_every_connection_to_the_index_then_hashes_again_once_it_is_out_of_range():
    first = listener()
    port = first.getsockname()[1]
    second, third = listener(port), listener(port)
    try:
        assert reuseport.listening_socket_fd(port) in {first.fileno(), second.fileno(), third.fileno()}
        assert reuseport.steer_group_to(third.fileno(), 2)
        assert accepted_by(port, {"first": first, "second": second, "third": third}) == \
            {"first": 0, "second": 0, "third": 40}
        first.close()
        # Two sockets left: index 2 is out of range and the kernel's hash spreads them again.
        counts = accepted_by(port, {"second": second, "third": third}, 60)
        assert counts["second"] > 0 and counts["third"] > 0 and sum(counts.values()) == 60, counts
    finally:
        for sock in (first, second, third):
            sock.close()


def test_queued_connections_counts_the_accept_queue_of_a_listener():
    sock = listener()
    port = sock.getsockname()[1]
    clients = []
    try:
        assert reuseport.queued_connections(os.getpid(), port) == 0
        clients = [socket.create_connection((HOST, port), timeout=5.0) for _ in range(3)]
        assert reuseport.queued_connections(os.getpid(), port) == 3
        assert not reuseport.wait_until_drained(os.getpid(), port, timeout=0.1, settle=0.0)
        for _ in range(3):
            sock.accept()[0].close()
        assert reuseport.wait_until_drained(os.getpid(), port, timeout=1.0, settle=0.0)
    finally:
        for client in clients:
            client.close()
        sock.close()
    assert reuseport.queued_connections(os.getpid(), port) is None
