"""The asyncio client SDK against real server processes on loopback: connect with a JWT,
pub/sub between two clients, request/reply, token refresh on the live connection, a server
killed and restarted, and a request to a handler that never answers."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from uws_py.sdk import ClientOptions, ClientState, Publication, connect

from tests.support.procutil import HOST, Process, UwsServer, free_port
from tests.support.realtime import SECRET, make_token

# Every test runs inside asyncio.run with this bound on the whole coroutine.
TEST_BOUND = 40.0
FAST = ClientOptions(min_delay=0.05, max_delay=0.5, open_timeout=3.0, request_timeout=3.0, ping_interval=None)


def run(coro: Awaitable[Any], bound: float = TEST_BOUND) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(bound):
            return await coro

    return asyncio.run(bounded())


async def eventually(predicate: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s (last: {value!r})")
        await asyncio.sleep(0.02)


def hub(port: int = 0) -> UwsServer:
    return UwsServer("--jwt-secret", SECRET, "--rate-limit", "off", "--log-level", "warning", port=port)


def url(port: int) -> str:
    return f"ws://{HOST}:{port}/realtime"


SCRIPT = """
import asyncio
from uws_py import JWTAuth, RealtimeServer

server = RealtimeServer(auth=JWTAuth(secret={secret!r}))


@server.on("ECHO")
def echo(client, message):
    return {{"type": "ECHOED", "text": message.get("text")}}


@server.on("SLOW")
async def slow(client, message):
    await asyncio.sleep(message.get("seconds", 1.0))
    return {{"type": "SLOWED"}}


@server.on("KICK")
def kick(client, message):
    client.close(message["code"], "kicked")


@server.on("HANG")
async def hang(client, message):
    await asyncio.Event().wait()


asyncio.run(server.serve(port={port}, host={host!r}))
"""


def wait_listening(port: int, proc: Process, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.popen.poll() is None, f"server script exited: {proc.stderr_text()[-2000:]}"
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"server script not listening on {port} within {timeout} s")


@pytest.fixture
def hub_server():
    server = hub()
    yield server
    server.stop()


@pytest.fixture
def handler_server(tmp_path: Path):
    port = free_port()
    script = tmp_path / "handlers.py"
    script.write_text(textwrap.dedent(SCRIPT.format(secret=SECRET, host=HOST, port=port)))
    proc = Process([sys.executable, str(script)], env=dict(os.environ))
    try:
        wait_listening(port, proc)
        yield port
    finally:
        proc.stop()


def test_connects_with_a_jwt_and_pings(hub_server):
    async def scenario():
        async with connect(url(hub_server.port), token=make_token("alice"), options=FAST) as client:
            assert client.state is ClientState.CONNECTED
            assert client.client_id
            rtt = await client.ping(timeout=3)
            assert rtt >= 0
        assert client.state is ClientState.CLOSED

    run(scenario())


def test_subscribe_and_publish_between_two_clients(hub_server):
    async def scenario():
        received: list[Publication] = []
        async with connect(url(hub_server.port), token=make_token("bob"), options=FAST) as subscriber, \
                connect(url(hub_server.port), token=make_token("carol"), options=FAST) as publisher:
            await subscriber.subscribe("room.1", received.append)
            for n in range(5):
                await publisher.publish("room.1", {"n": n})
            reply = await publisher.publish("room.1", {"n": 5}, ack=True)
            assert reply is not None and reply["type"] == "PUBLISHED"
            await eventually(lambda: len(received) == 6, "six messages")
            assert [p.data for p in received] == [{"n": n} for n in range(6)]
            assert {p.sender for p in received} == {publisher.client_id}
            assert all(p.topic == "room.1" and p.offset is None for p in received)

    run(scenario())


def test_request_reply(handler_server):
    async def scenario():
        async with connect(url(handler_server), token=make_token("dave"), options=FAST) as client:
            reply = await client.request("ECHO", {"text": "hello"}, timeout=3)
            assert reply["type"] == "ECHOED" and reply["text"] == "hello"
            replies = await asyncio.gather(*(client.request("ECHO", {"text": str(n)}) for n in range(10)))
            assert [r["text"] for r in replies] == [str(n) for n in range(10)]

    run(scenario())


def test_request_to_a_handler_that_never_answers_times_out_and_the_client_goes_on(handler_server):
    async def scenario():
        async with connect(url(handler_server), token=make_token("erin"), options=FAST) as client:
            connects = client.stats.connects
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await client.request("HANG", {}, timeout=0.5)
            assert time.monotonic() - started < 3.0
            assert client.state is ClientState.CONNECTED
            assert not client._pending, "a timed-out request must not stay pending"
            reply = await client.request("ECHO", {"text": "still here"}, timeout=3)
            assert reply["text"] == "still here"
            await client.ping(timeout=3)
            assert client.stats.connects == connects

    run(scenario())


def test_short_token_is_refreshed_three_times_without_dropping_the_connection(hub_server):
    async def scenario():
        issued: list[str] = []

        async def get_token() -> str:
            token = make_token("frank", ttl=3.0)
            issued.append(token)
            return token

        states: list[ClientState] = []
        async with connect(url(hub_server.port), token=make_token("frank", ttl=3.0), get_token=get_token,
                           options=FAST, on_state=lambda state, error: states.append(state)) as client:
            client_id = client.client_id
            await eventually(lambda: client.stats.token_refreshes >= 3, "three token refreshes", timeout=15)
            assert client.stats.token_refreshes == 3 and len(issued) == 3
            await client.ping(timeout=3)
            assert client.client_id == client_id
            assert client.stats.connects == 1 and client.stats.disconnects == 0
            assert states == [ClientState.CONNECTING, ClientState.CONNECTED]

    run(scenario())


def test_short_token_without_get_token_ends_with_token_expired(hub_server):
    """The control of the refresh test: the server really closes a connection whose token ran out."""
    async def scenario():
        client = await connect(url(hub_server.port), token=make_token("ivan", ttl=1.5), options=FAST).start()
        try:
            await client.wait_for(ClientState.CLOSED, timeout=10)
        finally:
            await client.close()
        assert "token expired" in str(client.error)
        assert client.stats.connects == 1

    run(scenario())


def test_server_killed_and_restarted_clients_reconnect_and_resubscribe():
    server = hub()
    port = server.port
    try:
        async def scenario():
            nonlocal server
            received: list[Any] = []
            async with connect(url(port), token=make_token("gina"), options=FAST) as subscriber, \
                    connect(url(port), token=make_token("hank"), options=FAST) as publisher:
                subscription = await subscriber.subscribe("news", lambda p: received.append(p.data))
                await publisher.publish("news", "before", ack=True)
                await eventually(lambda: received == ["before"], "the message before the restart")

                os.kill(server.pid, signal.SIGKILL)
                server.wait(5)
                await eventually(lambda: subscriber.state is not ClientState.CONNECTED
                                 and publisher.state is not ClientState.CONNECTED, "both clients noticing")
                server = await asyncio.to_thread(hub, port)

                await subscriber.wait_for(ClientState.CONNECTED, timeout=10)
                await publisher.wait_for(ClientState.CONNECTED, timeout=10)
                await eventually(lambda: subscription.stats.subscribes >= 2, "the resubscribe")
                await publisher.publish("news", "after", ack=True)
                await eventually(lambda: received == ["before", "after"], "the message after the restart")
                assert subscriber.stats.connects == 2 and publisher.stats.connects == 2

        run(scenario())
    finally:
        server.stop()


def test_subscriber_behind_a_chaos_proxy_keeps_reconnecting_and_resubscribing(hub_server):
    """Plain topics may lose what is published while the subscriber is away: only reconnection,
    resubscription and delivery after the last reconnect are asserted, not zero loss."""
    from tests.support.chaos_proxy import ChaosProxy

    async def scenario():
        deliveries: list[int] = []  # the subscribe count when each message arrived
        async with ChaosProxy(hub_server.port, min_life=0.2, max_life=2.0, seed=7) as proxy, \
                connect(url(proxy.port), token=make_token("jill"), options=FAST) as subscriber, \
                connect(url(hub_server.port), token=make_token("kurt"), options=FAST) as publisher:
            subscription = await subscriber.subscribe(
                "ticks", lambda p: deliveries.append(subscription.stats.subscribes))
            stop = asyncio.Event()

            async def publish_forever() -> None:
                n = 0
                while not stop.is_set():
                    await publisher.publish("ticks", n)
                    n += 1
                    await asyncio.sleep(0.02)

            publishing = asyncio.create_task(publish_forever())
            try:
                await asyncio.sleep(5.0)

                def settled() -> bool:
                    latest = subscription.stats.subscribes
                    return (subscriber.state is ClientState.CONNECTED
                            and subscriber.stats.connects >= proxy.cuts + 1
                            and latest >= subscriber.stats.connects
                            and deliveries.count(latest) >= 3)

                await eventually(settled, "delivery after the last reconnect", timeout=10)
            finally:
                stop.set()
                await publishing
            print(f"chaos: {proxy.cuts} cuts, {subscriber.stats.connects} connects, "
                  f"{subscription.stats.subscribes} subscribes, {len(deliveries)} messages")
            assert proxy.cuts >= 3, f"only {proxy.cuts} cuts in 5 s"
            assert subscriber.stats.disconnects >= proxy.cuts
            assert publisher.stats.connects == 1
            assert len(set(deliveries)) >= 3, "messages were received on at least three connections"

    run(scenario())


def test_errors_from_the_server_raise_server_error(hub_server):
    from uws_py.sdk import ServerError

    async def scenario():
        token = make_token("lena", topics=["allowed.*"])
        async with connect(url(hub_server.port), token=token, options=FAST) as client:
            with pytest.raises(ServerError) as refused:
                await client.subscribe("secret.plans", lambda p: None)
            assert refused.value.code == "FORBIDDEN"
            assert "secret.plans" not in client.subscriptions
            with pytest.raises(ServerError):
                await client.request("NO_SUCH_TYPE", {}, timeout=3)
            await client.subscribe("allowed.1", lambda p: None)  # the client goes on
            assert list(client.subscriptions) == ["allowed.1"]

    run(scenario())


def test_publishes_made_while_disconnected_are_queued_and_sent_after_reconnect():
    from uws_py.sdk import PublishQueueFull

    server = hub()
    port = server.port
    try:
        async def scenario():
            nonlocal server
            received: list[Any] = []
            options = ClientOptions(min_delay=0.05, max_delay=0.3, open_timeout=3.0, request_timeout=3.0,
                                    ping_interval=None, publish_queue_size=3)
            async with connect(url(port), token=make_token("mona"), options=options) as client:
                await client.subscribe("self", lambda p: received.append(p.data))
                server.stop()
                await eventually(lambda: client.state is not ClientState.CONNECTED, "the client noticing")
                for n in range(3):
                    await client.publish("self", n, echo=True)
                with pytest.raises(PublishQueueFull):
                    await client.publish("self", 3, echo=True)
                server = await asyncio.to_thread(hub, port)
                await client.wait_for(ClientState.CONNECTED, timeout=10)
                await eventually(lambda: received == [0, 1, 2], "the queued publishes, in order")
                assert not client._queue

        run(scenario())
    finally:
        server.stop()


def test_a_refused_token_stops_after_three_refreshes(hub_server):
    from uws_py.sdk import ClientClosed

    async def scenario():
        calls = 0

        async def get_token() -> str:
            nonlocal calls
            calls += 1
            return make_token("nina", secret="a different key, also long enough for HS256 use")

        client = connect(url(hub_server.port), get_token=get_token, options=FAST)
        with pytest.raises(ClientClosed):
            await client.start()
        assert client.state is ClientState.CLOSED
        assert calls == 3
        assert "401" in str(client.error) or "refused" in str(client.error)
        await client.close()

    run(scenario())


def test_unauthorized_from_get_token_stops_the_client(hub_server):
    from uws_py.sdk import ClientClosed, Unauthorized

    async def scenario():
        async def get_token() -> str:
            raise Unauthorized("logged out")

        client = connect(url(hub_server.port), get_token=get_token, options=FAST)
        with pytest.raises(ClientClosed):
            await client.start()
        assert isinstance(client.error, Unauthorized)
        await client.close()

    run(scenario())


def test_a_reply_that_comes_after_the_timeout_is_dropped(handler_server):
    async def scenario():
        async with connect(url(handler_server), token=make_token("olga"), options=FAST) as client:
            with pytest.raises(TimeoutError):
                await client.request("SLOW", {"seconds": 0.6}, timeout=0.2)
            await eventually(lambda: client.stats.late_replies_dropped == 1, "the late reply arriving")
            reply = await client.request("SLOW", {"seconds": 0.05}, timeout=3)
            assert reply["type"] == "SLOWED"
            assert client.stats.late_replies_dropped == 1

    run(scenario())


def test_unauthorized_while_refreshing_closes_the_client(hub_server):
    from uws_py.sdk import Unauthorized

    async def scenario():
        async def get_token() -> str:
            raise Unauthorized("session revoked")

        states: list[ClientState] = []
        async with connect(url(hub_server.port), token=make_token("pete", ttl=1.5), get_token=get_token,
                           options=FAST, on_state=lambda state, error: states.append(state)) as client:
            await client.wait_for(ClientState.CLOSED, timeout=10)
            assert isinstance(client.error, Unauthorized)
            assert client.stats.connects == 1
            assert states[-1] is ClientState.CLOSED and states.count(ClientState.CONNECTED) == 1

    run(scenario())


def test_close_while_waiting_to_reconnect_returns_promptly():
    port = free_port()  # nobody listens: every attempt fails

    async def scenario():
        options = ClientOptions(min_delay=5.0, max_delay=5.0, open_timeout=1.0, ping_interval=None)
        client = await connect(url(port), token=make_token("quinn"), options=options).start(wait=False)
        await eventually(lambda: client.state is ClientState.DISCONNECTED, "the first failed attempt")
        started = time.monotonic()
        await client.close()
        assert time.monotonic() - started < 2.0
        assert client.state is ClientState.CLOSED
        with pytest.raises(Exception) as closed:
            await client.publish("t", 1)
        assert type(closed.value).__name__ == "ClientClosed"

    run(scenario())


@pytest.mark.parametrize("code", [1000, 4001])
def test_a_final_close_from_the_server_stops_the_client(handler_server, code):
    """Regression: a 1000 close ended the read loop quietly and the client read a close frame
    from an attribute websockets 17 does not have, so it reconnected after a final close."""
    async def scenario():
        async with connect(url(handler_server), token=make_token("rita"), options=FAST) as client:
            await client._send({"type": "KICK", "code": code, "id": 1})
            await client.wait_for(ClientState.CLOSED, timeout=5)
            assert str(code) in str(client.error) or "closed by the server" in str(client.error)
            assert client.stats.connects == 1

    run(scenario())


def test_application_ping_finds_a_hung_connection_and_reconnects(hub_server):
    from tests.support.chaos_proxy import ChaosProxy

    async def scenario():
        options = ClientOptions(min_delay=0.05, max_delay=0.3, open_timeout=3.0, request_timeout=3.0,
                                ping_interval=0.3, ping_timeout=0.5)
        received: list[Any] = []
        async with ChaosProxy(hub_server.port, min_life=60.0, max_life=60.0) as proxy, \
                connect(url(proxy.port), token=make_token("sara"), options=options) as client, \
                connect(url(hub_server.port), token=make_token("tom"), options=FAST) as publisher:
            await client.subscribe("beat", lambda p: received.append(p.data))
            first_id = client.client_id
            assert proxy.hang() == 1
            await eventually(lambda: client.stats.connects == 2 and client.state is ClientState.CONNECTED,
                             "the reconnect after missed PONGs", timeout=10)
            assert client.client_id != first_id
            assert proxy.cuts == 0, "the proxy did not end the flow: the client's ping did"
            await eventually(lambda: client.subscriptions["beat"].stats.subscribes == 2, "the resubscribe")
            await publisher.publish("beat", "alive", ack=True)
            await eventually(lambda: received == ["alive"], "a message on the new connection")

    run(scenario())


def test_unsubscribe_stops_delivery_and_is_not_resubscribed():
    server = hub()
    port = server.port
    try:
        async def scenario():
            nonlocal server
            kept: list[Any] = []
            dropped: list[Any] = []
            async with connect(url(port), token=make_token("uma"), options=FAST) as client:
                # Asked before the connection is up: both wait for it.
                keep = await client.subscribe("keep", lambda p: kept.append(p.data))
                drop = await client.subscribe("drop", lambda p: dropped.append(p.data))
                await client.publish("drop", 1, echo=True, ack=True)
                await eventually(lambda: dropped == [1], "the first message")
                await drop.unsubscribe()
                assert list(client.subscriptions) == ["keep"]
                await client.publish("drop", 2, echo=True, ack=True)
                await client.publish("keep", "marker", echo=True, ack=True)
                await eventually(lambda: kept == ["marker"], "the marker")
                assert dropped == [1]

                server.stop()
                server = await asyncio.to_thread(hub, port)
                await client.wait_for(ClientState.CONNECTED, timeout=10)
                await eventually(lambda: keep.stats.subscribes == 2, "the resubscribe of the kept topic")
                await client.publish("drop", 3, echo=True, ack=True)
                await client.publish("keep", "again", echo=True, ack=True)
                await eventually(lambda: kept == ["marker", "again"], "the kept topic after the restart")
                assert dropped == [1] and drop.stats.subscribes == 1

        run(scenario())
    finally:
        server.stop()


def test_requests_made_before_the_connection_is_up_wait_for_it(hub_server):
    async def scenario():
        client = await connect(url(hub_server.port), token=make_token("vera"), options=FAST).start(wait=False)
        try:
            replies = await asyncio.gather(*(client.request("PING", timeout=5) for _ in range(3)))
            assert [r["type"] for r in replies] == ["PONG"] * 3
        finally:
            await client.close()

    run(scenario())


def test_token_expired_close_gets_a_new_token_and_reconnects(hub_server):
    """get_token fails until after the token ran out: the server closes with 1008 "token
    expired", and the client asks get_token again and comes back."""
    async def scenario():
        failing_until = time.monotonic() + 2.5
        issued = 0

        async def get_token() -> str:
            nonlocal issued
            if time.monotonic() < failing_until:
                raise RuntimeError("auth service down")
            issued += 1
            return make_token("walt", ttl=60.0)

        async with connect(url(hub_server.port), token=make_token("walt", ttl=1.5), get_token=get_token,
                           options=FAST) as client:
            first_id = client.client_id
            await eventually(lambda: client.stats.connects == 2 and client.state is ClientState.CONNECTED,
                             "the reconnect with a new token", timeout=10)
            assert client.client_id != first_id
            assert issued >= 1
            await client.ping(timeout=3)

    run(scenario())
