"""Closing a connection from either side, cleanly (close handshake) or abruptly (TCP only)."""

from __future__ import annotations

import pytest

from tests.support.harness import assert_nothing_more
from tests.support.wsclient import ConnectionClosed, Op, connect, encode_close_payload, encode_frame

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
ABNORMAL = 1006
NO_STATUS = 1005


@pytest.mark.parametrize("code", VALID_CODES)
def test_client_close_is_echoed_and_reported(echo_server, recorder, code):
    with connect(*echo_server.address) as client:
        recorder.next_open()
        client.send_close(code, "bye")
        reply_code, _ = client.expect_close()
        assert reply_code == code
        assert client.wait_for_eof(3.0), "server kept TCP open after the close handshake"
    _, handler_code, reason = recorder.next_close()
    assert handler_code == code
    assert reason == b"bye"


def test_client_close_without_status(echo_server, recorder):
    with connect(*echo_server.address) as client:
        client.send_close(None)
        reply_code, _ = client.expect_close()
        assert reply_code in (None, 1000)
    _, handler_code, reason = recorder.next_close()
    assert handler_code == NO_STATUS
    assert reason == b""


@pytest.mark.parametrize(
    "reason",
    [b"", "au revoir \u2713".encode(), b"r" * 123],
    ids=["empty", "multibyte-utf8", "longest-allowed"],
)
def test_close_reason_reaches_handler(echo_server, recorder, reason):
    with connect(*echo_server.address) as client:
        client.send_close(1000, reason)
        client.expect_close()
    _, handler_code, handler_reason = recorder.next_close()
    assert handler_code == 1000
    assert handler_reason == reason


def test_close_handler_runs_once(echo_server, recorder):
    with connect(*echo_server.address) as client:
        client.close(1000)
    recorder.next_close()
    assert_nothing_more(recorder.closes, "second close handler call")


def test_data_after_close_frame_is_ignored(echo_server, recorder):
    with connect(*echo_server.address) as client:
        client.send_raw(
            encode_frame(Op.CLOSE, encode_close_payload(1000)) + encode_frame(Op.TEXT, b"too late")
        )
        frame = client.recv_frame()
        assert frame.opcode == Op.CLOSE
        assert client.wait_for_eof(3.0)
    recorder.next_close()
    assert recorder.messages.empty()


def test_server_end_sends_code_and_reason(echo_server, recorder):
    with connect(*echo_server.address) as client:
        ws = recorder.next_open()
        echo_server.call(lambda: ws.end(4000, "bye"))
        assert client.expect_close() == (4000, b"bye")
        client.send_close(4000)
        assert client.wait_for_eof(3.0), "server kept TCP open after the close handshake"
    _, handler_code, _ = recorder.next_close()
    assert handler_code == 4000


def test_server_end_defaults_to_1000(echo_server, recorder):
    with connect(*echo_server.address) as client:
        ws = recorder.next_open()
        echo_server.call(ws.end)
        assert client.expect_close() == (1000, b"")
        client.send_close(1000)
    _, handler_code, _ = recorder.next_close()
    assert handler_code == 1000


def test_end_inside_open_handler(make_server, recorder):
    def on_open(ws):
        recorder.opens.put(ws)
        ws.end(4002, "go away")

    server = make_server(recorder.behavior(open=recorder.guard(on_open)))
    with connect(*server.address) as client:
        assert client.expect_close() == (4002, b"go away")
    _, handler_code, _ = recorder.next_close()
    assert handler_code == 4002


def test_end_inside_message_handler(make_server, recorder):
    def on_message(ws, message, opcode):
        ws.end(4003, message)

    server = make_server(recorder.behavior(message=recorder.guard(on_message)))
    with connect(*server.address) as client:
        client.send_text("because")
        assert client.expect_close() == (4003, b"because")


def test_client_tcp_disconnect_gives_1006(echo_server, recorder):
    client = connect(*echo_server.address)
    recorder.next_open()
    client.disconnect()
    _, handler_code, reason = recorder.next_close()
    assert handler_code == ABNORMAL
    assert reason == b""


def test_client_reset_gives_1006(echo_server, recorder):
    client = connect(*echo_server.address)
    recorder.next_open()
    client.reset()
    _, handler_code, _ = recorder.next_close()
    assert handler_code == ABNORMAL


def test_disconnect_inside_fragmented_message_gives_1006(echo_server, recorder):
    client = connect(*echo_server.address)
    client.send_frame(Op.TEXT, b"never finished", fin=False)
    client.disconnect()
    _, handler_code, _ = recorder.next_close()
    assert handler_code == ABNORMAL
    assert recorder.messages.empty()


def test_disconnect_inside_a_frame_gives_1006(echo_server, recorder):
    client = connect(*echo_server.address)
    client.send_raw(encode_frame(Op.BINARY, b"x" * 1000)[:500])
    client.disconnect()
    _, handler_code, _ = recorder.next_close()
    assert handler_code == ABNORMAL


def test_server_close_is_abrupt(echo_server, recorder):
    with connect(*echo_server.address) as client:
        ws = recorder.next_open()
        echo_server.call(ws.close)
        with pytest.raises(ConnectionClosed):
            frame = client.recv_frame(timeout=3.0)
            pytest.fail(f"expected the connection to drop without frames, got {frame}")
    _, handler_code, _ = recorder.next_close()
    assert handler_code == ABNORMAL
