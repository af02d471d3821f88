"""Regression (bench/chaos rolling-restart stored publishes twice): a worker stopping while a
publish to a history topic waited for Redis closed the connection before PUBLISHED, though
Redis then stored it; the publisher retried and the payload was stored at two offsets. Now a
closing server answers the publishes in flight first and refuses new ones (UNAVAILABLE)."""

from __future__ import annotations

import os
import signal

from tests.support.chaos import redis_command
from tests.support.procutil import RedisServer, RealtimeClient, UwsServer
from tests.support.zero_loss import wait_for_brokers


def test_a_stopping_worker_answers_a_publish_that_waits_for_redis_before_closing():
    redis = RedisServer().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    try:
        with UwsServer("--broker", redis.url, "--history", "h.*:100:300", "--no-access-log", "--log-level",
                       "warning", "--rate-limit", "off", env=env) as hub:
            wait_for_brokers(hub, 1)
            publisher, other = RealtimeClient(hub.port), RealtimeClient(hub.port)
            assert publisher.request({"type": "PUBLISH", "topic": "h.x", "data": 0})["type"] == "PUBLISHED"
            # Redis holds every write (the publish script too) for a second.
            assert redis_command(redis.port, "CLIENT", "PAUSE", "1000", "WRITE") == b"+OK"
            publisher.send({"type": "PUBLISH", "topic": "h.x", "data": 1, "id": 7})
            # Until the server has read it: a PING sent after it is answered after it was read.
            assert publisher.request({"type": "PING"})["type"] == "PONG"
            hub.signal(signal.SIGTERM)
            reply = publisher.recv(timeout=5.0)
            assert reply["type"] == "PUBLISHED" and reply["id"] == 7 and reply["offset"] == 2, reply
            assert publisher.expect_close() == 1001
            assert other.expect_close() == 1001
            assert hub.wait(10.0) == 0
    finally:
        redis.cleanup()
