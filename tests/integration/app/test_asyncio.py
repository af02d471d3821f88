"""`await app.serve()` inside asyncio and uvloop: coroutine handlers for messages, HTTP routes and
upgrades, plain handlers beside them, run() refusing coroutine handlers, close() from a task,
exceptions in coroutine handlers, and the core's timers under serve()."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pytest

from tests.support.harness import RUNNERS, ServerPool
from uws_py import App, HttpRequest
from tests.support.wsclient import ConnectionClosed, Op, connect, raw_http

DELAY = 0.2
CONCURRENT_MESSAGES = 5
GOING_AWAY = 1001
SLACK = 2.5
# How soon serve() must return once close() has nothing left to wait for.
PROMPT = 0.5


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request) -> str:
    return request.param


@pytest.fixture
def start_server(recorder, loop_kind):
    """start_server(behavior=None, setup=None) -> a Server whose loop thread runs app.serve() in
    an event loop of loop_kind; stopped at teardown."""
    pool = ServerPool()
    yield lambda behavior=None, setup=None: pool.start(
        behavior, setup=setup, runner=RUNNERS[loop_kind]
    )
    pool.stop_all()


def assert_serve_returns(server, timeout: float = 5.0) -> None:
    server.thread.join(timeout)
    assert not server.thread.is_alive(), f"serve() did not return within {timeout} s of close()"
    assert server.runner_error is None, f"serve() raised {server.runner_error!r}"


def test_coroutine_message_handler_awaits_then_sends(start_server, recorder):
    threads = set()

    async def on_message(ws, message, opcode):
        await asyncio.sleep(DELAY)
        threads.add(threading.get_ident())
        ws.send(f"after {message}", opcode)

    server = start_server(recorder.behavior(message=on_message))
    with connect(*server.address) as client:
        start = time.monotonic()
        client.send_text("one")
        assert client.recv_message() == (Op.TEXT, b"after one")
        elapsed = time.monotonic() - start
        assert elapsed >= DELAY * 0.9, f"answered after {elapsed:.3f} s, before the await ended"
    assert threads == {server.thread.ident}


def test_coroutine_handlers_run_concurrently(start_server, recorder):
    async def on_message(ws, message, opcode):
        await asyncio.sleep(DELAY)
        ws.send(f"after {message}", opcode)

    server = start_server(recorder.behavior(message=on_message))
    with connect(*server.address) as client:
        start = time.monotonic()
        for index in range(CONCURRENT_MESSAGES):
            client.send_text(f"m{index}")
        answers = {client.recv_message().payload for _ in range(CONCURRENT_MESSAGES)}
        elapsed = time.monotonic() - start
    assert answers == {f"after m{index}".encode() for index in range(CONCURRENT_MESSAGES)}
    serial = CONCURRENT_MESSAGES * DELAY
    assert elapsed < serial * 0.8, (
        f"{CONCURRENT_MESSAGES} handlers sleeping {DELAY} s took {elapsed:.2f} s: they ran one "
        "after another"
    )


def test_async_http_handler_reads_the_request_after_await(start_server):
    async def describe(res, req):
        await asyncio.sleep(DELAY)
        headers = []
        req.for_each_header(lambda name, value: headers.append([name, value]))
        res.write_header("Content-Type", "application/json").end(
            json.dumps(
                {
                    "method": req.get_method(),
                    "url": req.get_url(),
                    "full_url": req.get_full_url(),
                    "q": req.get_query("q"),
                    "missing": req.get_query("missing"),
                    "token": req.get_header("x-token"),
                    "id": req.get_parameter("id"),
                    "first": req.get_parameter(0),
                    "headers": headers,
                }
            )
        )

    server = start_server(setup=lambda app: app.get("/items/:id", describe))
    response = raw_http(
        *server.address,
        b"GET /items/42?q=hello%20world&n=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Token: abc\r\n\r\n",
    )
    assert response.status == 200, response
    seen = json.loads(response.body)
    assert seen["method"] == "get"
    assert seen["url"] == "/items/42"
    assert seen["full_url"] == "/items/42?q=hello%20world&n=1"
    assert seen["q"] == "hello world"
    assert seen["missing"] is None
    assert seen["token"] == "abc"
    assert seen["id"] == "42"
    assert seen["first"] == "42"
    assert ["x-token", "abc"] in seen["headers"]


def test_async_http_handlers_answer_concurrent_requests(start_server):
    async def slow(res, req):
        await asyncio.sleep(DELAY)
        res.end(f"done {req.get_parameter('n')}")

    server = start_server(setup=lambda app: app.get("/slow/:n", slow))
    results: dict = {}

    def fetch(n: int) -> None:
        request = f"GET /slow/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        results[n] = raw_http(*server.address, request)

    start = time.monotonic()
    threads = [threading.Thread(target=fetch, args=(n,)) for n in range(CONCURRENT_MESSAGES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    elapsed = time.monotonic() - start
    assert sorted(results) == list(range(CONCURRENT_MESSAGES))
    for n, response in results.items():
        assert (response.status, response.body) == (200, f"done {n}".encode())
    assert elapsed < CONCURRENT_MESSAGES * DELAY * 0.8, f"requests took {elapsed:.2f} s"


def test_async_upgrade_handler_upgrades_after_await(start_server, recorder):
    async def on_upgrade(res, req, context):
        user = req.get_query("user")
        await asyncio.sleep(DELAY)
        res.upgrade(
            {"user": user, "agent": req.get_header("x-agent")},
            req.get_header("sec-websocket-key"),
            req.get_header("sec-websocket-protocol"),
            req.get_header("sec-websocket-extensions"),
            context,
        )

    def on_message(ws, message, opcode):
        data = ws.get_user_data()
        ws.send(f"{data['user']}/{data['agent']}:{message}")

    server = start_server(recorder.behavior(upgrade=on_upgrade, message=on_message))
    with connect(*server.address, path="/?user=alice", headers={"X-Agent": "pytest"}) as client:
        client.send_text("hi")
        assert client.recv_message() == (Op.TEXT, b"alice/pytest:hi")
    recorder.next_open()


def test_async_upgrade_handler_can_refuse(start_server, recorder):
    async def on_upgrade(res, req, context):
        await asyncio.sleep(DELAY)
        res.write_status("403 Forbidden").end("no")

    server = start_server(recorder.behavior(upgrade=on_upgrade))
    response = raw_http(
        *server.address,
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    assert (response.status, response.body) == (403, b"no")
    assert recorder.opens.empty()


def test_plain_handlers_under_serve_run_synchronously(start_server, recorder):
    requests = []

    def on_get(res, req):
        requests.append(isinstance(req, HttpRequest))
        res.end(req.get_url())

    server = start_server(recorder.behavior(), setup=lambda app: app.get("/plain", on_get))
    with connect(*server.address) as client:
        client.send_text("sync echo")
        assert client.recv_message() == (Op.TEXT, b"sync echo")
    response = raw_http(*server.address, b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (response.status, response.body) == (200, b"/plain")
    assert requests == [True], "a plain HTTP handler did not get the live HttpRequest"
    assert recorder.handler_threads == {server.thread.ident}


async def async_noop(*args):
    return None


COROUTINE_HANDLERS = {
    "ws-message": lambda app: app.ws("/*", {"message": async_noop}),
    "ws-upgrade": lambda app: app.ws("/*", {"upgrade": async_noop}),
    "http-route": lambda app: app.get("/*", async_noop),
}


@pytest.mark.parametrize("add", COROUTINE_HANDLERS.values(), ids=COROUTINE_HANDLERS.keys())
def test_run_refuses_coroutine_handlers(add):
    app = App()
    add(app)
    outcome: dict = {}

    def run() -> None:
        try:
            app.run()
            outcome["returned"] = True
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5.0)
    if thread.is_alive():
        app.close()
        thread.join(5.0)
        raise AssertionError("run() started a loop with coroutine handlers instead of raising")
    assert isinstance(outcome.get("error"), RuntimeError), outcome
    assert "serve" in str(outcome["error"])


def test_close_from_a_task_ends_serve_and_sends_1001(start_server, recorder):
    async def shut_down_soon(app):
        await asyncio.sleep(DELAY)
        app.close()

    holder = {}

    async def on_message(ws, message, opcode):
        if message == "shut down":
            asyncio.get_running_loop().create_task(shut_down_soon(holder["app"]))

    server = start_server(recorder.behavior(message=on_message))
    holder["app"] = server.app
    clients = [connect(*server.address) for _ in range(3)]
    try:
        for _ in clients:
            recorder.next_open()
        clients[0].send_text("shut down")
        for client in clients:
            assert client.expect_close() == (GOING_AWAY, b"server shutting down")
            client.send_close(GOING_AWAY)
        assert_serve_returns(server)
    finally:
        for client in clients:
            client.disconnect()
    for _ in clients:
        recorder.next_close(timeout=0.5)


def test_close_from_a_task_without_connections_ends_serve_promptly(start_server):
    """Nothing is left to wait for, so serve() returns at once, not at the core's next timer."""
    server = start_server(setup=lambda app: app.get("/*", lambda res, req: res.end("up")))
    assert raw_http(*server.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status == 200
    closed_at = []

    async def close_app() -> None:
        closed_at.append(time.monotonic())
        server.app.close()

    # A task created on the serving loop from the test thread.
    server.call(lambda: asyncio.get_running_loop().create_task(close_app()))
    assert_serve_returns(server)
    elapsed = time.monotonic() - closed_at[0]
    assert elapsed < PROMPT, f"serve() returned {elapsed:.2f} s after close() from a task"


def test_close_from_a_task_drops_a_silent_client_after_timeout(start_server, recorder):
    server = start_server(recorder.behavior())
    with connect(*server.address) as silent:
        recorder.next_open()
        closed_at = []

        async def close_app() -> None:
            closed_at.append(time.monotonic())
            server.app.close(timeout=1)

        server.call(lambda: asyncio.get_running_loop().create_task(close_app()))
        assert_serve_returns(server, timeout=1 + SLACK)
        elapsed = time.monotonic() - closed_at[0]
        assert elapsed >= 0.5, f"serve() returned {elapsed:.2f} s after close(timeout=1)"
        assert silent.expect_close() == (GOING_AWAY, b"server shutting down")
        assert silent.wait_for_eof(1.0), "the silent client's TCP connection was left open"


def test_exception_in_coroutine_handler_is_logged_and_connection_goes_on(
    start_server, recorder, caplog
):
    caplog.set_level(logging.ERROR, logger="uws_py")

    async def on_message(ws, message, opcode):
        await asyncio.sleep(0)
        if message == "boom":
            raise ValueError("raised on purpose inside a coroutine handler")
        ws.send(message, opcode)

    server = start_server(recorder.behavior(message=on_message))
    with connect(*server.address) as client:
        client.send_text("boom")
        client.send_text("after boom")
        assert client.recv_message() == (Op.TEXT, b"after boom")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            logged = [
                record
                for record in caplog.records
                if record.exc_info and isinstance(record.exc_info[1], ValueError)
            ]
            if logged:
                break
            time.sleep(0.02)
        else:
            raise AssertionError(f"no ValueError logged; records: {caplog.records!r}")
        assert logged[0].name.startswith("uws_py")
        assert logged[0].levelno == logging.ERROR
        client.send_text("still here")
        assert client.recv_message() == (Op.TEXT, b"still here")
        assert recorder.closes.empty(), "the connection closed after the handler raised"


def test_idle_timeout_closes_an_idle_client_under_serve(start_server, recorder):
    idle = 2
    server = start_server(recorder.behavior(idle_timeout=idle, send_pings_automatically=False))
    with connect(*server.address) as client:
        start = time.monotonic()
        try:
            message = client.recv_message(timeout=idle + SLACK)
            assert message.opcode == Op.CLOSE, f"unexpected message while idle: {message}"
        except ConnectionClosed:
            pass
        except TimeoutError:
            raise AssertionError(
                f"idle client still connected {idle + SLACK} s into idle_timeout={idle}"
            ) from None
        elapsed = time.monotonic() - start
    assert elapsed >= idle * 0.5, f"closed after {elapsed:.2f} s, well before idle_timeout={idle}"
    recorder.next_close()


def test_defer_wakes_the_serving_loop(start_server):
    server = start_server(setup=lambda app: app.get("/*", lambda res, req: res.end("up")))
    ran = []
    for _ in range(3):
        # No network activity in between: only the defer itself can wake the loop.
        ident = server.call(threading.get_ident, timeout=2.0)
        ran.append(ident)
    assert ran == [server.thread.ident] * 3
