"""The WebSocket API µWebSockets users expect (issue 12): ws.ping, fragmented sends, the
behavior options max_lifetime, reset_idle_timeout_on_send, send_pings_automatically and
close_on_backpressure_limit, subprotocol selection, and App.close(timeout) below a second.

Frames are read raw (tests.support.wsclient) so that FIN bits and opcodes are seen as sent."""

from __future__ import annotations

import queue
import threading
import time
import zlib

import pytest

from tests.support.harness import Server, payload_of_size, wait_for
from tests.support.wsclient import ConnectionClosed, Op, connect
from uws_py import App, SendStatus

SMALL_RECEIVE_BUFFER = 4096
POLICY_VIOLATION = 1008


# --- ws.ping -------------------------------------------------------------------------------

def test_ws_ping_sends_a_ping_frame_and_the_pong_reaches_the_pong_handler(make_server, recorder):
    pongs: queue.Queue = queue.Queue()
    server = make_server(recorder.behavior(pong=lambda ws, payload: pongs.put(payload)))
    with connect(*server.address) as client:
        ws = recorder.next_open()
        assert server.call(lambda: ws.ping(b"are you there")) == SendStatus.SUCCESS
        frame = client.recv_frame()
        assert frame == (True, Op.PING, b"are you there")
        client.send_frame(Op.PONG, frame.payload)
        assert wait_for(pongs, "the pong handler") == b"are you there"
        # The default payload is empty; str payloads go as UTF-8.
        assert server.call(lambda: ws.ping()) == SendStatus.SUCCESS
        assert client.recv_frame() == (True, Op.PING, b"")
        assert server.call(lambda: ws.ping(data="é")) == SendStatus.SUCCESS
        assert client.recv_frame().payload == "é".encode()


def test_ws_ping_over_125_bytes_raises_value_error(make_server, recorder):
    server = make_server(recorder.behavior())
    with connect(*server.address) as client:
        ws = recorder.next_open()
        assert server.call(lambda: ws.ping(b"x" * 125)) == SendStatus.SUCCESS
        with pytest.raises(ValueError, match="125"):
            server.call(lambda: ws.ping(b"x" * 126))
        assert client.recv_frame() == (True, Op.PING, b"x" * 125)
        client.send_text("still fine")
        assert client.recv_message() == (Op.TEXT, b"still fine")


def test_ws_ping_on_a_closed_socket_raises(make_server, recorder):
    from uws_py import WebSocketClosedError

    server = make_server(recorder.behavior())
    with connect(*server.address) as client:
        ws = recorder.next_open()
        client.close()
    recorder.next_close()
    with pytest.raises(WebSocketClosedError):
        server.call(lambda: ws.ping())


# --- fragmented sends ----------------------------------------------------------------------

def test_fragmented_send_frames_on_the_wire(make_server, recorder):
    server = make_server(recorder.behavior())
    with connect(*server.address) as client:
        ws = recorder.next_open()

        def send_in_three():
            return [ws.send_first_fragment("Hel"), ws.send_fragment("lo, "), ws.send_last_fragment("world")]

        assert server.call(send_in_three) == [SendStatus.SUCCESS] * 3
        frames = [client.recv_frame() for _ in range(3)]
        assert frames == [(False, Op.TEXT, b"Hel"), (False, Op.CONTINUATION, b"lo, "), (True, Op.CONTINUATION, b"world")]

        # Binary by default for bytes; opcode given explicitly wins; single-fragment message.
        server.call(lambda: (ws.send_first_fragment(b"\x00\x01", opcode=Op.BINARY), ws.send_last_fragment(b"")))
        assert [client.recv_frame() for _ in range(2)] == [(False, Op.BINARY, b"\x00\x01"), (True, Op.CONTINUATION, b"")]


def test_fragmented_send_reassembles_like_a_whole_message(make_server, recorder):
    """What Autobahn's case 1.x/5.x clients do: reassemble continuation frames into one message."""
    server = make_server(recorder.behavior())
    payload = payload_of_size(200_000, seed=3)
    pieces = [payload[i:i + 65_536] for i in range(0, len(payload), 65_536)]
    with connect(*server.address) as client:
        ws = recorder.next_open()

        def send_pieces():
            ws.send_first_fragment(pieces[0])
            for piece in pieces[1:-1]:
                ws.send_fragment(piece)
            ws.send_last_fragment(pieces[-1])

        server.call(send_pieces)
        assert client.recv_message(timeout=10) == (Op.BINARY, payload)
        # A whole message afterwards is a message of its own.
        assert server.call(lambda: ws.send("after")) == SendStatus.SUCCESS
        assert client.recv_message() == (Op.TEXT, b"after")


def test_fragmented_send_allows_a_control_frame_in_between(make_server, recorder):
    server = make_server(recorder.behavior())
    with connect(*server.address) as client:
        ws = recorder.next_open()

        def interleave():
            ws.send_first_fragment("one ")
            ws.ping(b"between")
            ws.send(b"also between", Op.PONG)
            ws.send_last_fragment("message")

        server.call(interleave)
        frames = [client.recv_frame() for _ in range(4)]
        assert frames == [
            (False, Op.TEXT, b"one "),
            (True, Op.PING, b"between"),
            (True, Op.PONG, b"also between"),
            (True, Op.CONTINUATION, b"message"),
        ]


def test_fragmented_send_refuses_another_data_message_in_between(make_server, recorder):
    server = make_server(recorder.behavior())
    with connect(*server.address) as client:
        ws = recorder.next_open()

        def interleave():
            errors = []
            ws.send_first_fragment("started")
            for attempt in (lambda: ws.send("whole"), lambda: ws.send_first_fragment("second")):
                try:
                    attempt()
                except RuntimeError as error:
                    errors.append(str(error))
            ws.send_last_fragment(" and finished")
            return errors

        errors = server.call(interleave)
        assert len(errors) == 2 and all("send_last_fragment" in e for e in errors), errors
        assert client.recv_message() == (Op.TEXT, b"started and finished")
        client.send_text("next")
        assert client.recv_message() == (Op.TEXT, b"next")


def test_fragment_without_a_first_fragment_raises(make_server, recorder):
    server = make_server(recorder.behavior())
    with connect(*server.address):
        ws = recorder.next_open()
        for call in (lambda: ws.send_fragment("x"), lambda: ws.send_last_fragment("x")):
            with pytest.raises(RuntimeError, match="send_first_fragment"):
                server.call(call)
        with pytest.raises(ValueError):
            server.call(lambda: ws.send_first_fragment("x", opcode=Op.PING))


def test_fragmented_send_holds_published_messages_until_the_last_fragment(make_server, recorder):
    server = make_server(recorder.behavior())
    with connect(*server.address) as client:
        ws = recorder.next_open()
        server.call(lambda: ws.subscribe("news"))

        def publish_inside():
            ws.send_first_fragment("frag")
            server.app.publish("news", "published")
            ws.send_last_fragment("mented")

        server.call(publish_inside)
        assert client.recv_message() == (Op.TEXT, b"fragmented")
        assert client.recv_message() == (Op.TEXT, b"published")


@pytest.mark.parametrize("compressor", ["SHARED_COMPRESSOR", "DEDICATED_COMPRESSOR_32KB"])
def test_fragmented_send_compressed_is_one_deflate_stream(make_server, recorder, compressor):
    from uws_py import CompressOptions

    server = make_server(recorder.behavior(compression=CompressOptions[compressor]))
    text = ("the quick brown fox jumps over the lazy dog " * 40).encode()
    with connect(*server.address, headers=[("Sec-WebSocket-Extensions", "permessage-deflate")]) as client:
        ws = recorder.next_open()
        # One inflater for the connection, keeping its context across messages as a client
        # may (RFC 7692): the dedicated compressor refers back into earlier messages.
        inflater = zlib.decompressobj(-15)
        for _ in range(2):
            server.call(lambda: (ws.send_first_fragment(text, Op.TEXT, compress=True), ws.send_fragment(b""),
                                 ws.send_fragment(text), ws.send_last_fragment(text)))
            frames = [client.recv_frame_with_rsv() for _ in range(4)]
            assert [rsv for _, rsv in frames] == [4, 0, 0, 0], "RSV1 on the first fragment only"
            assert [frame.fin for frame, _ in frames] == [False, False, False, True]
            assert frames[0][0].opcode == Op.TEXT and {f.opcode for f, _ in frames[1:]} == {Op.CONTINUATION}
            wire = b"".join(frame.payload for frame, _ in frames)
            assert len(wire) < len(text), "three copies compressed to less than one"
            assert inflater.decompress(wire + b"\x00\x00\xff\xff") == text * 3


# --- behavior options ----------------------------------------------------------------------

def seconds_until_closed(client, limit: float) -> float:
    """Reads (without answering pings) until the server's close frame or TCP close."""
    start = time.monotonic()
    try:
        while True:
            message = client.recv_message(timeout=max(limit - (time.monotonic() - start), 0.01), answer_pings=False)
            if message.opcode == Op.CLOSE:
                return time.monotonic() - start
    except ConnectionClosed:
        return time.monotonic() - start
    except TimeoutError:
        raise AssertionError(f"connection still open after {limit:.1f} s") from None


class Streamer:
    """Sends a message to ws every `period` seconds from the loop thread until stopped."""

    def __init__(self, server: Server, ws, period: float) -> None:
        self.server, self.ws, self.period = server, ws, period
        self.stopped = threading.Event()
        server.call(self.tick)

    def tick(self) -> None:
        if self.stopped.is_set() or self.ws.is_closed():
            return
        self.ws.send("tick")
        self.server.app.set_timeout(self.period, self.tick)


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "no-reset"])
def test_reset_idle_timeout_on_send(make_server, recorder, reset):
    idle = 2
    server = make_server(recorder.behavior(idle_timeout=idle, send_pings_automatically=False,
                                           reset_idle_timeout_on_send=reset))
    with connect(*server.address) as client:
        ws = recorder.next_open()
        streamer = Streamer(server, ws, 0.4)
        deadline = time.monotonic() + idle * 2.5
        closed = False
        try:
            while time.monotonic() < deadline:
                message = client.recv_message(timeout=deadline - time.monotonic() + 0.01, answer_pings=False)
                if message.opcode == Op.CLOSE:
                    closed = True
                    break
                assert message == (Op.TEXT, b"tick")
        except (TimeoutError, ConnectionClosed):
            pass
        finally:
            streamer.stopped.set()
        if reset:
            assert not closed, "a client the server kept sending to was closed as idle"
            assert recorder.closes.empty()
        else:
            assert closed, "sending postponed the idle timeout without reset_idle_timeout_on_send"


def test_send_pings_automatically_keeps_a_quiet_client_that_answers(make_server, recorder):
    idle = 2
    server = make_server(recorder.behavior(idle_timeout=idle, send_pings_automatically=True))
    with connect(*server.address) as client:
        deadline = time.monotonic() + idle * 2.5
        with pytest.raises(TimeoutError):
            client.recv_message(timeout=deadline - time.monotonic(), answer_pings=True)
        assert client.pings_received, "no automatic ping within two idle periods"
        client.send_text("alive")
        assert client.recv_message() == (Op.TEXT, b"alive")


def test_send_pings_automatically_off_closes_the_same_quiet_client(make_server, recorder):
    idle = 2
    server = make_server(recorder.behavior(idle_timeout=idle, send_pings_automatically=False))
    with connect(*server.address) as client:
        elapsed = seconds_until_closed(client, idle + 3)
        assert not client.pings_received
        assert elapsed >= idle * 0.5
    recorder.next_close()


def test_close_on_backpressure_limit_closes_with_1008(make_server, recorder):
    server = make_server(recorder.behavior(max_backpressure=256 * 1024, close_on_backpressure_limit=True))
    chunk = payload_of_size(64 * 1024)
    with connect(*server.address, recv_buffer_size=SMALL_RECEIVE_BUFFER) as client:
        ws = recorder.next_open()

        def flood():
            statuses = []
            for _ in range(1024):
                statuses.append(ws.send(chunk))
                if ws.is_closed():
                    break
            return statuses

        statuses = server.call(flood)
        assert statuses[-1] == SendStatus.DROPPED and ws.is_closed(), statuses[-3:]
        _, code, reason = recorder.next_close()
        assert (code, reason) == (POLICY_VIOLATION, b"backpressure limit")
        # The client that reads again finds everything queued, then the 1008 close frame.
        assert client.expect_close(timeout=10) == (POLICY_VIOLATION, b"backpressure limit")


def test_close_on_backpressure_limit_off_returns_dropped_and_stays_open(make_server, recorder):
    server = make_server(recorder.behavior(max_backpressure=256 * 1024))
    chunk = payload_of_size(64 * 1024)
    with connect(*server.address, recv_buffer_size=SMALL_RECEIVE_BUFFER):
        ws = recorder.next_open()
        statuses = server.call(lambda: [ws.send(chunk) for _ in range(64)])
        assert SendStatus.DROPPED in statuses and not server.call(ws.is_closed)
        assert recorder.closes.empty()


def test_close_on_backpressure_limit_on_publish_closes_with_1008(make_server, recorder):
    server = make_server(recorder.behavior(max_backpressure=256 * 1024, close_on_backpressure_limit=True))
    chunk = payload_of_size(64 * 1024)
    with connect(*server.address, recv_buffer_size=SMALL_RECEIVE_BUFFER) as slow, connect(*server.address) as fast:
        slow_ws, fast_ws = recorder.next_open(), recorder.next_open()
        server.call(lambda: (slow_ws.subscribe("t"), fast_ws.subscribe("t")))
        # Two messages per loop iteration (half the limit) while the fast client reads them;
        # the slow one never reads, so its kernel buffers fill and then its queue.
        for _ in range(400):
            server.call(lambda: (server.app.publish("t", chunk), server.app.publish("t", chunk)))
            assert fast.recv_message(timeout=10) == (Op.BINARY, chunk)
            assert fast.recv_message(timeout=10) == (Op.BINARY, chunk)
            if server.call(slow_ws.is_closed):
                break
        assert server.call(slow_ws.is_closed), "the slow subscriber was never closed"
        ws, code, _ = recorder.next_close()
        assert ws is slow_ws and code == POLICY_VIOLATION
        assert slow.expect_close(timeout=10)[0] == POLICY_VIOLATION
        # The fast subscriber goes on.
        server.call(lambda: server.app.publish("t", b"after"))
        assert fast.recv_message() == (Op.BINARY, b"after")


@pytest.mark.parametrize("value", [-1, 1.5, True, "1", 10**7])
def test_max_lifetime_rejects_bad_values(value):
    with pytest.raises(ValueError, match="max_lifetime"):
        App().ws("/*", {"max_lifetime": value})


def test_max_lifetime_in_minutes_is_accepted_and_leaves_a_fresh_connection_open(make_server, recorder):
    # The timer itself is tested with a moved clock in cpp/tests/test_websocket_timers.cpp
    # (a minute is too long for this suite); this checks the option reaches the core.
    server = make_server(recorder.behavior(max_lifetime=1, idle_timeout=0))
    with connect(*server.address) as client:
        client.send_text("hi")
        assert client.recv_message() == (Op.TEXT, b"hi")


@pytest.mark.parametrize("name", ["reset_idle_timeout_on_send", "send_pings_automatically", "close_on_backpressure_limit"])
def test_bool_options_reject_non_bools(name):
    with pytest.raises(ValueError, match=name):
        App().ws("/*", {name: 1})


# --- subprotocols ---------------------------------------------------------------------------

def test_subprotocols_select_the_servers_first_choice_among_the_offer(make_server, recorder):
    server = make_server(recorder.behavior(subprotocols=["v2.chat", "v1.chat"]))
    with connect(*server.address, protocols=["v1.chat", "v2.chat"]) as client:
        assert client.protocol == "v2.chat"
    with connect(*server.address, protocols=["other", "v1.chat"]) as client:
        assert client.protocol == "v1.chat"


def test_subprotocols_none_in_common_answers_no_header(make_server, recorder):
    server = make_server(recorder.behavior(subprotocols=["v2.chat"]))
    with connect(*server.address, protocols=["mqtt", "v1.chat"]) as client:
        assert client.protocol is None
        client.send_text("works without one")
        assert client.recv_message() == (Op.TEXT, b"works without one")
    with connect(*server.address) as client:
        assert client.protocol is None


def test_subprotocols_apply_to_an_upgrade_handler_passing_the_offer(make_server, recorder):
    def upgrade(res, req, context):
        res.upgrade(None, req.get_header("sec-websocket-key"), req.get_header("sec-websocket-protocol"),
                    req.get_header("sec-websocket-extensions"), context)

    server = make_server(recorder.behavior(upgrade=upgrade, subprotocols=["b", "a"]))
    with connect(*server.address, protocols=["a", "b"]) as client:
        assert client.protocol == "b"


@pytest.mark.parametrize("value", ["chat", ["ok", "not a token"], [""], [3]])
def test_subprotocols_reject_bad_values(value):
    with pytest.raises(ValueError, match="subprotocol"):
        App().ws("/*", {"subprotocols": value})


# --- App.close(timeout) ---------------------------------------------------------------------

@pytest.mark.parametrize("timeout", [0.3, 0.6])
def test_app_close_timeout_keeps_sub_second_precision(make_server, recorder, timeout):
    """A client that never answers the close frame is dropped after `timeout`, not after a
    rounded whole second (round(0.6) was 1, round(0.3) was 0 and dropped it at the next tick)."""
    server = make_server(recorder.behavior())
    silent = connect(*server.address)
    recorder.next_open()
    try:
        start = time.monotonic()
        server.app.close(timeout=timeout)
        server.thread.join(5)
        elapsed = time.monotonic() - start
        assert not server.thread.is_alive(), "run() did not return"
        assert timeout - 0.05 <= elapsed < timeout + 0.35, f"run() returned {elapsed:.3f} s after close(timeout={timeout})"
        assert silent.wait_for_eof(1.0)
    finally:
        silent.disconnect()
