"""A frozen Redis Cluster master (SIGSTOP) and the cluster broker's publisher: a publish the
master does not answer within ``publish_timeout`` is reported failed and never sent again.
The publisher used to send it again (its own retries, and redis-py's cluster retries after a
timeout), and the frozen master, which had received it, ran it when it resumed: twice.

The guarantee tested (docs/topics/scaling.md): a plain publish on a cluster is delivered at
most once. Every publish confirmed (``done(True)``) arrives once; a failed one is counted in
``publish_failures`` and arrives once or not at all; the other shards' publishes wait behind
the failing ones (one publisher keeps its order) and arrive; publishing goes on after SIGCONT.

The cluster's node timeout (15 s) is far longer than the freeze, so no node is marked failed
and the cluster state stays ok: the frozen master is only slow, never failed over.

The last test is the other side: idle connections a restarted master closed are replaced
before anything is written on them, so not sending twice does not cost the first publish
after a restart (test_broker.py's test_first_publish_after_broker_restart_reaches_other_processes
checks the same for the broker)."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import threading
import time

import pytest
import redis
from redis.crc import key_slot

from tests.support.procutil import RedisCluster
from tests.support.serverloop import ServerLoop
from uws_py.broker.redis_cluster import RedisClusterBroker, cluster_channel
from uws_py.realtime.history import HistoryOptions, HistoryPolicy, HistoryUnavailable, message_parts
from uws_py.realtime.history_redis import RedisHistory

LIMIT = 0.5
# COUNT publishes, one every INTERVAL s, on topics of the three shards in turn; the master of
# the first topic's shard is frozen from FREEZE_AT s on for FROZEN s.
COUNT = 360
INTERVAL = 0.01
FREEZE_AT = 1.0
FROZEN = 3 * LIMIT
NODE_TIMEOUT_MS = 15000


@pytest.fixture
def cluster():
    if not RedisCluster.available():
        pytest.fail("redis-server and redis-cli are needed for the Redis Cluster tests")
    started = RedisCluster(masters=3, node_timeout=NODE_TIMEOUT_MS).start()
    yield started
    started.cleanup()


def one_topic_per_master(cluster: RedisCluster, prefix: str = "frozen") -> list:
    """Three topics, the first on one master, the second and third on the other two."""
    ranges = cluster.slot_ranges()
    by_port: dict = {}
    for n in range(1000):
        topic = f"{prefix}.{n}"
        port = cluster.port_of_slot(key_slot(cluster_channel("uws:", topic).encode()), ranges)
        by_port.setdefault(port, topic)
        if len(by_port) == 3:
            return [by_port[port] for port in sorted(by_port)]
    raise AssertionError(f"1,000 topics do not cover three masters: {by_port}")


def test_a_frozen_master_gets_no_publish_twice_and_publishing_goes_on(cluster):
    topics = one_topic_per_master(cluster)
    ranges = cluster.slot_ranges()
    victim = cluster.port_of_slot(key_slot(cluster_channel("uws:", topics[0]).encode()), ranges)
    pid = cluster.processes[victim].pid
    loop = ServerLoop()
    received: list = []
    publisher = RedisClusterBroker(cluster.url, publish_timeout=LIMIT)
    receiver = RedisClusterBroker(cluster.url)
    confirmed_subscriptions = threading.Semaphore(0)
    receiver.start(lambda topic, payload: received.append((topic, int(payload))), loop.schedule)
    for topic in topics:
        receiver.subscribe(topic, confirmed_subscriptions.release)
    publisher.start(lambda topic, payload: None, loop.schedule)
    subscribed = [0]

    def all_subscribed() -> bool:
        while confirmed_subscriptions.acquire(blocking=False):
            subscribed[0] += 1
        return subscribed[0] == len(topics) and publisher.ready.is_set()

    results: dict = {}
    failed_at: list = []
    stopped_at = resumed_at = 0.0
    resumed_index = COUNT
    try:
        assert loop.run_until(all_subscribed, timeout=15), "the receiver did not subscribe to the three topics"

        def done(n: int):
            def record(ok: bool) -> None:
                results[n] = ok
                if not ok:
                    failed_at.append(time.monotonic())
            return record

        start = time.monotonic()
        for n in range(COUNT):
            # Paced on the test's thread, which runs the brokers' callbacks meanwhile.
            loop.run_until(lambda: time.monotonic() >= start + n * INTERVAL, timeout=COUNT * INTERVAL + 1)
            now = time.monotonic()
            if not stopped_at and now >= start + FREEZE_AT:
                os.kill(pid, signal.SIGSTOP)
                stopped_at = time.monotonic()
            if stopped_at and not resumed_at and now >= stopped_at + FROZEN:
                os.kill(pid, signal.SIGCONT)
                resumed_at = time.monotonic()
                resumed_index = n
            publisher.publish(topics[n % 3], b"%d" % n, done(n))
        if not resumed_at:
            os.kill(pid, signal.SIGCONT)
            resumed_at = time.monotonic()

        def settled() -> bool:
            confirmed = {n for n, ok in list(results.items()) if ok}
            return len(results) == COUNT and {n for _, n in received} >= confirmed

        loop.run_until(settled, timeout=20)
        # A second copy would come right behind the first: wait a little for one.
        loop.run_until(lambda: False, timeout=1.0)
        stats = publisher.stats()
    finally:
        os.kill(pid, signal.SIGCONT)
        publisher.stop()
        receiver.stop()

    copies = collections.Counter(n for _, n in received)
    repeated = sorted(n for n, c in copies.items() if c > 1)
    delivered = {n for n, ok in results.items() if ok}
    failed = {n for n, ok in results.items() if not ok}
    print(f"\nfrozen master {victim} for {resumed_at - stopped_at:.2f} s: {len(received)} received, "
          f"{len(repeated)} repeated, {len(failed)} failed {sorted(failed)}, "
          f"{COUNT - len(copies)} missing, stats {stats}")
    assert len(results) == COUNT, f"{COUNT - len(results)} publishes never got their done callback"
    assert all(topic == topics[n % 3] for topic, n in received), "a publish arrived on another topic"
    assert repeated == [], f"{len(repeated)} publishes arrived twice: {repeated[:20]}"
    assert delivered <= set(copies), f"confirmed but missing: {sorted(delivered - set(copies))[:20]}"
    # What is missing failed, and every failure is counted. Only the frozen shard's publishes
    # failed: the others waited behind them and went out.
    assert set(range(COUNT)) - set(copies) <= failed, sorted(set(range(COUNT)) - set(copies) - failed)
    assert len(failed) >= 1 and stats["publish_failures"] == len(failed), (sorted(failed), stats)
    assert all(n % 3 == 0 for n in failed), f"a healthy shard's publish failed: {sorted(failed)}"
    # The first failure was reported while the master was still frozen, after about the limit.
    assert stopped_at + LIMIT * 0.9 <= failed_at[0] < resumed_at, (failed_at[0] - stopped_at, resumed_at - stopped_at)
    # Publishing went on: everything published after SIGCONT was confirmed.
    assert resumed_index < COUNT and set(range(resumed_index, COUNT)) <= delivered, \
        sorted(set(range(resumed_index, COUNT)) - delivered)


def test_a_history_publish_to_a_frozen_master_is_not_run_twice(cluster):
    """The history store's script call (offset, stream entry and SPUBLISH in one) that the
    master does not answer within the store's timeout fails as unavailable and is not sent
    again: when the master resumes it runs it once, at one offset. The store's client used to
    retry once after a timeout; with the master resumed by then, it ran twice (two offsets)."""
    topic = one_topic_per_master(cluster, "h")[0]
    victim = cluster.port_of_slot(key_slot(cluster_channel("uws:", topic).encode()))
    pid = cluster.processes[victim].pid
    history = RedisHistory(cluster.url, HistoryPolicy([HistoryOptions("h.*", size=100, ttl=300)]),
                           cluster=True, timeout=LIMIT)

    async def scenario():
        for n in range(3):
            await history.publish(topic, *message_parts(topic, n, "c1"))
        os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        # Resumed after the first attempt's limit, before a second attempt's would end.
        asyncio.get_running_loop().call_later(1.5 * LIMIT, os.kill, pid, signal.SIGCONT)
        try:
            outcome = await history.publish(topic, *message_parts(topic, "frozen", "c1"))
        except HistoryUnavailable as exc:
            outcome = exc
        failed_after = time.monotonic() - stopped_at
        await asyncio.sleep(2 * LIMIT)
        after = await history.publish(topic, *message_parts(topic, "after", "c1"))
        await history.aclose()
        return outcome, failed_after, after

    try:
        outcome, failed_after, after = asyncio.run(scenario())
    finally:
        os.kill(pid, signal.SIGCONT)
    with redis.Redis(host="127.0.0.1", port=victim, socket_timeout=5) as client:
        entries = client.xrange(history.keys(topic)[0])
    frozen = [entry_id for entry_id, fields in entries if b'"data":"frozen"' in fields[b"p"]]
    print(f"\nhistory publish to frozen master {victim}: {outcome!r} after {failed_after:.2f} s; "
          f"stored at {frozen}; next offset {after[0].offset}")
    assert len(frozen) <= 1, f"one publish stored at {len(frozen)} offsets: {frozen}"
    assert isinstance(outcome, HistoryUnavailable), outcome
    assert failed_after < 1.5 * LIMIT, failed_after
    # The master ran the unanswered script when it resumed (offset 4); the next one is 5.
    assert frozen == [b"4-0"] and after[0].offset == 5, (frozen, after)


def test_the_first_history_publish_after_a_cluster_restart_is_not_refused(cluster):
    """The other side of sending nothing twice: the store's idle connections, which the
    restarted masters closed, are replaced before the write (the closed connection is seen
    before anything is written on it), so the first publish after the restart goes through
    instead of failing as a connection lost after the write."""
    topics = one_topic_per_master(cluster, "h")
    history = RedisHistory(cluster.url, HistoryPolicy([HistoryOptions("h.*", size=100, ttl=300)]),
                           cluster=True, timeout=2.0)

    async def scenario():
        for topic in topics:
            await history.publish(topic, *message_parts(topic, "before", "c1"))
        await asyncio.to_thread(cluster.stop_all)
        await asyncio.to_thread(cluster.start_all)
        try:
            # The nodes keep no data: each topic starts again at offset 1 in a new epoch.
            return [(await history.publish(topic, *message_parts(topic, "after", "c1")))[0].offset
                    for topic in topics]
        finally:
            await history.aclose()

    assert asyncio.run(scenario()) == [1, 1, 1]
