"""Hostile clients against the raw App: slow or silent request heads, garbage, half-closed
sockets, frames built to exhaust memory, ping floods. Each test checks that the attacker is
refused (with the documented status or close code), that the refusal is logged with the
peer's address and counted, and that an ordinary client next to it is still served.

Cases already covered elsewhere are not repeated here (docs/security.md lists them all):
431 for big or numerous headers and 400 for malformed heads (test_handshake.py), the frame
errors of RFC 6455 (test_protocol_errors.py), drop and close at max_backpressure
(test_backpressure.py), JWT, origin and connection limits (test_realtime_auth.py).
Floods of connections, messages and publishes are in test_hostile_floods.py.
"""

from __future__ import annotations

import logging
import random
import select
import socket
import struct
import threading
import time

import pytest

from tests.support.harness import HOST, ServerPool, payload_of_size
from tests.support.failures import PROTOCOL_ERROR, TOO_BIG, assert_connection_failed
from tests.support.hostile import MIB, echo_latency, rss_bytes
from tests.support.wsclient import (
    ConnectionClosed,
    Op,
    connect,
    encode_frame,
    handshake_request,
    open_raw_http,
    open_socket,
    send_all_tolerating_reset,
    socket_reaches_eof,
)

# An ordinary client next to an attack must still be answered this fast.
MAX_BYSTANDER_LATENCY = 0.2


def header_timeout(seconds: int):
    """A Server setup that sets app.header_timeout."""

    def setup(app) -> None:
        app.header_timeout = seconds

    return setup


def peer_closed(sock: socket.socket) -> bool:
    """True once the server has closed sock (EOF or reset); never blocks."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def refused_status(server, request: bytes) -> int:
    """The status the server answers request with, after checking it closed the connection."""
    response, sock = open_raw_http(*server.address, request)
    with sock:
        assert socket_reaches_eof(sock, timeout=3.0), f"connection left open after {response.status}"
    return response.status


def log_lines(caplog) -> list:
    return [record.getMessage() for record in caplog.records if record.name.startswith("uws_py")]


# -- request heads ------------------------------------------------------------------------------


def test_slowloris_and_silent_clients_are_closed_at_header_timeout_while_others_echo(pool, recorder):
    """One byte of the head every 0.3 s does not extend the deadline: it runs from accept."""
    server = pool.start(recorder.behavior(), setup=header_timeout(2))
    head = handshake_request()
    slow = open_socket(HOST, server.port, 5.0)
    silent = open_socket(HOST, server.port, 5.0)
    started = time.monotonic()
    closed_after: dict = {}
    latencies = []
    trickled = 0
    with slow, silent, connect(*server.address) as bystander:
        recorder.next_open()
        while len(closed_after) < 2 and time.monotonic() - started < 6.0:
            tick = time.monotonic()
            if "slowloris" not in closed_after:
                send_all_tolerating_reset(slow, head[trickled : trickled + 1])
                trickled += 1
            for name, sock in (("slowloris", slow), ("silent", silent)):
                if name not in closed_after and peer_closed(sock):
                    closed_after[name] = time.monotonic() - started
            latencies.append(echo_latency(bystander))
            time.sleep(max(0.0, 0.3 - (time.monotonic() - tick)))
    assert trickled < len(head), "the whole head went out: the test did not trickle"
    for name in ("slowloris", "silent"):
        assert name in closed_after, f"{name} connection still open after 6 s (header_timeout 2)"
        # The 1-second tick fires the timeout between 2 and 3 s after accept.
        assert 1.5 <= closed_after[name] <= 4.0, f"{name} closed after {closed_after[name]:.2f} s"
    assert max(latencies) < MAX_BYSTANDER_LATENCY, f"bystander echo latencies {latencies}"


def test_client_half_closing_mid_head_is_closed_without_waiting_for_the_timeout(pool, recorder):
    server = pool.start(recorder.behavior(), setup=header_timeout(3))
    with open_socket(HOST, server.port, 5.0) as sock:
        sock.sendall(handshake_request()[:40])
        started = time.monotonic()
        sock.shutdown(socket.SHUT_WR)
        assert socket_reaches_eof(sock, timeout=5.0), "half-closed connection never closed"
        elapsed = time.monotonic() - started
    # The header timeout (3 s) could not have fired yet: the FIN itself ended it.
    assert elapsed < 3.0, f"half-closed connection closed only after {elapsed:.2f} s"


def test_request_line_of_20_kib_gets_431(pool, recorder):
    server = pool.start(recorder.behavior())
    request = handshake_request(path="/" + "a" * (20 * 1024))
    assert refused_status(server, request) == 431
    assert recorder.opens.empty()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_garbage_byte_stream_gets_400_and_is_closed(pool, recorder, seed):
    generator = random.Random(seed)
    lines = [bytes(generator.randrange(256) for _ in range(generator.randrange(1, 80))) for _ in range(20)]
    garbage = b"\r\n".join(lines) + b"\r\n\r\n"
    server = pool.start(recorder.behavior())
    assert refused_status(server, garbage) == 400
    assert recorder.opens.empty()


@pytest.mark.parametrize("sends", ["part-of-a-head", "nothing"])
def test_header_timeout_close_is_logged_with_the_peer_and_counted(pool, recorder, caplog, sends):
    caplog.set_level(logging.INFO, logger="uws_py")
    server = pool.start(recorder.behavior(), setup=header_timeout(1))
    before = server.call(server.app.stats)
    with open_socket(HOST, server.port, 5.0) as sock:
        if sends == "part-of-a-head":
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert socket_reaches_eof(sock, timeout=4.0), "not closed within header_timeout 1 s (+ tick)"
    after = server.call(server.app.stats)
    lines = log_lines(caplog)
    assert any("127.0.0.1" in line and "timeout" in line for line in lines), (
        f"no log line names the peer and the header timeout; uws_py log was {lines}"
    )
    counted = sum(after.get(key, 0) - before.get(key, 0) for key in ("http_rejections", "header_timeouts"))
    assert counted >= 1, f"the header-timeout close moved no counter: before {before}, after {after}"


def test_refusals_are_logged_with_the_peer_counted_and_the_server_goes_on(pool, recorder, caplog):
    caplog.set_level(logging.INFO, logger="uws_py")
    server = pool.start(recorder.behavior(max_payload_length=1024))
    before = server.call(server.app.stats)
    assert refused_status(server, handshake_request(path="/" + "a" * (20 * 1024))) == 431
    assert refused_status(server, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n") == 400
    top_bit = struct.pack("!BBQ", 0x82, 0x80 | 127, (1 << 63) | 5) + b"\x00\x00\x00\x00"
    assert_connection_failed(server, recorder, top_bit, PROTOCOL_ERROR)
    announced = struct.pack("!BBH", 0x82, 0x80 | 126, 1025) + b"\x00\x00\x00\x00"
    assert_connection_failed(server, recorder, announced, TOO_BIG)
    after = server.call(server.app.stats)

    assert after["http_rejections"] - before["http_rejections"] == 2, (before, after)
    assert after["protocol_errors"] - before["protocol_errors"] == 2, (before, after)
    lines = log_lines(caplog)
    for mark in ("431", "400", "1002", "1009"):
        assert any(mark in line and "127.0.0.1" in line for line in lines), (
            f"no log line with {mark} and the peer address; uws_py log was {lines}"
        )
    with connect(*server.address) as client:
        assert echo_latency(client) < MAX_BYSTANDER_LATENCY


# -- frames ---------------------------------------------------------------------------------------


@pytest.fixture
def small_server(pool, recorder):
    return pool.start(recorder.behavior(max_payload_length=1024))


def test_frame_announcing_one_byte_over_the_limit_fails_before_its_payload(small_server, recorder):
    """Only the 4-byte header and the mask go out; the payload never does."""
    header = struct.pack("!BBH", 0x82, 0x80 | 126, 1025) + b"\x01\x02\x03\x04"
    started = time.monotonic()
    assert_connection_failed(small_server, recorder, header, TOO_BIG)
    assert time.monotonic() - started < 1.0


def test_endless_one_byte_continuations_fail_at_max_payload_length(small_server, recorder):
    frames = [encode_frame(Op.BINARY, b"a", fin=False)]
    frames += [encode_frame(Op.CONTINUATION, b"b", fin=False) for _ in range(2 * 1024)]
    assert_connection_failed(small_server, recorder, b"".join(frames), TOO_BIG)


def test_64_bit_length_with_the_top_bit_set_is_a_protocol_error(pool, recorder):
    """RFC 6455 5.2: the most significant bit of a 64-bit length must be 0. The default
    max_payload_length is far below it, so 1002 proves the top bit is checked first."""
    server = pool.start(recorder.behavior())
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, (1 << 63) | 5) + b"\x01\x02\x03\x04"
    assert_connection_failed(server, recorder, header, PROTOCOL_ERROR)


def test_ping_flood_from_a_client_that_never_reads_stays_bounded(pool, recorder):
    """Rounds of 10 000 pings of 125 bytes from a client that reads nothing. The kernel's
    socket buffers (up to tcp_wmem's 4 MiB) swallow the first pongs; once they are full the
    server's own buffer for that socket must stop at max_backpressure (pongs are skipped),
    memory must stay flat and another client must not notice."""
    limit = 256 * 1024
    per_round = 10_000
    server = pool.start(recorder.behavior(max_backpressure=limit))
    flood = b"".join(encode_frame(Op.PING, payload_of_size(125, i)) for i in range(per_round))
    rss_before = rss_bytes()
    buffered_after_round = []
    latencies = []
    with connect(*server.address, recv_buffer_size=4096) as flooder, connect(*server.address) as bystander:
        flooder_ws = recorder.next_open()
        recorder.next_open()
        bytes_in_before = server.call(server.app.stats)["bytes_in"]
        # Until the server has buffered pongs in user space for two rounds (10 rounds at most).
        while sum(1 for b in buffered_after_round if b) < 2 and len(buffered_after_round) < 10:
            sender = threading.Thread(target=flooder.send_raw, args=(flood, True), daemon=True)
            sender.start()
            while sender.is_alive():
                latencies.append(echo_latency(bystander))
            sender.join()
            sent = len(flood) * (len(buffered_after_round) + 1)
            deadline = time.monotonic() + 5.0
            while server.call(server.app.stats)["bytes_in"] - bytes_in_before < sent:
                assert time.monotonic() < deadline, "the server did not read a round of pings within 5 s"
                time.sleep(0.05)
            buffered_after_round.append(server.call(flooder_ws.get_buffered_amount))
        still_open = not server.call(flooder_ws.is_closed)
        latencies.append(echo_latency(bystander))
        growth = rss_bytes() - rss_before

        pongs = 0
        try:
            while flooder.recv_frame(timeout=0.5).opcode == Op.PONG:
                pongs += 1
        except (TimeoutError, ConnectionClosed):
            pass
    pings = per_round * len(buffered_after_round)
    print(f"ping flood: {pings} pings, {pongs} pongs reached the client, bytes buffered for it after "
          f"each round {buffered_after_round}, still open: {still_open}, RSS growth {growth / MIB:.1f} MiB")
    assert max(buffered_after_round) <= limit, f"pongs buffered past max_backpressure: {buffered_after_round}"
    assert any(buffered_after_round), "the kernel took every pong: the flood never reached the server's buffer"
    assert pongs < pings, "every ping was answered although the client never read"
    assert growth < 32 * MIB, f"RSS grew {growth / MIB:.1f} MiB during a ping flood"
    assert max(latencies) < MAX_BYSTANDER_LATENCY, f"bystander echo latencies up to {max(latencies):.3f} s"
