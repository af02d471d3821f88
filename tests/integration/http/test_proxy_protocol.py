"""The opt-in PROXY protocol listener (issue 12): App.listen(..., proxy_protocol=True) reads a
v1 or v2 header before anything else, and its source address becomes the connection's remote
address for HTTP and WebSocket; a connection without a valid header is logged and closed,
while the others go on."""

from __future__ import annotations

import logging
import queue
import socket
import struct
import time

import pytest

from tests.support.harness import WAIT, Server, wait_for
from tests.support.wsclient import TestClient, handshake_request, new_key, read_http_response, socket_reaches_eof

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(source: str, port: int = 56324, family: str = "TCP4", destination: str = "198.51.100.1") -> bytes:
    return f"PROXY {family} {source} {destination} {port} 443\r\n".encode()


def v2(source: str, source_port: int = 40000, command: int = 1) -> bytes:
    if ":" in source:
        addresses = socket.inet_pton(socket.AF_INET6, source) + socket.inet_pton(socket.AF_INET6, "::1")
        family = 0x21
    else:
        addresses = socket.inet_aton(source) + socket.inet_aton("10.0.0.1")
        family = 0x11
    addresses += struct.pack(">HH", source_port, 443)
    tlv = b"\x04\x00\x02ab"  # PP2_TYPE_NOOP: skipped
    block = addresses + tlv
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack(">H", len(block)) + block


class ProxiedServer:
    def __init__(self, server: Server, port: int, addresses: queue.Queue) -> None:
        self.server = server
        self.port = port  # the proxy_protocol listener; server.port is a plain one
        self.addresses = addresses


@pytest.fixture
def proxied(make_server, recorder):
    addresses: queue.Queue = queue.Queue()
    ports: dict = {}

    def open_handler(ws):
        addresses.put(("ws", ws.get_remote_address()))

    def setup(app):
        app.get("/who", recorder.guard(lambda res, req: res.end(res.get_remote_address())))
        ports["proxied"] = app.listen(0, "127.0.0.1", proxy_protocol=True).port

    behavior = recorder.behavior(open=recorder.guard(open_handler))
    server = make_server(behavior, "/ws", setup)
    return ProxiedServer(server, ports["proxied"], addresses)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def who(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
    response, _ = read_http_response(sock, time.monotonic() + WAIT)
    assert response.status == 200, response
    return response.body


@pytest.mark.parametrize(
    "header, address",
    [
        (v1("203.0.113.7"), b"203.0.113.7"),
        (v1("2001:db8:0::1", family="TCP6", destination="::1"), b"2001:db8::1"),
        (v2("198.51.100.23"), b"198.51.100.23"),
        (v2("2001:db8::42"), b"2001:db8::42"),
    ],
    ids=["v1-tcp4", "v1-tcp6", "v2-tcp4", "v2-tcp6"],
)
def test_proxy_header_sets_the_http_remote_address(proxied, header, address):
    with connect(proxied.port) as sock:
        sock.sendall(header)
        assert who(sock) == address
        assert who(sock) == address  # kept for the connection's next requests


def test_proxy_header_sets_the_websocket_remote_address(proxied, recorder):
    with connect(proxied.port) as sock:
        sock.sendall(v2("192.0.2.99") + handshake_request("/ws", "x", new_key()))
        response, leftover = read_http_response(sock, time.monotonic() + WAIT)
        assert response.status == 101
        with TestClient(sock, response, leftover) as client:
            assert wait_for(proxied.addresses, "the open handler") == ("ws", "192.0.2.99")
            client.send_text("hello")
            assert client.recv_message().payload == b"hello"
            ws = recorder.next_message()[0]
            assert proxied.server.call(ws.get_remote_address) == "192.0.2.99"


def test_proxy_header_in_pieces_and_with_the_request_in_the_same_segment(proxied):
    with connect(proxied.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in v1("203.0.113.50"):
            sock.send(bytes([byte]))
            time.sleep(0.002)
        assert who(sock) == b"203.0.113.50"
    with connect(proxied.port) as sock:
        header = v2("203.0.113.51")
        sock.sendall(header[:5])
        time.sleep(0.05)
        sock.sendall(header[5:20])
        time.sleep(0.05)
        sock.sendall(header[20:] + b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
        response, _ = read_http_response(sock, time.monotonic() + WAIT)
        assert response.body == b"203.0.113.51"


def test_local_and_unknown_keep_the_socket_address(proxied):
    for header in (v2("203.0.113.9", command=0), b"PROXY UNKNOWN\r\n"):
        with connect(proxied.port) as sock:
            sock.sendall(header)
            assert who(sock) == b"127.0.0.1"


@pytest.mark.parametrize(
    "first_bytes",
    [
        b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PROXY TCP4 203.0.113.7 198.51.100.1 99999 443\r\nGET /who HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PROXY TCP4 not-an-address 198.51.100.1 1 443\r\n",
        V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12),  # version 3
        b"\x16\x03\x01\x00\xa5\x01\x00\x00",  # a TLS ClientHello
    ],
    ids=["plain-http", "bad-port", "bad-address", "v2-version-3", "tls-hello"],
)
def test_connection_without_a_valid_header_is_logged_and_closed(proxied, caplog, first_bytes):
    caplog.set_level(logging.WARNING, logger="uws_py")
    with connect(proxied.port) as bad, connect(proxied.port) as good:
        good.sendall(v1("203.0.113.77"))
        bad.sendall(first_bytes)
        assert socket_reaches_eof(bad, WAIT), "the server kept a connection without a valid PROXY header"
        # The other connection, and the plain listener, are not affected.
        assert who(good) == b"203.0.113.77"
    with socket.create_connection(proxied.server.address, timeout=WAIT) as plain:
        assert who(plain) == b"127.0.0.1"
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and not any("PROXY" in r.getMessage() for r in caplog.records):
        time.sleep(0.01)
    messages = [r.getMessage() for r in caplog.records if "PROXY" in r.getMessage()]
    assert messages and "no valid PROXY protocol header" in messages[0], caplog.records


def test_plain_listener_takes_a_proxy_header_as_http(proxied):
    """Without proxy_protocol nobody may claim an address: the header is a bad request line."""
    with socket.create_connection(proxied.server.address, timeout=WAIT) as sock:
        sock.sendall(v1("203.0.113.7") + b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
        response, _ = read_http_response(sock, time.monotonic() + WAIT)
        assert response.status == 400


def test_proxy_header_comes_before_tls(tmp_path, recorder):
    """Load balancers that pass TLS through send the header in the clear, then the handshake."""
    from uws_py import SSLOptions

    from tests.support.tlsutil import make_self_signed
    from tests.support.wsclient import insecure_tls_context

    cert, key = make_self_signed(tmp_path)
    ports: dict = {}

    def setup(app):
        app.get("/who", recorder.guard(lambda res, req: res.end(res.get_remote_address())))
        ports["proxied"] = app.listen(0, "127.0.0.1", proxy_protocol=True).port

    server = Server(None, "/*", setup, ssl=SSLOptions(str(cert), str(key)))
    try:
        raw = connect(ports["proxied"])
        raw.sendall(v2("198.51.100.200"))
        with insecure_tls_context().wrap_socket(raw) as tls:
            assert who(tls) == b"198.51.100.200"
    finally:
        server.stop()
