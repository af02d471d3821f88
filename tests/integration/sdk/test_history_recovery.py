"""The SDK's recovery against real `uws-py serve` processes (alone, or several sharing a real
redis-server): a reader the server drops for over max_backpressure (the SDK sees the jump in
offsets), a worker that lost continuity and pushes UNSUBSCRIBED insufficient_state, a
subscribed publisher (its own offsets), and a hub killed and started again. Each must end with
every offset once, in order. The chaos-proxy version (connections cut) is test_zero_loss.py."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from typing import Any, Awaitable

import pytest
import redis

from uws_py.sdk import ClientOptions, Publication, ServerError, connect

from tests.support.procutil import HOST, RedisServer, UwsServer, metric_value, wait_until

OPTIONS = ClientOptions(min_delay=0.05, max_delay=0.5, open_timeout=5.0, request_timeout=10.0, ping_interval=None)
HUB_ARGS = ("--no-access-log", "--log-level", "warning", "--rate-limit", "off", "--history", "h.*:5000:300",
            "--history-recover-limit", "5000")


def run(coro: Awaitable[Any], bound: float = 40.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(bound):
            return await coro

    return asyncio.run(bounded())


async def eventually(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.05)


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


def start_hubs(count: int, broker: "RedisServer | None", *args: str) -> list[UwsServer]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    extra = ("--broker", broker.url) if broker is not None else ()
    hubs = [UwsServer(*HUB_ARGS, *extra, *args, env=env) for _ in range(count)]
    if broker is not None:
        for hub in hubs:
            wait_until(lambda hub=hub: metric_value(hub.port, "uws_broker_connected") == 1,
                       f"broker of pid {hub.pid} connected", timeout=15.0)
    return hubs


def url(hub: UwsServer) -> str:
    return f"ws://{HOST}:{hub.port}/realtime"


@pytest.mark.parametrize("with_redis", [False, True], ids=["one-process", "redis"])
def test_a_subscriber_the_server_drops_for_recovers_every_skipped_offset(with_redis, request):
    """Publications of 8 KiB while on_message is blocked: once the server went over
    max_backpressure (1 MiB) and skipped MESSAGEs for it (uws_dropped_total), publishing
    stops and the subscriber goes on; the SDK sees the jump in offsets and recovers. (With
    close_on_backpressure_limit, the default, the server would close it instead: that case is
    the next test.)"""
    broker = request.getfixturevalue("redis_server") if with_redis else None
    (hub,) = start_hubs(1, broker, "--no-close-on-backpressure-limit")
    try:
        async def scenario() -> None:
            offsets: list[int] = []
            release = asyncio.Event()

            async def blocked_at_first(publication: Publication) -> None:
                assert publication.offset is not None
                offsets.append(publication.offset)
                await release.wait()

            async with connect(url(hub), options=OPTIONS) as subscriber, connect(url(hub), options=OPTIONS) as publisher:
                subscription = await subscriber.subscribe("h.slow", blocked_at_first)
                # Random text: the hub deflates what it sends, and 8 KiB of one letter would
                # leave as a few dozen bytes and never fill anything.
                published = 0
                # Up to 1,800 x 8 KiB: several times the socket buffers plus max_backpressure,
                # and a recovery of all of them still fits in max_message_size (16 MiB).
                while published < 1800:
                    for _ in range(49):
                        await publisher.publish("h.slow", {"n": published, "blob": secrets.token_urlsafe(6144)})
                        published += 1
                    await publisher.publish("h.slow", {"n": published, "blob": secrets.token_urlsafe(6144)}, ack=True)
                    published += 1
                    await asyncio.sleep(0.05)  # with Redis, delivery follows PUBLISHED
                    if await asyncio.to_thread(metric_value, hub.port, "uws_dropped_total"):
                        break
                drops = await asyncio.to_thread(metric_value, hub.port, "uws_dropped_total")
                await publisher.publish("h.slow", {"n": published, "blob": ""}, ack=True)
                published += 1
                release.set()
                await eventually(lambda: len(offsets) >= published, f"{published} deliveries")
                await asyncio.sleep(0.3)
                print(f"published {published}, dropped by the server: {drops}, stats: {subscription.stats}")
                assert drops, "the server dropped nothing: the scenario did not happen"
                assert offsets == list(range(1, published + 1))
                assert subscription.stats.live_jumps >= 1 and subscription.stats.recoveries >= 1

        run(scenario())
    finally:
        hub.stop()


def test_insufficient_state_after_a_killed_pubsub_connection_is_recovered_by_the_sdk(redis_server):
    publishing_hub, reading_hub = start_hubs(2, redis_server)
    count = 300
    try:
        async def scenario() -> None:
            offsets: list[int] = []
            async with connect(url(reading_hub), options=OPTIONS) as subscriber, \
                    connect(url(publishing_hub), options=OPTIONS) as publisher:
                subscription = await subscriber.subscribe("h.kill", lambda p: offsets.append(p.offset))
                with redis.Redis(host=HOST, port=redis_server.port, socket_timeout=2) as admin:
                    for n in range(count):
                        await publisher.publish("h.kill", n, ack=True)
                        if n in (60, 180):
                            admin.client_kill_filter(_type="pubsub")
                await eventually(lambda: len(offsets) >= count, f"{count} deliveries")
                await asyncio.sleep(0.3)
                print(f"stats: {subscription.stats}")
                assert offsets == list(range(1, count + 1))
                # Both workers lost their pub/sub connection: what the reader's missed meanwhile
                # was either filled in by the worker from the stream (caught up when it was
                # back) or recovered by the SDK after insufficient_state.
                filled = await asyncio.to_thread(metric_value, reading_hub.port, "uws_history_gaps_filled_total")
                assert filled >= 1 or (subscription.stats.subscribes >= 2 and subscription.stats.recoveries >= 1), \
                    (filled, subscription.stats)

        run(scenario())
    finally:
        publishing_hub.stop()
        reading_hub.stop()


def test_a_subscribed_publisher_gets_its_own_publications_in_order_without_recovering():
    """Without a broker the server skips a subscribed publisher in the fan-out: its own
    offsets were holes, each taken for missed messages and recovered (UNSUBSCRIBE, SUBSCRIBE)."""
    (hub,) = start_hubs(1, None)
    try:
        async def scenario() -> None:
            received: list[tuple[int, str, bool]] = []
            async with connect(url(hub), options=OPTIONS) as author, connect(url(hub), options=OPTIONS) as other:
                subscription = await author.subscribe(
                    "h.own", lambda p: received.append((p.offset, p.data, p.recovered)))
                for n in range(20):  # each acknowledged, so that the offsets alternate
                    await author.publish("h.own", f"mine {n}", ack=True)
                    await other.publish("h.own", f"theirs {n}", ack=True)
                await eventually(lambda: len(received) >= 40, "40 deliveries")
                expected = [text for n in range(20) for text in (f"mine {n}", f"theirs {n}")]
                assert [data for _, data, _ in received] == expected
                assert [offset for offset, _, _ in received] == list(range(1, 41))
                assert not any(recovered for _, _, recovered in received)
                assert subscription.stats.live_jumps == 0 and subscription.stats.subscribes == 1

        run(scenario())
    finally:
        hub.stop()


def test_a_hub_killed_and_started_again_loses_nothing_for_its_subscribers_with_redis(redis_server):
    """Issue 14 test (c) on a history topic: the subscribers' hub is killed (SIGKILL) while
    another one goes on publishing; once it is back on its port they recover every missed
    publication from Redis (same epoch: no gap)."""
    publishing_hub, reading_hub = start_hubs(2, redis_server)
    count = 600
    try:
        async def scenario() -> None:
            nonlocal reading_hub
            received: list[list[int]] = [[], []]
            async with connect(url(reading_hub), options=OPTIONS) as first, \
                    connect(url(reading_hub), options=OPTIONS) as second, \
                    connect(url(publishing_hub), options=OPTIONS) as publisher:
                subscriptions = [await client.subscribe("h.restart", lambda p, i=i: received[i].append(p.offset))
                                 for i, client in enumerate((first, second))]
                for n in range(count):
                    await publisher.publish("h.restart", n, ack=True)
                    if n == 200:
                        os.kill(reading_hub.pid, signal.SIGKILL)
                        reading_hub.wait(5)
                    elif n == 400:
                        reading_hub = await asyncio.to_thread(start_again, reading_hub.port, redis_server)
                await eventually(lambda: all(len(r) >= count for r in received), f"{count} deliveries each")
                await asyncio.sleep(0.3)
                for offsets, subscription in zip(received, subscriptions):
                    assert offsets == list(range(1, count + 1))
                    assert subscription.stats.recoveries >= 1 and subscription.stats.gaps == 0
                assert first.stats.connects >= 2 and second.stats.connects >= 2

        run(scenario())
    finally:
        publishing_hub.stop()
        reading_hub.stop()


def start_again(port: int, broker: RedisServer) -> UwsServer:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    hub = UwsServer(*HUB_ARGS, "--broker", broker.url, port=port, env=env)
    wait_until(lambda: metric_value(hub.port, "uws_broker_connected") == 1, "broker connected again", timeout=15.0)
    return hub


def test_a_subscriber_reconnecting_during_a_redis_outage_loses_nothing():
    """The subscriber's connection dies while Redis is down (its proxy hangs; the SDK's PING
    finds it) and it resubscribes at once. Whether the hub holds that SUBSCRIBE until Redis
    is back (what it does here) or refuses it UNAVAILABLE (retried by the SDK, shown against
    a scripted server in test_client_recovery.py), the subscription survives, and with Redis
    back (AOF: the same epoch) everything missed is recovered."""
    from tests.support.chaos_proxy import ChaosProxy

    broker = RedisServer(append_only=True).start()
    (hub,) = start_hubs(1, broker)
    options = ClientOptions(min_delay=0.05, max_delay=0.5, open_timeout=5.0, request_timeout=5.0,
                            ping_interval=0.5, ping_timeout=0.5)
    try:
        async def scenario() -> None:
            received: list[int] = []
            async with ChaosProxy(hub.port, min_life=300.0, max_life=300.0) as proxy, \
                    connect(f"ws://{HOST}:{proxy.port}/realtime", options=options) as subscriber, \
                    connect(url(hub), options=OPTIONS) as publisher, \
                    connect(url(hub), options=OPTIONS) as bystander:
                # A second subscriber keeps the hub's broker on the topic.
                await bystander.subscribe("h.outage", lambda p: None)
                subscription = await subscriber.subscribe("h.outage", lambda p: received.append(p.offset))
                for n in range(100):
                    await publisher.publish("h.outage", n, ack=True)
                await asyncio.to_thread(broker.stop)
                assert proxy.hang() == 1
                await eventually(lambda: subscriber.stats.connects >= 2, "the subscriber reconnecting")
                await asyncio.sleep(1.0)  # resubscribes refused UNAVAILABLE meanwhile
                assert client_subscribed(subscriber, subscription)
                await asyncio.to_thread(broker.start)
                published = 100
                deadline = time.monotonic() + 20
                while published < 200 and time.monotonic() < deadline:
                    try:
                        await publisher.publish("h.outage", published, ack=True)
                        published += 1
                    except ServerError as exc:  # UNAVAILABLE until the broker reconnected
                        assert exc.code == "UNAVAILABLE", exc
                        await asyncio.sleep(0.1)
                await eventually(lambda: len(received) >= 200, "200 deliveries")
                assert received == list(range(1, 201))
                assert subscription.stats.gaps == 0 and subscription.stats.recoveries >= 1

        run(scenario())
    finally:
        hub.stop()
        broker.cleanup()


def client_subscribed(client: Any, subscription: Any) -> bool:
    """The subscription is still the client's (not ended by a refusal)."""
    return client.subscriptions.get(subscription.topic) is subscription and subscription.error is None
