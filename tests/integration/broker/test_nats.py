"""NATS-only behaviour of `uws-py serve --broker nats://...` (the shared cross-process tests
run against NATS in test_broker.py): odd topic names as subjects, a nats-server restart during
traffic, and history topics kept in Redis beside NATS (docs/topics/scaling.md)."""

from __future__ import annotations

import os
import threading
import time

import pytest
import redis

from tests.support.procutil import (
    HOST, NatsServer, RealtimeClient, RedisServer, UwsServer, metric_value, run_uws_py, wait_until,
)
from uws_py.broker.nats import NatsBroker

ODD_TOPICS = ["a.b.c", "a..b", ".lead", "trail.", "two words", "*", ">", "news.*.>", "ünïcødé.€", "~7E", "x{y}"]


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}


@pytest.fixture
def nats_server():
    server = NatsServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def running():
    """(processes, clients) stopped/closed at teardown, clients first."""
    processes: list = []
    clients: list = []
    yield processes, clients
    for client in clients:
        client.close()
    for process in processes:
        process.stop()


def hub(running, *options: str) -> UwsServer:
    server = UwsServer(*options, "--rate-limit", "off", "--no-access-log", env=clean_env())
    running[0].append(server)
    wait_until(lambda: metric_value(server.port, "uws_broker_connected") == 1, f"broker of pid {server.pid} connected",
               timeout=15.0)
    return server


def client(running, server: UwsServer) -> RealtimeClient:
    opened = RealtimeClient(server.port)
    running[1].append(opened)
    return opened


def test_odd_topic_names_cross_processes_each_on_its_own_subject(nats_server, running):
    a, b = hub(running, "--broker", nats_server.url), hub(running, "--broker", nats_server.url)
    subscriber, publisher = client(running, b), client(running, a)
    for topic in ODD_TOPICS:
        subscriber.subscribe(topic)
    for topic in ODD_TOPICS:
        wait_until(lambda topic=topic: nats_server.subscriptions(NatsBroker.channel_of(topic)) == 1,
                   f"b subscribed to {topic!r}")
    # Wildcard-looking topics are literal: nothing else lands on them.
    assert nats_server.subscriptions("uws.*") == nats_server.subscriptions("uws.>") == 0
    for n, topic in enumerate(ODD_TOPICS):
        publisher.publish(topic, n)
    received = [subscriber.recv() for _ in ODD_TOPICS]
    assert [(m["topic"], m["data"]) for m in received] == [(t, n) for n, t in enumerate(ODD_TOPICS)]
    subscriber.expect_silence(0.3)


def test_nats_restart_during_traffic_is_survived_and_the_loss_counted(nats_server, running):
    a, b = hub(running, "--broker", nats_server.url), hub(running, "--broker", nats_server.url)
    subscriber, publisher = client(running, b), client(running, a)
    subscriber.subscribe("ticks")
    wait_until(lambda: nats_server.subscriptions("uws.ticks") == 1, "b subscribed")
    sent: list = []
    stop = threading.Event()

    def publish_steadily() -> None:
        while not stop.is_set():
            publisher.publish("ticks", len(sent))
            sent.append(len(sent))
            time.sleep(0.005)

    writer = threading.Thread(target=publish_steadily)
    writer.start()
    try:
        time.sleep(0.5)
        nats_server.stop()
        for server in (a, b):
            wait_until(lambda server=server: metric_value(server.port, "uws_broker_connected") == 0,
                       f"pid {server.pid} saw NATS go", timeout=10.0)
        time.sleep(0.5)
        nats_server.start()
        for server in (a, b):
            wait_until(lambda server=server: metric_value(server.port, "uws_broker_connected") == 1
                       and metric_value(server.port, "uws_broker_reconnects_total") >= 1,
                       f"pid {server.pid} reconnected and resubscribed", timeout=15.0)
        time.sleep(0.5)
    finally:
        stop.set()
        writer.join()
    received = []
    while True:
        try:
            received.append(subscriber.expect_message("ticks", timeout=2.0))
        except AssertionError:
            break
    assert received == sorted(set(received)), "a message twice or out of order"
    assert set(received) <= set(sent)
    assert received[-1] == sent[-1], "delivery did not resume after the restart"
    lost = len(sent) - len(received)
    failures = metric_value(a.port, "uws_broker_publish_failures_total")
    print(f"\nnats restart: sent {len(sent)}, received {len(received)}, lost {lost}, "
          f"counted as publish failures by the publisher {failures:.0f}")
    # Every counted failure is a lost message; the rest of the loss was in flight when the
    # server went (written to the socket, never forwarded).
    assert failures > 0 and lost >= failures


def test_history_topics_stay_in_redis_beside_nats(nats_server, running):
    redis_server = RedisServer().start()
    try:
        options = ("--broker", nats_server.url, "--history-store", redis_server.url, "--history", "chat.*:300:300")
        a, b = hub(running, *options), hub(running, *options)
        reader, publisher = client(running, b), client(running, a)
        first = reader.request({"type": "SUBSCRIBE", "topic": "chat.x"})
        assert (first["type"], first["offset"]) == ("SUBSCRIBED", 0), first
        reader.subscribe("plain")
        with redis.Redis(host=HOST, port=redis_server.port, socket_timeout=2) as store:
            wait_until(lambda: dict(store.pubsub_numsub("uws:chat.x")).get(b"uws:chat.x") == 1,
                       "the history topic followed through Redis")
            assert dict(store.pubsub_numsub("uws:plain")).get(b"uws:plain") == 0
        wait_until(lambda: nats_server.subscriptions("uws.plain") == 1, "the plain topic followed through NATS")
        for n in range(5):
            reply = publisher.request({"type": "PUBLISH", "topic": "chat.x", "data": n})
            assert (reply["type"], reply["offset"]) == ("PUBLISHED", n + 1), reply
        assert [reader.recv()["offset"] for _ in range(5)] == [1, 2, 3, 4, 5]
        publisher.publish("plain", "over nats")
        assert reader.expect_message("plain") == "over nats"

        again = client(running, b)
        recovered = again.request({"type": "SUBSCRIBE", "topic": "chat.x", "recover": True,
                                   "since": {"epoch": first["epoch"], "offset": 2}})
        assert (recovered["recovered"], [p["data"] for p in recovered["publications"]]) == (True, [2, 3, 4]), recovered
    finally:
        redis_server.cleanup()


def test_presence_with_nats_is_refused_at_startup_without_a_redis_beside_it(nats_server):
    result = run_uws_py("serve", "--port", "0", "--broker", nats_server.url, "--presence", "room.*", env=clean_env())
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "presence with a broker is kept in Redis" in result.stderr and "--history-store" in result.stderr, \
        result.stderr
    assert "listening" not in result.stdout


def test_presence_is_kept_in_the_redis_beside_nats_and_its_diffs_travel_on_nats(nats_server, running):
    redis_server = RedisServer().start()
    try:
        options = ("--broker", nats_server.url, "--history-store", redis_server.url,
                   "--presence", "room.*:join_leave", "--presence-ttl", "5")
        a, b = hub(running, *options), hub(running, *options)
        on_a, on_b = client(running, a), client(running, b)
        on_a.subscribe("room.1")
        wait_until(lambda: nats_server.subscriptions("uws.room.1") == 1, "a's subscription on NATS")
        on_b.subscribe("room.1")
        ids = {on_a.connected["clientId"], on_b.connected["clientId"]}

        def listed(asker: RealtimeClient) -> set:
            reply = asker.request({"type": "PRESENCE", "topic": "room.1"})
            assert reply["type"] == "PRESENCE_RESULT", reply
            return {entry["clientId"] for entry in reply["clients"]}

        wait_until(lambda: listed(on_a) == ids and listed(on_b) == ids, "both clients listed on both processes")
        with redis.Redis(host=HOST, port=redis_server.port, socket_timeout=2) as store:
            assert sorted(store.hkeys("uws:p:{room.1}:e")) == sorted(i.encode() for i in ids)
            # The presence topic itself is a plain topic: on NATS, not on Redis's pub/sub.
            assert dict(store.pubsub_numsub("uws:room.1")).get(b"uws:room.1") == 0
        # b's join reaches a's client as a PRESENCE_DIFF broadcast by b over NATS.
        deadline = time.monotonic() + 5.0
        joined: set = set()
        while on_b.connected["clientId"] not in joined:
            assert time.monotonic() < deadline, f"no diff with b's join on a (joins seen: {joined})"
            message = on_a.recv(max(deadline - time.monotonic(), 0.01))
            if message["type"] == "PRESENCE_DIFF":
                joined |= {entry["clientId"] for entry in message["joins"]}
        on_b.unsubscribe("room.1")
        wait_until(lambda: listed(on_a) == {on_a.connected["clientId"]}, "b's clean leave seen on a", timeout=3.0)
    finally:
        redis_server.cleanup()
