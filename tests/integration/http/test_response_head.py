"""What a response head may carry (issue 12): header names and values and the status are
refused when they could split the response, a request with two Host lines gets 400, and every
response carries a Date header."""

from __future__ import annotations

import email.utils
import queue
import time
from typing import Optional

import pytest

from tests.support.harness import Server, wait_for
from tests.support.wsclient import raw_http


@pytest.fixture
def serve(make_server):
    def factory(setup) -> Server:
        return make_server({"message": lambda ws, message, opcode: None}, "/ws", setup)

    return factory


def request(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode("latin-1")


def refusing_route(outcomes: queue.Queue, write):
    """A handler that tries write(res), reports the error it raised (or None), then answers."""

    def handler(res, req):
        try:
            write(res)
            outcomes.put(None)
        except Exception as exc:  # noqa: BLE001 - the test looks at which
            outcomes.put(exc)
        res.end("answered")

    return handler


SPLITTING = "a\r\nSet-Cookie: evil=1"


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda res: res.write_header("X-Test", SPLITTING), r"value of header 'X-Test' .* contains CR at index 1"),
        (lambda res: res.write_header("X-Test", "a\nSet-Cookie: evil=1"), r"value of header 'X-Test' .* contains LF"),
        (lambda res: res.write_header("X-Test", "a\x00b"), r"value of header 'X-Test' .* contains NUL at index 1"),
        (lambda res: res.write_header(b"X-Test", b"a\r\nSet-Cookie: evil=1"), r"contains CR"),
        (lambda res: res.write_header("X-Test\r\nSet-Cookie", "evil=1"), r"header name .* contains CR at index 6"),
        (lambda res: res.write_header("X Test", "1"), r"header name 'X Test' has a character that is not allowed"),
        (lambda res: res.write_header("X-Test:", "1"), r"not allowed in a token"),
        (lambda res: res.write_header("", "1"), r"header name '' is empty"),
        (lambda res: res.write_status("200 OK\r\nSet-Cookie: evil=1"), r"write_status: status .* contains CR"),
    ],
    ids=["value-crlf", "value-lf", "value-nul", "bytes-crlf", "name-crlf", "name-space", "name-colon", "name-empty",
         "status-crlf"],
)
def test_response_splitting_is_refused(serve, recorder, write, message):
    outcomes: queue.Queue = queue.Queue()
    server = serve(lambda app: app.get("/", recorder.guard(refusing_route(outcomes, write))))
    response = raw_http(*server.address, request("/"))
    error = wait_for(outcomes, "the handler")
    assert isinstance(error, ValueError), error
    assert __import__("re").search(message, str(error)), str(error)
    # Nothing of the refused text reached the wire: one response, without the attacker's header.
    assert response.status == 200 and response.body == b"answered"
    assert "set-cookie" not in response.headers
    assert not any("test" in name for name in response.headers)


def test_valid_headers_and_status_still_go_out(serve, recorder):
    def handler(res, req):
        res.write_status("201 Created").write_header("X-Token_Chars!#$%&'*+-.^`|~", b"tab\tand obs-text \xe9")
        res.end("made")

    server = serve(lambda app: app.get("/", recorder.guard(handler)))
    response = raw_http(*server.address, request("/"))
    assert response.status == 201
    assert response.headers["x-token_chars!#$%&'*+-.^`|~"] == "tab\tand obs-text \xe9"


def test_two_host_headers_get_400(serve, recorder):
    reached: queue.Queue = queue.Queue()

    def handler(res, req):
        reached.put(True)
        res.end("served")

    server = serve(lambda app: app.get("/", recorder.guard(handler)))
    response = raw_http(*server.address, request("/", "Host: evil.example\r\n"))
    assert response.status == 400
    assert b"more than one Host header" in response.body
    assert reached.empty()
    # Host with another case is the same field.
    assert raw_http(*server.address, request("/", "HOST: 127.0.0.1\r\n")).status == 400
    assert raw_http(*server.address, request("/")).body == b"served"


def parse_date(value: Optional[str]) -> float:
    assert value is not None, "no Date header"
    # IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT", 29 characters, GMT.
    assert len(value) == 29 and value.endswith(" GMT"), value
    assert __import__("re").fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep"
                                      r"|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT", value), value
    return email.utils.parsedate_to_datetime(value).timestamp()


def test_http_responses_carry_a_date_header(serve, recorder):
    def streamed(res, req):
        res.write("part")
        res.end()

    server = serve(lambda app: app.get("/", recorder.guard(lambda res, req: res.end("x"))).get("/stream", streamed))
    for path, status in (("/", 200), ("/stream", 200), ("/missing", 404), ("/ws", 426)):
        before = time.time()
        response = raw_http(*server.address, request(path))
        after = time.time()
        assert response.status == status
        stamp = parse_date(response.headers.get("date"))
        # Formatted once a second by the loop, so up to a second behind, never ahead.
        assert before - 2.0 <= stamp <= after + 0.001, (path, response.headers["date"], before, after)
