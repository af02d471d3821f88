"""The idempotency store, the emitters and the Redis broker keep at most max_connections to
Redis: a burst of more concurrent calls waits for a free connection and all succeed (their pools
used to open one connection per concurrent call and keep them all). The history and presence
stores' own burst tests are in test_history_redis.py and test_presence_redis.py."""

from __future__ import annotations

import asyncio
import gc
import logging
import queue
import threading
import time

import pytest

from tests.support.procutil import PeakClients, RedisServer
from uws_py.broker.redis import RedisBroker
from uws_py.emitter import AsyncEmitter, Emitter
from uws_py.realtime.api_idempotency import PENDING, RedisIdempotency

BURST = 60


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


class ConcurrentBroker:
    """What RedisIdempotency uses of a RedisBroker (url, run), every job started at once on the
    running loop: the most concurrent use its client can see."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.tasks: list = []

    def run(self, job, done, ordered: bool = True) -> None:
        async def wrapped() -> None:
            try:
                result = await job()
            except Exception as exc:  # done receives the exception, as RedisBroker.run does
                result = exc
            done(result)

        self.tasks.append(asyncio.ensure_future(wrapped()))


def test_idempotency_claims_beyond_max_connections_wait_and_all_succeed(redis_server):
    async def scenario() -> tuple:
        broker = ConcurrentBroker(redis_server.url)
        store = RedisIdempotency(broker, ttl=30.0, max_connections=3)
        first, second = [], []
        for n in range(BURST):
            store.claim(f"k{n}", first.append)
        await asyncio.gather(*broker.tasks)
        for n in range(BURST):
            store.claim(f"k{n}", second.append)
        await asyncio.gather(*broker.tasks)
        await store.client().aclose()
        return first, second

    with PeakClients(redis_server) as watch:
        first, second = asyncio.run(scenario())
    assert first == [None] * BURST  # every key claimed by its first attempt
    assert second == [PENDING] * BURST  # and held on the second
    assert 1 <= watch.peak <= 3, f"{watch.peak} connections open to Redis (max_connections=3)"


def test_async_emitter_burst_beyond_max_connections_waits_and_all_succeed(redis_server):
    async def scenario() -> list:
        emitter = AsyncEmitter(redis_server.url, history=[("h.*", 100, 60.0)], max_connections=3)
        try:
            return await asyncio.gather(*(emitter.publish("h.burst", n) for n in range(BURST)))
        finally:
            await emitter.aclose()

    with PeakClients(redis_server) as watch:
        results = asyncio.run(scenario())
    assert sorted(r["offset"] for r in results) == list(range(1, BURST + 1))
    assert 1 <= watch.peak <= 3, f"{watch.peak} connections open to Redis (max_connections=3)"


def test_emitter_shared_by_threads_beyond_max_connections_waits_and_all_succeed(redis_server):
    emitter = Emitter(redis_server.url, history=[("h.*", 100, 60.0)], max_connections=3)
    results: list = []
    errors: list = []
    start = threading.Barrier(20)

    def publisher(n: int) -> None:
        start.wait(timeout=10)
        try:
            for k in range(3):
                results.append(emitter.publish("h.threads", (n, k)))
        except Exception as exc:
            errors.append(exc)

    with PeakClients(redis_server) as watch:
        threads = [threading.Thread(target=publisher, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    emitter.close()
    assert errors == []
    assert sorted(r["offset"] for r in results) == list(range(1, BURST + 1))
    assert 1 <= watch.peak <= 3, f"{watch.peak} connections open to Redis (max_connections=3)"


class ServerLoop:
    """The server's loop as a broker sees it: ``schedule`` queues a callback from any thread,
    ``run_until`` runs the queued callbacks on the test's thread until a condition holds."""

    def __init__(self) -> None:
        self.callbacks: queue.Queue = queue.Queue()

    def schedule(self, callback) -> None:
        self.callbacks.put(callback)

    def run_until(self, condition, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            try:
                self.callbacks.get(timeout=0.05)()
            except queue.Empty:
                pass


def test_redis_broker_burst_of_concurrent_publishes_keeps_one_connection_per_client(redis_server):
    """20 threads publish 1,500 messages at once through one broker: it keeps its publishing and
    its subscribing connection and no more, every publish is confirmed, and a second broker
    receives every message."""
    loop = ServerLoop()
    received: list = []
    publisher, receiver = RedisBroker(redis_server.url), RedisBroker(redis_server.url)
    subscribed = threading.Event()
    receiver.start(lambda topic, payload: received.append(payload), loop.schedule)
    receiver.subscribe("burst", subscribed.set)
    publisher.start(lambda topic, payload: None, loop.schedule)
    try:
        loop.run_until(lambda: subscribed.is_set() and publisher.ready.is_set(), timeout=10)
        assert subscribed.is_set() and publisher.ready.is_set()
        confirmed: list = []
        start = threading.Barrier(20)

        def publish(n: int) -> None:
            start.wait(timeout=10)
            for k in range(75):
                publisher.publish("burst", b"%d:%d" % (n, k), confirmed.append)

        with PeakClients(redis_server) as watch:
            threads = [threading.Thread(target=publish, args=(n,)) for n in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=10)
            loop.run_until(lambda: len(confirmed) == 1500 and len(received) == 1500)
    finally:
        publisher.stop()
        receiver.stop()
    assert confirmed == [True] * 1500
    assert sorted(received) == sorted(b"%d:%d" % (n, k) for n in range(20) for k in range(75))
    # Two clients of one connection each per broker.
    assert watch.peak == 4, f"{watch.peak} connections open to Redis (2 brokers, 2 each)"


def test_redis_broker_publisher_survives_garbage_collection_mid_publish(redis_server):
    """The broker's loop held its publisher task only weakly: a collection while the task waited
    for a reply could destroy it ("Task was destroyed but it is pending!"), after which no
    publish was ever sent. 300 publishes while another thread collects every millisecond."""
    loop = ServerLoop()
    broker = RedisBroker(redis_server.url)
    broker.start(lambda topic, payload: None, loop.schedule)
    collecting = threading.Event()

    def collect() -> None:
        while not collecting.wait(0.001):
            gc.collect()

    collector = threading.Thread(target=collect, daemon=True)
    try:
        loop.run_until(broker.ready.is_set, timeout=10)
        assert broker.ready.is_set()
        confirmed: list = []
        collector.start()
        for n in range(300):
            broker.publish("collected", b"%d" % n, confirmed.append)
        loop.run_until(lambda: len(confirmed) == 300, timeout=30)
    finally:
        collecting.set()
        collector.join(timeout=5)
        broker.stop()
    assert confirmed == [True] * 300


def test_redis_broker_client_used_concurrently_waits_for_its_connection(redis_server):
    """60 concurrent commands on the broker's client share its one connection: they wait for
    it instead of failing at once or opening more."""
    async def scenario() -> bytes:
        client = await RedisBroker(redis_server.url)._connect()
        try:
            await asyncio.gather(*(client.incr("n") for _ in range(BURST)))
            return await client.get("n")
        finally:
            await client.aclose()

    with PeakClients(redis_server) as watch:
        assert asyncio.run(scenario()) == str(BURST).encode()
    assert watch.peak == 1, f"{watch.peak} connections open to Redis (the broker's client keeps 1)"


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_max_connections_must_be_a_positive_int(value):
    with pytest.raises(ValueError, match="max_connections"):
        Emitter("redis://127.0.0.1:1", max_connections=value)
    with pytest.raises(ValueError, match="max_connections"):
        AsyncEmitter("redis://127.0.0.1:1", max_connections=value)
    with pytest.raises(ValueError, match="max_connections"):
        RedisIdempotency(ConcurrentBroker("redis://127.0.0.1:1"), max_connections=value)


def test_clients_do_not_ask_for_maintenance_notifications(redis_server, caplog):
    """redis-py 8.1 asks every new RESP3 connection for CLIENT MAINT_NOTIFICATIONS; our Redis
    refuses it and redis-py logged "Failed to enable maintenance notifications" each time. The
    clients we make turn that off; a client made without the option shows the check sees it."""
    from uws_py.broker.redis_pool import bounded_client

    def notices() -> list[str]:
        return [r.getMessage() for r in caplog.records if "maintenance notifications" in r.getMessage()]

    async def ours() -> None:
        client = bounded_client(redis_server.url, max_connections=1, timeout=2.0)
        await client.ping()
        await client.aclose()
        broker = await RedisBroker(redis_server.url)._connect()
        await broker.ping()
        await broker.aclose()

    with caplog.at_level(logging.DEBUG, logger="redis"):
        asyncio.run(ours())
        blocking = bounded_client(redis_server.url, max_connections=1, timeout=2.0, asynchronous=False)
        blocking.ping()
        blocking.close()
        assert notices() == []
        # The same pool without the option: redis-py's default asks, and the line is logged.
        import redis

        plain = redis.Redis.from_pool(redis.BlockingConnectionPool.from_url(redis_server.url, max_connections=1))
        plain.ping()
        plain.close()
    assert len(notices()) >= 1


def test_cluster_clients_do_not_ask_for_maintenance_notifications(caplog):
    """The same for Redis Cluster: the cluster client (publishing, history) and the broker's
    per-shard receiving connections (9 such log lines in this scenario before)."""
    from tests.support.procutil import RedisCluster
    from uws_py.broker.redis_cluster import RedisClusterBroker, cluster_client

    cluster = RedisCluster(masters=3).start()
    loop = ServerLoop()
    received: list = []
    try:
        with caplog.at_level(logging.DEBUG, logger="redis"):
            async def direct() -> None:
                client = cluster_client(cluster.url, timeout=2.0)
                await client.initialize()
                await client.set("k", 1)
                await client.aclose()

            asyncio.run(direct())
            subscribed = threading.Event()
            publisher, receiver = RedisClusterBroker(cluster.url), RedisClusterBroker(cluster.url)
            receiver.start(lambda topic, payload: received.append(payload), loop.schedule)
            receiver.subscribe("maint", subscribed.set)
            publisher.start(lambda topic, payload: None, loop.schedule)
            try:
                loop.run_until(lambda: subscribed.is_set() and publisher.ready.is_set(), timeout=15)
                publisher.publish("maint", b"one")
                loop.run_until(lambda: received == [b"one"], timeout=10)
            finally:
                publisher.stop()
                receiver.stop()
    finally:
        cluster.cleanup()
    assert received == [b"one"]
    assert [r.getMessage() for r in caplog.records if "maintenance notifications" in r.getMessage()] == []
