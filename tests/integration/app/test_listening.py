"""Listening beyond one TCP port (issue 12): App.listen_unix (HTTP and WebSocket over a unix
domain socket, the file removed on close) and App.stop_listening (no new connections while the
open ones go on)."""

from __future__ import annotations

import errno
import os
import socket
import time

import pytest

from tests.support.harness import WAIT
from tests.support.wsclient import TestClient, handshake_request, new_key, read_http_response


def unix_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect(path)
    return sock


def websocket_over(sock: socket.socket, path: str = "/") -> TestClient:
    sock.sendall(handshake_request(path, "localhost", new_key()))
    response, leftover = read_http_response(sock, time.monotonic() + WAIT)
    assert response.status == 101, response
    return TestClient(sock, response, leftover)


def http_over(sock: socket.socket, path: str) -> tuple:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    response, _ = read_http_response(sock, time.monotonic() + WAIT)
    return response


@pytest.fixture
def socket_path(tmp_path):
    return str(tmp_path / "uws.sock")


def test_listen_unix_serves_http_and_websocket(make_server, recorder, socket_path):
    def setup(app):
        app.get("/hello", lambda res, req: res.end(f"hello from {res.get_remote_address()!r}"))
        assert app.listen_unix(socket_path) is app

    server = make_server(recorder.behavior(), "/ws", setup)
    assert os.path.exists(socket_path)
    response = http_over(unix_socket(socket_path), "/hello")
    assert response.status == 200 and response.body == b"hello from ''"
    with websocket_over(unix_socket(socket_path), "/ws") as client:
        recorder.next_open()
        client.send_text("over a unix socket")
        assert client.recv_message().payload == b"over a unix socket"
    # The TCP listener works beside it.
    with socket.create_connection(server.address, timeout=WAIT) as sock:
        assert http_over(sock, "/hello").status == 200
    server.stop()
    assert not os.path.exists(socket_path), "the socket file outlived App.close()"


def test_listen_unix_replaces_a_stale_socket_file(make_server, recorder, socket_path):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(socket_path)
    stale.close()  # the file stays, nobody accepts on it
    make_server(None, "/*", lambda app: app.get("/", lambda res, req: res.end("new")).listen_unix(socket_path))
    assert http_over(unix_socket(socket_path), "/").body == b"new"


def test_listen_unix_refuses_a_live_socket_or_another_file(make_server, recorder, socket_path, tmp_path):
    make_server(None, "/*", lambda app: app.listen_unix(socket_path))
    from uws_py import App

    with pytest.raises(OSError) as taken:
        App().listen_unix(socket_path)
    assert taken.value.errno == errno.EADDRINUSE and socket_path in str(taken.value)
    assert os.path.exists(socket_path), "a failed listen_unix removed another server's socket"
    regular = tmp_path / "a-file"
    regular.write_text("not a socket")
    with pytest.raises(OSError):
        App().listen_unix(str(regular))
    assert regular.read_text() == "not a socket"
    with pytest.raises(OSError, match="path must be"):
        App().listen_unix("/tmp/" + "x" * 200)


def test_stop_listening_keeps_open_connections_and_refuses_new_ones(make_server, recorder, socket_path):
    server = make_server(recorder.behavior(), "/ws", lambda app: app.listen_unix(socket_path))
    with websocket_over(socket.create_connection(server.address, timeout=WAIT), "/ws") as tcp_client, \
            websocket_over(unix_socket(socket_path), "/ws") as unix_client:
        recorder.next_open()
        recorder.next_open()
        assert server.call(server.app.stop_listening) is server.app
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(server.address, timeout=WAIT)
        assert not os.path.exists(socket_path)
        with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
            unix_socket(socket_path)
        # The connections made before go on echoing, both ways.
        for n in range(3):
            tcp_client.send_text(f"tcp {n}")
            unix_client.send_text(f"unix {n}")
            assert tcp_client.recv_message().payload == f"tcp {n}".encode()
            assert unix_client.recv_message().payload == f"unix {n}".encode()
        assert tcp_client.close() == (1000, b"")


def test_stop_listening_from_another_thread(make_server, recorder):
    server = make_server(recorder.behavior(), "/ws")
    with websocket_over(socket.create_connection(server.address, timeout=WAIT), "/ws") as client:
        recorder.next_open()
        server.app.stop_listening()  # this thread is not the loop's
        deadline = time.monotonic() + WAIT
        while True:
            try:
                socket.create_connection(server.address, timeout=WAIT).close()
            except ConnectionRefusedError:
                break
            except ConnectionResetError:
                pass  # it reached the backlog just before the listener closed: reset, not served
            assert time.monotonic() < deadline, "still accepting after stop_listening()"
            time.sleep(0.01)
        client.send_text("still here")
        assert client.recv_message().payload == b"still here"
