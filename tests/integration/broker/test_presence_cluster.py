"""Presence on a Redis Cluster (issue 20): the store's keys of a topic in one slot on every shard
(brace topics included), expiry reporting and a forgotten script with one call per topic, and
`uws-py serve --broker redis+cluster://... --presence ...` processes sharing presence on topics
of every shard. One 3-master cluster for the file, started on loopback ports."""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis.crc import key_slot

from tests.support.hubs import ClientGroup, HubGroup
from tests.support.procutil import HOST, RealtimeClient, RedisCluster, wait_until
from uws_py.realtime.presence import PresenceEntry
from uws_py.realtime.presence_redis import RedisPresence

# Topics whose braces would split the keys of a topic over two slots with a naive tag.
BRACE_TOPICS = ["}lead", "a{b}", "{}", "x}{y"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def cluster():
    started = RedisCluster(masters=3).start()
    yield started
    started.cleanup()


def pairs(*entries: PresenceEntry) -> list:
    return [(e.client_id, e.encoded) for e in entries]


def topics_on_every_shard(cluster: RedisCluster, store: RedisPresence, prefix: str) -> list:
    """Two plain topics per master, by the slot of their keys."""
    ranges = cluster.slot_ranges()
    chosen: dict = {}
    for n in range(500):
        topic = f"{prefix}.{n}"
        port = cluster.port_of_slot(key_slot(store.keys(topic)[0].encode()), ranges)
        if len(chosen.setdefault(port, [])) < 2:
            chosen[port].append(topic)
    assert sorted(chosen) == cluster.master_ports(), chosen
    return [topic for topics in chosen.values() for topic in topics]


def test_store_keeps_each_topic_in_one_slot_on_every_shard_and_reports_expired_entries(cluster):
    clock = Clock()
    probe = RedisPresence(cluster.url, ttl=10.0, cluster=True)
    topics = topics_on_every_shard(cluster, probe, "room") + BRACE_TOPICS
    alice, bob = PresenceEntry("a1", "alice", {"n": 1}), PresenceEntry("b1", "bob", None)

    async def scenario() -> None:
        worker_a = RedisPresence(cluster.url, ttl=10.0, clock=clock, cluster=True)
        worker_b = RedisPresence(cluster.url, ttl=10.0, clock=clock, cluster=True)
        # One write of every topic at once: a script call per topic, on the topic's own shard.
        assert await worker_a.write_many([(t, pairs(alice), ()) for t in topics]) == {t: [] for t in topics}
        assert await worker_b.write_many([(t, pairs(bob), ()) for t in topics]) == {t: [] for t in topics}
        for topic in topics:
            assert sorted(e["clientId"] for e in await worker_b.entries(topic)) == ["a1", "b1"], topic
        assert await worker_a.stats(BRACE_TOPICS[0]) == {"numClients": 2, "numUsers": 2}

        # Every shard forgets its scripts (a restart or SCRIPT FLUSH): the next calls still work.
        for port in cluster.master_ports():
            assert cluster.cli(port, "SCRIPT", "FLUSH").strip() == "OK"
        clock.now += 6
        await worker_b.write_many([(t, pairs(bob), ()) for t in topics])  # b refreshes, a has died
        clock.now += 5  # a's entries are 11 s old: past the ttl
        for topic in topics:
            assert [e["clientId"] for e in await worker_b.entries(topic)] == ["b1"], topic
        expired = await worker_b.write_many([(t, pairs(bob), ()) for t in topics])
        assert expired == {t: [alice.to_wire()] for t in topics}  # deleted now, reported once
        await worker_a.aclose()
        await worker_b.aclose()

    asyncio.run(scenario())
    ranges = cluster.slot_ranges()
    for topic in topics:
        entries_key, expiry_key = probe.keys(topic)
        slot = key_slot(entries_key.encode())
        assert key_slot(expiry_key.encode()) == slot, (topic, entries_key, expiry_key)
        with redis.Redis(host=HOST, port=cluster.port_of_slot(slot, ranges), socket_timeout=5) as owner:
            assert owner.exists(entries_key, expiry_key) == 2, topic
            assert 0 < owner.pttl(entries_key) <= 10_000

    # A stopping server's synchronous clean-up reaches every shard.
    probe.delete_now({topic: {"b1"} for topic in topics})

    async def after() -> None:
        for topic in topics:
            assert await probe.entries(topic) == [], topic
        await probe.aclose()

    asyncio.run(after())


@pytest.fixture
def hubs(cluster):
    group = HubGroup(cluster.url, "--no-access-log", "--rate-limit", "off", "--presence", "room.*:join_leave",
                     "--presence-ttl", "5")
    yield group
    group.stop()


@pytest.fixture
def clients():
    group = ClientGroup()
    yield group
    group.close()


def presence_ids(client: RealtimeClient, topic: str) -> set:
    reply = client.request({"type": "PRESENCE", "topic": topic})
    assert reply["type"] == "PRESENCE_RESULT", reply
    return {entry["clientId"] for entry in reply["clients"]}


def test_two_processes_share_presence_and_diffs_on_topics_of_every_shard(cluster, hubs, clients):
    a, b = hubs.start(2)
    topics = topics_on_every_shard(cluster, RedisPresence(cluster.url, 5.0, cluster=True), "room")[::2] + ["room.{x}"]
    on_a, on_b = clients.open(a.port), clients.open(b.port)
    for topic in topics:
        on_a.subscribe(topic)
    ids_a = on_a.connected["clientId"]
    for topic in topics:
        on_b.subscribe(topic)
    ids_b = on_b.connected["clientId"]
    asker = clients.open(b.port)
    for topic in topics:
        wait_until(lambda topic=topic: presence_ids(asker, topic) == {ids_a, ids_b},
                   f"both processes' clients listed on {topic}", timeout=5.0)
    # a learns of b's joins by the diffs b broadcast on the cluster's sharded channels.
    joined: dict = {topic: set() for topic in topics}
    while any(ids_b not in seen for seen in joined.values()):
        message = on_a.recv(5.0)
        if message["type"] == "PRESENCE_DIFF":
            joined[message["topic"]] |= {entry["clientId"] for entry in message["joins"]}
    # A clean leave on b is gone from every topic at once, as a reads it.
    on_b.close()
    for topic in topics:
        wait_until(lambda topic=topic: presence_ids(on_a, topic) == {ids_a}, f"b's leave of {topic}", timeout=3.0)
