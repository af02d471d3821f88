"""Core log lines of a level the ``uws_py`` logger drops are skipped in the core, without a call
into Python (App gives the core the logger's own level cache), and a level changed at runtime
takes effect at once. The 404 of an unrouted path is an INFO line; a 400 a WARNING one."""

from __future__ import annotations

import logging
import socket
import time

import pytest

import uws_py.app
from tests.support.harness import HOST, WAIT, Server
from tests.support.wsclient import read_http_response
from uws_py import App

LOGGER = logging.getLogger("uws_py")


@pytest.fixture
def calls(monkeypatch):
    """The levels the core passed to the App's log handler, in order."""
    seen: list = []
    forward = uws_py.app._forward_core_log

    def counting(level: int, message: str) -> None:
        seen.append(level)
        forward(level, message)

    monkeypatch.setattr(uws_py.app, "_forward_core_log", counting)
    return seen


@pytest.fixture
def server(calls):
    server = Server(None, setup=lambda app: app.get("/ok", lambda res, req: res.end("ok")))
    yield server
    server.stop()


def status_of(port: int, request: bytes) -> int:
    # The core logs before it answers, on the loop thread: the response means the line is done.
    with socket.create_connection((HOST, port), timeout=WAIT) as sock:
        sock.sendall(request)
        response, _ = read_http_response(sock, time.monotonic() + WAIT)
        return response.status


NOT_FOUND = b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
BAD = b"NOT A REQUEST\r\n\r\n"


def test_a_filtered_level_is_not_passed_to_python_and_a_runtime_change_takes_effect(server, calls, caplog):
    caplog.set_level(logging.WARNING, logger="uws_py")
    LOGGER.isEnabledFor(logging.INFO)  # what the first dropped line would do: cache the answer
    for _ in range(3):
        assert status_of(server.port, NOT_FOUND) == 404
    assert calls == [], "an INFO line the logger drops still called into Python"
    assert status_of(server.port, BAD) == 400
    assert calls == [logging.WARNING]

    caplog.set_level(logging.INFO, logger="uws_py")  # setLevel at runtime, the server running
    assert status_of(server.port, NOT_FOUND) == 404
    assert calls == [logging.WARNING, logging.INFO]
    assert any(r.levelno == logging.INFO and "with 404" in r.getMessage() for r in caplog.records)

    caplog.set_level(logging.ERROR, logger="uws_py")
    LOGGER.isEnabledFor(logging.WARNING)
    LOGGER.isEnabledFor(logging.INFO)
    assert status_of(server.port, NOT_FOUND) == 404
    assert status_of(server.port, BAD) == 400
    assert calls == [logging.WARNING, logging.INFO]


def test_an_uncached_level_goes_to_the_handler_which_asks_the_logger(server, calls, caplog):
    caplog.set_level(logging.WARNING, logger="uws_py")  # clears the cache: INFO not decided yet
    assert status_of(server.port, NOT_FOUND) == 404
    assert calls == [logging.INFO]  # the logger decided, and cached its answer
    assert status_of(server.port, NOT_FOUND) == 404
    assert calls == [logging.INFO]
    assert not any("with 404" in r.getMessage() for r in caplog.records)


def test_logging_disable_takes_effect(server, calls, caplog):
    caplog.set_level(logging.INFO, logger="uws_py")
    try:
        logging.disable(logging.WARNING)
        LOGGER.isEnabledFor(logging.WARNING)
        assert status_of(server.port, BAD) == 400
        assert calls == []
    finally:
        logging.disable(logging.NOTSET)
    assert status_of(server.port, BAD) == 400
    assert calls == [logging.WARNING]


def test_setting_log_handler_drops_the_level_filter():
    app = App()
    assert app._core.log_levels is LOGGER._cache
    seen: list = []
    app._core.log_handler = lambda level, message: seen.append(level)
    assert app._core.log_levels is None  # another handler: every line goes to it
    with pytest.raises(TypeError, match="log_levels"):
        app._core.log_levels = [10]
