"""`uws-py serve --broker redis+cluster://...`: sharded pub/sub and history on a Redis Cluster
started by the test on loopback ports (issue 20 tests 1 and 2; docs/topics/scaling.md)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

import pytest
import redis
from redis.crc import key_slot

from tests.support.procutil import RealtimeClient, RedisCluster, UwsServer, metric_value, wait_until
from uws_py.broker.redis_cluster import RedisClusterBroker, cluster_channel

# 1,000 topics on one connection: over the default of 128 subscriptions per connection.
HISTORY = ("--history", "chat.*:300:300", "--rate-limit", "off", "--no-access-log", "--max-subscriptions", "2000")


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}


def start_hubs(cluster: RedisCluster, count: int, started: list) -> list:
    hubs = []
    for _ in range(count):
        hubs.append(UwsServer("--broker", cluster.url, *HISTORY, env=clean_env()))
        started.append(hubs[-1])
    for hub in hubs:
        wait_until(lambda hub=hub: metric_value(hub.port, "uws_broker_connected") == 1,
                   f"cluster broker of pid {hub.pid} connected", timeout=15.0)
    return hubs


def owner(cluster: RedisCluster, topic: str, ranges=None) -> int:
    """The port of the master serving topic's channel (and its history keys)."""
    return cluster.port_of_slot(key_slot(cluster_channel("uws:", topic).encode()), ranges)


def shard_subscribers(port: int, channels: list) -> dict:
    """PUBSUB SHARDNUMSUB on one master: channel -> connections subscribed there."""
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as client:
        counts: dict = {}
        for start in range(0, len(channels), 200):
            reply = client.execute_command("PUBSUB", "SHARDNUMSUB", *channels[start:start + 200])
            counts.update({reply[i].decode(): int(reply[i + 1]) for i in range(0, len(reply), 2)})
        return counts


def subscribe_all(client: RealtimeClient, topics: list) -> dict:
    """SUBSCRIBEs to every topic (pipelined); topic -> its SUBSCRIBED reply."""
    for n, topic in enumerate(topics):
        client.send({"type": "SUBSCRIBE", "topic": topic, "id": f"s{n}"})
    replies = {}
    while len(replies) < len(topics):
        reply = client.recv(15.0)
        assert reply["type"] == "SUBSCRIBED", reply
        replies[reply["topic"]] = reply
    return replies


@pytest.fixture
def started():
    processes: list = []
    clients: list = []
    yield processes, clients
    for client in clients:
        client.close()
    for process in processes:
        process.stop()


def test_thousand_topics_over_three_shards_delivered_once_everywhere_and_recovered_on_every_shard(started):
    hubs_started, clients = started
    cluster = RedisCluster(masters=3).start()
    try:
        a, b = start_hubs(cluster, 2, hubs_started)
        topics = [f"room.{n}" for n in range(1000)]
        ranges = cluster.slot_ranges()
        spread = Counter(owner(cluster, topic, ranges) for topic in topics)
        assert sorted(spread) == cluster.master_ports(), spread
        assert min(spread.values()) > 250, f"1,000 topics spread unevenly over the shards: {spread}"

        on_a, on_b = RealtimeClient(a.port), RealtimeClient(b.port)
        clients += [on_a, on_b]
        subscribe_all(on_a, topics)
        subscribe_all(on_b, topics)
        for port, count in spread.items():
            channels = [cluster_channel("uws:", t) for t in topics if owner(cluster, t, ranges) == port]
            # Each process holds one subscription per channel, on the shard that owns it (a plain
            # SUBSCRIBE is answered before the broker's SSUBSCRIBE is done, as with one Redis).
            wait_until(lambda: set(shard_subscribers(port, channels).values()) == {2},
                       f"both processes subscribed to the {count} channels of shard {port}", timeout=15.0)
        publisher = RealtimeClient(a.port)
        clients.append(publisher)
        for n, topic in enumerate(topics):
            publisher.publish(topic, n)

        for subscriber in (on_a, on_b):
            received = Counter()
            for _ in range(len(topics)):
                message = subscriber.recv(15.0)
                assert message["type"] == "MESSAGE", message
                assert message["data"] == int(message["topic"].split(".")[1]), message
                received[message["topic"]] += 1
            assert received == Counter(topics), "a publish missing or delivered twice"
            subscriber.expect_silence(0.5)
        assert metric_value(a.port, "uws_broker_publish_failures_total") == 0

        # History: topics of every shard keep their offsets and recover on the other process.
        history_topics = [f"chat.{n}" for n in range(12)]
        assert {owner(cluster, t, ranges) for t in history_topics} == set(cluster.master_ports())
        epochs = {}
        for topic in history_topics:
            for n in range(5):
                reply = publisher.request({"type": "PUBLISH", "topic": topic, "data": n})
                assert (reply["type"], reply.get("offset")) == ("PUBLISHED", n + 1), reply
            epochs[topic] = reply["epoch"]
        reader = RealtimeClient(b.port)
        clients.append(reader)
        for topic in history_topics:
            answer = reader.request({"type": "SUBSCRIBE", "topic": topic, "recover": True,
                                     "since": {"epoch": epochs[topic], "offset": 2}})
            assert (answer["type"], answer["recovered"], answer["offset"]) == ("SUBSCRIBED", True, 5), answer
            assert [p["data"] for p in answer["publications"]] == [2, 3, 4], answer
        publisher.request({"type": "PUBLISH", "topic": history_topics[0], "data": "live"})
        message = reader.recv(10.0)
        assert (message["topic"], message["offset"], message["data"]) == (history_topics[0], 6, "live"), message
    finally:
        cluster.cleanup()


def test_master_killed_during_traffic_replica_promoted_history_complete_plain_loss_counted(started):
    """6 nodes (3 masters, 3 replicas, ``cluster-require-full-coverage no``); one master is
    SIGKILLed while a publisher writes to a history topic and a plain topic on every shard. Its
    replica takes over; the brokers resubscribe that shard's topics only. History subscribers
    end with every acknowledged publication (live, or recovered after insufficient_state, which
    only the dead shard's topic may get); plain topics on the other shards lose nothing; the
    dead shard's plain topic loses the publishes the publishing worker counted in
    uws_broker_publish_failures_total, plus those the promoted master took before the
    subscribing worker was subscribed there again (no counter sees them), none published
    after that repair."""
    hubs_started, clients = started
    cluster = RedisCluster(masters=3, replicas=1, node_timeout=1000, full_coverage=False).start()
    watcher = None
    try:
        a, b = start_hubs(cluster, 2, hubs_started)
        masters = cluster.master_ports()
        ranges = cluster.slot_ranges()
        history_topics, plain_topics = [], []
        for n in range(200):
            for topics, name in ((history_topics, f"chat.f{n}"), (plain_topics, f"plain.f{n}")):
                if owner(cluster, name, ranges) not in {owner(cluster, t, ranges) for t in topics}:
                    topics.append(name)
        assert len(history_topics) == len(plain_topics) == 3
        victim = owner(cluster, history_topics[0], ranges)
        (victim_plain,) = [t for t in plain_topics if owner(cluster, t, ranges) == victim]
        victim_topics = {history_topics[0], victim_plain}

        # A broker in this process, subscribed to the six topics: what it tells its server.
        events: list = []
        confirmed: list = []
        watcher = RedisClusterBroker(cluster.url)
        watcher.start(lambda topic, payload: None, lambda callback: callback(),
                      on_connection=lambda *args: events.append(args))
        for topic in history_topics + plain_topics:
            watcher.subscribe(topic, ready=lambda: confirmed.append(1))
        wait_until(lambda: len(confirmed) == 6, "the watching broker subscribed to the six topics", timeout=10.0)

        subscriber = RealtimeClient(b.port)
        publisher = RealtimeClient(a.port)
        plain_publisher = RealtimeClient(a.port)
        clients += [subscriber, publisher, plain_publisher]
        subscribed = subscribe_all(subscriber, history_topics + plain_topics)
        accepted = {t: [] for t in history_topics}
        refused = Counter()
        killed = threading.Event()
        # Plain publishes on a thread of their own, one per topic every 10 ms whatever the
        # history requests wait for: round n carries data n on each plain topic.
        rounds = [0]
        stop_plain = threading.Event()

        def publish_plain() -> None:
            while not stop_plain.is_set():
                for topic in plain_topics:
                    plain_publisher.publish(topic, rounds[0])
                rounds[0] += 1
                time.sleep(0.01)

        def kill_soon() -> None:
            time.sleep(1.0)
            cluster.kill(victim)
            killed.set()

        plain_thread = threading.Thread(target=publish_plain)
        killer = threading.Thread(target=kill_soon)
        plain_thread.start()
        killer.start()
        deadline = time.monotonic() + 8.0
        kill_round = repaired_round = None
        round_number = 0
        try:
            while time.monotonic() < deadline or not killed.is_set() or repaired_round is None:
                if kill_round is None and killed.is_set():
                    kill_round = rounds[0]  # about: this loop waits for history replies
                elif kill_round is not None and repaired_round is None \
                        and metric_value(b.port, "uws_broker_reconnects_total") >= 1 \
                        and metric_value(b.port, "uws_broker_connected") == 1:
                    repaired_round = rounds[0]  # b is subscribed at the promoted master again
                assert time.monotonic() < deadline + 20.0, f"pid {b.pid} did not resubscribe: {b.stderr_text()[-3000:]}"
                for topic in history_topics:
                    reply = publisher.request({"type": "PUBLISH", "topic": topic, "data": round_number}, timeout=10.0)
                    if reply["type"] == "PUBLISHED":
                        accepted[topic].append(reply["offset"])
                    else:
                        assert (reply["type"], reply["code"]) == ("ERROR", "UNAVAILABLE"), reply
                        refused[topic] += 1
                round_number += 1
                time.sleep(0.02)
        finally:
            stop_plain.set()
            plain_thread.join()
        round_number = rounds[0]
        sent = {t: round_number for t in plain_topics}
        killer.join()
        cluster.wait_healthy(timeout=20.0)
        assert victim not in cluster.master_ports() and len(cluster.master_ports()) == 3
        # After the failover every shard carries traffic again, the promoted one included.
        for topic in plain_topics:
            plain_publisher.publish(topic, "after")
            sent[topic] += 1
        for topic in history_topics:
            reply = publisher.request({"type": "PUBLISH", "topic": topic, "data": "after"}, timeout=10.0)
            assert reply["type"] == "PUBLISHED", reply
            accepted[topic].append(reply["offset"])

        seen = {t: [] for t in history_topics}
        plain_seen = {t: [] for t in plain_topics}
        told = set()
        expected_plain_after = set(plain_topics)
        while expected_plain_after or any(seen[t][-1:] != accepted[t][-1:] for t in history_topics if t not in told):
            try:
                message = subscriber.recv(15.0)
            except TimeoutError:
                raise AssertionError(
                    f"delivery stopped: history seen {seen}, acknowledged {accepted}, told to recover {told}; "
                    f"plain topics still waiting for 'after': {expected_plain_after}; "
                    f"log of the subscribing process: {b.stderr_text()[-3000:]}") from None
            topic = message.get("topic")
            if message["type"] == "UNSUBSCRIBED":
                assert (message["reason"], message["resubscribe"]) == ("insufficient_state", True), message
                told.add(topic)
            elif topic in plain_seen:
                plain_seen[topic].append(message["data"])
                if message["data"] == "after":
                    expected_plain_after.discard(topic)
            else:
                assert message["type"] == "MESSAGE" and topic not in told, message
                seen[topic].append(message["offset"])
        # Only the dead shard's history topic can have lost continuity.
        assert told <= {history_topics[0]}, told
        for topic in told:  # the client's part: recover from its last position
            last = seen[topic][-1] if seen[topic] else subscribed[topic]["offset"]
            answer = subscriber.request({"type": "SUBSCRIBE", "topic": topic, "recover": True,
                                         "since": {"epoch": subscribed[topic]["epoch"], "offset": last}}, timeout=10.0)
            assert answer["type"] == "SUBSCRIBED" and answer["recovered"] is True, answer
            seen[topic] += [p["offset"] for p in answer["publications"]]
        for topic in history_topics:
            assert seen[topic] == list(range(1, seen[topic][-1] + 1)), (topic, seen[topic])
            assert set(accepted[topic]) <= set(seen[topic]), f"an acknowledged publication of {topic} was lost"

        failures = metric_value(a.port, "uws_broker_publish_failures_total")
        missing = {}
        for topic in plain_topics:
            assert plain_seen[topic][-1:] == ["after"], (topic, plain_seen[topic][-3:])
            numbers = plain_seen[topic][:-1]
            assert numbers == sorted(set(numbers)), f"{topic}: out of order or twice: {numbers}"
            missing[topic] = sorted(set(range(round_number)) - set(numbers))
        print(f"\nfailover: killed master {victim} at round {kill_round}, {b.pid} repaired by round {repaired_round}; "
              f"history refused {dict(refused)}, told to recover {sorted(told)}; plain sent {sent}, "
              f"missing {({t: len(m) for t, m in missing.items()})}; publisher's broker counted {failures} "
              f"publish failure(s); watcher told {events}")
        for topic in plain_topics:
            if topic != victim_plain:
                assert missing[topic] == [], (f"{topic} (a healthy shard) lost {missing[topic]}; log of the "
                                              f"subscribing process: {b.stderr_text()[-3000:]}")
        # The dead shard's topic: every counted failure is one of its publishes (nothing else
        # failed), and nothing published after b was seen repaired is lost. (Publishes made
        # shortly before the kill can be lost too: they may still wait in a's outbox then.)
        assert failures <= len(missing[victim_plain]), (failures, missing[victim_plain])
        assert all(n <= repaired_round for n in missing[victim_plain]), (repaired_round, missing[victim_plain])
        # The watching broker named the dead shard's topics as lost, nothing else, then was back.
        losses = [args for args in events if args[0] is False]
        assert losses and all(len(args) == 2 and args[1] <= victim_topics for args in losses), events
        assert set().union(*(args[1] for args in losses)) == victim_topics, events
        wait_until(lambda: events[-1] == (True,), f"the watching broker back after {events}", timeout=10.0)
        assert masters != cluster.master_ports()
    finally:
        if watcher is not None:
            watcher.stop()
        cluster.cleanup()
