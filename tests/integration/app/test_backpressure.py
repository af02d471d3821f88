"""Backpressure: what send returns when the client does not read, how the buffer drains, and
what max_backpressure and close_on_backpressure_limit do.

The client shrinks its receive buffer before connecting so the kernel refuses bytes early; the
sends run on the loop thread in one deferred call, so the client cannot read in between."""

from __future__ import annotations

import struct

from tests.support.harness import payload_of_size, wait_for
from uws_py import SendStatus
from tests.support.wsclient import Op, connect

MESSAGE_SIZE = 64 * 1024
# 64 MiB: far more than loopback kernel buffers hold, so a server that never reports
# backpressure fails the test instead of looping forever.
MAX_SENDS = 1024
SMALL_RECEIVE_BUFFER = 4096
EXTRA_SENDS = 3


def numbered(seq: int) -> bytes:
    return struct.pack("!I", seq) + payload_of_size(MESSAGE_SIZE - 4, seed=seq % 251)


def send_until(ws, stop_at: set) -> tuple:
    """Sends numbered messages until one returns a status in stop_at; returns the statuses and
    the buffered amount after the last send. Runs on the loop thread."""
    statuses = []
    for seq in range(MAX_SENDS):
        statuses.append(ws.send(numbered(seq)))
        if statuses[-1] in stop_at:
            break
    return statuses, ws.get_buffered_amount()


def read_numbered(client, count: int) -> None:
    for seq in range(count):
        message = client.recv_message(timeout=10)
        assert message.opcode == Op.BINARY
        assert message.payload[:4] == struct.pack("!I", seq), f"expected message {seq}"
        assert message.payload == numbered(seq), f"message {seq} corrupted"


def test_backpressure_reported_then_drained(make_server, recorder):
    server = make_server(recorder.behavior(max_backpressure=16 * 1024 * 1024))
    with connect(*server.address, recv_buffer_size=SMALL_RECEIVE_BUFFER) as client:
        ws = recorder.next_open()
        assert server.call(ws.get_buffered_amount) == 0

        def fill():
            statuses, buffered = send_until(ws, {SendStatus.BACKPRESSURE, SendStatus.DROPPED})
            growth = [buffered]
            for seq in range(len(statuses), len(statuses) + EXTRA_SENDS):
                statuses.append(ws.send(numbered(seq)))
                growth.append(ws.get_buffered_amount())
            return statuses, growth

        statuses, growth = server.call(fill)
        first = len(statuses) - EXTRA_SENDS - 1
        assert statuses[first] == SendStatus.BACKPRESSURE, (
            f"send {first} returned {statuses[first]!r}"
        )
        assert set(statuses[:first]) <= {SendStatus.SUCCESS}
        assert statuses[first + 1 :] == [SendStatus.BACKPRESSURE] * EXTRA_SENDS
        assert growth[0] > 0
        assert growth == sorted(set(growth)), (
            f"buffered amount did not grow with each send: {growth}"
        )
        assert growth[-1] >= EXTRA_SENDS * MESSAGE_SIZE

        read_numbered(client, len(statuses))
        wait_for(recorder.drains, "the drain handler after the client read")
        assert server.call(ws.get_buffered_amount) == 0


def test_dropped_over_max_backpressure(make_server, recorder):
    limit = 256 * 1024
    server = make_server(
        recorder.behavior(max_backpressure=limit, close_on_backpressure_limit=False)
    )
    with connect(*server.address, recv_buffer_size=SMALL_RECEIVE_BUFFER) as client:
        ws = recorder.next_open()
        statuses, buffered = server.call(lambda: send_until(ws, {SendStatus.DROPPED}))
        assert statuses[-1] == SendStatus.DROPPED, (
            f"no DROPPED after {len(statuses)} sends of 64 KiB"
        )
        assert SendStatus.BACKPRESSURE in statuses
        assert buffered + MESSAGE_SIZE > limit, f"dropped with only {buffered} bytes buffered"

        delivered = len(statuses) - 1
        read_numbered(client, delivered)
        # The dropped message must never arrive: the next one is whatever is sent now.
        assert server.call(lambda: ws.send("after the drop")) == SendStatus.SUCCESS
        assert client.recv_message() == (Op.TEXT, b"after the drop")
        assert recorder.closes.empty()


def test_close_on_backpressure_limit(make_server, recorder):
    server = make_server(
        recorder.behavior(max_backpressure=256 * 1024, close_on_backpressure_limit=True)
    )

    def send_until_closed(ws):
        outcomes = []
        for seq in range(MAX_SENDS):
            try:
                outcomes.append(ws.send(numbered(seq)))
            except RuntimeError:
                outcomes.append("raised")
                break
            if outcomes[-1] == SendStatus.DROPPED:
                break
        return outcomes

    with connect(*server.address, recv_buffer_size=SMALL_RECEIVE_BUFFER) as client:
        ws = recorder.next_open()
        outcomes = server.call(lambda: send_until_closed(ws))
        assert outcomes[-1] in (SendStatus.DROPPED, "raised"), (
            f"still sending after {len(outcomes)} sends"
        )
        recorder.next_close()
        assert client.wait_for_eof(10.0), "socket over the limit was not closed"
