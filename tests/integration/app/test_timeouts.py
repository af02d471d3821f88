"""idle_timeout, with and without the server's automatic pings.

The contract: an idle connection is closed (a close frame, or TCP closed) within about
idle_timeout + 2 s; activity from the client postpones that; with send_pings_automatically the
server pings first, and a client that answers stays connected."""

from __future__ import annotations

import time

from tests.support.wsclient import ConnectionClosed, Op, connect

SLACK = 2.5


def seconds_until_closed(client, limit: float, answer_pings: bool) -> float:
    """Waits for the server to close the connection, by a close frame or by closing TCP, and
    returns how long that took. After a close frame the client completes the handshake, and the
    server must then close TCP promptly. Data messages are not expected."""
    start = time.monotonic()
    try:
        message = client.recv_message(timeout=limit, answer_pings=answer_pings)
    except ConnectionClosed:
        return time.monotonic() - start
    except TimeoutError:
        raise AssertionError(f"connection still open after {limit:.1f} s") from None
    elapsed = time.monotonic() - start
    assert message.opcode == Op.CLOSE, f"unexpected message while idle: {message}"
    client.send_close(1000)
    assert client.wait_for_eof(3.0), "server kept TCP open after the close handshake"
    return elapsed


def stay_connected(client, seconds: float) -> None:
    """Keeps reading (answering pings) for `seconds`; fails if the server drops the connection."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            message = client.recv_message(timeout=remaining, answer_pings=True)
        except TimeoutError:
            return
        except ConnectionClosed:
            raise AssertionError("server dropped a connection that answered its pings") from None
        raise AssertionError(f"unexpected message while idle: {message}")


def test_idle_connection_is_closed(make_server, recorder):
    idle = 1
    server = make_server(recorder.behavior(idle_timeout=idle, send_pings_automatically=False))
    with connect(*server.address) as client:
        elapsed = seconds_until_closed(client, idle + SLACK, answer_pings=False)
    assert elapsed >= idle * 0.5, f"closed after {elapsed:.2f} s, well before idle_timeout={idle}"
    recorder.next_close()


def test_client_activity_postpones_idle_timeout(make_server, recorder):
    idle = 1
    server = make_server(recorder.behavior(idle_timeout=idle, send_pings_automatically=False))
    with connect(*server.address) as client:
        deadline = time.monotonic() + idle * 3
        while time.monotonic() < deadline:
            client.send_text("still here")
            assert client.recv_message() == (Op.TEXT, b"still here")
            time.sleep(idle / 4)
        # And once the client stops talking, the timeout applies again.
        seconds_until_closed(client, idle + SLACK, answer_pings=False)


def test_zero_idle_timeout_never_closes(make_server, recorder):
    server = make_server(recorder.behavior(idle_timeout=0, send_pings_automatically=False))
    with connect(*server.address) as client:
        stay_connected(client, 3.0)
        client.send_text("alive")
        assert client.recv_message() == (Op.TEXT, b"alive")


def test_automatic_ping_keeps_answering_client_connected(make_server, recorder):
    idle = 1
    server = make_server(recorder.behavior(idle_timeout=idle, send_pings_automatically=True))
    with connect(*server.address) as client:
        stay_connected(client, idle * 4)
        assert client.pings_received, "server sent no ping during 4 idle periods"
        client.send_text("alive")
        assert client.recv_message() == (Op.TEXT, b"alive")
        assert recorder.closes.empty()


def test_automatic_ping_unanswered_closes_connection(make_server, recorder):
    idle = 1
    server = make_server(recorder.behavior(idle_timeout=idle, send_pings_automatically=True))
    with connect(*server.address) as client:
        # One idle period until the ping, one more for the pong that never comes.
        seconds_until_closed(client, 2 * (idle + SLACK), answer_pings=False)
        assert client.pings_received, "server closed without pinging first"
    recorder.next_close()
