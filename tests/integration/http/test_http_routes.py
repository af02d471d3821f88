"""Plain HTTP routes: matching and precedence, what a handler reads from the request and writes to
the response, request bodies and their limits, keep-alive, pipelining and handler errors."""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from typing import Iterable, Optional

import pytest

from tests.support.harness import WAIT, Server, assert_nothing_more, payload_of_size, wait_for
from uws_py import App, HttpClosedError, WebSocketClosedError
from tests.support.wsclient import (
    ConnectionClosed,
    HttpResponse,
    open_raw_http,
    open_socket,
    raw_http,
    read_http_response,
    send_all_tolerating_reset,
    socket_reaches_eof,
)

MIB = 1024 * 1024


@pytest.fixture
def serve(make_server):
    """serve(setup, behavior=None, ws_route="/*") -> a running Server whose setup(app) added its
    HTTP routes; conftest's make_server stops it at teardown."""

    def factory(setup, behavior: Optional[dict] = None, ws_route: str = "/*") -> Server:
        return make_server(behavior, ws_route, setup)

    return factory


def http_request(
    method: str = "GET",
    path: str = "/",
    headers: Iterable[tuple] = (),
    body: bytes = b"",
    version: str = "HTTP/1.1",
    content_length: Optional[bool] = None,
) -> bytes:
    """One request as bytes. Content-Length is added when there is a body, unless
    content_length=False; content_length=True adds it for an empty body too."""
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    if content_length or (content_length is None and body):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def get(server: Server, path: str, headers: Iterable[tuple] = ()) -> HttpResponse:
    return raw_http(*server.address, http_request("GET", path, headers))


class _Replay:
    """A socket whose first recv returns bytes already received: read_http_response starts from
    an empty buffer, and pipelined responses can arrive in one segment."""

    def __init__(self, sock, pending: bytes) -> None:
        self.sock = sock
        self.pending = pending

    def settimeout(self, timeout: float) -> None:
        self.sock.settimeout(timeout)

    def recv(self, size: int) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        return self.sock.recv(size)


class Connection:
    """One HTTP connection kept open across requests; responses are read in order."""

    def __init__(self, server: Server, timeout: float = WAIT) -> None:
        self.sock = open_socket(server.host, server.port, timeout)
        self._pending = b""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.settimeout(WAIT)
        self.sock.sendall(data)

    def response(self, timeout: float = WAIT) -> HttpResponse:
        response, self._pending = read_http_response(
            _Replay(self.sock, self._pending), time.monotonic() + timeout
        )
        return response

    def exchange(self, request: bytes, timeout: float = WAIT) -> HttpResponse:
        self.send(request)
        return self.response(timeout)

    def head_only(self, timeout: float = WAIT) -> tuple:
        """Reads one response head without a body: (status, lowercase headers, bytes after it)."""
        deadline = time.monotonic() + timeout
        data = bytearray(self._pending)
        self._pending = b""
        while b"\r\n\r\n" not in data:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no complete response head within {timeout} s: {bytes(data)!r}"
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionClosed(f"closed before a complete head: {bytes(data)!r}")
            data += chunk
        head, _, rest = bytes(data).partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split(" ")[1]), headers, rest

    def nothing_arrives(self, within: float = 0.3) -> bytes:
        """Bytes that arrive within `within` seconds (b"" if none); the socket stays usable."""
        self.sock.settimeout(within)
        try:
            return self.sock.recv(65536)
        except TimeoutError:
            return b""

    def reaches_eof(self, timeout: float = 3.0) -> bool:
        return socket_reaches_eof(self.sock, timeout)


def answer(text: str):
    """A handler that ends with text."""

    def handler(res, req):
        res.end(text)

    return handler


# ---------------------------------------------------------------- matching and precedence


def test_route_methods_are_chainable(serve):
    returned = []

    def setup(app: App) -> None:
        handler = answer("x")
        for method in ("get", "post", "put", "delete", "patch", "options", "head", "any"):
            returned.append(getattr(app, method)(f"/{method}", handler) is app)

    serve(setup)
    assert returned == [True] * 8


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_each_method_reaches_its_own_route(serve, method):
    def setup(app: App) -> None:
        for name in ("get", "post", "put", "delete", "patch", "options"):
            getattr(app, name)("/m", answer(name))

    server = serve(setup)
    response = raw_http(*server.address, http_request(method, "/m", content_length=True))
    assert (response.status, response.body) == (200, method.lower().encode())


@pytest.mark.parametrize(
    "path, winner",
    [
        ("/p/lit", b"literal"),
        ("/p/other", b"parameter"),
        ("/p/a/b", b"wildcard"),
        ("/p/lit/deeper", b"wildcard"),
    ],
)
def test_literal_beats_parameter_beats_wildcard_whatever_the_order(serve, path, winner):
    def setup(app: App) -> None:
        # Registered least specific first, so that registration order cannot explain a win.
        app.get("/p/*", answer("wildcard"))
        app.get("/p/:x", answer("parameter"))
        app.get("/p/lit", answer("literal"))

    server = serve(setup)
    response = get(server, path)
    assert (response.status, response.body) == (200, winner)


def test_specificity_is_decided_segment_by_segment(serve):
    """At the second segment the literal `b` beats `:x`, even though the other route is longer
    and has a literal third segment."""

    def setup(app: App) -> None:
        app.get("/a/:x/c", answer("parameter-then-literal"))
        app.get("/a/b/*", answer("literal-then-wildcard"))

    server = serve(setup)
    assert get(server, "/a/b/c").body == b"literal-then-wildcard"
    assert get(server, "/a/z/c").body == b"parameter-then-literal"


@pytest.mark.parametrize("any_first", [True, False], ids=["any-registered-first", "any-last"])
def test_exact_method_beats_any(serve, any_first):
    def setup(app: App) -> None:
        if any_first:
            app.any("/m", answer("any"))
        app.get("/m", answer("get"))
        if not any_first:
            app.any("/m", answer("any"))

    server = serve(setup)
    assert get(server, "/m").body == b"get"
    post = raw_http(*server.address, http_request("POST", "/m", content_length=True))
    assert post.body == b"any"
    delete = raw_http(*server.address, http_request("DELETE", "/m"))
    assert delete.body == b"any"


def test_earliest_of_equal_routes_wins(serve):
    def setup(app: App) -> None:
        app.get("/e", answer("first"))
        app.get("/e", answer("second"))
        app.get("/f/:a", answer("first-param"))
        app.get("/f/:b", answer("second-param"))

    server = serve(setup)
    assert get(server, "/e").body == b"first"
    assert get(server, "/f/1").body == b"first-param"


def test_parameters_by_index_and_name(serve, recorder):
    seen: queue.Queue = queue.Queue()

    def handler(res, req):
        seen.put(
            {
                "0": req.get_parameter(0),
                "1": req.get_parameter(1),
                "2": req.get_parameter(2),
                "id": req.get_parameter("id"),
                "post": req.get_parameter("post"),
                "nope": req.get_parameter("nope"),
            }
        )
        res.end("ok")

    server = serve(lambda app: app.get("/users/:id/posts/:post", recorder.guard(handler)))
    assert get(server, "/users/42/posts/seven").status == 200
    assert wait_for(seen, "the handler") == {
        "0": "42",
        "1": "seven",
        "2": None,
        "id": "42",
        "post": "seven",
        "nope": None,
    }


def test_wildcard_remainder_is_parameter_star(serve, recorder):
    seen: queue.Queue = queue.Queue()

    def handler(res, req):
        seen.put((req.get_parameter("*"), req.get_url()))
        res.end("ok")

    server = serve(lambda app: app.get("/files/*", recorder.guard(handler)))
    assert get(server, "/files/a/b/c.txt?v=1").status == 200
    assert wait_for(seen, "the handler") == ("a/b/c.txt", "/files/a/b/c.txt")


def test_parameter_does_not_match_an_extra_segment(serve):
    server = serve(lambda app: app.get("/one/:x", answer("one")))
    assert get(server, "/one/a").status == 200
    assert get(server, "/one/a/b").status == 404


# ---------------------------------------------------------------- what the request says


def test_method_url_and_query(serve, recorder):
    seen: queue.Queue = queue.Queue()

    def handler(res, req):
        seen.put(
            {
                "method": req.get_method(),
                "case_sensitive": req.get_case_sensitive_method(),
                "url": req.get_url(),
                "full_url": req.get_full_url(),
                "query": req.get_query(),
                "name": req.get_query("name"),
                "empty": req.get_query("empty"),
                "missing": req.get_query("missing"),
            }
        )
        res.end("ok")

    server = serve(lambda app: app.any("/q", recorder.guard(handler)))
    query = "name=J%C3%BCrgen%20%26%20Co&empty=&x=1"
    response = raw_http(*server.address, http_request("DELETE", f"/q?{query}"))
    assert response.status == 200
    assert wait_for(seen, "the handler") == {
        "method": "delete",
        "case_sensitive": "DELETE",
        "url": "/q",
        "full_url": f"/q?{query}",
        "query": query,
        "name": "Jürgen & Co",
        "empty": "",
        "missing": None,
    }


def test_headers_are_case_insensitive_and_repeats_are_joined(serve, recorder):
    seen: queue.Queue = queue.Queue()

    def handler(res, req):
        pairs = []
        req.for_each_header(lambda name, value: pairs.append((name.lower(), value)))
        seen.put(
            {
                "lower": req.get_header("x-token"),
                "upper": req.get_header("X-TOKEN"),
                "repeated": req.get_header("x-multi"),
                "absent": req.get_header("x-absent"),
                "pairs": pairs,
            }
        )
        res.end("ok")

    server = serve(lambda app: app.get("/h", recorder.guard(handler)))
    headers = [("X-Token", "secret"), ("X-Multi", "a"), ("x-multi", "b, c"), ("X-Other", "1")]
    assert get(server, "/h", headers).status == 200
    got = wait_for(seen, "the handler")
    assert got["lower"] == got["upper"] == "secret"
    assert got["repeated"] == "a, b, c"
    assert got["absent"] is None
    pairs = got["pairs"]
    for pair in [("host", "127.0.0.1"), ("x-token", "secret"), ("x-other", "1")]:
        assert pair in pairs, f"{pair} not passed to for_each_header: {pairs}"
    assert ("x-multi", "a") in pairs or ("x-multi", "a, b, c") in pairs, pairs


def test_remote_address_is_loopback(serve, recorder):
    seen: queue.Queue = queue.Queue()

    def handler(res, req):
        seen.put(res.get_remote_address())
        res.end("ok")

    server = serve(lambda app: app.get("/", recorder.guard(handler)))
    get(server, "/")
    assert wait_for(seen, "the handler") == "127.0.0.1"


# ---------------------------------------------------------------- 404, 405, 426


def test_unknown_path_gets_404(serve):
    server = serve(lambda app: app.get("/known", answer("k")))
    assert get(server, "/unknown").status == 404
    assert get(server, "/known").status == 200


def test_other_method_gets_405_with_allow(serve):
    def setup(app: App) -> None:
        app.get("/thing", answer("g")).post("/thing", answer("p"))

    server = serve(setup)
    response = raw_http(*server.address, http_request("DELETE", "/thing"))
    assert response.status == 405
    assert "allow" in response.headers, f"405 without Allow: {response.headers}"
    allowed = [m.strip() for m in response.headers["allow"].split(",")]
    assert sorted(allowed) == ["GET", "POST"], response.headers["allow"]


def test_plain_request_on_websocket_route_gets_426(serve, recorder):
    server = serve(lambda app: app.get("/http", answer("h")), recorder.behavior(), "/ws")
    assert get(server, "/ws").status == 426
    assert get(server, "/http").status == 200
    assert get(server, "/neither").status == 404


# ---------------------------------------------------------------- what the response says


def test_status_headers_and_body(serve):
    def handler(res, req):
        res.write_status("201 Created").write_header("X-A", "1").write_header("X-A", "2")
        res.write_header("Content-Type", "text/plain").end("made")

    server = serve(lambda app: app.post("/make", handler))
    response = raw_http(*server.address, http_request("POST", "/make", content_length=True))
    assert response.status == 201
    assert response.headers["x-a"] == "1, 2"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["content-length"] == "4"
    assert response.body == b"made"


def test_writers_return_the_response(serve, recorder):
    seen: queue.Queue = queue.Queue()

    def handler(res, req):
        chained = [res.write_status("202 Accepted") is res, res.write_header("X-B", "b") is res]
        chained.append(res.end("chained") is res)
        seen.put(chained)

    server = serve(lambda app: app.get("/", recorder.guard(handler)))
    response = get(server, "/")
    assert (response.status, response.headers.get("x-b"), response.body) == (202, "b", b"chained")
    assert wait_for(seen, "the handler") == [True, True, True]


def test_default_status_is_200(serve):
    server = serve(lambda app: app.get("/", answer("")))
    response = get(server, "/")
    assert (response.status, response.headers.get("content-length"), response.body) == (
        200,
        "0",
        b"",
    )


@pytest.mark.parametrize(
    "body, wire",
    [
        ("héllo ✓", "héllo ✓".encode()),
        (b"\x00\xff\r\n", b"\x00\xff\r\n"),
        (payload_of_size(300_000), payload_of_size(300_000)),
    ],
    ids=["str", "bytes", "300k-bytes"],
)
def test_body_types(serve, body, wire):
    server = serve(lambda app: app.get("/", lambda res, req: res.end(body)))
    response = get(server, "/")
    assert response.headers["content-length"] == str(len(wire))
    assert response.body == wire


def test_cork_batches_a_response(serve):
    def handler(res, req):
        res.cork(lambda: res.write_status("203 Non-Authoritative Information").end("corked"))

    server = serve(lambda app: app.get("/", handler))
    response = get(server, "/")
    assert (response.status, response.body) == (203, b"corked")


def test_end_without_body(serve):
    def handler(res, req):
        res.write_status("204 No Content").end_without_body()

    server = serve(lambda app: app.get("/", handler))
    with Connection(server) as conn:
        conn.send(http_request("GET", "/"))
        status, headers, rest = conn.head_only()
        assert status == 204
        assert rest + conn.nothing_arrives() == b"", "bytes after a response ended without body"
        # The connection is still in step: the next response starts right at the first byte.
        conn.send(http_request("GET", "/"))
        assert conn.head_only()[0] == 204


def test_chunked_write_response_is_decoded(serve):
    def handler(res, req):
        res.write("first,")
        res.write(b"second,")
        res.end("last")

    server = serve(lambda app: app.get("/stream", handler))
    with Connection(server) as conn:
        response = conn.exchange(http_request("GET", "/stream"))
        assert "chunked" in response.headers.get("transfer-encoding", "").lower()
        assert "content-length" not in response.headers
        assert response.body == b"first,second,last"
        # The chunked body ended exactly where it should: the next response is intact.
        assert conn.exchange(http_request("GET", "/stream")).body == b"first,second,last"


def test_empty_write_does_not_end_a_chunked_body(serve):
    """A zero-length chunk is the terminator; write("") must not send one."""

    def handler(res, req):
        res.write("a")
        res.write("")
        res.write(b"")
        res.end("b")

    server = serve(lambda app: app.get("/", handler))
    with Connection(server) as conn:
        assert conn.exchange(http_request("GET", "/")).body == b"ab"
        assert conn.exchange(http_request("GET", "/")).body == b"ab"


def test_write_streams_before_end(serve, recorder):
    """write() sends at once: the first chunk arrives while the response is still open."""
    responses: queue.Queue = queue.Queue()

    def handler(res, req):
        res.write("early")
        responses.put(res)

    server = serve(lambda app: app.get("/", recorder.guard(handler)))
    with Connection(server) as conn:
        conn.send(http_request("GET", "/"))
        res = wait_for(responses, "the handler")
        _, headers, received = conn.head_only()
        deadline = time.monotonic() + 3.0
        while b"early" not in received and time.monotonic() < deadline:
            received += conn.nothing_arrives(0.1)
        assert b"early" in received, f"first chunk not sent before end(): {received!r}"
        server.call(lambda: res.end("late"))
        while not received.endswith(b"0\r\n\r\n") and time.monotonic() < deadline + 3.0:
            more = conn.nothing_arrives(0.1)
            received += more
        assert received == b"5\r\nearly\r\n4\r\nlate\r\n0\r\n\r\n"


def test_end_with_close_connection(serve):
    server = serve(lambda app: app.get("/", lambda res, req: res.end("bye", True)))
    response, sock = open_raw_http(*server.address, http_request("GET", "/"))
    with sock:
        assert response.body == b"bye"
        assert response.headers.get("connection", "").lower() == "close"
        assert socket_reaches_eof(sock, 3.0), "connection open after end(close_connection=True)"


# ---------------------------------------------------------------- HEAD


@pytest.mark.parametrize("register", ["head", "any"])
def test_head_response_has_no_body(serve, register):
    server = serve(lambda app: getattr(app, register)("/h", answer("hello")).get("/g", answer("g")))
    with Connection(server) as conn:
        conn.send(http_request("HEAD", "/h"))
        status, headers, rest = conn.head_only()
        assert status == 200
        assert headers.get("content-length") == "5"
        assert rest + conn.nothing_arrives() == b"", "HEAD response carried a body"
        next_response = conn.exchange(http_request("GET", "/g"))
        assert (next_response.status, next_response.body) == (200, b"g")


# ---------------------------------------------------------------- request bodies


def body_digest_handler(recorder, calls: Optional[queue.Queue] = None):
    """POST handler answering "<length> <sha256>" of the body read through on_data; every
    on_data call is recorded into calls as (type of chunk, len, is_last)."""

    def handler(res, req):
        chunks = []

        def on_data(chunk, is_last):
            if calls is not None:
                calls.put((type(chunk), len(chunk), is_last))
            chunks.append(bytes(chunk))
            if is_last:
                body = b"".join(chunks)
                res.end(f"{len(body)} {hashlib.sha256(body).hexdigest()}")

        res.on_data(recorder.guard(on_data))

    return recorder.guard(handler)


def digest(body: bytes) -> bytes:
    return f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()


def drain(calls: queue.Queue) -> list:
    items = []
    while True:
        try:
            items.append(calls.get_nowait())
        except queue.Empty:
            return items


def test_small_body(serve, recorder):
    calls: queue.Queue = queue.Queue()
    server = serve(lambda app: app.post("/b", body_digest_handler(recorder, calls)))
    response = raw_http(*server.address, http_request("POST", "/b", body=b"hello body"))
    assert (response.status, response.body) == (200, digest(b"hello body"))
    recorded = drain(calls)
    assert all(kind is bytes for kind, _, _ in recorded), recorded
    assert [last for _, _, last in recorded][-1] is True
    assert [last for _, _, last in recorded].count(True) == 1


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length-0", "no-length"])
def test_empty_body_gets_one_last_call(serve, recorder, with_length):
    calls: queue.Queue = queue.Queue()
    server = serve(lambda app: app.post("/b", body_digest_handler(recorder, calls)))
    response = raw_http(*server.address, http_request("POST", "/b", content_length=with_length))
    assert (response.status, response.body) == (200, digest(b""))
    assert drain(calls) == [(bytes, 0, True)]


def test_large_body_split_across_many_writes(serve, recorder):
    calls: queue.Queue = queue.Queue()
    server = serve(lambda app: app.post("/b", body_digest_handler(recorder, calls)))
    body = payload_of_size(512 * 1024, seed=3)
    with Connection(server) as conn:
        length = [("Content-Length", str(len(body)))]
        conn.send(http_request("POST", "/b", length, content_length=False))
        for index, start in enumerate(range(0, len(body), 4096)):
            conn.send(body[start : start + 4096])
            if index % 16 == 15:
                time.sleep(0.002)  # let the server see the body in separate reads
        response = conn.response()
    assert (response.status, response.body) == (200, digest(body))
    recorded = drain(calls)
    assert len(recorded) > 1, "the body reached on_data in one piece; nothing was split"
    assert sum(size for _, size, _ in recorded) == len(body)
    assert [last for _, _, last in recorded] == [False] * (len(recorded) - 1) + [True]


def test_default_max_body_size_is_one_mib():
    assert App().max_body_size == MIB


@pytest.mark.parametrize("limit", [None, 1000], ids=["default-1MiB", "set-to-1000"])
def test_body_of_exactly_max_body_size_is_accepted(serve, recorder, limit):
    def setup(app: App) -> None:
        if limit is not None:
            app.max_body_size = limit
        app.post("/b", body_digest_handler(recorder))

    server = serve(setup)
    body = payload_of_size(limit or MIB, seed=5)
    response = raw_http(*server.address, http_request("POST", "/b", body=body), timeout=10)
    assert (response.status, response.body) == (200, digest(body))


@pytest.mark.parametrize("limit", [None, 1000], ids=["default-1MiB", "set-to-1000"])
def test_body_one_byte_over_max_body_size_gets_413(serve, recorder, limit):
    calls: queue.Queue = queue.Queue()

    def setup(app: App) -> None:
        if limit is not None:
            app.max_body_size = limit
        app.post("/b", body_digest_handler(recorder, calls))

    server = serve(setup)
    body = payload_of_size((limit or MIB) + 1)
    head = http_request("POST", "/b", [("Content-Length", str(len(body)))], content_length=False)
    # The head alone announces the size; the body follows only if the server has not answered.
    sock = open_socket(server.host, server.port, WAIT)
    with sock:
        sock.sendall(head)
        send_all_tolerating_reset(sock, body)
        response, _ = read_http_response(sock, time.monotonic() + WAIT)
    assert response.status == 413
    assert not any(last for _, _, last in drain(calls)), "handler saw the whole oversize body"


def test_chunked_request_gets_411(serve, recorder):
    calls: queue.Queue = queue.Queue()
    server = serve(lambda app: app.post("/b", body_digest_handler(recorder, calls)))
    request = http_request("POST", "/b", [("Transfer-Encoding", "chunked")])
    response, sock = open_raw_http(*server.address, request + b"5\r\nhello\r\n0\r\n\r\n")
    sock.close()
    assert response.status == 411
    assert drain(calls) == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("Transfer-Encoding", "chunked"), ("Content-Length", "5")], id="te-and-cl"),
        pytest.param([("Content-Length", "abc")], id="cl-not-a-number"),
        pytest.param([("Content-Length", "-1")], id="cl-negative"),
        pytest.param([("Content-Length", "5"), ("Content-Length", "6")], id="cl-conflicting"),
    ],
)
def test_bad_body_framing_gets_400(serve, recorder, headers):
    calls: queue.Queue = queue.Queue()
    server = serve(lambda app: app.post("/b", body_digest_handler(recorder, calls)))
    request = http_request("POST", "/b", headers, content_length=False) + b"hello"
    response, sock = open_raw_http(*server.address, request)
    sock.close()
    assert response.status == 400
    assert drain(calls) == []


# ---------------------------------------------------------------- connections


def test_three_requests_on_one_keep_alive_connection(serve):
    server = serve(lambda app: app.get("/k/:n", lambda res, req: res.end(req.get_parameter("n"))))
    with Connection(server) as conn:
        for n in ("1", "2", "3"):
            response = conn.exchange(http_request("GET", f"/k/{n}"))
            assert (response.status, response.body) == (200, n.encode())
            assert response.headers.get("connection", "").lower() != "close"
        assert conn.nothing_arrives(0.2) == b""


def test_connection_close_from_client(serve):
    server = serve(lambda app: app.get("/", answer("once")))
    with Connection(server) as conn:
        response = conn.exchange(http_request("GET", "/", [("Connection", "close")]))
        assert response.body == b"once"
        assert response.headers.get("connection", "").lower() == "close"
        assert conn.reaches_eof(), "server kept the connection after Connection: close"


def test_http10_closes_by_default(serve):
    server = serve(lambda app: app.get("/", answer("old")))
    with Connection(server) as conn:
        response = conn.exchange(b"GET / HTTP/1.0\r\n\r\n")
        assert (response.status, response.body) == (200, b"old")
        assert conn.reaches_eof(), "server kept an HTTP/1.0 connection open"


def test_http10_keep_alive_stays_open(serve):
    server = serve(lambda app: app.get("/", answer("old")))
    request = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    with Connection(server) as conn:
        assert conn.exchange(request).body == b"old"
        assert conn.exchange(request).body == b"old"


def pipeline_setup(recorder, events: queue.Queue, slow: str = "2", delay: float = 0.1):
    """Routes for the pipelining tests: /p/:n answers n at once, except n == slow, answered
    from a thread through app.defer after delay. POST /p/:n answers n and the body."""

    def setup(app: App) -> None:
        def on_get(res, req):
            n = req.get_parameter("n")
            events.put(("handled", n))
            if n != slow:
                res.end(n)
                return

            def later() -> None:
                time.sleep(delay)
                app.defer(lambda: (events.put(("answered", n)), res.end(n)))

            threading.Thread(target=later, daemon=True).start()

        def on_post(res, req):
            n = req.get_parameter("n")
            events.put(("handled", n))
            res.on_data(lambda chunk, last: last and res.end(f"{n}:{bytes(chunk).decode()}"))

        app.get("/p/:n", recorder.guard(on_get)).post("/p/:n", recorder.guard(on_post))

    return setup


def test_pipelined_requests_are_answered_in_order(serve, recorder):
    events: queue.Queue = queue.Queue()
    server = serve(pipeline_setup(recorder, events))
    requests = b"".join(
        [
            http_request("GET", "/p/1"),
            http_request("GET", "/p/2"),
            http_request("POST", "/p/3", body=b"abc"),
            http_request("GET", "/p/4"),
            http_request("GET", "/p/5"),
        ]
    )
    with Connection(server) as conn:
        started = time.monotonic()
        conn.send(requests)
        bodies = [conn.response().body for _ in range(5)]
        elapsed = time.monotonic() - started
    assert bodies == [b"1", b"2", b"3:abc", b"4", b"5"]
    assert elapsed >= 0.09, f"the slow response arrived after {elapsed:.3f} s"


def test_pipelined_handler_waits_for_the_previous_answer(serve, recorder):
    """One at a time: request 3's handler runs only once request 2 has been answered."""
    events: queue.Queue = queue.Queue()
    server = serve(pipeline_setup(recorder, events))
    requests = b"".join(http_request("GET", f"/p/{n}") for n in range(1, 6))
    with Connection(server) as conn:
        conn.send(requests)
        for _ in range(5):
            conn.response()
    order = drain(events)
    assert order == [
        ("handled", "1"),
        ("handled", "2"),
        ("answered", "2"),
        ("handled", "3"),
        ("handled", "4"),
        ("handled", "5"),
    ]


def test_many_keep_alive_requests_on_many_connections(serve):
    server = serve(lambda app: app.get("/c/:conn/:n", lambda res, req: res.end(req.get_full_url())))
    connections = [Connection(server) for _ in range(20)]
    try:
        answered = 0
        for n in range(10):
            for index, conn in enumerate(connections):
                conn.send(http_request("GET", f"/c/{index}/{n}"))
            for index, conn in enumerate(connections):
                response = conn.response()
                assert (response.status, response.body) == (200, f"/c/{index}/{n}".encode())
                answered += 1
    finally:
        for conn in connections:
            conn.sock.close()
    assert answered == 200


# ---------------------------------------------------------------- handler errors and lifetimes


def test_handler_raising_gets_500_and_server_goes_on(serve):
    def boom(res, req):
        raise RuntimeError("handler failed on purpose")

    def setup(app: App) -> None:
        app.get("/boom", boom).get("/ok", answer("fine"))

    server = serve(setup)
    assert get(server, "/boom").status == 500
    assert get(server, "/ok").body == b"fine"
    assert get(server, "/boom").status == 500


def test_handler_raising_after_answering_keeps_its_answer(serve):
    def answered_then_boom(res, req):
        res.write_status("202 Accepted").end("kept")
        raise RuntimeError("after the answer")

    server = serve(lambda app: app.get("/", answered_then_boom).get("/ok", answer("fine")))
    response = get(server, "/")
    assert (response.status, response.body) == (202, b"kept")
    assert get(server, "/ok").body == b"fine"


@pytest.mark.parametrize(
    "use",
    [
        lambda req: req.get_url(),
        lambda req: req.get_method(),
        lambda req: req.get_header("host"),
        lambda req: req.get_query("a"),
        lambda req: req.get_parameter(0),
        lambda req: req.for_each_header(lambda name, value: None),
    ],
    ids=["get_url", "get_method", "get_header", "get_query", "get_parameter", "for_each_header"],
)
def test_stale_http_request_raises_http_closed_error(serve, recorder, use):
    """A request used after its handler returned raises the same kind of error as a closed
    WebSocket: a RuntimeError subclass, HttpClosedError (it was a ValueError)."""
    kept: queue.Queue = queue.Queue()

    def handler(res, req):
        kept.put(req)
        res.end("ok")

    server = serve(lambda app: app.get("/:x", recorder.guard(handler)))
    assert get(server, "/v?a=1").status == 200
    req = wait_for(kept, "the handler")
    with pytest.raises(HttpClosedError, match="HttpRequest has ended"):
        server.call(lambda: use(req))
    with pytest.raises(RuntimeError):
        use(req)
    assert issubclass(HttpClosedError, RuntimeError) and issubclass(WebSocketClosedError, RuntimeError)


@pytest.mark.parametrize(
    "use",
    [
        lambda res: res.end("again"),
        lambda res: res.end_without_body(),
        lambda res: res.write("more"),
        lambda res: res.write_status("201 Created"),
        lambda res: res.write_header("X-Late", "1"),
        lambda res: res.try_end(b"x", 1),
        lambda res: res.on_writable(lambda offset: True),
        lambda res: res.get_write_offset(),
        lambda res: res.on_aborted(lambda: None),
        lambda res: res.on_data(lambda chunk, last: None),
        lambda res: res.cork(lambda: None),
        lambda res: res.close(),
        lambda res: res.get_remote_address(),
    ],
    ids=["end", "end_without_body", "write", "write_status", "write_header", "try_end", "on_writable",
         "get_write_offset", "on_aborted", "on_data", "cork", "close", "get_remote_address"],
)
def test_stale_http_response_raises_http_closed_error(serve, recorder, use):
    """An answered response used again raises HttpClosedError (it used to do nothing); only
    `aborted` (True) and `upgrade` (False) still answer."""
    kept: queue.Queue = queue.Queue()

    def handler(res, req):
        res.end("ok")
        kept.put(res)

    server = serve(lambda app: app.get("/", recorder.guard(handler)))
    assert get(server, "/").body == b"ok"
    res = wait_for(kept, "the handler")
    with pytest.raises(HttpClosedError, match="HttpResponse has ended"):
        server.call(lambda: use(res))
    assert server.call(lambda: res.aborted) is True
    assert get(server, "/").body == b"ok"


def test_client_leaving_before_the_answer_calls_on_aborted(serve, recorder):
    pending: queue.Queue = queue.Queue()
    aborted: queue.Queue = queue.Queue()

    def handler(res, req):
        res.on_aborted(recorder.guard(lambda: aborted.put(True)))
        pending.put(res)

    server = serve(lambda app: app.get("/wait", recorder.guard(handler)).get("/ok", answer("fine")))
    with Connection(server) as conn:
        conn.send(http_request("GET", "/wait"))
        res = wait_for(pending, "the handler")
        assert server.call(lambda: res.aborted) is False
    wait_for(aborted, "the on_aborted callback")
    assert_nothing_more(aborted, "second on_aborted call", within=0.2)
    assert server.call(lambda: res.aborted) is True
    with pytest.raises(HttpClosedError):
        server.call(lambda: res.end("too late"))
    assert get(server, "/ok").body == b"fine"


def test_aborted_is_true_once_the_response_ended(serve, recorder):
    seen: queue.Queue = queue.Queue()

    def handler(res, req):
        before = res.aborted
        res.end("done")
        seen.put((before, res.aborted))

    server = serve(lambda app: app.get("/", recorder.guard(handler)))
    get(server, "/")
    assert wait_for(seen, "the handler") == (False, True)
