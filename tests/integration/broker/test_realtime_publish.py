"""RealtimeServer.publish_threadsafe and publish_confirmed through a real redis-server (issue
12): from another thread, with the realtime envelope, to subscribers of this process and of
another one; publish_confirmed says whether the publish reached Redis."""

from __future__ import annotations

import threading

import pytest

from tests.support.procutil import HOST, RealtimeClient, RedisServer, wait_until
from tests.support.realtime import ServingThread
from uws_py import RealtimeServer
from uws_py.broker.redis import RedisBroker

import redis  # the [test] extra has redis-py: a missing one is an error, not a skip


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


def channel_subscribers(redis_server: RedisServer, topic: str) -> int:
    with redis.Redis(host=HOST, port=redis_server.port, socket_timeout=2) as client:
        return dict(client.pubsub_numsub(f"uws:{topic}")).get(f"uws:{topic}".encode(), 0)


def test_publish_threadsafe_goes_through_the_broker_with_the_envelope(redis_server):
    first = ServingThread(RealtimeServer(rate_limit=None, broker=RedisBroker(redis_server.url)))
    second = ServingThread(RealtimeServer(rate_limit=None, broker=RedisBroker(redis_server.url)))
    clients = []
    try:
        local, remote = RealtimeClient(first.port), RealtimeClient(second.port)
        clients = [local, remote]
        local.subscribe("news")
        remote.subscribe("news")
        wait_until(lambda: channel_subscribers(redis_server, "news") == 2, "both processes subscribed in Redis")

        def publish_from_threads() -> None:
            for n in range(3):
                first.server.publish_threadsafe("news", {"n": n})

        publisher = threading.Thread(target=publish_from_threads)
        publisher.start()
        publisher.join(5)
        for client in clients:
            received = [client.recv() for _ in range(3)]
            assert received == [{"type": "MESSAGE", "topic": "news", "data": {"n": n}, "from": None} for n in range(3)]
    finally:
        for client in clients:
            client.close()
        first.stop()
        second.stop()


def test_publish_confirmed_says_whether_the_broker_took_it(redis_server):
    serving = ServingThread(RealtimeServer(rate_limit=None, broker=RedisBroker(redis_server.url)))
    try:
        wait_until(lambda: serving.server.broker.stats()["connected"], "the broker connected")
        assert serving.call(serving.server.publish_confirmed("news", {"n": 1})) is True
        assert serving.server.broker.stats()["published"] == 1
        redis_server.stop()
        assert serving.call(serving.server.publish_confirmed("news", {"n": 2})) is False
        assert serving.server.broker.stats()["publish_failures"] >= 1
    finally:
        serving.stop()


def test_publish_confirmed_without_a_broker_is_true():
    serving = ServingThread(RealtimeServer(rate_limit=None))
    try:
        client = RealtimeClient(serving.port)
        client.subscribe("news")
        assert serving.call(serving.server.publish_confirmed("news", 7)) is True
        assert client.recv() == {"type": "MESSAGE", "topic": "news", "data": 7, "from": None}
        client.close()
    finally:
        serving.stop()
