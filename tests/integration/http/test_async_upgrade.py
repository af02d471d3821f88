"""Upgrades answered after the upgrade handler has returned: accepted or refused later from
another thread through app.defer, abandoned by the client meanwhile, and many at once."""

from __future__ import annotations

import queue
import random
import socket
import threading
import time
from typing import Any, Callable, NamedTuple, Optional

import pytest

from uws_py import HttpClosedError

from tests.support.harness import WAIT, Server, assert_nothing_more, wait_for
from tests.support.wsclient import (
    TestClient,
    HandshakeRefused,
    ProtocolViolation,
    accept_key,
    connect,
    handshake_request,
    new_key,
    open_raw_http,
    open_socket,
    read_http_response,
    socket_reaches_eof,
)

DELAY = 0.2
CONCURRENT = 50


class Pending(NamedTuple):
    """What an upgrade handler keeps to answer later; the strings outlive the request."""

    res: Any
    key: Optional[str]
    protocol: Optional[str]
    extensions: Optional[str]
    context: Any
    tag: Optional[str]  # the request's ?n= query value
    req: Any  # kept only to check that using it later raises

    def upgrade(self, user_data: Any) -> bool:
        return self.res.upgrade(user_data, self.key, self.protocol, self.extensions, self.context)

    def refuse(self) -> None:
        self.res.write_status("401 Unauthorized").end("denied")


def later(server: Server, action: Callable[[], Any], delay: float = 0.0) -> queue.Queue:
    """From a new thread: sleeps delay, then app.defer(action). The returned queue receives what
    action returned, or the exception it raised."""
    outcome: queue.Queue = queue.Queue()

    def on_loop() -> None:
        try:
            outcome.put(action())
        except BaseException as error:
            outcome.put(error)

    def from_thread() -> None:
        time.sleep(delay)
        server.app.defer(on_loop)

    threading.Thread(target=from_thread, daemon=True).start()
    return outcome


def outcome_of(outcome: queue.Queue, what: str) -> Any:
    value = wait_for(outcome, what)
    if isinstance(value, BaseException):
        raise AssertionError(f"{what} raised {value!r}") from value
    return value


class DeferringServer(NamedTuple):
    server: Server
    pending: queue.Queue  # Pending, one per upgrade request, in arrival order
    aborted: queue.Queue  # the Pending whose on_aborted callback ran


@pytest.fixture
def deferring(make_server, recorder):
    """deferring(on_pending=None) -> DeferringServer whose upgrade handler answers nothing: it
    keeps a Pending (queued, and passed to on_pending) and registers on_aborted. The message
    handler answers "<user_data>:<message>"."""

    def factory(on_pending: Optional[Callable[[Pending], Any]] = None) -> DeferringServer:
        pending: queue.Queue = queue.Queue()
        aborted: queue.Queue = queue.Queue()

        def on_upgrade(res, req, context):
            kept = Pending(
                res,
                req.get_header("sec-websocket-key"),
                req.get_header("sec-websocket-protocol"),
                req.get_header("sec-websocket-extensions"),
                context,
                req.get_query("n"),
                req,
            )
            res.on_aborted(recorder.guard(lambda: aborted.put(kept)))
            pending.put(kept)
            if on_pending is not None:
                on_pending(kept)

        def on_message(ws, message, opcode):
            recorder.messages.put((ws, message, opcode))
            text = message if isinstance(message, str) else bytes(message).decode()
            ws.send(f"{ws.get_user_data()}:{text}")

        behavior = recorder.behavior(
            upgrade=recorder.guard(on_upgrade), message=recorder.guard(on_message)
        )
        return DeferringServer(make_server(behavior), pending, aborted)

    return factory


def send_handshake(server: Server, path: str = "/", protocols=None) -> tuple:
    """Opens a socket and sends an upgrade request without waiting: (socket, key)."""
    key = new_key()
    sock = open_socket(server.host, server.port, WAIT)
    sock.sendall(handshake_request(path, f"{server.host}:{server.port}", key, protocols))
    return sock, key


def finish_handshake(sock: socket.socket, key: str, timeout: float = WAIT) -> TestClient:
    """Reads the answer to send_handshake's request; a TestClient if it is a valid 101."""
    response, leftover = read_http_response(sock, time.monotonic() + timeout)
    if response.status != 101:
        raise HandshakeRefused(response)
    if response.headers.get("sec-websocket-accept") != accept_key(key):
        raise ProtocolViolation(f"wrong Sec-WebSocket-Accept for key {key}: {response.headers}")
    return TestClient(sock, response, leftover)


def test_upgrade_accepted_after_a_delay(deferring, recorder):
    user_data = {"user": "ada", "roles": ["admin"]}
    results: queue.Queue = queue.Queue()

    def accept_later(kept: Pending) -> None:
        def decide() -> None:
            time.sleep(DELAY)
            # Only the loop thread touches kept.res: the upgrade itself goes through defer.
            deferring_server.server.app.defer(lambda: results.put(kept.upgrade(user_data)))

        threading.Thread(target=decide, daemon=True).start()

    deferring_server = deferring(accept_later)
    started = time.monotonic()
    with connect(*deferring_server.server.address, protocols=["chat", "other"]) as client:
        elapsed = time.monotonic() - started
        assert wait_for(results, "the late upgrade") is True
        assert elapsed >= DELAY * 0.9, f"101 arrived {elapsed:.3f} s after the request"
        kept = deferring_server.pending.get_nowait()
        assert kept.protocol == "chat, other"
        assert client.protocol in ("chat", "other")
        ws = recorder.next_open()
        assert deferring_server.server.call(ws.get_user_data) is user_data
        client.send_text("hello")
        assert client.recv_message().payload == f"{user_data}:hello".encode()
    assert_nothing_more(deferring_server.aborted, "on_aborted after a completed upgrade", 0.2)


def test_upgrade_refused_later_with_401(deferring, recorder):
    def refuse_later(kept: Pending) -> None:
        later(deferring_server.server, kept.refuse, DELAY)

    deferring_server = deferring(refuse_later)
    started = time.monotonic()
    response, sock = open_raw_http(*deferring_server.server.address, handshake_request())
    with sock:
        elapsed = time.monotonic() - started
        assert response.status == 401
        assert response.body == b"denied"
        assert elapsed >= DELAY * 0.9
        assert socket_reaches_eof(sock, 3.0), "connection left open after a refused upgrade"
    assert_nothing_more(recorder.opens, "open after a refused upgrade", 0.2)


def test_upgrade_after_a_refusal_returns_false(deferring, recorder):
    deferring_server = deferring()
    sock, _ = send_handshake(deferring_server.server)
    with sock:
        kept = wait_for(deferring_server.pending, "the upgrade handler")
        later(deferring_server.server, kept.refuse)
        response, _ = read_http_response(sock, time.monotonic() + WAIT)
        assert response.status == 401
        late = later(deferring_server.server, lambda: kept.upgrade("late"))
        assert outcome_of(late, "late upgrade") is False
    assert_nothing_more(recorder.opens, "open after a refused upgrade", 0.2)


def test_second_upgrade_returns_false(deferring, recorder):
    deferring_server = deferring()
    server = deferring_server.server
    sock, key = send_handshake(server)
    kept = wait_for(deferring_server.pending, "the upgrade handler")
    assert outcome_of(later(server, lambda: kept.upgrade("first")), "upgrade") is True
    assert outcome_of(later(server, lambda: kept.upgrade("second")), "second upgrade") is False
    with finish_handshake(sock, key) as client:
        ws = recorder.next_open()
        assert server.call(ws.get_user_data) == "first"
        client.send_text("x")
        assert client.recv_message().payload == b"first:x"
    assert_nothing_more(recorder.opens, "second open", 0.2)


@pytest.mark.parametrize("leave", ["disconnect", "reset"])
def test_client_gone_before_the_answer(deferring, recorder, leave):
    deferring_server = deferring()
    server = deferring_server.server
    sock, _ = send_handshake(server)
    kept = wait_for(deferring_server.pending, "the upgrade handler")
    if leave == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()

    assert wait_for(deferring_server.aborted, "the on_aborted callback") is kept
    assert_nothing_more(deferring_server.aborted, "second on_aborted call", 0.2)
    assert outcome_of(later(server, lambda: kept.upgrade("late")), "late upgrade") is False
    # The response has ended with its client: using it raises, as a closed WebSocket does.
    late_end = wait_for(later(server, lambda: kept.res.end("late")), "late end")
    assert isinstance(late_end, HttpClosedError), late_end
    assert server.call(lambda: kept.res.aborted) is True
    assert_nothing_more(recorder.opens, "open for a client that left", 0.2)

    # The server still serves a new client.
    sock, key = send_handshake(server, "/?n=next")
    fresh = wait_for(deferring_server.pending, "the upgrade handler for the new client")
    assert fresh.tag == "next"
    assert outcome_of(later(server, lambda: fresh.upgrade("fresh")), "upgrade") is True
    with finish_handshake(sock, key) as client:
        recorder.next_open()
        client.send_text("still here")
        assert client.recv_message().payload == b"fresh:still here"


def test_many_concurrent_pending_upgrades(deferring, recorder):
    deferring_server = deferring()
    server = deferring_server.server
    sockets = {}
    try:
        for n in range(CONCURRENT):
            sockets[str(n)] = send_handshake(server, f"/?n={n}")
        kept = [wait_for(deferring_server.pending, f"upgrade {i}") for i in range(CONCURRENT)]
        assert sorted(k.tag for k in kept) == sorted(sockets)

        # One thread answers them all, in an order unrelated to their arrival.
        random.Random(7).shuffle(kept)
        results: queue.Queue = queue.Queue()

        def answer_all() -> None:
            time.sleep(0.05)
            for k in kept:
                server.app.defer(lambda k=k: results.put((k.tag, k.upgrade(f"user-{k.tag}"))))

        threading.Thread(target=answer_all, daemon=True).start()
        outcomes = dict(wait_for(results, "a deferred upgrade") for _ in range(CONCURRENT))
        assert outcomes == {tag: True for tag in sockets}

        clients = {tag: finish_handshake(sock, key) for tag, (sock, key) in sockets.items()}
        for tag, client in clients.items():
            client.send_text(f"hi {tag}")
        for tag, client in clients.items():
            assert client.recv_message().payload == f"user-{tag}:hi {tag}".encode()
        opened = [recorder.next_open() for _ in range(CONCURRENT)]
        assert len({id(ws) for ws in opened}) == CONCURRENT
        assert_nothing_more(recorder.opens, "extra open", 0.2)
        assert deferring_server.aborted.empty()
    finally:
        for sock, _ in sockets.values():
            sock.close()


def test_server_stops_with_an_upgrade_still_pending(deferring):
    """make_server's teardown fails if app.run() does not return after app.close()."""
    deferring_server = deferring()
    sock, _ = send_handshake(deferring_server.server)
    with sock:
        wait_for(deferring_server.pending, "the upgrade handler")
        deferring_server.server.stop()
        assert socket_reaches_eof(sock, 3.0)


def test_request_used_after_the_upgrade_handler_raises_http_closed_error(deferring):
    deferring_server = deferring()
    server = deferring_server.server
    sock, key = send_handshake(server, "/?n=1")
    kept = wait_for(deferring_server.pending, "the upgrade handler")
    for use in (
        lambda: kept.req.get_header("sec-websocket-key"),
        lambda: kept.req.get_query("n"),
        lambda: kept.req.get_url(),
    ):
        with pytest.raises(HttpClosedError):
            server.call(use)
    assert outcome_of(later(server, lambda: kept.upgrade("ok")), "upgrade") is True
    with finish_handshake(sock, key) as client:
        client.send_text("x")
        assert client.recv_message().payload == b"ok:x"
