"""The Redis presence store against a real redis-server (issue 15): entries, expiry of a worker
that stops refreshing, cleanup reporting, key layout and TTL, and UNAVAILABLE when Redis is gone."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.procutil import HOST, PeakClients, RedisServer
from uws_py.realtime.presence import PresenceEntry, PresenceUnavailable
from uws_py.realtime.presence_redis import ENTRIES_PER_WRITE, RedisPresence

import redis  # the [test] extra has redis-py: a missing one is an error, not a skip


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


def pairs(*entries: PresenceEntry) -> list:
    return [(e.client_id, e.encoded) for e in entries]


def run(coroutine):
    return asyncio.run(coroutine)


def test_entries_expire_unless_refreshed_and_the_next_write_reports_them(redis_server):
    clock = Clock()

    async def scenario() -> None:
        worker_a = RedisPresence(redis_server.url, ttl=10.0, clock=clock)
        worker_b = RedisPresence(redis_server.url, ttl=10.0, clock=clock)
        alice, bob = PresenceEntry("a1", "alice", {"x": 1}), PresenceEntry("b1", "bob", None)
        assert await worker_a.write("room", pairs(alice)) == []
        assert await worker_b.write("room", pairs(bob)) == []
        assert sorted(e["clientId"] for e in await worker_a.entries("room")) == ["a1", "b1"]
        assert await worker_b.stats("room") == {"numClients": 2, "numUsers": 2}

        clock.now += 6
        await worker_b.write("room", pairs(bob))  # b refreshes, a has died
        clock.now += 5  # a's entry is 11 s old: past its ttl, not listed any more
        assert [e["clientId"] for e in await worker_b.entries("room")] == ["b1"]
        expired = await worker_b.write("room", pairs(bob))
        assert expired == [alice.to_wire()]  # deleted now, and reported once
        assert await worker_b.write("room", pairs(bob)) == []
        await worker_b.write("room", removed=["b1"])
        assert await worker_b.entries("room") == []
        await worker_a.aclose()
        await worker_b.aclose()

    run(scenario())
    with redis.Redis(host=HOST, port=redis_server.port) as client:
        assert client.keys("uws:p:*") == []  # the last clean leave left nothing behind


def test_keys_are_hash_tagged_and_expire_with_the_ttl(redis_server):
    async def scenario() -> None:
        store = RedisPresence(redis_server.url, ttl=5.0)
        await store.write("chat.{odd}", pairs(PresenceEntry("c1", None, None)))
        await store.aclose()

    run(scenario())
    with redis.Redis(host=HOST, port=redis_server.port) as client:
        keys = sorted(k.decode() for k in client.keys("uws:p:*"))
        assert keys == ["uws:p:{chat.{odd}}:e", "uws:p:{chat.{odd}}:x"]
        for key in keys:
            assert 0 < client.pttl(key) <= 5000


def test_a_refresh_larger_than_one_call_is_split(redis_server):
    entries = [PresenceEntry(f"c{n}", f"u{n % 7}", n) for n in range(ENTRIES_PER_WRITE * 2 + 3)]

    async def scenario() -> dict:
        store = RedisPresence(redis_server.url, ttl=30.0)
        await store.write("big", pairs(*entries))
        stats = await store.stats("big")
        await store.aclose()
        return stats

    assert run(scenario()) == {"numClients": len(entries), "numUsers": 7}


def test_unreachable_redis_is_presence_unavailable(redis_server):
    redis_server.stop()

    async def scenario() -> None:
        store = RedisPresence(redis_server.url, ttl=5.0, timeout=0.5)
        with pytest.raises(PresenceUnavailable, match="unreachable"):
            await store.entries("room")

    run(scenario())


def test_server_presence_methods_read_redis_from_the_serving_loop(redis_server):
    from tests.support.realtime import AsyncServed, make_token, realtime_server, recv_json, request
    from tests.support.wsclient import connect
    from uws_py.broker.redis import RedisBroker

    broker = RedisBroker(redis_server.url)
    server = realtime_server(broker=broker, rate_limit=None)
    server.enable_presence("room.*")
    served = AsyncServed(server)
    try:
        assert broker.ready.wait(5.0)
        client = connect(HOST, served.port, "/realtime", headers=[("Authorization", f"Bearer {make_token('ann')}")])
        client_id = recv_json(client)["clientId"]
        assert request(client, {"type": "SUBSCRIBE", "topic": "room.1"})["type"] == "SUBSCRIBED"
        for _ in range(50):
            entries = served.call(server.presence("room.1"))
            if entries:
                break
            time.sleep(0.02)
        assert entries == [{"clientId": client_id, "userId": "ann", "info": None}]
        assert served.call(server.presence_stats("room.1")) == {"numClients": 1, "numUsers": 1}
        with redis.Redis(host=HOST, port=redis_server.port) as direct:
            assert direct.hkeys("uws:p:{room.1}:e") == [client_id.encode()]
        client.disconnect()
    finally:
        served.stop()


def test_a_history_topic_with_presence_lists_its_subscribers(redis_server):
    """A SUBSCRIBE on a history topic goes through the relay (the core subscription comes once
    Redis answered); the presence entry follows that subscription, and leaves with UNSUBSCRIBE."""
    from tests.support.realtime import AsyncServed, make_token, realtime_server, recv_json, request
    from tests.support.wsclient import connect
    from uws_py.broker.redis import RedisBroker

    broker = RedisBroker(redis_server.url)
    server = realtime_server(broker=broker, rate_limit=None)
    server.history("room.*")
    server.enable_presence("room.*")
    served = AsyncServed(server)
    try:
        assert broker.ready.wait(5.0)
        client = connect(HOST, served.port, "/realtime", headers=[("Authorization", f"Bearer {make_token('ann')}")])
        client_id = recv_json(client)["clientId"]
        subscribed = request(client, {"type": "SUBSCRIBE", "topic": "room.h", "id": 1})
        assert (subscribed["type"], subscribed["offset"]) == ("SUBSCRIBED", 0), subscribed
        listed = []
        for _ in range(50):
            listed = [e["clientId"] for e in served.call(server.presence("room.h"))]
            if listed:
                break
            time.sleep(0.02)
        assert listed == [client_id]
        assert request(client, {"type": "UNSUBSCRIBE", "topic": "room.h", "id": 2})["type"] == "UNSUBSCRIBED"
        for _ in range(50):
            listed = [e["clientId"] for e in served.call(server.presence("room.h"))]
            if not listed:
                break
            time.sleep(0.02)
        assert listed == []
        client.disconnect()
    finally:
        served.stop()


def test_many_topics_are_written_in_one_pipeline_and_a_flushed_script_is_reloaded(redis_server):
    async def scenario() -> dict:
        store = RedisPresence(redis_server.url, ttl=30.0)
        await store.write("t0", pairs(PresenceEntry("warm", None, None)))
        with redis.Redis(host=HOST, port=redis_server.port) as direct:
            direct.script_flush()  # as after a Redis restart: the script is gone
        writes = [(f"t{n}", pairs(PresenceEntry(f"c{n}", "u", None)), ["warm"] if n == 0 else [])
                  for n in range(450)]
        expired = await store.write_many(writes)
        listed = {topic: [e["clientId"] for e in await store.entries(topic)] for topic in ("t0", "t1", "t449")}
        await store.aclose()
        return {"expired": sum(map(len, expired.values())), "topics": len(expired), "listed": listed}

    assert run(scenario()) == {"expired": 0, "topics": 450, "listed": {"t0": ["c0"], "t1": ["c1"], "t449": ["c449"]}}


def test_a_burst_beyond_max_connections_waits_and_all_succeed(redis_server):
    """The store's pool used to open one connection per concurrent call and keep them all. With
    max_connections=3, 60 concurrent writes then 60 concurrent reads all answer, correctly, and
    Redis never sees more than 3 connections from the store."""
    async def scenario() -> list:
        store = RedisPresence(redis_server.url, ttl=30.0, max_connections=3)
        try:
            await asyncio.gather(*(store.write(f"burst.{n}", pairs(PresenceEntry(f"c{n}", f"u{n}", n)))
                                   for n in range(60)))
            return await asyncio.gather(*(store.entries(f"burst.{n}") for n in range(60)))
        finally:
            await store.aclose()

    with PeakClients(redis_server) as watch:
        answers = run(scenario())
    assert [[e["clientId"] for e in entries] for entries in answers] == [[f"c{n}"] for n in range(60)]
    assert 1 <= watch.peak <= 3, f"{watch.peak} connections open to Redis (max_connections=3)"


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_max_connections_must_be_a_positive_int(value):
    with pytest.raises(ValueError, match="max_connections"):
        RedisPresence("redis://127.0.0.1:1", ttl=5.0, max_connections=value)
