"""Regression: a streamed HTTP response whose client stopped reading was held forever (its
backpressure buffer, the handler waiting for on_writable). The core now closes such a
connection after 10 s (App.send_timeout) in which the client took none of the response's bytes
(on_aborted runs), and a client that reads, however slowly, is not cut. The timing tests set
send_timeout to SEND_TIMEOUT s, shorter than the default, to take less time (but the slow
reader's); the default is checked on its own."""

from __future__ import annotations

import logging
import queue
import socket
import time

import pytest

from tests.support.harness import wait_for
from tests.support.streaming_server import piece

# What the timing tests set app.send_timeout to (the default is DEFAULT_SEND_TIMEOUT).
SEND_TIMEOUT = 3
DEFAULT_SEND_TIMEOUT = 10
TOTAL = 64 * 1024 * 1024
CHUNK = 64 * 1024


def streaming_handler(mode: str, events: "queue.Queue[tuple[str, float]]"):
    """Streams TOTAL bytes with write() (chunked) or try_end() (sized), resuming from
    on_writable; puts ("aborted", time) or ("done", time) in events."""

    def handler(res, req):
        def pump(offset: int) -> bool:
            while offset < TOTAL:
                chunk = piece(offset, min(CHUNK, TOTAL - offset))
                if mode == "write":
                    offset += len(chunk)
                    if offset == TOTAL:
                        res.end(chunk)
                        events.put(("done", time.monotonic()))
                        return True
                    if not res.write(chunk):
                        return False
                else:
                    ok, done = res.try_end(chunk, TOTAL)
                    if done:
                        events.put(("done", time.monotonic()))
                        return True
                    if not ok:
                        return False
                    offset = res.get_write_offset()
            return True

        res.on_aborted(lambda: events.put(("aborted", time.monotonic())))
        res.on_writable(pump)
        pump(0)

    return handler


def short_send_timeout(app):
    app.send_timeout = SEND_TIMEOUT
    return app


def test_the_default_send_timeout_is_ten_seconds():
    from uws_py import App

    assert App().send_timeout == DEFAULT_SEND_TIMEOUT


def request_big(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


@pytest.mark.parametrize("mode", ["write", "try_end"])
def test_client_that_stops_reading_is_closed_after_the_send_timeout(make_server, recorder, mode):
    events: queue.Queue = queue.Queue()
    server = make_server(None, "/*", lambda app: short_send_timeout(app)
                         .get("/big", recorder.guard(streaming_handler(mode, events)))
                         .get("/ok", lambda res, req: res.end("fine")))
    sock = request_big(server.address[1])
    try:
        started = time.monotonic()
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")  # then it reads no more
        kind, at = wait_for(events, "the response to be aborted", timeout=SEND_TIMEOUT + 8)
        assert kind == "aborted"
        # Not before the timeout (the client took nothing since its first read), and not
        # much after it (the core's timer ticks once a second).
        assert SEND_TIMEOUT - 1 <= at - started <= SEND_TIMEOUT + 4, at - started
    finally:
        sock.close()
    # The server goes on serving.
    from tests.support.wsclient import raw_http

    assert raw_http(*server.address, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").body == b"fine"


def test_slow_reader_is_not_cut(make_server, recorder):
    events: queue.Queue = queue.Queue()
    # At the default send timeout: the kernel's send buffer holds far more than this client
    # takes in a few seconds, so with a timeout of SEND_TIMEOUT the server, which can write
    # nothing until the buffer drains, would take this client for one that stopped reading.
    server = make_server(None, "/*", lambda app: app.get("/big", recorder.guard(streaming_handler("write", events))))
    sock = request_big(server.address[1])
    try:
        # About 128 KiB/s for longer than the send timeout: the client makes progress, slowly
        # (the 64 MiB body would take minutes), so it is never 10 s without taking bytes.
        deadline = time.monotonic() + DEFAULT_SEND_TIMEOUT + 4
        while time.monotonic() < deadline:
            taken = 0
            while taken < 64 * 1024:
                data = sock.recv(64 * 1024 - taken)
                assert data, "the server closed a client that was reading"
                taken += len(data)
            time.sleep(0.5)
        assert events.empty(), events.get_nowait()
    finally:
        sock.close()
    kind, _ = wait_for(events, "on_aborted after the client closed", timeout=10)
    assert kind == "aborted"


def test_ended_response_to_a_client_that_stops_reading_is_dropped_after_the_send_timeout(make_server, recorder):
    # end() queues the whole body; with "Connection: close" the connection used to wait for
    # the queue to drain however long the client took (forever, for one that stopped reading).
    body = bytes(8 * 1024 * 1024)
    server = make_server(None, "/*", lambda app: short_send_timeout(app).get("/big", recorder.guard(lambda res, req: res.end(body))))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.settimeout(5)
    try:
        sock.connect(server.address)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = len(sock.recv(1024))
        time.sleep(SEND_TIMEOUT + 3)
        # Now read on: the server dropped what it still held, so the body ends short.
        while True:
            data = sock.recv(1024 * 1024)
            if not data:
                break
            received += len(data)
    finally:
        sock.close()
    assert received < len(body), f"all {received} bytes arrived: the stalled response was kept"


def test_send_timeout_is_settable_counted_logged_and_exported(make_server, recorder, caplog):
    """app.send_timeout = 2: a client that takes no bytes is closed after 2..4 s (not 10), the
    close is logged, counted in stats()["http_send_timeouts"] and scraped as
    uws_http_send_timeouts_total with its HELP text."""
    from prometheus_client.parser import text_string_to_metric_families

    from uws_py.metrics import Metrics

    caplog.set_level(logging.INFO)
    events: queue.Queue = queue.Queue()
    apps = []

    def setup(app):
        app.send_timeout = 2
        apps.append(app)
        return app.get("/big", recorder.guard(streaming_handler("write", events)))

    server = make_server(None, "/*", setup)
    (app,) = apps
    assert app.send_timeout == 2
    before = app.stats()["http_send_timeouts"]
    sock = request_big(server.address[1])
    try:
        started = time.monotonic()
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        kind, at = wait_for(events, "the response to be aborted", timeout=8)
        assert kind == "aborted"
        assert 1.0 <= at - started <= 4.5, at - started
    finally:
        sock.close()
    assert app.stats()["http_send_timeouts"] == before + 1
    assert any("took no response bytes within 2 s" in record.getMessage() for record in caplog.records), \
        [record.getMessage() for record in caplog.records]
    text = Metrics(app.stats).render().decode()
    assert "# HELP uws_http_send_timeouts_total HTTP connections closed because the client took no response" in text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "uws_http_send_timeouts"]
    assert [sample.value for sample in family.samples if sample.name.endswith("_total")] == [before + 1]


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_send_timeout_refuses_what_is_not_a_positive_whole_number(value):
    from uws_py import App

    with pytest.raises(ValueError, match="send_timeout"):
        App().send_timeout = value
