"""Pub/sub: who receives a publish, the subscription API and its handler, order under load,
cleanup when sockets leave, and what a subscriber that stops reading costs the others.

Subscriptions and publishes run on the loop thread through Server.call. Whether a client did
*not* get a message is checked with a marker: after the publishes, the server sends each socket
a marker of its own with ws.send, which must be the next thing that socket reads."""

from __future__ import annotations

import contextlib
import queue
import selectors
import struct
import time

import pytest

from tests.support.harness import assert_nothing_more, payload_of_size, wait_for
from uws_py import OpCode
from tests.support.wsclient import ConnectionClosed, Op, connect

POLICY_VIOLATION = 1008


class PubSubRecorder:
    """The pub/sub handlers, all writing into one ordered event queue."""

    def __init__(self, recorder) -> None:
        self.recorder = recorder
        self.events: queue.Queue = queue.Queue()

    def behavior(self, **overrides) -> dict:
        guard = self.recorder.guard

        def on_close(ws, code, reason):
            self.recorder.closes.put((ws, code, reason))
            self.events.put(("close", ws, code))

        handlers = {
            "close": guard(on_close),
            "subscription": guard(
                lambda ws, topic, new, old: self.events.put(("subscription", ws, topic, new, old))
            ),
            "dropped": guard(
                lambda ws, message, opcode: self.events.put(("dropped", ws, message, opcode))
            ),
        }
        handlers.update(overrides)
        return self.recorder.behavior(**handlers)

    def next_event(self, timeout: float = 5.0) -> tuple:
        return wait_for(self.events, "a pub/sub handler call", timeout)

    def drain(self) -> list:
        events = []
        with contextlib.suppress(queue.Empty):
            while True:
                events.append(self.events.get_nowait())
        return events


@pytest.fixture
def pubsub(recorder):
    return PubSubRecorder(recorder)


@contextlib.contextmanager
def open_clients(server, recorder, count: int, **connect_options):
    """count connected clients, each paired with its server-side handle: [(client, ws), ...]."""
    pairs = []
    try:
        for _ in range(count):
            client = connect(*server.address, **connect_options)
            pairs.append((client, recorder.next_open()))
        yield pairs
    finally:
        for client, _ in pairs:
            client.sock.close()


def send_markers(server, pairs) -> None:
    server.call(lambda: [ws.send(f"marker-{i}") for i, (_, ws) in enumerate(pairs)])


def read_until_marker(client, index: int) -> list:
    """Every message before this client's marker, as (opcode, payload)."""
    received = []
    while True:
        message = client.recv_message()
        if message == (Op.TEXT, f"marker-{index}".encode()):
            return received
        received.append(tuple(message))


def test_publish_reaches_exactly_the_subscribers(make_server, recorder, pubsub):
    server = make_server(pubsub.behavior())
    with open_clients(server, recorder, 4) as pairs:
        (_, ws0), (_, ws1), (_, ws2), (_, ws3) = pairs
        server.call(lambda: [ws.subscribe("A") for ws in (ws0, ws1, ws2)] + [ws3.subscribe("B")])
        counts = server.call(lambda: [server.app.num_subscribers(t) for t in ("A", "B")])
        assert counts == [3, 1]

        before = server.call(server.app.stats)
        results = server.call(
            lambda: [
                ws0.publish("A", "from ws0 to A"),
                ws3.publish("A", b"from ws3, not a subscriber"),
                server.app.publish("A", "app to A"),
                ws3.publish("B", "from ws3, the only subscriber of B"),
                server.app.publish("B", b"app to B"),
            ]
        )
        after = server.call(server.app.stats)
        assert results[0] and results[1] and results[2] and results[4]
        send_markers(server, pairs)

        expected = {
            0: [(Op.BINARY, b"from ws3, not a subscriber"), (Op.TEXT, b"app to A")],
            1: [
                (Op.TEXT, b"from ws0 to A"),
                (Op.BINARY, b"from ws3, not a subscriber"),
                (Op.TEXT, b"app to A"),
            ],
            2: [
                (Op.TEXT, b"from ws0 to A"),
                (Op.BINARY, b"from ws3, not a subscriber"),
                (Op.TEXT, b"app to A"),
            ],
            3: [(Op.BINARY, b"app to B")],
        }
        for index, (client, _) in enumerate(pairs):
            assert read_until_marker(client, index) == expected[index], f"client {index}"

    assert after["publishes"] - before["publishes"] == 5
    # 2 (ws0 -> A) + 3 (ws3 -> A) + 3 (app -> A) + 0 (ws3 -> B) + 1 (app -> B)
    assert after["deliveries"] - before["deliveries"] == 9


def test_opcode_argument_overrides_the_type(make_server, recorder, pubsub):
    server = make_server(pubsub.behavior())
    with open_clients(server, recorder, 1) as [(client, ws)]:
        server.call(lambda: ws.subscribe("T"))
        server.call(lambda: server.app.publish("T", b"bytes as text", OpCode.TEXT))
        server.call(lambda: server.app.publish("T", "text as binary", OpCode.BINARY))
        assert client.recv_message() == (Op.TEXT, b"bytes as text")
        assert client.recv_message() == (Op.BINARY, b"text as binary")


def test_subscription_api_return_values(make_server, recorder, pubsub):
    server = make_server(pubsub.behavior())
    app = server.app
    with open_clients(server, recorder, 2) as [(_, ws), (_, other)]:

        def exercise():
            return {
                "publish with no topic": app.publish("news", "nobody"),
                "ws.publish with no topic": ws.publish("news", "nobody"),
                "subscribe": ws.subscribe("news"),
                "subscribe again": ws.subscribe("news"),
                "is_subscribed": ws.is_subscribed("news"),
                "other is_subscribed": other.is_subscribed("news"),
                "is_subscribed unknown": ws.is_subscribed("sports"),
                "subscribe second": ws.subscribe("sports"),
                "topics": sorted(ws.get_topics()),
                "other topics": other.get_topics(),
                "num_subscribers": app.num_subscribers("news"),
                "num_subscribers unknown": app.num_subscribers("weather"),
                "app.publish": app.publish("news", "hello"),
                "other.publish": other.publish("news", "hello"),
                "unsubscribe": ws.unsubscribe("news"),
                "unsubscribe again": ws.unsubscribe("news"),
                "other unsubscribe": other.unsubscribe("sports"),
                "topics after": ws.get_topics(),
                "is_subscribed after": ws.is_subscribed("news"),
                "num_subscribers after": app.num_subscribers("news"),
                "publish after": app.publish("news", "nobody again"),
            }

        assert server.call(exercise) == {
            "publish with no topic": False,
            "ws.publish with no topic": False,
            "subscribe": True,
            "subscribe again": False,
            "is_subscribed": True,
            "other is_subscribed": False,
            "is_subscribed unknown": False,
            "subscribe second": True,
            "topics": ["news", "sports"],
            "other topics": [],
            "num_subscribers": 1,
            "num_subscribers unknown": 0,
            "app.publish": True,
            "other.publish": True,
            "unsubscribe": True,
            "unsubscribe again": False,
            "other unsubscribe": False,
            "topics after": ["sports"],
            "is_subscribed after": False,
            "num_subscribers after": 0,
            "publish after": False,
        }


def test_subscription_handler_counts(make_server, recorder, pubsub):
    server = make_server(pubsub.behavior())
    with open_clients(server, recorder, 3) as pairs:
        handles = [ws for _, ws in pairs]
        for ws in handles:
            server.call(lambda ws=ws: ws.subscribe("T"))
        assert [pubsub.next_event() for _ in handles] == [
            ("subscription", handles[0], "T", 1, 0),
            ("subscription", handles[1], "T", 2, 1),
            ("subscription", handles[2], "T", 3, 2),
        ]
        server.call(lambda: handles[2].subscribe("T"))  # already: no handler call
        server.call(lambda: handles[1].unsubscribe("T"))
        assert pubsub.next_event() == ("subscription", handles[1], "T", 2, 3)
        server.call(lambda: handles[1].unsubscribe("T"))  # not subscribed: no handler call
        server.call(lambda: handles[0].subscribe("U"))
        assert pubsub.next_event() == ("subscription", handles[0], "U", 1, 0)

        # Closing runs the close handler, then one subscription call per topic it held.
        pairs[0][0].close(1000)
        first = pubsub.next_event()
        assert first == ("close", handles[0], 1000)
        leaving = {pubsub.next_event() for _ in range(2)}
        assert leaving == {
            ("subscription", handles[0], "T", 1, 2),
            ("subscription", handles[0], "U", 0, 1),
        }
        assert_nothing_more(pubsub.events, "pub/sub handler call")
        assert server.call(lambda: server.app.num_subscribers("T")) == 1


def read_numbered_frames(clients: list, total: int, deadline: float) -> None:
    """Reads from many sockets at once until each has received binary messages 0..total-1 in
    order, each payload being its 4-byte sequence number followed by seq % 7 filler bytes."""
    selector = selectors.DefaultSelector()
    state = {}
    for client in clients:
        client.sock.setblocking(False)
        # Whatever came with the 101 is the start of the stream.
        state[client.sock] = [bytearray(client._buffer), 0]
        selector.register(client.sock, selectors.EVENT_READ)
    pending = len(clients)
    try:
        while pending:
            remaining = deadline - time.monotonic()
            assert remaining > 0, (
                f"{pending} subscribers still incomplete: "
                f"{sorted(seq for _, seq in state.values())[:5]} messages received"
            )
            for key, _ in selector.select(min(remaining, 1.0)):
                sock = key.fileobj
                entry = state[sock]
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionClosed(f"subscriber closed after {entry[1]} messages")
                buffer = entry[0]
                buffer += chunk
                offset, seq = 0, entry[1]
                while len(buffer) - offset >= 2:
                    first, length = buffer[offset], buffer[offset + 1]
                    assert first == 0x82 and length < 126, (
                        f"unexpected frame header {bytes(buffer[offset:offset + 2])!r} "
                        f"at message {seq}"
                    )
                    if len(buffer) - offset - 2 < length:
                        break
                    payload = buffer[offset + 2 : offset + 2 + length]
                    assert payload == numbered(seq), (
                        f"expected message {seq}, got {bytes(payload)!r}"
                    )
                    seq += 1
                    offset += 2 + length
                del buffer[:offset]
                entry[1] = seq
                assert seq <= total, f"more than {total} messages"
                if seq == total and not buffer:
                    selector.unregister(sock)
                    pending -= 1
    finally:
        selector.close()


def numbered(seq: int) -> bytes:
    return struct.pack("!I", seq) + b"~" * (seq % 7)


def test_order_under_load_100_subscribers(make_server, recorder, pubsub):
    subscribers, messages, batch = 100, 10_000, 250
    server = make_server(pubsub.behavior(max_backpressure=16 * 1024 * 1024))
    app = server.app
    with open_clients(server, recorder, subscribers) as pairs:
        server.call(lambda: [ws.subscribe("load") for _, ws in pairs])
        before = server.call(app.stats)

        def publish_batch(start: int) -> None:
            for seq in range(start, start + batch):
                app.publish("load", numbered(seq))

        # Queued from this thread without waiting: the loop runs the batches while we read.
        for start in range(0, messages, batch):
            app.defer(lambda start=start: publish_batch(start))
        read_numbered_frames([client for client, _ in pairs], messages, time.monotonic() + 30)
        after = server.call(app.stats)

    assert after["publishes"] - before["publishes"] == messages
    assert after["deliveries"] - before["deliveries"] == messages * subscribers
    assert after["drops"] == before["drops"]


def test_socket_on_two_topics_gets_each_message_once_in_order(make_server, recorder, pubsub):
    server = make_server(pubsub.behavior())
    app = server.app
    with open_clients(server, recorder, 3) as pairs:
        (_, both), (_, only_a), (_, only_b) = pairs
        server.call(
            lambda: [
                both.subscribe("A"),
                both.subscribe("B"),
                only_a.subscribe("A"),
                only_b.subscribe("B"),
            ]
        )
        sequence = [("A", "a0"), ("B", "b0"), ("B", "b1"), ("A", "a1"), ("A", "a2"), ("B", "b2")]
        server.call(lambda: [app.publish(topic, text) for topic, text in sequence])
        # A second loop iteration: order holds across batches too.
        server.call(lambda: [app.publish("B", "b3"), app.publish("A", "a3")])
        send_markers(server, pairs)

        texts = [text for _, text in sequence] + ["b3", "a3"]
        received = [
            [payload.decode() for _, payload in read_until_marker(client, i)]
            for i, (client, _) in enumerate(pairs)
        ]
    assert received[0] == texts
    assert received[1] == [t for t in texts if t.startswith("a")]
    assert received[2] == [t for t in texts if t.startswith("b")]


def test_unsubscribe_and_close_remove_every_subscription(make_server, recorder, pubsub):
    server = make_server(pubsub.behavior())
    app = server.app
    topics = [f"topic-{i}" for i in range(5)]

    def counts() -> list:
        return server.call(lambda: [app.num_subscribers(t) for t in topics])

    clients = [connect(*server.address) for _ in range(4)]
    handles = [recorder.next_open() for _ in clients]
    try:
        server.call(lambda: [ws.subscribe(t) for ws in handles for t in topics])
        assert counts() == [4] * 5
        server.call(lambda: [handles[0].unsubscribe(t) for t in topics[:3]])
        assert counts() == [3, 3, 3, 4, 4]
        assert server.call(lambda: sorted(handles[0].get_topics())) == topics[3:]

        # Every way of leaving: close handshake, TCP FIN, TCP RST, server-side end().
        clients[0].close(1000)
        clients[1].disconnect()
        clients[2].reset()
        server.call(lambda: handles[3].end(1000))
        for _ in range(4):
            recorder.next_close()
        assert counts() == [0] * 5
        assert server.call(lambda: [app.publish(t, "anyone?") for t in topics]) == [False] * 5
    finally:
        for client in clients:
            client.sock.close()

    # A new socket subscribing afresh starts from a count of 1.
    with open_clients(server, recorder, 1) as [(_, ws)]:
        pubsub.drain()
        server.call(lambda: ws.subscribe(topics[0]))
        assert pubsub.next_event() == ("subscription", ws, topics[0], 1, 0)


SLOW_LIMIT = 64 * 1024
SLOW_MESSAGE = 16 * 1024
# Enough to fill the kernel buffers of loopback behind a reader that stopped, however large
# they grow; a server that never drops fails the test instead of publishing forever.
MAX_PUBLISHES = 4000
PUBLISHES_AFTER_FIRST_DROP = 20
SMALL_RECEIVE_BUFFER = 4096


def slow_payload(seq: int) -> bytes:
    return struct.pack("!I", seq) + payload_of_size(SLOW_MESSAGE - 4, seed=seq % 251)


def publish_past_the_slow_subscriber(server, fast_clients, slow_is_done) -> int:
    """Publishes one message per loop iteration; each fast client reads it before the next, so
    only the subscriber that stopped reading can go over max_backpressure. Returns how many were
    published."""
    published = 0
    stop_at = MAX_PUBLISHES
    while published < stop_at:
        assert server.call(lambda seq=published: server.app.publish("feed", slow_payload(seq)))
        for index, client in enumerate(fast_clients):
            message = client.recv_message(timeout=5)
            assert message == (Op.BINARY, slow_payload(published)), (
                f"fast subscriber {index} did not get message {published} next"
            )
        published += 1
        if stop_at == MAX_PUBLISHES and slow_is_done():
            stop_at = published + PUBLISHES_AFTER_FIRST_DROP
    return published


def test_slow_subscriber_is_dropped_without_stalling_the_others(make_server, recorder, pubsub):
    server = make_server(
        pubsub.behavior(max_backpressure=SLOW_LIMIT, close_on_backpressure_limit=False)
    )
    with open_clients(server, recorder, 1, recv_buffer_size=SMALL_RECEIVE_BUFFER) as slow_pairs:
        with open_clients(server, recorder, 3) as fast_pairs:
            (slow_client, slow_ws) = slow_pairs[0]
            server.call(lambda: [ws.subscribe("feed") for _, ws in slow_pairs + fast_pairs])
            pubsub.drain()
            before = server.call(server.app.stats)
            dropped = []

            def slow_was_dropped() -> bool:
                dropped.extend(pubsub.drain())
                return any(event[0] == "dropped" for event in dropped)

            published = publish_past_the_slow_subscriber(
                server, [c for c, _ in fast_pairs], slow_was_dropped
            )
            after = server.call(server.app.stats)
            dropped.extend(pubsub.drain())

            assert published < MAX_PUBLISHES, (
                f"no drop after {published} messages of {SLOW_MESSAGE} bytes to a stalled reader"
            )
            assert {event[0] for event in dropped} == {"dropped"}, dropped
            assert all(event[1] == slow_ws for event in dropped), "a fast subscriber was dropped"
            assert all(event[3] == OpCode.BINARY for event in dropped)
            dropped_seqs = [struct.unpack_from("!I", event[2])[0] for event in dropped]
            assert all(event[2] == slow_payload(s) for event, s in zip(dropped, dropped_seqs))
            assert after["drops"] - before["drops"] == len(dropped)
            assert after["publishes"] - before["publishes"] == published
            assert after["deliveries"] - before["deliveries"] == 4 * published - len(dropped)
            assert server.call(lambda: server.app.num_subscribers("feed")) == 4
            assert recorder.closes.empty()

            # The slow reader now reads what it was sent: in order, each message either
            # delivered or reported dropped, never both.
            received = []
            while True:
                try:
                    message = slow_client.recv_message(timeout=1.0)
                except TimeoutError:
                    break
                seq = struct.unpack_from("!I", message.payload)[0]
                assert message == (Op.BINARY, slow_payload(seq))
                received.append(seq)
            assert received == sorted(received), "slow subscriber got messages out of order"
            assert sorted(received + dropped_seqs) == list(range(published))


def test_slow_subscriber_is_closed_with_close_on_backpressure_limit(make_server, recorder, pubsub):
    server = make_server(
        pubsub.behavior(max_backpressure=SLOW_LIMIT, close_on_backpressure_limit=True)
    )
    with open_clients(server, recorder, 1, recv_buffer_size=SMALL_RECEIVE_BUFFER) as slow_pairs:
        with open_clients(server, recorder, 3) as fast_pairs:
            (slow_client, slow_ws) = slow_pairs[0]
            server.call(lambda: [ws.subscribe("feed") for _, ws in slow_pairs + fast_pairs])
            pubsub.drain()
            before = server.call(server.app.stats)
            published = publish_past_the_slow_subscriber(
                server, [c for c, _ in fast_pairs], lambda: not recorder.closes.empty()
            )
            after = server.call(server.app.stats)

            assert published < MAX_PUBLISHES, (
                f"slow subscriber not closed after {published} messages of {SLOW_MESSAGE} bytes"
            )
            ws, code, _ = recorder.next_close()
            assert ws == slow_ws
            assert code == POLICY_VIOLATION, "closed with 1008 since issue 12 (was 1006, a bare TCP close)"
            assert_nothing_more(recorder.closes, "close of a fast subscriber")
            assert after["drops"] > before["drops"]
            assert server.call(lambda: server.app.num_subscribers("feed")) == 3
            events = pubsub.drain()
            assert ("subscription", slow_ws, "feed", 3, 4) in events
            dropped = [event for event in events if event[0] == "dropped"]
            assert not dropped, "the closed subscriber was also reported dropped"
            assert slow_client.wait_for_eof(10.0), "slow subscriber's TCP was not closed"
