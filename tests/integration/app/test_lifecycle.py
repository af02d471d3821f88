"""The life of handles and of the App: WebSocket handles used after their connection closed,
app.close(), the thread handlers run on, and handler exceptions."""

from __future__ import annotations

import socket

import pytest

import uws_py
from tests.support.wsclient import Op, connect

GOING_AWAY = 1001

USES_AFTER_CLOSE = {
    "send-str": lambda ws: ws.send("late"),
    "send-bytes": lambda ws: ws.send(b"late"),
    "end": lambda ws: ws.end(1000, "late"),
    "close": lambda ws: ws.close(),
    "get_buffered_amount": lambda ws: ws.get_buffered_amount(),
    "get_remote_address": lambda ws: ws.get_remote_address(),
    "get_user_data": lambda ws: ws.get_user_data(),
    "cork": lambda ws: ws.cork(lambda: None),
}


def assert_echoes(server) -> None:
    with connect(*server.address) as client:
        client.send_text("are you alive")
        assert client.recv_message() == (Op.TEXT, b"are you alive")


@pytest.mark.parametrize("use", USES_AFTER_CLOSE.values(), ids=USES_AFTER_CLOSE.keys())
def test_use_after_clean_close_raises(echo_server, recorder, use):
    with connect(*echo_server.address) as client:
        ws = recorder.next_open()
        client.close(1000)
    recorder.next_close()
    with pytest.raises(RuntimeError):
        echo_server.call(lambda: use(ws))
    assert_echoes(echo_server)


def test_use_after_abrupt_disconnect_raises(echo_server, recorder):
    client = connect(*echo_server.address)
    ws = recorder.next_open()
    client.disconnect()
    recorder.next_close()
    with pytest.raises(RuntimeError):
        echo_server.call(lambda: ws.send("late"))


def test_handle_kept_from_close_handler_raises_later(echo_server, recorder):
    with connect(*echo_server.address) as client:
        client.close(1000)
    ws, _, _ = recorder.next_close()
    with pytest.raises(RuntimeError):
        echo_server.call(lambda: ws.send("late"))


def test_use_after_close_raises_the_documented_class(echo_server, recorder):
    assert issubclass(uws_py.WebSocketClosedError, RuntimeError)
    with connect(*echo_server.address) as client:
        ws = recorder.next_open()
        client.close(1000)
    recorder.next_close()
    with pytest.raises(uws_py.WebSocketClosedError):
        echo_server.call(lambda: ws.send("late"))


def test_use_after_app_stopped_raises_on_any_thread(echo_server, recorder):
    with connect(*echo_server.address) as client:
        ws = recorder.next_open()
        echo_server.app.defer(echo_server.app.close)
        assert client.expect_close()[0] == GOING_AWAY
        client.send_close(GOING_AWAY)
    echo_server.thread.join(5.0)
    assert not echo_server.thread.is_alive()
    with pytest.raises(RuntimeError):
        ws.send("after the loop is gone")


def test_app_close_sends_1001_and_run_returns(echo_server, recorder):
    clients = [connect(*echo_server.address) for _ in range(3)]
    for _ in clients:
        recorder.next_open()
    echo_server.app.defer(echo_server.app.close)
    for client in clients:
        with client:
            assert client.expect_close()[0] == GOING_AWAY
            client.send_close(GOING_AWAY)
    echo_server.thread.join(5.0)
    assert not echo_server.thread.is_alive(), "run() did not return after app.close()"
    for _ in clients:
        recorder.next_close(timeout=0.1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(echo_server.address, timeout=2.0).close()


def test_app_close_returns_despite_clients_that_never_answer(echo_server, recorder):
    clients = [connect(*echo_server.address) for _ in range(2)]
    for _ in clients:
        recorder.next_open()
    echo_server.app.defer(echo_server.app.close)
    echo_server.thread.join(10.0)
    try:
        assert not echo_server.thread.is_alive(), "run() waits forever for close replies"
    finally:
        for client in clients:
            client.disconnect()


def test_app_close_without_connections_returns(echo_server):
    echo_server.app.defer(echo_server.app.close)
    echo_server.thread.join(5.0)
    assert not echo_server.thread.is_alive()


def test_app_close_called_inside_a_handler(make_server, recorder):
    holder = {}

    def on_message(ws, message, opcode):
        holder["app"].close()

    server = make_server(recorder.behavior(message=recorder.guard(on_message)))
    holder["app"] = server.app
    with connect(*server.address) as client:
        client.send_text("shut down")
        assert client.expect_close()[0] == GOING_AWAY
        client.send_close(GOING_AWAY)
    server.thread.join(5.0)
    assert not server.thread.is_alive()


def test_handlers_run_on_the_loop_thread(echo_server, recorder):
    with connect(*echo_server.address) as client:
        client.send_text("which thread")
        client.recv_message()
        client.close(1000)
    recorder.next_close()
    assert recorder.handler_threads == {echo_server.thread.ident}


def test_exception_in_message_handler_is_not_fatal(make_server, recorder):
    def on_message(ws, message, opcode):
        if message == "boom":
            raise ValueError("raised on purpose inside a message handler")
        ws.send(message, opcode)

    server = make_server(recorder.behavior(message=on_message))
    with connect(*server.address) as client:
        client.send_text("boom")
        client.send_text("after boom")
        assert client.recv_message() == (Op.TEXT, b"after boom")


def test_exception_in_open_handler_is_not_fatal(make_server, recorder):
    failures = []

    def on_open(ws):
        if not failures:
            failures.append(ws)
            raise ValueError("raised on purpose inside an open handler")

    server = make_server(recorder.behavior(open=on_open))
    with connect(*server.address):
        pass
    assert_echoes(server)


def test_exception_in_close_handler_is_not_fatal(make_server, recorder):
    def on_close(ws, code, reason):
        recorder.closes.put((ws, code, reason))
        raise ValueError("raised on purpose inside a close handler")

    server = make_server(recorder.behavior(close=on_close))
    with connect(*server.address) as client:
        client.close(1000)
    recorder.next_close()
    assert_echoes(server)


def test_two_apps_run_side_by_side(make_server, recorder):
    first = make_server(recorder.behavior())
    second = make_server(recorder.behavior())
    assert first.port != second.port
    assert_echoes(first)
    first.stop()
    assert_echoes(second)
