"""Floods: thousands of connections at once, a client sending as fast as it can to a
rate-limited RealtimeServer, a publish flood to subscribers of which some stop reading, and a
ping flood from a client that never reads.
In each, the point is that the server goes on serving everyone else within bounded memory.
(Malformed heads and frames are in test_hostile.py.)
"""

from __future__ import annotations

import resource
import selectors
import socket
import statistics
import struct
import threading
import time

import orjson
import pytest

from tests.support.harness import HOST, payload_of_size
from tests.support.hostile import MAX_BYSTANDER_LATENCY, MIB, echo_latency, rss_bytes
from tests.support.realtime import (
    WAIT,
    realtime_server,
    request,
)
from uws_py import RateLimit
from tests.support.wsclient import ConnectionClosed, Op, connect, encode_frame, handshake_request, parse_close_payload


@pytest.fixture
def many_descriptors():
    """RLIMIT_NOFILE raised to its hard limit for the test, then restored."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def p99(samples: list) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98] if len(samples) >= 2 else max(samples)


# -- connection storm ---------------------------------------------------------------------------


class Storm:
    """count WebSocket upgrades started at once on non-blocking sockets, driven by one
    selector: connect, send the request, read until the 101's head is complete."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.sockets: list = []
        self.upgraded = 0
        self.failures: list = []
        self.done = threading.Event()

    def run(self, timeout: float) -> None:
        selector = selectors.DefaultSelector()
        request = handshake_request(host=f"{HOST}:{self.port}")
        received: dict = {}
        try:
            for _ in range(self.count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                self.sockets.append(sock)
                sock.connect_ex((HOST, self.port))
                selector.register(sock, selectors.EVENT_WRITE)
            deadline = time.monotonic() + timeout
            pending = self.count
            while pending and time.monotonic() < deadline:
                for key, events in selector.select(0.1):
                    sock = key.fileobj
                    if events & selectors.EVENT_WRITE:
                        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if error:
                            self.failures.append(f"connect failed: errno {error}")
                            selector.unregister(sock)
                            pending -= 1
                            continue
                        sock.send(request)  # a few hundred bytes into an empty send buffer
                        received[sock] = b""
                        selector.modify(sock, selectors.EVENT_READ)
                        continue
                    chunk = sock.recv(4096)
                    received[sock] += chunk
                    if b"\r\n\r\n" in received[sock] or not chunk:
                        if received[sock].startswith(b"HTTP/1.1 101 "):
                            self.upgraded += 1
                        else:
                            self.failures.append(received[sock][:80])
                        selector.unregister(sock)
                        pending -= 1
        finally:
            selector.close()
            self.done.set()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def test_storm_of_3000_connections_leaves_an_established_client_echoing(pool, recorder, many_descriptors):
    count = 3000
    assert many_descriptors >= 2 * count + 100, f"RLIMIT_NOFILE hard limit {many_descriptors} is too low"
    server = pool.start({"message": lambda ws, message, opcode: ws.send(message, opcode)})
    storm = Storm(server.port, count)
    with connect(*server.address) as client:
        baseline = [echo_latency(client) for _ in range(20)]
        thread = threading.Thread(target=storm.run, args=(30.0,), daemon=True)
        try:
            thread.start()
            during = []
            while not storm.done.is_set():
                during.append(echo_latency(client))
                time.sleep(0.01)
            thread.join(5.0)
            opened = server.call(server.app.stats)["open_connections"]
            print(f"storm: {storm.upgraded}/{count} upgraded; echo p99 {p99(baseline) * 1000:.1f} ms before, "
                  f"{p99(during) * 1000:.1f} ms during ({len(during)} samples, max {max(during) * 1000:.1f} ms)")
            assert storm.upgraded == count, f"{count - storm.upgraded} upgrades failed: {storm.failures[:5]}"
            assert opened == count + 1, f"open_connections {opened} with {count + 1} clients"
            assert len(during) >= 5, "the storm ended before the latency could be measured"
            assert p99(during) < 0.25, f"echo p99 {p99(during) * 1000:.0f} ms during the storm"
        finally:
            storm.close()
        deadline = time.monotonic() + 10.0
        while server.call(server.app.stats)["open_connections"] > 1:
            assert time.monotonic() < deadline, "the storm's connections were not all closed within 10 s"
            time.sleep(0.05)
        assert echo_latency(client) < 0.2


# -- message flood against a rate limit --------------------------------------------------------


def test_client_flooding_a_rate_limited_server_is_closed_while_another_is_answered(serve):
    live = serve(realtime_server(rate_limit=RateLimit(messages=50, per_seconds=1)))
    noisy, _ = live.join("noisy")
    quiet, _ = live.join("quiet")
    burst = b"".join(encode_frame(Op.TEXT, orjson.dumps({"type": "PING", "id": i})) for i in range(50))
    replies: list = []
    closed: list = []

    def flood() -> None:
        # As fast as it can: bursts of 50 PINGs, reading whatever came back in between.
        deadline = time.monotonic() + 10.0
        while not closed and time.monotonic() < deadline:
            noisy.send_raw(burst, tolerate_reset=True)
            try:
                while True:
                    message = noisy.recv_message(timeout=0.001)
                    if message.opcode == Op.CLOSE:
                        closed.append(parse_close_payload(message.payload))
                        return
                    replies.append(orjson.loads(message.payload))
            except TimeoutError:
                pass
            except ConnectionClosed:
                closed.append("TCP closed without a close frame")
                return

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    # Requests while the flood goes on and after it; 40 stays under the quiet client's 50.
    answered = [request(quiet, {"type": "PING", "id": i})["type"] for i in range(40)]
    flooder.join(12.0)
    assert not flooder.is_alive(), "the flooding client was not closed within 10 s"
    types = [reply.get("code", reply["type"]) for reply in replies]
    assert "RATE_LIMITED" in types, f"the flood was never refused: {types[:60]}"
    assert closed == [(1008, b"rate limit exceeded")], f"the flood ended with {closed}"
    assert answered and set(answered) == {"PONG"}, f"the quiet client got {answered}"
    assert request(quiet, {"type": "PING", "id": "after"})["type"] == "PONG"


# -- publish flood -------------------------------------------------------------------------------

MESSAGE_SIZE = 4096
FRAME_HEADER = struct.pack("!BBH", 0x82, 126, MESSAGE_SIZE)
FRAME_SIZE = len(FRAME_HEADER) + MESSAGE_SIZE


def numbered(seq: int) -> bytes:
    return struct.pack("!I", seq) + bytes(MESSAGE_SIZE - 4)


class InOrderReader:
    """Reads one subscriber's stream of equal-size binary frames and checks their numbers."""

    def __init__(self, client) -> None:
        self.client = client
        self.buffer = bytearray(client._buffer)
        self.received: list = []

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= FRAME_SIZE:
            assert self.buffer[:4] == FRAME_HEADER, f"unexpected frame header {bytes(self.buffer[:4])!r}"
            self.received.append(struct.unpack_from("!I", self.buffer, 4)[0])
            del self.buffer[:FRAME_SIZE]


@pytest.mark.parametrize("close_on_limit", [False, True], ids=["drop", "close"])
def test_publish_flood_drops_or_closes_slow_subscribers_only(pool, recorder, close_on_limit):
    count, batch, subscribers, slow_count = 2000, 16, 200, 20
    limit = 256 * 1024
    behavior = recorder.behavior(
        echo=False,
        open=lambda ws: ws.subscribe("flood"),
        max_backpressure=limit,
        close_on_backpressure_limit=close_on_limit,
    )
    server = pool.start(behavior)
    fast = [connect(*server.address) for _ in range(subscribers - slow_count)]
    slow = [connect(*server.address, recv_buffer_size=4096) for _ in range(slow_count)]
    try:
        deadline = time.monotonic() + WAIT
        while server.call(lambda: server.app.num_subscribers("flood")) < subscribers:
            assert time.monotonic() < deadline, "not every client subscribed"
            time.sleep(0.02)
        readers = {client.sock: InOrderReader(client) for client in fast}
        selector = selectors.DefaultSelector()
        for client in fast:
            client.sock.setblocking(False)
            selector.register(client.sock, selectors.EVENT_READ)
        rss_before = rss_bytes()
        published = 0

        def publish_batch(first: int) -> None:
            for seq in range(first, min(first + batch, count)):
                server.app.publish("flood", numbered(seq))

        # Publish a batch whenever the slowest fast reader is within two batches of it, so a
        # fast subscriber never holds more than ~128 KiB: only the slow ones reach the limit.
        deadline = time.monotonic() + 60.0
        while min(len(r.received) for r in readers.values()) < count:
            assert time.monotonic() < deadline, "the fast subscribers did not receive everything in 60 s"
            if published < count and published - min(len(r.received) for r in readers.values()) < 2 * batch:
                server.app.defer(lambda first=published: publish_batch(first))
                published += batch
            for key, _ in selector.select(0.01):
                try:
                    data = key.fileobj.recv(256 * 1024)
                except BlockingIOError:
                    continue
                assert data, "a fast subscriber was disconnected"
                readers[key.fileobj].feed(data)
        selector.close()
        growth = rss_bytes() - rss_before
        stats = server.call(server.app.stats)
        open_now = server.call(lambda: server.app.num_subscribers("flood"))
        closes = []
        while not recorder.closes.empty():
            closes.append(recorder.closes.get()[1])
    finally:
        for client in fast:
            client.sock.close()

    for reader in readers.values():
        assert reader.received == list(range(count)), "a fast subscriber missed or reordered messages"
    print(f"publish flood ({'close' if close_on_limit else 'drop'}): drops {stats['drops']}, "
          f"{open_now} subscribers left, RSS growth {growth / MIB:.1f} MiB")
    assert growth < 64 * MIB, f"RSS grew {growth / MIB:.1f} MiB during the publish flood"
    assert stats["drops"] > 0, stats
    if close_on_limit:
        assert closes == [1008] * slow_count, f"close codes seen: {closes}"
        assert open_now == subscribers - slow_count
        for client in slow:
            assert client.wait_for_eof(5.0), "a slow subscriber over the limit was not closed"
    else:
        assert closes == [] and open_now == subscribers, (closes, open_now)
        for client in slow:
            reader = InOrderReader(client)
            # All it will get is already queued: a pause means the end.
            client.sock.settimeout(0.15)
            try:
                while len(reader.received) < count:
                    data = client.sock.recv(256 * 1024)
                    if not data:
                        break
                    reader.feed(data)
            except socket.timeout:
                pass
            got = reader.received
            assert 0 < len(got) < count and got == sorted(set(got)), (
                f"a slow subscriber got {len(got)} messages, expected an increasing subset"
            )
    for client in slow:
        client.sock.close()


# -- ping flood -------------------------------------------------------------------------------


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
