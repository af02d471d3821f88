"""TLS: https routes and wss echo through the standard ssl module, the versions on offer,
backpressure over TLS, many TLS connections at once, bad certificate inputs at construction, and
clients that speak plain TCP to the TLS port or never start the handshake."""

from __future__ import annotations

import ssl
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.harness import ServerPool, payload_of_size, text_of_size, wait_for
from tests.support.tlsutil import make_self_signed
from uws_py import App, SendStatus, SSLOptions
from tests.support.wsclient import (
    Op,
    connect,
    insecure_tls_context,
    open_socket,
    raw_http,
    socket_reaches_eof,
)

KIB = 1024
MIB = 1024 * KIB
ECHO_SIZES = [0, 1, 125, 126, 65535, 65536, MIB]
CONCURRENT = 50
MESSAGES_PER_CONNECTION = 20
BACKPRESSURE_MESSAGE = 64 * KIB
SMALL_RECEIVE_BUFFER = 4096
HEADER_TIMEOUT = 1
TIMEOUT_SLACK = 2.5


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> SSLOptions:
    cert, key = make_self_signed(tmp_path_factory.mktemp("tls"))
    return SSLOptions(str(cert), str(key))


@pytest.fixture
def start_server(recorder):
    """start_server(behavior=None, setup=None, ssl=...) -> a running Server, stopped at teardown.
    Depends on recorder so that its check of handler errors runs after the servers stopped."""
    pool = ServerPool()
    yield pool.start
    pool.stop_all()


@pytest.fixture
def tls_echo(start_server, recorder, certificate):
    """tls_echo(**options) -> a TLS server whose WebSocket route echoes."""
    return lambda **options: start_server(recorder.behavior(**options), ssl=certificate)


def assert_echoes_over_tls(server, text: str = "are you alive") -> None:
    with connect(*server.address, tls=insecure_tls_context()) as client:
        client.send_text(text)
        assert client.recv_message() == (Op.TEXT, text.encode())


def test_https_get_reaches_the_route(start_server, certificate):
    def hello(res, req):
        res.write_header("X-Route", "hello").end(f"hello {req.get_parameter('name')}")

    server = start_server(setup=lambda app: app.get("/hello/:name", hello), ssl=certificate)
    response = raw_http(
        *server.address,
        b"GET /hello/tls HTTP/1.1\r\nHost: localhost\r\n\r\n",
        tls=insecure_tls_context(),
    )
    assert response.status == 200
    assert response.headers.get("x-route") == "hello"
    assert response.body == b"hello tls"


def test_https_unknown_path_gets_404(start_server, certificate):
    def setup(app):
        app.get("/known", lambda res, req: res.end("ok"))

    server = start_server(setup=setup, ssl=certificate)
    request = b"GET /unknown HTTP/1.1\r\nHost: localhost\r\n\r\n"
    response = raw_http(*server.address, request, tls=insecure_tls_context())
    assert response.status == 404


@pytest.mark.parametrize("size", ECHO_SIZES)
@pytest.mark.parametrize("opcode", [Op.TEXT, Op.BINARY], ids=["text", "binary"])
def test_wss_echo(tls_echo, size, opcode):
    server = tls_echo()
    payload = text_of_size(size).encode() if opcode == Op.TEXT else payload_of_size(size)
    with connect(*server.address, tls=insecure_tls_context()) as client:
        client.send_frame(opcode, payload)
        message = client.recv_message(timeout=10)
        assert message.opcode == opcode
        assert len(message.payload) == size
        assert message.payload == payload


def test_default_negotiation_is_tls_1_2_or_1_3(tls_echo):
    server = tls_echo()
    with connect(*server.address, tls=insecure_tls_context()) as client:
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize(
    "version, name",
    [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")],
    ids=["1.2", "1.3"],
)
def test_each_supported_version_works(tls_echo, version, name):
    server = tls_echo()
    with connect(*server.address, tls=insecure_tls_context(version)) as client:
        assert client.sock.version() == name
        client.send_binary(b"over " + name.encode())
        assert client.recv_message() == (Op.BINARY, b"over " + name.encode())


def numbered(seq: int) -> bytes:
    return struct.pack("!I", seq) + payload_of_size(BACKPRESSURE_MESSAGE - 4, seed=seq % 251)


def one_send_on_an_idle_socket(server, recorder, size: int, tls) -> tuple:
    """(status, buffered amount) of one size-byte send to a client that reads it afterwards."""
    with connect(*server.address, tls=tls) as client:
        ws = recorder.next_open()
        outcome = server.call(lambda: (ws.send(payload_of_size(size)), ws.get_buffered_amount()))
        assert client.recv_message() == (Op.BINARY, payload_of_size(size))
    return outcome


@pytest.mark.parametrize("size", [64 * KIB, 256 * KIB], ids=["64KiB", "256KiB"])
def test_send_on_an_idle_tls_socket_succeeds_as_in_plain(
    start_server, recorder, certificate, size
):
    """What the kernel takes at once over plain TCP, a TLS socket must take too: it writes every
    record it can, not only the first (16 KiB) one, before it reports backpressure."""
    plain = start_server(recorder.behavior())
    if one_send_on_an_idle_socket(plain, recorder, size, None) != (SendStatus.SUCCESS, 0):
        pytest.skip(f"this kernel does not take {size} bytes at once even over plain TCP")
    server = start_server(recorder.behavior(), ssl=certificate)
    status, buffered = one_send_on_an_idle_socket(server, recorder, size, insecure_tls_context())
    assert (status, buffered) == (SendStatus.SUCCESS, 0), (
        f"one {size}-byte send on an idle TLS socket returned {status!r} with {buffered} bytes "
        "buffered; the same send over plain TCP returned SUCCESS"
    )


def test_backpressure_over_tls_then_drain(tls_echo, recorder):
    server = tls_echo(max_backpressure=64 * MIB)
    with connect(
        *server.address, tls=insecure_tls_context(), recv_buffer_size=SMALL_RECEIVE_BUFFER
    ) as client:
        ws = recorder.next_open()
        # 16 MiB in one loop iteration, far more than the kernel holds for a reader that does not
        # read, so the server must buffer (and say so) whatever TLS does with record sizes.
        count = 256
        statuses = server.call(lambda: [ws.send(numbered(seq)) for seq in range(count)])
        assert set(statuses) <= {SendStatus.SUCCESS, SendStatus.BACKPRESSURE}, statuses
        assert statuses[-1] == SendStatus.BACKPRESSURE, "16 MiB queued without backpressure"
        first = statuses.index(SendStatus.BACKPRESSURE)
        assert statuses[first:] == [SendStatus.BACKPRESSURE] * (count - first), (
            f"SUCCESS again after BACKPRESSURE at send {first}: {statuses}"
        )
        time.sleep(0.3)
        assert server.call(ws.get_buffered_amount) > 0, "16 MiB fit into kernel buffers"
        while not recorder.drains.empty():
            recorder.drains.get_nowait()

        for seq in range(count):
            message = client.recv_message(timeout=10)
            assert message.opcode == Op.BINARY
            assert message.payload == numbered(seq), f"message {seq} lost or corrupted"
        wait_for(recorder.drains, "the drain handler after the client read")
        assert server.call(ws.get_buffered_amount) == 0


def test_concurrent_wss_connections_echo(tls_echo, recorder):
    server = tls_echo()
    all_connected = threading.Barrier(CONCURRENT, timeout=20)

    def talk(index: int) -> int:
        with connect(*server.address, tls=insecure_tls_context(), timeout=20) as client:
            all_connected.wait()
            for seq in range(MESSAGES_PER_CONNECTION):
                text = f"client {index} message {seq}"
                client.send_text(text)
                message = client.recv_message(timeout=20)
                assert message == (Op.TEXT, text.encode()), f"client {index} got {message!r}"
            client.close(1000)
        return index

    with ThreadPoolExecutor(CONCURRENT) as pool:
        finished = sorted(pool.map(talk, range(CONCURRENT), timeout=40))
    assert finished == list(range(CONCURRENT))
    for _ in range(CONCURRENT):
        recorder.next_close()


def test_missing_certificate_file_raises_oserror(certificate, tmp_path):
    with pytest.raises(OSError):
        App(ssl=SSLOptions(str(tmp_path / "absent.pem"), certificate.key_file))


def test_missing_key_file_raises_oserror(certificate, tmp_path):
    with pytest.raises(OSError):
        App(ssl=SSLOptions(certificate.cert_file, str(tmp_path / "absent.pem")))


@pytest.fixture(scope="module")
def encrypted_key(tmp_path_factory) -> tuple:
    cert, key = make_self_signed(tmp_path_factory.mktemp("encrypted"), passphrase=b"secret")
    return str(cert), str(key)


def test_encrypted_key_with_its_passphrase_serves(start_server, encrypted_key, recorder):
    cert, key = encrypted_key
    server = start_server(recorder.behavior(), ssl=SSLOptions(cert, key, passphrase="secret"))
    assert_echoes_over_tls(server)


@pytest.mark.parametrize("passphrase", ["wrong", None], ids=["wrong", "none"])
def test_encrypted_key_without_its_passphrase_raises_valueerror(encrypted_key, passphrase):
    cert, key = encrypted_key
    with pytest.raises(ValueError):
        App(ssl=SSLOptions(cert, key, passphrase=passphrase))


def test_key_of_another_certificate_raises_valueerror(certificate, tmp_path):
    _, other_key = make_self_signed(tmp_path)
    with pytest.raises(ValueError):
        App(ssl=SSLOptions(certificate.cert_file, str(other_key)))


def test_plain_http_to_the_tls_port_is_disconnected(tls_echo):
    server = tls_echo()
    with open_socket(*server.address, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = bytearray()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError("plain HTTP on the TLS port was not disconnected in 5 s")
            if not chunk:
                break
            received += chunk
        assert not received.startswith(b"HTTP/"), (
            f"answered plain HTTP over TLS: {bytes(received)!r}"
        )
    assert_echoes_over_tls(server)


# What a client sends before it stalls: nothing, the first bytes of a TLS record, or a whole
# handshake (the TLS client) but no HTTP request.
STALLS = ["nothing", "partial-record", "handshake-only"]


@pytest.mark.parametrize("stall", STALLS)
def test_stalled_client_is_dropped_after_header_timeout(start_server, recorder, certificate, stall):
    def setup(app):
        app.header_timeout = HEADER_TIMEOUT

    server = start_server(recorder.behavior(), setup=setup, ssl=certificate)
    tls = insecure_tls_context() if stall == "handshake-only" else None
    with open_socket(*server.address, timeout=5, tls=tls) as sock:
        start = time.monotonic()
        if stall == "partial-record":
            sock.sendall(b"\x16\x03\x01\x02")
        # The loop still serves others while this client stalls.
        assert_echoes_over_tls(server)
        assert socket_reaches_eof(sock, HEADER_TIMEOUT + TIMEOUT_SLACK), (
            f"client that sent {stall} still connected after "
            f"header_timeout={HEADER_TIMEOUT} + {TIMEOUT_SLACK} s"
        )
        elapsed = time.monotonic() - start
    assert elapsed >= HEADER_TIMEOUT * 0.5, f"dropped after {elapsed:.2f} s, before header_timeout"
    assert_echoes_over_tls(server)


def test_app_close_over_tls_sends_1001_and_run_returns(tls_echo, recorder):
    server = tls_echo()
    with connect(*server.address, tls=insecure_tls_context()) as client:
        recorder.next_open()
        server.app.close()
        assert client.expect_close() == (1001, b"server shutting down")
        client.send_close(1001)
        server.thread.join(5.0)
        assert not server.thread.is_alive(), "run() did not return after close() over TLS"
    recorder.next_close(timeout=1.0)
