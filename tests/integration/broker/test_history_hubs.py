"""History topics across `uws-py serve --broker redis://... --history ...` processes sharing one
real redis-server (issue 13 tests 2 and 6, and UNAVAILABLE when Redis is down)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tests.support.hubs import ClientGroup, HubGroup
from tests.support.procutil import HOST, RealtimeClient, RedisServer, UwsServer, metric_value, wait_until

import redis  # the [test] extra has redis-py: a missing one is an error, not a skip

from uws_py.realtime.history import HistoryOptions, HistoryPolicy, message_parts  # noqa: E402
from uws_py.realtime.history_redis import RedisHistory  # noqa: E402

HISTORY = ("--history", "chat.*:300:300", "--rate-limit", "off")


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_client(redis_server):
    with redis.Redis(host=HOST, port=redis_server.port, socket_timeout=2, socket_connect_timeout=2) as client:
        yield client


@pytest.fixture
def hubs(redis_server):
    """hubs(n) -> n `uws-py serve --broker ... --history chat.*` processes, stopped at teardown;
    each waits until its broker connection is up."""
    group = HubGroup(redis_server.url, "--no-access-log", *HISTORY)
    yield group.start
    group.stop()


@pytest.fixture
def connect():
    clients = ClientGroup()
    yield lambda hub: clients.open(hub.port)
    clients.close()


def publish_all(publisher: RealtimeClient, topic: str, first: int, count: int) -> list:
    replies = []
    for n in range(first, first + count):
        reply = publisher.request({"type": "PUBLISH", "topic": topic, "data": {"n": n}})
        assert reply["type"] == "PUBLISHED", reply
        replies.append(reply)
    return replies


def test_recovery_across_two_workers_returns_exactly_the_missed_hundred(hubs, connect):
    publishing_hub, reading_hub = hubs(2)
    reader = connect(reading_hub)
    subscribed = reader.request({"type": "SUBSCRIBE", "topic": "chat.x"})
    assert subscribed["type"] == "SUBSCRIBED" and subscribed["offset"] == 0, subscribed
    epoch = subscribed["epoch"]
    publisher = connect(publishing_hub)
    replies = publish_all(publisher, "chat.x", 0, 5)
    assert [(r["offset"], r["epoch"]) for r in replies] == [(n, epoch) for n in range(1, 6)]
    live = [reader.recv() for _ in range(5)]
    assert [(m["type"], m["offset"], m["data"]["n"]) for m in live] == [("MESSAGE", n + 1, n) for n in range(5)]

    reader.ws.reset()  # the TCP connection is cut
    assert [r["offset"] for r in publish_all(publisher, "chat.x", 5, 100)] == list(range(6, 106))

    again = connect(reading_hub)
    recovered = again.request({"type": "SUBSCRIBE", "topic": "chat.x", "recover": True,
                               "since": {"epoch": epoch, "offset": 5}})
    assert (recovered["type"], recovered["epoch"], recovered["offset"]) == ("SUBSCRIBED", epoch, 105), recovered
    assert recovered["wasRecovering"] is True and recovered["recovered"] is True
    assert [p["offset"] for p in recovered["publications"]] == list(range(6, 106))
    assert [p["data"]["n"] for p in recovered["publications"]] == list(range(5, 105))

    publish_all(publisher, "chat.x", 105, 1)
    message = again.recv()
    assert (message["type"], message["offset"], message["data"]) == ("MESSAGE", 106, {"n": 105})
    again.expect_silence(0.3)


def test_publishes_from_two_workers_share_one_offset_sequence(hubs, connect):
    first, second = hubs(2)
    reader = connect(first)
    assert reader.request({"type": "SUBSCRIBE", "topic": "chat.y"})["offset"] == 0
    a, b = connect(first), connect(second)
    offsets = []
    for n in range(10):
        offsets.append((a if n % 2 else b).request({"type": "PUBLISH", "topic": "chat.y", "data": n})["offset"])
    assert offsets == list(range(1, 11))
    assert [reader.recv()["offset"] for _ in range(10)] == list(range(1, 11))
    page = a.request({"type": "HISTORY", "topic": "chat.y", "limit": 3, "reverse": True})
    assert [p["data"] for p in page["publications"]] == [9, 8, 7]


def test_history_publish_fails_unavailable_while_plain_topics_go_on(hubs, connect, redis_server):
    (hub,) = hubs(1)
    reader, publisher = connect(hub), connect(hub)
    reader.subscribe("plain")
    redis_server.stop()
    refused = publisher.request({"type": "PUBLISH", "topic": "chat.z", "data": 1}, timeout=10.0)
    assert (refused["type"], refused["code"]) == ("ERROR", "UNAVAILABLE"), refused
    assert publisher.request({"type": "PUBLISH", "topic": "plain", "data": 2})["type"] == "PUBLISHED"
    assert reader.expect_message("plain") == 2


def test_killed_pubsub_connection_gives_contiguous_offsets_or_insufficient_state(hubs, connect, redis_client):
    publishing_hub, reading_hub = hubs(2)
    reader = connect(reading_hub)
    subscribed = reader.request({"type": "SUBSCRIBE", "topic": "chat.k"})
    assert subscribed["offset"] == 0
    publisher = connect(publishing_hub)
    seen: list = []
    told_to_resubscribe = False
    for n in range(60):
        publisher.send({"type": "PUBLISH", "topic": "chat.k", "data": n})
        if n == 20:
            redis_client.client_kill_filter(_type="pubsub")
        time.sleep(0.01)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            message = reader.recv(1.0)
        except TimeoutError:
            break
        if message["type"] == "UNSUBSCRIBED":
            assert (message["reason"], message["resubscribe"]) == ("insufficient_state", True), message
            told_to_resubscribe = True
            break
        assert message["type"] == "MESSAGE", message
        seen.append(message["offset"])
    assert seen == list(range(1, len(seen) + 1)), seen
    if told_to_resubscribe:  # the client's part: recover from its last position
        wait_until(lambda: metric_value(reading_hub.port, "uws_broker_connected") == 1, "broker back", timeout=15.0)
        recovered = reader.request({"type": "SUBSCRIBE", "topic": "chat.k", "recover": True,
                                    "since": {"epoch": subscribed["epoch"], "offset": seen[-1] if seen else 0}})
        assert recovered["recovered"] is True, recovered
        seen += [p["offset"] for p in recovered["publications"]]
    assert seen == list(range(1, 61)), (told_to_resubscribe, seen)


def test_a_broker_delivery_that_never_arrived_is_filled_from_the_stream(hubs, connect, redis_server):
    """Offsets 3 and 4 are appended to the topic's stream with their PUBLISH sent to a channel
    nobody listens to, as if the worker had missed them: it fills them from the stream before
    delivering offset 5, so the subscriber sees 1..6 in order, once each, and stays subscribed."""
    (hub,) = hubs(1)
    reader = connect(hub)
    assert reader.request({"type": "SUBSCRIBE", "topic": "chat.g"})["offset"] == 0
    publisher = connect(hub)
    publish_all(publisher, "chat.g", 0, 2)
    assert [reader.recv()["offset"] for _ in range(2)] == [1, 2]

    async def publish_unheard() -> list:
        policy = HistoryPolicy([HistoryOptions("chat.*", size=300, ttl=300)])
        store = RedisHistory(redis_server.url, policy, channel_prefix="nobody-listens:")
        try:
            return [(await store.publish("chat.g", *message_parts("chat.g", f"unheard {n}", None)))[0].offset
                    for n in (2, 3)]
        finally:
            await store.aclose()

    assert asyncio.run(publish_unheard()) == [3, 4]
    publish_all(publisher, "chat.g", 4, 2)
    received = [reader.recv() for _ in range(4)]
    assert [(m["type"], m["offset"]) for m in received] == [("MESSAGE", n) for n in (3, 4, 5, 6)]
    assert [m["data"] for m in received] == ["unheard 2", "unheard 3", {"n": 4}, {"n": 5}]
    reader.expect_silence(0.3)
    assert metric_value(hub.port, "uws_history_gaps_filled_total") == 1
    publish_all(publisher, "chat.g", 6, 1)
    assert reader.recv()["offset"] == 7


def test_a_subscribed_publisher_gets_its_own_message_only_with_echo(hubs, connect):
    """As without a broker (tests/integration/realtime/test_history.py has the same test):
    the broker's delivery of a publication skips its publisher; echo sends it one copy."""
    first, second = hubs(2)
    publisher, local, remote = connect(first), connect(first), connect(second)
    for client in (publisher, local, remote):
        assert client.request({"type": "SUBSCRIBE", "topic": "chat.e"})["type"] == "SUBSCRIBED"
    assert publisher.request({"type": "PUBLISH", "topic": "chat.e", "data": 1})["offset"] == 1
    assert (local.recv()["offset"], remote.recv()["offset"]) == (1, 1)
    publisher.expect_silence(0.3)
    publisher.send({"type": "PUBLISH", "topic": "chat.e", "data": 2, "echo": True})
    echoed = publisher.recv()
    assert (echoed["type"], echoed["offset"], echoed["from"]) == ("MESSAGE", 2, publisher.connected["clientId"])
    assert (local.recv()["offset"], remote.recv()["offset"]) == (2, 2)
    publisher.expect_silence(0.3)


@pytest.mark.parametrize("append_only", [False, True], ids=["no-persistence", "aof"])
def test_redis_restart_keeps_the_epoch_only_with_persistence(append_only):
    """Issue 13 test 4: without persistence a restart loses the history (new epoch,
    recovered false); with AOF the epoch and the publications survive (recovered true)."""
    redis_server = RedisServer(append_only=append_only).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    hub = UwsServer("--broker", redis_server.url, "--no-access-log", *HISTORY, env=env)
    clients: list = []

    def connect(server):
        clients.append(RealtimeClient(server.port))
        return clients[-1]

    try:
        wait_until(lambda: metric_value(hub.port, "uws_broker_connected") == 1, "broker connected", timeout=15.0)
        publisher = connect(hub)
        epoch = publish_all(publisher, "chat.r", 0, 3)[-1]["epoch"]
        redis_server.stop()
        redis_server.start()
        wait_until(lambda: metric_value(hub.port, "uws_broker_connected") == 1, "broker reconnected", timeout=15.0)
        reader = connect(hub)
        answer = reader.request({"type": "SUBSCRIBE", "topic": "chat.r", "recover": True,
                                 "since": {"epoch": epoch, "offset": 1}}, timeout=10.0)
        assert answer["type"] == "SUBSCRIBED", answer
        if append_only:
            assert (answer["epoch"], answer["offset"], answer["recovered"]) == (epoch, 3, True), answer
            assert [p["data"]["n"] for p in answer["publications"]] == [1, 2]
        else:
            assert answer["epoch"] != epoch and answer["offset"] == 0, answer
            assert (answer["recovered"], answer["publications"]) == (False, [])
    finally:
        for client in clients:
            client.close()
        hub.stop()
        redis_server.cleanup()
