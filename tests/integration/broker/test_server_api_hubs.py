"""The server API and the Emitter across `uws-py serve --broker redis://... --api-key ...`
processes sharing one real redis-server (issue 15 tests 3 and 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import jwt
import pytest

from tests.support.api_client import api_call, api_result
from tests.support.hubs import ClientGroup, HubGroup, wait_for_hub_subscriptions
from tests.support.procutil import RedisServer, wait_until


SECRET = "server api hub tests: an HS256 key of 32+ bytes"
KEY = "server-api-test-key-0123456789"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": time.time() + 600, "info": {"name": user}}, SECRET, algorithm="HS256")


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def hubs(redis_server):
    """hubs(n) -> n hub processes with the API on, history on hist.*, presence on room.*."""
    group = HubGroup(redis_server.url, "--no-access-log", "--rate-limit", "off", "--jwt-secret", SECRET,
                     "--api-key", KEY, "--history", "hist.*:100:300", "--presence", "room.*")
    yield group.start
    group.stop()


@pytest.fixture
def connect():
    clients = ClientGroup()
    yield lambda hub, user: clients.open(hub.port, headers=[("Authorization", f"Bearer {token(user)}")])
    clients.close()


def test_a_bad_key_is_refused_with_401_and_publishes_nothing(hubs, connect, redis_server):
    first, second = hubs(2)
    subscriber = connect(second, "alice")
    subscriber.subscribe("news")
    wait_for_hub_subscriptions(redis_server, {"news": 1})
    for key in (None, "wrong-key-of-the-same-size-000", KEY[:-1], KEY + "x"):
        status, answer = api_call(first.port, "publish", {"topic": "news", "data": "x"}, key)
        assert status == 401 and answer["error"]["code"] == "UNAUTHORIZED", (key, status, answer)
    status, answer = api_call(first.port, "disconnect", {"user": "alice"}, "Bearer-is-not-apikey-000000")
    assert status == 401
    subscriber.expect_silence(0.5)
    # The same request with the key goes through: the refusals were about the key alone.
    assert api_result(first.port, "publish", {"topic": "news", "data": "x"}, KEY) == {}
    assert subscriber.expect_message("news") == "x"


def test_publish_reaches_every_worker_and_an_idempotent_retry_publishes_once(hubs, connect, redis_server):
    workers = hubs(3)
    subscribers = [connect(hub, f"user{n}") for n, hub in enumerate(workers)]
    for subscriber in subscribers:
        subscriber.subscribe("news")
        subscriber.subscribe("hist.1")
    wait_for_hub_subscriptions(redis_server, {"news": 3, "hist.1": 3})
    assert api_result(workers[0].port, "publish", {"topic": "news", "data": {"n": 1}}, KEY) == {}
    for subscriber in subscribers:
        assert subscriber.expect_message("news") == {"n": 1}

    first = api_result(workers[0].port, "publish", {"topic": "hist.1", "data": "once", "idempotency_key": "k-1"}, KEY)
    assert set(first) == {"epoch", "offset"} and first["offset"] >= 1
    # The retry, on another worker: the key lives in Redis, so it publishes nothing and answers the same.
    retry = api_result(workers[1].port, "publish", {"topic": "hist.1", "data": "once", "idempotency_key": "k-1"}, KEY)
    assert retry == first
    for subscriber in subscribers:
        message = subscriber.recv()
        assert (message["type"], message["data"], message["offset"]) == ("MESSAGE", "once", first["offset"])
        subscriber.expect_silence(0.4)
    history = api_result(workers[2].port, "history", {"topic": "hist.1"}, KEY)
    assert [p["data"] for p in history["publications"]] == ["once"]
    assert (history["epoch"], history["offset"]) == (first["epoch"], first["offset"])
    # Another key publishes again, with the next offset.
    other = api_result(workers[1].port, "publish", {"topic": "hist.1", "data": "twice", "idempotency_key": "k-2"}, KEY)
    assert other == {"epoch": first["epoch"], "offset": first["offset"] + 1}


def test_disconnect_closes_the_users_connections_on_every_worker_within_a_second(hubs, connect):
    first, second = hubs(2)
    alice = [connect(hub, "alice") for hub in (first, second, second)]
    bob = connect(first, "bob")
    started = time.monotonic()
    assert api_result(second.port, "disconnect", {"user": "alice", "code": 4001, "reason": "banned"}, KEY) == {}
    codes = [client.expect_close(timeout=2.0) for client in alice]
    assert time.monotonic() - started < 1.0
    assert codes == [4001, 4001, 4001]
    assert bob.request({"type": "PING"})["type"] == "PONG"
    status, answer = api_call(first.port, "disconnect", {"user": "alice", "code": 1006}, KEY)
    assert status == 400 and answer["error"]["code"] == "BAD_REQUEST"


def test_subscribe_and_unsubscribe_a_users_connections_on_every_worker(hubs, connect, redis_server):
    first, second = hubs(2)
    alice = [connect(first, "alice"), connect(second, "alice")]
    bob = connect(second, "bob")
    assert api_result(first.port, "subscribe", {"user": "alice", "topic": "news"}, KEY) == {}
    for client in alice:
        assert client.recv() == {"type": "SUBSCRIBED", "topic": "news"}
    wait_for_hub_subscriptions(redis_server, {"news": 2})
    api_result(second.port, "publish", {"topic": "news", "data": 1}, KEY)
    for client in alice:
        assert client.expect_message("news") == 1
    bob.expect_silence(0.3)
    # A history topic: the push carries the position.
    api_result(second.port, "subscribe", {"user": "alice", "topic": "hist.s"}, KEY)
    for client in alice:
        pushed = client.recv()
        assert pushed["type"] == "SUBSCRIBED" and pushed["topic"] == "hist.s" and "epoch" in pushed, pushed
    assert api_result(second.port, "unsubscribe", {"user": "alice", "topic": "news"}, KEY) == {}
    for client in alice:
        assert client.recv() == {"type": "UNSUBSCRIBED", "topic": "news", "reason": "server"}
    wait_for_hub_subscriptions(redis_server, {"news": 0})
    api_result(first.port, "publish", {"topic": "news", "data": 2}, KEY)
    for client in alice:
        client.expect_silence(0.4)


def test_presence_presence_stats_info_channels_broadcast_and_batch_across_workers(hubs, connect, redis_server):
    first, second = hubs(2)
    members = [connect(first, "ann"), connect(second, "ann"), connect(second, "ben")]
    for member in members:
        member.subscribe("room.1")
        member.subscribe("plain.1")
    listener = connect(first, "carl")
    listener.subscribe("hist.b")
    wait_for_hub_subscriptions(redis_server, {"room.1": 2, "plain.1": 2, "hist.b": 1})
    wait_until(lambda: len(api_result(first.port, "presence", {"topic": "room.1"}, KEY)["clients"]) == len(members),
               "every member in the presence of room.1")
    entries = api_result(first.port, "presence", {"topic": "room.1"}, KEY)["clients"]
    assert sorted(entry["clientId"] for entry in entries) == sorted(m.connected["clientId"] for m in members)
    assert {entry["userId"] for entry in entries} == {"ann", "ben"}
    assert api_result(second.port, "presence_stats", {"topic": "room.1"}, KEY) == {"numClients": 3, "numUsers": 2}
    status, answer = api_call(first.port, "presence", {"topic": "plain.1"}, KEY)
    assert status == 400 and answer["error"]["code"] == "NO_PRESENCE"

    workers = api_result(first.port, "info", {}, KEY)["workers"]
    assert len(workers) == 2
    assert len({w["pid"] for w in workers}) == 2 and len({w["worker"] for w in workers}) == 2
    assert sorted(w["connections"] for w in workers) == [2, 2]
    assert all(w["version"] and w["uptime"] >= 0 and w["topics"] >= 2 for w in workers)

    channels = api_result(second.port, "channels", {}, KEY)["channels"]
    assert channels["room.1"] == 3 and channels["plain.1"] == 3 and channels["hist.b"] == 1
    assert api_result(second.port, "channels", {"pattern": "room.*"}, KEY) == {"channels": {"room.1": 3}}

    result = api_result(second.port, "broadcast", {"topics": ["plain.1", "hist.b"], "data": "all"}, KEY)
    assert result["responses"][0] == {"topic": "plain.1"}
    assert result["responses"][1]["topic"] == "hist.b" and result["responses"][1]["offset"] == 1
    for member in members:
        assert member.expect_message("plain.1") == "all"
    message = listener.recv()
    assert (message["topic"], message["data"], message["offset"]) == ("hist.b", "all", 1)

    replies = api_result(first.port, "batch", {"commands": [
        {"method": "publish", "params": {"topic": "hist.b", "data": "in a batch"}},
        {"method": "presence_stats", "params": {"topic": "room.1"}},
        {"method": "no_such_method"},
    ]}, KEY)["replies"]
    assert replies[0]["result"]["offset"] == 2
    assert replies[1] == {"result": {"numClients": 3, "numUsers": 2}}
    assert replies[2]["error"]["code"] == "NOT_FOUND"
    assert listener.recv()["data"] == "in a batch"


EMITTER_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    from uws_py import AsyncEmitter, Emitter

    url = sys.argv[1]
    emitter = Emitter(url, history=[("hist.*", 100, 300.0)])
    results = [emitter.publish("hist.e", {"n": 1}), emitter.publish("hist.e", {"n": 2}), emitter.publish("plain.e", "p")]
    emitter.send_to_user("alice", "for alice")

    async def main():
        emitter = AsyncEmitter(url, history=[("hist.*", 100, 300.0)])
        results.append(await emitter.publish("hist.e", {"n": 3}))
        await emitter.disconnect_user("bob", 4002, "bye")
        await emitter.aclose()

    asyncio.run(main())
    print(json.dumps(results))
""")


def test_an_emitter_in_a_process_without_a_server_reaches_subscribers_on_two_workers(hubs, connect, redis_server):
    first, second = hubs(2)
    subscribers = [connect(first, "alice"), connect(second, "carl")]
    for subscriber in subscribers:
        subscriber.subscribe("hist.e")
        subscriber.subscribe("plain.e")
    alice_elsewhere = connect(second, "alice")
    bob = connect(first, "bob")
    wait_for_hub_subscriptions(redis_server, {"hist.e": 2, "plain.e": 2, "#control": 2})
    # The same interpreter and environment as the tests: uws_py as they import it (installed, or
    # from PYTHONPATH), not the source tree, which has no compiled core.
    done = subprocess.run([sys.executable, "-c", EMITTER_SCRIPT, redis_server.url], capture_output=True, text=True,
                          timeout=30, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    epoch = results[0]["epoch"]
    assert results == [{"epoch": epoch, "offset": 1}, {"epoch": epoch, "offset": 2}, None,
                       {"epoch": epoch, "offset": 3}]
    to_alice = []
    for subscriber in subscribers:
        received = []
        while len(received) < 4:
            message = subscriber.recv()
            (to_alice if message["topic"] == "#user:alice" else received).append(message)
        by_topic = {(m["topic"], json.dumps(m["data"])): m for m in received}
        assert [m.get("offset") for m in received if m["topic"] == "hist.e"] == [1, 2, 3]
        assert all(m["from"] is None for m in received)
        assert ("plain.e", '"p"') in by_topic and "offset" not in by_topic[("plain.e", '"p"')]
    # The publications are in the history every worker reads, at the emitter's offsets.
    history = api_result(second.port, "history", {"topic": "hist.e"}, KEY)
    assert (history["epoch"], [p["offset"] for p in history["publications"]]) == (epoch, [1, 2, 3])
    to_alice.append(alice_elsewhere.recv())
    assert [(m["topic"], m["data"]) for m in to_alice] == [("#user:alice", "for alice")] * 2
    assert bob.expect_close(timeout=3.0) == 4002


def test_with_redis_gone_a_history_publish_answers_503_and_the_api_goes_on(hubs, redis_server):
    (hub,) = hubs(1)
    redis_server.stop()
    status, answer = api_call(hub.port, "publish", {"topic": "hist.down", "data": 1}, KEY, timeout=15.0)
    assert status == 503 and answer["error"]["code"] == "UNAVAILABLE", answer
    status, answer = api_call(hub.port, "publish", {"topic": "hist.down", "data": 1, "idempotency_key": "k"}, KEY,
                              timeout=15.0)
    assert status == 503 and answer["error"]["code"] == "UNAVAILABLE", answer
    (worker,) = api_result(hub.port, "info", {}, KEY)["workers"]  # answered alone, after the gather timeout
    assert worker["pid"] == hub.pid
