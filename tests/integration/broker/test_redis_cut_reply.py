"""One Redis, and a connection lost after the command was written: Redis ran it, the client
never read the answer. The Redis broker's publisher and the Redis history store used to send
such a command again on a fresh connection (the publisher's own retry, redis-py's ``Retry`` in
the store): the PUBLISH delivered twice, the history publish stored at two offsets.

The guarantee tested (docs/topics/delivery.md, docs/topics/scaling.md): nothing is sent to
Redis twice. A command that may have been written and got no answer is reported failed
(``done(False)`` and ``publish_failures``; ``HistoryUnavailable``), and the ones behind it go
out on a new connection in their order. A proxy (tests/support/cut_proxy.py) lets chosen
commands reach Redis and resets the client's connection once Redis has answered; a direct
redis-py subscriber (and XRANGE, for history) counts what arrived.

The other side, that the usual failure of an idle connection (Redis restarted) still costs
nothing: the last tests restart redis-server between two publishes on an idle connection, and
the second one arrives once and is not reported failed."""

from __future__ import annotations

import asyncio
import collections
import re
import time

import pytest
import redis

from tests.support.cut_proxy import CutProxy
from tests.support.procutil import HOST, RedisServer
from tests.support.serverloop import ServerLoop
from uws_py.broker.redis import RedisBroker, parse_frame
from uws_py.realtime.history import HistoryOptions, HistoryPolicy, HistoryUnavailable, message_parts
from uws_py.realtime.history_redis import RedisHistory

TOPIC = "cut"
HISTORY_TOPIC = "chat.cut"
POLICY = HistoryPolicy([HistoryOptions("chat.*", size=10_000, ttl=300)])
# COUNT publishes, one every INTERVAL s; the reply to the commands carrying CUT_AT is cut.
COUNT = 300
INTERVAL = 0.005
CUT_AT = (40, 130, 220)


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def proxy(redis_server):
    with CutProxy(redis_server.port) as started:
        yield started


def proxied_url(proxy: CutProxy) -> str:
    return f"redis://{HOST}:{proxy.port}/0"


def direct_subscriber(server: RedisServer, channel: str):
    """A redis-py pub/sub on Redis itself (not through the proxy), subscribed to channel."""
    client = redis.Redis(host=HOST, port=server.port, socket_timeout=5, socket_connect_timeout=2)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    assert pubsub.get_message(timeout=2) is None  # the subscribe confirmation, ignored
    return client, pubsub


def plain_number(payload: bytes) -> int:
    return int(payload)


def history_number(payload: bytes) -> int:
    """The data of a history MESSAGE (``message_parts(topic, n, None)``)."""
    return int(payload.split(b'"data":')[1].split(b",")[0])


def drain(pubsub, expected: int, number_of=plain_number, quiet: float = 1.0, timeout: float = 15.0) -> list[int]:
    """The numbers published, in the order they arrived: read until expected have come and
    nothing more for quiet s (a copy would come right behind), or until timeout."""
    numbers: list[int] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None and message["type"] == "message":
            numbers.append(number_of(parse_frame(message["data"])[2]))
            last = time.monotonic()
        elif len(numbers) >= expected and time.monotonic() - last > quiet:
            break
    return numbers


def cut_numbers(proxy: CutProxy, marker: bytes) -> set[int]:
    """The numbers of the publishes whose answer the proxy cut (read off the bytes it let
    through: the payload's last RESP bulk string, ``<marker><n>``)."""
    found = set()
    for command in proxy.cut_commands:
        at = command.rfind(marker)
        assert at >= 0, f"a cut command without {marker!r}: {command[:200]!r}"
        digits = re.match(rb"\d+", command[at + len(marker):])
        assert digits, f"no number after {marker!r}: {command[:200]!r}"
        found.add(int(digits.group()))
    return found


def check_at_most_once(arrived: list[int], failed: set[int], cut: set[int]) -> None:
    copies = collections.Counter(arrived)
    assert not [n for n, c in copies.items() if c > 1], f"arrived twice: {sorted(n for n, c in copies.items() if c > 1)}"
    # Every number arrived once, or was reported failed; nothing confirmed went missing.
    assert set(range(COUNT)) - set(copies) <= failed, f"lost unreported: {sorted(set(range(COUNT)) - set(copies) - failed)}"
    # The cut commands ran in Redis (the proxy saw the answer) and were reported failed.
    assert cut <= set(copies) and cut <= failed, (sorted(cut), sorted(failed))
    # One publisher's order holds across the new connections.
    assert arrived == sorted(arrived), "out of order"
    assert max(arrived) == COUNT - 1, "the last publishes, after the cuts, did not arrive"


def test_a_publish_whose_reply_is_cut_is_not_sent_again(redis_server, proxy):
    client, pubsub = direct_subscriber(redis_server, "uws:" + TOPIC)
    loop = ServerLoop()
    publisher = RedisBroker(proxied_url(proxy), publish_timeout=2.0)
    publisher.start(lambda topic, payload: None, loop.schedule)
    results: dict[int, bool] = {}

    def done(n: int):
        return lambda ok: results.__setitem__(n, ok)

    try:
        assert loop.run_until(publisher.ready.is_set, timeout=10)
        start = time.monotonic()
        for n in range(COUNT):
            loop.run_until(lambda: time.monotonic() >= start + n * INTERVAL, timeout=COUNT * INTERVAL + 1)
            if n in CUT_AT:
                proxy.cut_after_next_command()
            publisher.publish(TOPIC, b"%d" % n, done(n))
            if n in CUT_AT:
                # The cut is for this publish: wait for it before publishing the next.
                assert loop.run_until(lambda: not proxy.armed, timeout=5), "the armed cut never happened"
        assert loop.run_until(lambda: len(results) == COUNT, timeout=15), f"{COUNT - len(results)} never done"
        arrived = drain(pubsub, COUNT - list(results.values()).count(False))
        stats = publisher.stats()
    finally:
        publisher.stop()
        pubsub.close()
        client.close()
    failed = {n for n, ok in results.items() if not ok}
    assert proxy.cuts == len(CUT_AT), proxy.cuts
    # Each cut hit the publish armed for or one queued before it (a backlog while reconnecting).
    cut = cut_numbers(proxy, b"|")
    assert len(cut) == len(CUT_AT), cut
    check_at_most_once(arrived, failed, cut)
    assert stats["publish_failures"] == len(failed), (stats, sorted(failed))


async def history_sequence(store: RedisHistory, proxy: CutProxy) -> set[int]:
    """Publishes 0..COUNT-1 on HISTORY_TOPIC through store, cutting CUT_AT's replies; returns
    the numbers whose publish raised HistoryUnavailable."""
    failed = set()
    try:
        for n in range(COUNT):
            if n in CUT_AT:
                proxy.cut_after_next_command()
            try:
                await store.publish(HISTORY_TOPIC, *message_parts(HISTORY_TOPIC, n, None))
            except HistoryUnavailable as exc:
                assert "may still be applied" in str(exc), exc
                failed.add(n)
            assert not proxy.armed
    finally:
        await store.aclose()
    return failed


def stored_numbers(server: RedisServer, store: RedisHistory) -> tuple[list[int], list[int]]:
    """The stream's (offsets, numbers), in stream order, read on Redis itself."""
    client = redis.Redis(host=HOST, port=server.port, socket_timeout=5)
    try:
        entries = client.xrange(store.keys(HISTORY_TOPIC)[0])
    finally:
        client.close()
    offsets = [int(entry_id.split(b"-")[0]) for entry_id, _ in entries]
    numbers = [history_number(fields[b"p"]) for _, fields in entries]
    return offsets, numbers


def test_a_history_publish_whose_reply_is_cut_is_not_stored_twice(redis_server, proxy):
    store = RedisHistory(proxied_url(proxy), POLICY, origin=b"w1")
    client, pubsub = direct_subscriber(redis_server, store.channel(HISTORY_TOPIC))
    try:
        failed = asyncio.run(history_sequence(store, proxy))
        delivered = drain(pubsub, COUNT - len(failed), history_number)
    finally:
        pubsub.close()
        client.close()
    assert proxy.cuts == len(CUT_AT), proxy.cuts
    cut = cut_numbers(proxy, b'"data":')
    assert cut == set(CUT_AT), cut
    offsets, stored = stored_numbers(redis_server, store)
    check_at_most_once(stored, failed, cut)
    # One offset per publication, none skipped: nothing was stored a second time.
    assert offsets == list(range(1, len(stored) + 1))
    # The broker channel carried what the stream keeps, once each.
    assert delivered == stored


def test_a_history_batch_whose_reply_is_cut_is_not_stored_twice(redis_server, proxy):
    store = RedisHistory(proxied_url(proxy), POLICY, origin=b"w1")
    batches = [list(range(start, start + 10)) for start in range(0, 100, 10)]

    async def run() -> set[int]:
        failed = set()
        try:
            for index, batch in enumerate(batches):
                if index in (3, 7):
                    proxy.cut_after_next_command()
                answers = await store.publish_many([(HISTORY_TOPIC, *message_parts(HISTORY_TOPIC, n, None))
                                                    for n in batch])
                for n, answer in zip(batch, answers):
                    if isinstance(answer, HistoryUnavailable):
                        assert "may still be applied" in str(answer), answer
                        failed.add(n)
                    else:
                        assert not isinstance(answer, BaseException), answer
                assert not proxy.armed
        finally:
            await store.aclose()
        return failed

    failed = asyncio.run(run())
    assert proxy.cuts == 2
    offsets, stored = stored_numbers(redis_server, store)
    copies = collections.Counter(stored)
    assert not [n for n, c in copies.items() if c > 1], f"stored twice: {sorted(n for n, c in copies.items() if c > 1)}"
    assert failed == set(batches[3]) | set(batches[7])
    # The cut batches ran in Redis (the proxy saw the answer): stored once, reported failed.
    assert stored == list(range(100)) and offsets == list(range(1, 101))


def test_a_publish_after_redis_restarted_while_idle_arrives_once_and_is_not_failed(redis_server):
    loop = ServerLoop()
    publisher = RedisBroker(redis_server.url, publish_timeout=2.0)
    publisher.start(lambda topic, payload: None, loop.schedule)
    results: list[bool] = []
    try:
        assert loop.run_until(publisher.ready.is_set, timeout=10)
        publisher.publish(TOPIC, b"0", results.append)
        assert loop.run_until(lambda: results == [True], timeout=5), results
        redis_server.stop()
        redis_server.start()
        # The publisher's connection is idle and closed by the old server; a subscriber on the
        # new one, before the second publish.
        client, pubsub = direct_subscriber(redis_server, "uws:" + TOPIC)
        try:
            publisher.publish(TOPIC, b"1", results.append)
            assert loop.run_until(lambda: len(results) == 2, timeout=10), results
            arrived = drain(pubsub, 1)
        finally:
            pubsub.close()
            client.close()
        stats = publisher.stats()
    finally:
        publisher.stop()
    assert results == [True, True]
    assert arrived == [1]
    assert stats["publish_failures"] == 0, stats


def test_a_history_publish_after_redis_restarted_while_idle_is_stored_once_and_not_failed(redis_server):
    store = RedisHistory(redis_server.url, POLICY, origin=b"w1")

    async def run() -> None:
        try:
            await store.publish(HISTORY_TOPIC, *message_parts(HISTORY_TOPIC, 0, None))
            redis_server.stop()
            redis_server.start()
            # Idle meanwhile, as a server's loop is between publishes: the old server's end of
            # stream is read (and the closed connection seen) before the next command.
            await asyncio.sleep(0.2)
            # Nothing kept (no persistence): a new epoch, and this publish at its offset 1.
            position, _ = await store.publish(HISTORY_TOPIC, *message_parts(HISTORY_TOPIC, 1, None))
            assert position.offset == 1, position
        finally:
            await store.aclose()

    asyncio.run(run())
    offsets, stored = stored_numbers(redis_server, store)
    assert stored == [1] and offsets == [1]
