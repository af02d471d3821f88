"""A frozen Redis (SIGSTOP) and the Redis broker's publisher: a PUBLISH Redis does not answer
within ``publish_timeout`` ends the connection as a lost one; the publisher used to wait for
that reply forever.

The guarantee tested (docs/topics/scaling.md): a plain publish is delivered at most once. The
unanswered PUBLISH is reported failed (``done(False)``, ``publish_failures``) and not sent again;
Redis runs it when it resumes. The publishes queued behind it wait for the new connection,
whose first PING waits up to CONNECT_TIMEOUT: a freeze shorter than publish_timeout plus
CONNECT_TIMEOUT loses nothing. A longer freeze is an outage: what is published then is
reported failed, and publishing goes on once Redis answers again."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time

import pytest

from tests.support.procutil import RedisServer
from tests.support.serverloop import ServerLoop
from uws_py.broker.redis import CONNECT_TIMEOUT, RedisBroker

LIMIT = 0.5
# Publishes every INTERVAL s for PUBLISHING s (by default); Redis is frozen from FREEZE_AT on.
INTERVAL = 0.01
PUBLISHING = 4.0
FREEZE_AT = 1.0


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


def freeze_while_publishing(redis_server: RedisServer, frozen: float, publishing: float = PUBLISHING):
    """Publishes ``n`` every INTERVAL s for ``publishing`` s while Redis is frozen for ``frozen``
    s from FREEZE_AT on; returns what the
    receiver got, each publish's done result, when each failure was reported, the freeze's
    start and end, and the publisher's stats."""
    loop = ServerLoop()
    received: list[bytes] = []
    publisher = RedisBroker(redis_server.url, publish_timeout=LIMIT)
    receiver = RedisBroker(redis_server.url)
    subscribed = threading.Event()
    receiver.start(lambda topic, payload: received.append(payload), loop.schedule)
    receiver.subscribe("frozen", subscribed.set)
    publisher.start(lambda topic, payload: None, loop.schedule)
    results: dict[int, bool] = {}
    failed_at: list[float] = []
    pid = redis_server.process.pid
    count = int(publishing / INTERVAL)
    try:
        assert loop.run_until(lambda: subscribed.is_set() and publisher.ready.is_set(), timeout=10)

        def done(n: int):
            def record(ok: bool) -> None:
                results[n] = ok
                if not ok:
                    failed_at.append(time.monotonic())
            return record

        start = time.monotonic()
        stopped_at = resumed_at = 0.0
        for n in range(count):
            # Paced on the test's thread, which also runs the broker's callbacks meanwhile.
            loop.run_until(lambda: time.monotonic() >= start + n * INTERVAL, timeout=publishing + 1)
            now = time.monotonic()
            if not stopped_at and now >= start + FREEZE_AT:
                os.kill(pid, signal.SIGSTOP)
                stopped_at = time.monotonic()
            if stopped_at and not resumed_at and now >= stopped_at + frozen:
                os.kill(pid, signal.SIGCONT)
                resumed_at = time.monotonic()
            publisher.publish("frozen", b"%d" % n, done(n))
        if not resumed_at:
            os.kill(pid, signal.SIGCONT)
            resumed_at = time.monotonic()

        def settled() -> bool:
            confirmed = {n for n, ok in list(results.items()) if ok}
            return len(results) == count and set(map(int, received)) >= confirmed

        loop.run_until(settled, timeout=15)
    finally:
        os.kill(pid, signal.SIGCONT)
        publisher.stop()
        receiver.stop()
    return received, results, failed_at, stopped_at, resumed_at, publisher.stats(), count


def test_a_freeze_longer_than_the_publish_timeout_loses_nothing_and_repeats_nothing(redis_server):
    frozen = 3 * LIMIT  # longer than the limit, shorter than LIMIT + CONNECT_TIMEOUT
    assert frozen < LIMIT + CONNECT_TIMEOUT
    received, results, failed_at, stopped_at, resumed_at, stats, count = freeze_while_publishing(redis_server, frozen)
    copies = collections.Counter(int(p) for p in received)
    assert len(results) == count, f"{count - len(results)} publishes never got their done callback"
    # Every publish arrived, once: the unanswered one too (Redis ran it when it resumed).
    assert sorted(copies) == list(range(count)), f"missing: {sorted(set(range(count)) - set(copies))[:20]}"
    assert max(copies.values()) == 1, f"repeated: {[n for n, c in copies.items() if c > 1]}"
    # The publisher gave up on the unanswered PUBLISH while Redis was still frozen (it used to
    # wait for the reply until SIGCONT), after about the limit.
    failures = [n for n, ok in results.items() if not ok]
    assert len(failures) >= 1 and stats["publish_failures"] == len(failures), (failures, stats)
    assert stopped_at + LIMIT * 0.9 <= failed_at[0] < resumed_at, (failed_at[0] - stopped_at, resumed_at - stopped_at)


def test_a_freeze_longer_than_the_reconnect_is_an_outage_and_publishing_goes_on(redis_server):
    frozen = LIMIT + CONNECT_TIMEOUT + 1.0
    publishing = FREEZE_AT + frozen + 2.0  # 2 s of publishes after the resume
    received, results, failed_at, stopped_at, resumed_at, stats, count = freeze_while_publishing(
        redis_server, frozen, publishing)
    copies = collections.Counter(int(p) for p in received)
    assert len(results) == count, f"{count - len(results)} publishes never got their done callback"
    delivered = {n for n, ok in results.items() if ok}
    failed = set(range(count)) - delivered
    # Every publish confirmed arrived, once; the failed ones are counted.
    assert delivered <= set(copies), f"confirmed but missing: {sorted(delivered - set(copies))[:20]}"
    assert max(copies.values()) == 1, f"repeated: {[n for n, c in copies.items() if c > 1]}"
    assert len(failed) >= 1 and stats["publish_failures"] == len(failed), (len(failed), stats)
    # A failure was reported while Redis was frozen, and publishes after the resume got through.
    assert failed_at[0] < resumed_at
    assert max(delivered) == count - 1, "the last publishes, after the resume, did not get through"
