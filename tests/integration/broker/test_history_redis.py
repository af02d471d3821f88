"""uws_py.realtime.history_redis and the broker's history side, against a real redis-server
started on a free loopback port (the fixture style of test_broker.py)."""

from __future__ import annotations

import asyncio
import queue
import threading
import time

import orjson
import pytest

from tests.support.procutil import HOST, RedisServer
from uws_py.realtime.history import (
    Continuity,
    DeliveryTracker,
    HistoryOptions,
    HistoryPolicy,
    HistoryUnavailable,
    NoHistory,
    Position,
    RecoveryOutcome,
    UnrecoverablePosition,
    message_parts,
)

import redis  # the [test] extra has redis-py: a missing one is an error, not a skip

from uws_py.broker.redis import RedisBroker, parse_frame  # noqa: E402
from uws_py.realtime.history_redis import RedisHistory  # noqa: E402

POLICY = HistoryPolicy([HistoryOptions("small.*", size=5, ttl=300), HistoryOptions("chat.*", size=1000, ttl=300)])


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def aof_redis_server():
    server = RedisServer(append_only=True).start()
    yield server
    server.cleanup()


def sync_client(server: RedisServer):
    return redis.Redis(host=HOST, port=server.port, socket_timeout=2, socket_connect_timeout=2)


def store(server: RedisServer, origin: bytes = b"w1") -> RedisHistory:
    return RedisHistory(server.url, POLICY, origin=origin)


async def publish(history: RedisHistory, topic: str, data, sender="c1"):
    return await history.publish(topic, *message_parts(topic, data, sender))


async def publish_many(history: RedisHistory, topic: str, count: int):
    positions = [(await publish(history, topic, n))[0] for n in range(count)]
    await history.aclose()
    return positions


def test_publish_read_recover_round_trip(redis_server):
    async def scenario():
        history = store(redis_server)
        before = await history.position("chat.1")
        assert before.offset == 0 and len(before.epoch) == 8
        positions = [(await publish(history, "chat.1", {"n": n}))[0] for n in range(10)]
        assert positions == [Position(before.epoch, n) for n in range(1, 11)]
        page = await history.read("chat.1", since=Position(before.epoch, 3), limit=4)
        assert [p.offset for p in page.publications] == [4, 5, 6, 7]
        assert [p.to_wire() for p in page.publications][0] == {"data": {"n": 3}, "from": "c1", "offset": 4}
        assert [p.offset for p in (await history.read("chat.1", reverse=True, limit=3)).publications] == [10, 9, 8]
        back = await history.read("chat.1", since=Position(before.epoch, 8), reverse=True, limit=3)
        assert [p.offset for p in back.publications] == [7, 6, 5]
        assert (await history.read("chat.1", limit=0)).publications == ()
        for since in (Position("nope", 1), Position(before.epoch, 11)):
            with pytest.raises(UnrecoverablePosition) as info:
                await history.read("chat.1", since=since)
            assert info.value.position == Position(before.epoch, 10)
        recovery = await history.recover("chat.1", Position(before.epoch, 7))
        assert recovery.recovered and [p.offset for p in recovery.publications] == [8, 9, 10]
        assert not (await history.recover("chat.1", Position(before.epoch, 0), limit=5)).recovered
        assert (await history.recover("chat.1", Position("nope", 7))).outcome is RecoveryOutcome.EPOCH_CHANGED
        assert (await history.recover("chat.1", Position(before.epoch, 99))).outcome is RecoveryOutcome.FUTURE_OFFSET
        assert history.metrics.recoveries["recovered"] == 1 and history.metrics.publications_recovered == 3
        await history.aclose()

    asyncio.run(scenario())
    with sync_client(redis_server) as client:
        stream, meta = RedisHistory(redis_server.url, POLICY).keys("chat.1")
        assert stream == "uws:h:{chat.1}:s" and meta == "uws:h:{chat.1}:m"
        assert 0 < client.pttl(stream) <= 300_000 and 300_000 < client.pttl(meta) <= 600_000


def test_offsets_are_atomic_under_concurrent_publishers_and_the_channel_is_in_offset_order(redis_server):
    count = 150
    received: list = []
    with sync_client(redis_server) as client:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe("uws:chat.race")

        def run_publisher(origin: bytes, results: list) -> None:
            results.extend(asyncio.run(publish_many(store(redis_server, origin), "chat.race", count)))

        results_a, results_b = [], []
        threads = [threading.Thread(target=run_publisher, args=(b"wa", results_a)),
                   threading.Thread(target=run_publisher, args=(b"wb", results_b))]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while len(received) < 2 * count and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message is not None:
                received.append(parse_frame(message["data"]))
        for thread in threads:
            thread.join(timeout=20)
        pubsub.close()
        entry_ids = [entry_id for entry_id, _ in client.xrange("uws:h:{chat.race}:s")]

    offsets_a = [p.offset for p in results_a]
    offsets_b = [p.offset for p in results_b]
    assert len(offsets_a) == len(offsets_b) == count
    assert sorted(offsets_a + offsets_b) == list(range(1, 2 * count + 1)), "an offset was given twice or skipped"
    assert offsets_a == sorted(offsets_a) and offsets_b == sorted(offsets_b)
    assert [position[1] for _, position, _ in received] == list(range(1, 2 * count + 1))
    assert {origin for origin, _, _ in received} == {b"wa", b"wb"}
    assert all(orjson.loads(payload)["offset"] == position[1] for _, position, payload in received)
    assert entry_ids == [f"{n}-0".encode() for n in range(1, 2 * count + 1)]


def test_stream_is_bounded_by_size(redis_server):
    async def scenario():
        history = store(redis_server)
        for n in range(20):
            await publish(history, "small.1", n)
        page = await history.read("small.1")
        assert [p.offset for p in page.publications] == [16, 17, 18, 19, 20]
        assert not (await history.recover("small.1", Position(page.position.epoch, 14))).recovered
        assert (await history.recover("small.1", Position(page.position.epoch, 15))).recovered
        await history.aclose()

    asyncio.run(scenario())
    with sync_client(redis_server) as client:
        assert client.xlen("uws:h:{small.1}:s") == 5


def restart(server: RedisServer) -> None:
    server.stop()
    server.start()


def test_restart_without_persistence_starts_a_new_epoch(redis_server):
    async def before():
        history = store(redis_server)
        positions = [(await publish(history, "chat.1", n))[0] for n in range(3)]
        await history.aclose()
        return positions[-1]

    async def after(last: Position):
        history = store(redis_server)
        recovery = await history.recover("chat.1", last)
        position, _ = await publish(history, "chat.1", "again")
        await history.aclose()
        return recovery, position

    last = asyncio.run(before())
    restart(redis_server)
    recovery, position = asyncio.run(after(last))
    assert not recovery.recovered and recovery.outcome is RecoveryOutcome.EPOCH_CHANGED
    assert recovery.position.epoch != last.epoch and recovery.position.offset == 0
    assert position == Position(recovery.position.epoch, 1)


def test_restart_with_aof_keeps_epoch_and_history(aof_redis_server):
    async def before():
        history = store(aof_redis_server)
        positions = [(await publish(history, "chat.1", n))[0] for n in range(5)]
        await history.aclose()
        return positions

    async def after(since: Position):
        history = store(aof_redis_server)
        recovery = await history.recover("chat.1", since)
        position, _ = await publish(history, "chat.1", "again")
        await history.aclose()
        return recovery, position

    positions = asyncio.run(before())
    restart(aof_redis_server)
    recovery, position = asyncio.run(after(positions[1]))
    assert recovery.recovered and recovery.position == positions[-1]
    assert [p.to_wire()["data"] for p in recovery.publications] == [2, 3, 4]
    assert position == Position(positions[0].epoch, 6)


def test_stream_lost_alone_is_a_gap_not_a_recovery(redis_server):
    async def before():
        history = store(redis_server)
        positions = [(await publish(history, "chat.1", n))[0] for n in range(5)]
        await history.aclose()
        return positions

    async def after(epoch: str):
        history = store(redis_server)
        up_to_date = await history.recover("chat.1", Position(epoch, 5))
        behind = await history.recover("chat.1", Position(epoch, 2))
        position, _ = await publish(history, "chat.1", "after the loss")
        behind_again = await history.recover("chat.1", Position(epoch, 2))
        await history.aclose()
        return up_to_date, behind, position, behind_again

    positions = asyncio.run(before())
    with sync_client(redis_server) as client:
        assert client.delete("uws:h:{chat.1}:s") == 1
    up_to_date, behind, position, behind_again = asyncio.run(after(positions[0].epoch))
    assert up_to_date.recovered and up_to_date.publications == ()
    assert not behind.recovered and behind.outcome is RecoveryOutcome.GAP and behind.publications == ()
    assert position == Position(positions[0].epoch, 6)  # the position survived: offsets go on
    assert not behind_again.recovered and behind_again.outcome is RecoveryOutcome.GAP


def test_meta_lost_alone_starts_a_new_epoch_and_drops_the_stale_stream(redis_server):
    async def run(steps):
        history = store(redis_server)
        result = await steps(history)
        await history.aclose()
        return result

    async def fill(history):
        return [(await publish(history, "chat.1", n))[0] for n in range(5)]

    positions = asyncio.run(run(fill))
    with sync_client(redis_server) as client:
        assert client.delete("uws:h:{chat.1}:m") == 1

    async def after(history):
        position, _ = await publish(history, "chat.1", "new epoch")
        return position, await history.read("chat.1")

    position, page = asyncio.run(run(after))
    assert position.epoch != positions[0].epoch and position.offset == 1
    assert [p.offset for p in page.publications] == [1]


def test_publish_many_keeps_the_order_given_and_answers_each_item(redis_server):
    async def scenario():
        history = store(redis_server)
        items = [("chat.b", *message_parts("chat.b", n, "c1")) for n in range(5)]
        items.insert(2, ("plain.b", *message_parts("plain.b", "x", "c1")))
        with sync_client(redis_server) as client:
            client.script_flush()  # the batch loads the script itself
        results = await history.publish_many(items)
        assert isinstance(results[2], NoHistory)
        good = [r for i, r in enumerate(results) if i != 2]
        assert [position.offset for position, _ in good] == [1, 2, 3, 4, 5]
        assert [orjson.loads(p.payload)["data"] for _, p in good] == [0, 1, 2, 3, 4]
        page = await history.read("chat.b")
        assert [p.payload for p in page.publications] == [p.payload for _, p in good]
        await history.aclose()

    asyncio.run(scenario())
    redis_server.stop()

    async def down():
        history = store(redis_server)
        results = await history.publish_many([("chat.b", *message_parts("chat.b", 9, "c1"))] * 2)
        assert all(isinstance(r, HistoryUnavailable) for r in results)
        await history.aclose()

    asyncio.run(down())


def test_redis_down_makes_history_unavailable(redis_server):
    redis_server.stop()

    async def scenario():
        history = store(redis_server)
        with pytest.raises(HistoryUnavailable) as info:
            await publish(history, "chat.1", "lost?")
        assert info.value.code == "UNAVAILABLE"
        with pytest.raises(HistoryUnavailable):
            await history.recover("chat.1", Position("e", 0))
        with pytest.raises(HistoryUnavailable):
            await history.read("chat.1")
        await history.aclose()

    asyncio.run(scenario())


# -- through the broker ------------------------------------------------------------------------


class LoopThread:
    """Stands in for the server's loop thread: callbacks scheduled by the broker are queued and
    run by the test thread in pump()."""

    def __init__(self) -> None:
        self.calls: queue.Queue = queue.Queue()

    def schedule(self, callback) -> None:
        self.calls.put(callback)

    def pump(self, until, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            remaining = deadline - time.monotonic()
            assert remaining > 0, "timed out waiting on the broker"
            try:
                callback = self.calls.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            callback()


@pytest.fixture
def broker_on(redis_server):
    brokers: list = []

    def start(**callbacks):
        loop = LoopThread()
        broker = RedisBroker(redis_server.url)
        broker.start(lambda topic, payload: callbacks.get("plain", []).append((topic, payload)),
                     loop.schedule, deliver_positioned=callbacks.get("positioned"),
                     on_connection=callbacks.get("connection"))
        brokers.append(broker)
        return broker, loop

    yield start
    for broker in brokers:
        broker.stop()


def test_history_publish_reaches_every_process_through_the_broker_with_its_offset(broker_on, redis_server):
    seen_a, seen_b, plain_b = [], [], []
    a, loop_a = broker_on(positioned=lambda *args: seen_a.append(args))
    b, loop_b = broker_on(positioned=lambda *args: seen_b.append(args), plain=plain_b)
    ready = []
    a.subscribe("chat.1", ready=lambda: ready.append("a"))
    b.subscribe("chat.1", ready=lambda: ready.append("b"))
    b.subscribe("news", ready=lambda: ready.append("b-news"))
    loop_a.pump(lambda: "a" in ready)
    loop_b.pump(lambda: {"b", "b-news"} <= set(ready))
    history = RedisHistory.for_broker(a, POLICY)
    results: list = []
    for n in range(5):
        a.run(lambda n=n: publish(history, "chat.1", n), results.append)
    a.publish("news", b"plain")
    loop_a.pump(lambda: len(results) == 5 and len(seen_a) == 5)
    loop_b.pump(lambda: len(seen_b) == 5 and plain_b)
    epoch = results[0][0].epoch
    assert [position for position, _ in results] == [Position(epoch, n) for n in range(1, 6)]
    # The publishing process receives its own history publications (offset order locally too).
    assert [(t, e, o) for t, _, e, o in seen_a] == [("chat.1", epoch, n) for n in range(1, 6)]
    assert seen_b == seen_a
    assert [orjson.loads(p)["data"] for _, p, _, _ in seen_b] == [0, 1, 2, 3, 4]
    assert plain_b == [("news", b"plain")]  # plain publishes exactly as before


def test_history_publish_through_broker_fails_when_redis_is_down(broker_on, redis_server):
    a, loop = broker_on()
    history = RedisHistory.for_broker(a, POLICY)
    redis_server.stop()
    results: list = []
    a.run(lambda: publish(history, "chat.1", "x"), results.append)
    loop.pump(lambda: results)
    assert isinstance(results[0], HistoryUnavailable)


def test_pubsub_connection_killed_reconnect_callback_fires_and_offsets_continue(broker_on, redis_server):
    tracker = DeliveryTracker()
    delivered: list = []
    connection: list = []
    events = {"fills": 0}

    async def read_since(topic: str, last: Position):
        reader = store(redis_server, origin=b"filler")  # a client per asyncio.run
        page = await reader.read(topic, since=last)
        await reader.aclose()
        return page

    def fill(topic: str, upto: "int | None" = None) -> None:
        # Up to the publication that showed the gap: the stream may already hold later ones
        # (publishing goes on meanwhile), which then arrive live in their turn.
        last = tracker.last(topic)
        page = asyncio.run(read_since(topic, last))
        for publication in page.publications:
            if upto is not None and publication.offset > upto:
                break
            delivered.append(publication.offset)
            tracker.track(topic, Position(last.epoch, publication.offset))
        events["fills"] += 1

    def on_positioned(topic, payload, epoch, offset):
        verdict = tracker.observe(topic, epoch, offset)
        if verdict is Continuity.UNTRACKED:
            tracker.track(topic, Position(epoch, offset))
            delivered.append(offset)
        elif verdict is Continuity.NEXT:
            delivered.append(offset)
        elif verdict is Continuity.GAP:
            fill(topic, upto=offset - 1)
            assert tracker.observe(topic, epoch, offset) is Continuity.NEXT
            delivered.append(offset)
        else:
            assert verdict is Continuity.DUPLICATE, verdict

    def on_connection(connected: bool) -> None:
        connection.append(connected)
        if not connected:
            tracker.connection_lost()
        elif tracker.last("chat.kill") is not None:
            fill("chat.kill")

    a, loop = broker_on(positioned=on_positioned, connection=on_connection)
    subscribed: list = []
    a.subscribe("chat.kill", ready=lambda: subscribed.append(True))
    loop.pump(lambda: subscribed and connection == [True])
    history = RedisHistory.for_broker(a, POLICY)
    results: list = []
    total = 60
    with sync_client(redis_server) as client:
        for n in range(total):
            a.run(lambda n=n: publish(history, "chat.kill", n), results.append)
            if n == 20:
                loop.pump(lambda: len(results) > 20)
                assert client.client_kill_filter(_type="pubsub") >= 1
            if n == 40:
                loop.pump(lambda: connection[-1:] == [True] and len(connection) >= 3)
        loop.pump(lambda: len(results) == total and delivered[-1:] == [total])
    assert connection[:3] == [True, False, True], connection
    assert all(not isinstance(result, Exception) for result in results), results
    epoch = results[0][0].epoch
    assert [position for position, _ in results] == [Position(epoch, n) for n in range(1, total + 1)]
    assert delivered == list(range(1, total + 1)), "a publication missing or twice after the reconnect"
    assert a.stats()["reconnects"] >= 1
    assert tracker.metrics.gaps_detected >= 1


def test_a_burst_of_recoveries_beyond_max_connections_waits_and_all_succeed(redis_server):
    """The store's pool used to open one connection per concurrent call and keep them all:
    a reconnect storm's recoveries left that many connections open for good. With
    max_connections=3, 60 concurrent recoveries all answer, correctly, and Redis never sees
    more than 3 connections from the store."""
    watcher = sync_client(redis_server)

    def store_connections() -> int:
        # Every client but the watcher's own connection is the store's.
        return len(watcher.client_list()) - 1

    async def scenario():
        history = RedisHistory(redis_server.url, POLICY, origin=b"w1", max_connections=3)
        try:
            epoch = (await history.position("chat.burst")).epoch
            for n in range(20):
                await publish(history, "chat.burst", n)
            peak = 0
            watching = True

            async def watch():
                nonlocal peak
                while watching:
                    peak = max(peak, await asyncio.to_thread(store_connections))
                    await asyncio.sleep(0.005)

            watcher_task = asyncio.create_task(watch())
            since = [n % 20 for n in range(60)]
            recoveries = await asyncio.gather(*(history.recover("chat.burst", Position(epoch, s), limit=100)
                                                for s in since))
            watching = False
            await watcher_task
            peak = max(peak, store_connections())
            return since, recoveries, peak
        finally:
            await history.aclose()

    since, recoveries, peak = asyncio.run(scenario())
    for start, recovery in zip(since, recoveries):
        assert recovery.outcome is RecoveryOutcome.RECOVERED, recovery
        assert [p.offset for p in recovery.publications] == list(range(start + 1, 21))
    assert 1 <= peak <= 3, f"{peak} connections open to Redis (max_connections=3)"


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_max_connections_must_be_a_positive_int(value):
    with pytest.raises(ValueError, match="max_connections"):
        RedisHistory("redis://127.0.0.1:1", POLICY, max_connections=value)
