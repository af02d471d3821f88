"""uws_py.realtime.relay: history topics with a broker, on the fake loop. The broker and the
Redis store are stand-ins whose steps (subscription confirmed, job done, delivery) the tests
order by hand, so the races of the real thing are played one by one."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional

from uws_py.realtime.history import (
    DeliveryTracker, HistoryOptions, HistoryUnavailable, MemoryHistory, Position, message_parts,
)
from uws_py.realtime.relay import HistoryRelay


class FakeBroker:
    def __init__(self) -> None:
        self.ready: list[Callable[[], None]] = []
        self.jobs: list[tuple[Callable[[], Any], Callable[[Any], None]]] = []
        self.topics: set[str] = set()

    def subscribe(self, topic: str, ready: Optional[Callable[[], None]] = None) -> None:
        self.topics.add(topic)
        if ready is not None:
            self.ready.append(ready)

    def unsubscribe(self, topic: str) -> None:
        self.topics.discard(topic)

    def run(self, job: Callable[[], Any], done: Callable[[Any], None], ordered: bool = True) -> None:
        self.jobs.append((job, done))

    def confirm(self) -> None:
        ready, self.ready = self.ready, []
        for callback in ready:
            callback()

    def finish(self) -> None:
        jobs, self.jobs = self.jobs, []
        for job, done in jobs:
            try:
                result = asyncio.run(job())
            except Exception as exc:
                result = exc
            done(result)


class AsyncStore:
    """The RedisHistory interface over a MemoryHistory; ``down`` makes every call unavailable."""

    def __init__(self, memory: MemoryHistory) -> None:
        self.memory = memory
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise HistoryUnavailable("redis is down")

    async def publish(self, topic, head, tail):
        self._check()
        return self.memory.publish(topic, head, tail)

    async def publish_many(self, items):
        results = []
        for topic, head, tail in items:
            try:
                results.append(await self.publish(topic, head, tail))
            except Exception as exc:
                results.append(exc)
        return results

    async def position(self, topic):
        self._check()
        return self.memory.position(topic)

    async def recover(self, topic, since, limit):
        self._check()
        return self.memory.recover(topic, since, limit)

    async def read(self, topic, since, limit, reverse):
        self._check()
        return self.memory.read(topic, since, limit, reverse)


def relay_harness(harness):
    h = harness(rate_limit=None)
    h.engine.add_history(HistoryOptions("chat.*", size=50))
    broker, store = FakeBroker(), AsyncStore(h.engine.history)
    relay = HistoryRelay(broker, store, DeliveryTracker(), h.loop.publish, h.engine.metrics, 1000)
    h.engine.pubsub.relay = relay
    return h, broker, store, relay


def publish(store: AsyncStore, topic: str, n: int):
    """A publication committed to the store (as another worker's would be), not yet delivered."""
    head, tail = message_parts(topic, n, "other")
    position, publication = store.memory.publish(topic, head, tail)
    return position, publication


def deliver(relay: HistoryRelay, topic: str, position: Position, payload: bytes) -> None:
    relay.deliver(topic, payload, position.epoch, position.offset)


def offsets(frames):
    return [f.get("offset") for f in frames if f["type"] == "MESSAGE"]


def subscribe(h, broker, ws, **fields):
    """SUBSCRIBE whose read completes at once; returns the frames sent."""
    assert h.send(ws, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 1, **fields}) == []
    broker.confirm()
    broker.finish()
    return ws.frames()


def test_a_publication_delivered_during_the_read_is_not_sent_twice(harness):
    h, broker, store, relay = relay_harness(harness)
    for n in range(3):
        position, _ = publish(store, "chat.1", n)
    epoch = position.epoch
    ws = h.connect()
    ws.frames()
    assert h.send(ws, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 1, "recover": True,
                       "since": {"epoch": epoch, "offset": 1}}) == []
    broker.confirm()
    p4, pub4 = publish(store, "chat.1", 3)
    deliver(relay, "chat.1", p4, pub4.payload)  # arrives before the read: buffered, and <= top
    broker.finish()
    p5, pub5 = publish(store, "chat.1", 4)
    deliver(relay, "chat.1", p5, pub5.payload)
    (subscribed, live) = ws.frames()
    assert (subscribed["type"], subscribed["offset"], subscribed["recovered"]) == ("SUBSCRIBED", 4, True)
    assert [p["offset"] for p in subscribed["publications"]] == [2, 3, 4]
    assert (live["type"], live["offset"]) == ("MESSAGE", 5)


def test_a_publication_buffered_above_the_top_follows_subscribed(harness):
    h, broker, store, relay = relay_harness(harness)
    ws = h.connect()
    ws.frames()
    assert h.send(ws, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 1}) == []
    broker.confirm()
    job, done = broker.jobs.pop()
    result = asyncio.run(job())  # the read answers top 0 ...
    p1, pub1 = publish(store, "chat.1", 0)
    deliver(relay, "chat.1", p1, pub1.payload)  # ... and offset 1 arrives before its reply
    done(result)
    frames = ws.frames()
    assert [(f["type"], f.get("offset")) for f in frames] == [("SUBSCRIBED", 0), ("MESSAGE", 1)]
    p2, pub2 = publish(store, "chat.1", 1)
    deliver(relay, "chat.1", p2, pub2.payload)
    assert offsets(ws.frames()) == [2]


def test_a_new_subscriber_joins_the_fan_out_only_when_delivery_reaches_its_top(harness):
    h, broker, store, relay = relay_harness(harness)
    early = h.connect()
    early.frames()
    assert subscribe(h, broker, early)[0]["offset"] == 0
    p1, pub1 = publish(store, "chat.1", 0)
    deliver(relay, "chat.1", p1, pub1.payload)
    assert offsets(early.frames()) == [1]
    in_flight = [publish(store, "chat.1", n) for n in (1, 2)]  # committed, not delivered yet

    late = h.connect()
    late.frames()
    (subscribed,) = subscribe(h, broker, late)
    assert subscribed["offset"] == 3
    for position, publication in in_flight:
        deliver(relay, "chat.1", position, publication.payload)
    assert offsets(early.frames()) == [2, 3]
    assert late.frames() == []  # 2 and 3 are below its top: not sent
    p4, pub4 = publish(store, "chat.1", 3)
    deliver(relay, "chat.1", p4, pub4.payload)
    assert offsets(early.frames()) == [4] and offsets(late.frames()) == [4]


def test_an_offset_jump_is_filled_from_the_history_in_order_before_what_follows(harness):
    h, broker, store, relay = relay_harness(harness)
    ws = h.connect()
    ws.frames()
    subscribe(h, broker, ws)
    p1, pub1 = publish(store, "chat.1", 0)
    deliver(relay, "chat.1", p1, pub1.payload)
    publish(store, "chat.1", 1)  # offsets 2 and 3: their broker delivery never arrives
    publish(store, "chat.1", 2)
    p4, pub4 = publish(store, "chat.1", 3)
    deliver(relay, "chat.1", p4, pub4.payload)  # the jump: the fill's read starts
    p5, pub5 = publish(store, "chat.1", 4)
    deliver(relay, "chat.1", p5, pub5.payload)  # held while the read runs
    deliver(relay, "chat.1", p4, pub4.payload)  # a duplicate arriving meanwhile
    assert offsets(ws.frames()) == [1]
    broker.finish()
    assert offsets(ws.frames()) == [2, 3, 4, 5]
    p6, pub6 = publish(store, "chat.1", 5)
    deliver(relay, "chat.1", p6, pub6.payload)
    assert offsets(ws.frames()) == [6]
    assert "chat.1" in ws.topics
    assert (relay.tracker.metrics.gaps_detected, relay.tracker.metrics.gaps_filled) == (1, 1)


def test_an_offset_jump_larger_than_the_recover_limit_drops_subscribers_at_once(harness):
    h, broker, store, relay = relay_harness(harness)
    relay.recover_limit = 2
    ws = h.connect()
    ws.frames()
    subscribe(h, broker, ws)
    for n in range(3):  # offsets 1..3 never delivered
        publish(store, "chat.1", n)
    p4, pub4 = publish(store, "chat.1", 3)
    deliver(relay, "chat.1", p4, pub4.payload)
    assert broker.jobs == []
    assert ws.frames() == [{"type": "UNSUBSCRIBED", "topic": "chat.1", "reason": "insufficient_state",
                            "resubscribe": True}]


def test_an_offset_jump_that_cannot_be_filled_drops_subscribers_with_insufficient_state(harness):
    h, broker, store, relay = relay_harness(harness)
    ws = h.connect()
    ws.frames()
    subscribe(h, broker, ws)
    publish(store, "chat.1", 0)  # offset 1, never delivered
    p2, pub2 = publish(store, "chat.1", 1)
    deliver(relay, "chat.1", p2, pub2.payload)
    store.down = True  # the fill's read fails
    broker.finish()
    assert ws.frames() == [{"type": "UNSUBSCRIBED", "topic": "chat.1", "reason": "insufficient_state",
                            "resubscribe": True}]
    assert "chat.1" not in ws.topics
    p3, pub3 = publish(store, "chat.1", 2)
    deliver(relay, "chat.1", p3, pub3.payload)
    assert ws.frames() == []
    assert relay.tracker.metrics.gaps_detected == 1


def test_after_a_lost_broker_connection_what_was_missed_is_caught_up_from_the_history(harness):
    h, broker, store, relay = relay_harness(harness)
    ws = h.connect()
    ws.frames()
    subscribe(h, broker, ws)
    p1, pub1 = publish(store, "chat.1", 0)
    deliver(relay, "chat.1", p1, pub1.payload)
    relay.connection(False)
    publish(store, "chat.1", 1)  # offsets 2 and 3, published while the connection was down
    publish(store, "chat.1", 2)
    relay.connection(True)  # back and subscribed again: the catch-up read starts
    p4, pub4 = publish(store, "chat.1", 3)
    deliver(relay, "chat.1", p4, pub4.payload)  # the first delivery after it: held
    assert offsets(ws.frames()) == [1]
    broker.finish()
    assert offsets(ws.frames()) == [2, 3, 4]
    assert "chat.1" in ws.topics
    p5, pub5 = publish(store, "chat.1", 4)
    deliver(relay, "chat.1", p5, pub5.payload)
    assert offsets(ws.frames()) == [5]


def test_a_catch_up_that_fails_drops_subscribers_with_insufficient_state(harness):
    h, broker, store, relay = relay_harness(harness)
    ws = h.connect()
    ws.frames()
    subscribe(h, broker, ws)
    relay.connection(False)
    assert ws.frames() == []
    relay.connection(True)
    store.down = True
    broker.finish()
    assert ws.frames() == [{"type": "UNSUBSCRIBED", "topic": "chat.1", "reason": "insufficient_state",
                            "resubscribe": True}]


def test_a_subscription_waiting_for_its_read_when_the_connection_is_lost_is_told_to_recover(harness):
    h, broker, store, relay = relay_harness(harness)
    ws = h.connect()
    ws.frames()
    assert h.send(ws, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 1}) == []
    broker.confirm()
    relay.connection(False)
    broker.finish()
    subscribed, dropped = ws.frames()
    assert subscribed["type"] == "SUBSCRIBED"
    assert (dropped["type"], dropped["reason"]) == ("UNSUBSCRIBED", "insufficient_state")


def test_storage_down_refuses_publish_subscribe_and_history_with_unavailable(harness):
    h, broker, store, relay = relay_harness(harness)
    ws = h.connect()
    ws.frames()
    store.down = True
    assert h.send(ws, {"type": "PUBLISH", "topic": "chat.1", "id": 5, "data": 1}) == []
    broker.finish()
    (refused,) = ws.frames()
    assert (refused["type"], refused["code"], refused["id"]) == ("ERROR", "UNAVAILABLE", 5)
    (refused,) = subscribe(h, broker, ws)
    assert (refused["code"], refused["id"]) == ("UNAVAILABLE", 1)
    assert "chat.1" not in ws.topics and "chat.1" not in broker.topics
    assert h.send(ws, {"type": "HISTORY", "topic": "chat.1", "id": 6}) == []
    broker.finish()
    assert ws.frames()[0]["code"] == "UNAVAILABLE"
    assert h.send(ws, {"type": "PUBLISH", "topic": "plain", "id": 7, "data": 1}) == [
        {"type": "PUBLISHED", "topic": "plain", "id": 7}]


def test_published_carries_the_position_once_the_store_answered(harness):
    h, broker, store, relay = relay_harness(harness)
    ws = h.connect()
    ws.frames()
    assert h.send(ws, {"type": "PUBLISH", "topic": "chat.1", "id": 5, "data": 1, "echo": True}) == []
    broker.finish()
    echo, published = ws.frames()
    assert (echo["type"], echo["offset"]) == ("MESSAGE", 1)
    assert (published["type"], published["offset"], published["id"]) == ("PUBLISHED", 1, 5)
    assert published["epoch"] == store.memory.position("chat.1").epoch


def test_publishes_made_while_a_batch_is_in_flight_go_in_the_next_batch_in_order(harness):
    h, broker, store, relay = relay_harness(harness)
    ws = h.connect()
    ws.frames()
    h.send(ws, {"type": "PUBLISH", "topic": "chat.1", "id": 0, "data": 0})
    for n in range(1, 4):  # the first batch has not answered yet
        h.send(ws, {"type": "PUBLISH", "topic": "chat.1", "id": n, "data": n})
    assert len(broker.jobs) == 1
    broker.finish()  # batch [0] answers; [1, 2, 3] leave together
    assert len(broker.jobs) == 1
    broker.finish()
    replies = ws.frames()
    assert [(r["id"], r["offset"]) for r in replies] == [(n, n + 1) for n in range(4)]
    assert [p.offset for p in store.memory.read("chat.1").publications] == [1, 2, 3, 4]


def deliver_last(relay: HistoryRelay, store: AsyncStore, topic: str) -> None:
    """The broker's delivery of the newest publication of topic."""
    page = store.memory.read(topic)
    publication = page.publications[-1]
    relay.deliver(topic, publication.payload, page.position.epoch, publication.offset)


def test_a_subscribed_publisher_gets_its_own_message_only_with_echo_as_without_a_broker(harness):
    h, broker, store, relay = relay_harness(harness)
    publisher, other = h.connect(), h.connect()
    publisher.frames(), other.frames()
    subscribe(h, broker, publisher)
    subscribe(h, broker, other)
    h.send(publisher, {"type": "PUBLISH", "topic": "chat.1", "id": 1, "data": "a"})
    broker.finish()
    assert [f["type"] for f in publisher.frames()] == ["PUBLISHED"]
    deliver_last(relay, store, "chat.1")
    assert offsets(other.frames()) == [1]
    assert publisher.frames() == []
    h.send(publisher, {"type": "PUBLISH", "topic": "chat.1", "id": 2, "data": "b", "echo": True})
    broker.finish()
    assert [(f["type"], f.get("offset")) for f in publisher.frames()] == [("MESSAGE", 2), ("PUBLISHED", 2)]
    deliver_last(relay, store, "chat.1")
    assert offsets(other.frames()) == [2]
    assert publisher.frames() == []


def test_sender_of_reads_the_publisher_from_the_end_of_the_payload():
    from uws_py.realtime.history import join_payload, sender_of

    tricky = {"text": 'a,"from":"x","offset":1', "from": "y"}
    head, tail = message_parts("t", tricky, "3f2a9c0d41b7e865")
    assert sender_of(join_payload(head, 7, tail)) == "3f2a9c0d41b7e865"
    head, tail = message_parts("t", tricky, None)
    assert sender_of(join_payload(head, 12, tail)) is None


def test_a_shard_lost_catches_up_and_breaks_only_its_own_topics(harness):
    """A Redis Cluster shard fails over: the broker names its topics (on_connection(False,
    topics)); the topics of the other shards keep their pending reads and are not read again."""
    h, broker, store, relay = relay_harness(harness)
    relay.connection(True)  # the broker's first connection
    ws = h.connect()
    ws.frames()
    subscribe(h, broker, ws)  # chat.1: on the failed shard
    p1, pub1 = publish(store, "chat.1", 0)
    deliver(relay, "chat.1", p1, pub1.payload)
    assert offsets(ws.frames()) == [1]
    assert h.send(ws, {"type": "SUBSCRIBE", "topic": "chat.2", "id": 2}) == []  # another shard's
    assert h.send(ws, {"type": "SUBSCRIBE", "topic": "chat.3", "id": 3}) == []  # the failed shard's
    broker.confirm()
    relay.connection(False, {"chat.1", "chat.3"})
    gaps = relay.tracker.metrics.gaps_detected
    relay.connection(False, {"chat.1"})  # told again before it is back: nothing new is lost
    publish(store, "chat.1", 1)  # offset 2, missed while the shard was down
    broker.finish()  # the reads of chat.2 and chat.3 answer
    frames = ws.frames()
    assert [(f["type"], f["topic"]) for f in frames] == [("SUBSCRIBED", "chat.2"), ("SUBSCRIBED", "chat.3"),
                                                         ("UNSUBSCRIBED", "chat.3")]
    assert frames[2]["reason"] == "insufficient_state"
    relay.connection(True)
    # Only chat.1 is read again (chat.2 has nothing tracked to lose, but was not lost either).
    assert len(broker.jobs) == 1
    broker.finish()
    assert offsets(ws.frames()) == [2]
    assert {"chat.1", "chat.2"} <= ws.topics and "chat.3" not in ws.topics
    p3, pub3 = publish(store, "chat.2", 0)
    deliver(relay, "chat.2", p3, pub3.payload)
    assert [(f["topic"], f["offset"]) for f in ws.frames()] == [("chat.2", 1)]
    relay.connection(True)  # back again without a loss in between: nothing to catch up
    assert broker.jobs == []
    assert gaps >= 1 and relay.tracker.metrics.gaps_detected == gaps + 1
