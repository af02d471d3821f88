"""The presence model without sockets (issue 15): options and patterns, the in-memory store,
the diff coalescer's one-diff-per-interval rule, and the service's handling of subscription
events, requests and remote diffs over a fake loop."""

from __future__ import annotations

import orjson
import pytest

from uws_py.realtime.dispatch import REPLIED
from uws_py.realtime.presence import (
    DIFF_PREFIX, DiffCoalescer, MemoryPresence, PresenceEntry, PresenceOptions, encode_entry, stats_of,
)
from uws_py.realtime.presence_service import PresenceService
from uws_py.realtime.protocol import ProtocolError
from uws_py.realtime.pubsub import PubSub
from uws_py.metrics import Metrics


def entry(n: int, user: str | None = None) -> PresenceEntry:
    return PresenceEntry(f"c{n}", user, {"n": n})


def test_options_refuse_bad_values():
    with pytest.raises(ValueError, match="non-empty"):
        PresenceOptions("")
    with pytest.raises(ValueError, match="boolean"):
        PresenceOptions("a.*", join_leave=1)  # type: ignore[arg-type]


def test_memory_store_joins_leaves_and_counts_distinct_users():
    store = MemoryPresence()
    store.join("t", entry(1, "alice"))
    store.join("t", entry(2, "alice"))
    store.join("t", entry(3, None))
    store.join("u", entry(4, "bob"))
    assert store.stats("t") == {"numClients": 3, "numUsers": 1}
    assert store.size == 4
    assert store.leave("t", "c2").client_id == "c2"
    assert store.leave("t", "c2") is None
    assert store.leave("nope", "c1") is None
    assert store.entries("t") == [{"clientId": "c1", "userId": "alice", "info": {"n": 1}},
                                  {"clientId": "c3", "userId": None, "info": {"n": 3}}]
    store.leave("u", "c4")
    assert "u" not in store.topics  # an empty topic leaves nothing behind
    assert stats_of(store.entries("t")) == store.stats("t")


def test_an_info_that_cannot_be_encoded_becomes_null():
    assert orjson.loads(encode_entry("c", "u", {1, 2})) == {"clientId": "c", "userId": "u", "info": None}


def test_coalescer_arms_once_and_merges_a_storm_into_one_diff():
    coalescer = DiffCoalescer(1.0)
    arms = [coalescer.local("t", "join", entry(n).to_wire()) for n in range(500)]
    assert arms == [True] + [False] * 499
    diffs, again = coalescer.flush()
    assert again is True and len(diffs) == 1
    assert len(diffs[0].delivery["joins"]) == 500 and diffs[0].delivery["leaves"] == []
    assert diffs[0].broadcast == diffs[0].delivery
    # The timer re-armed after a flush: an event now does not arm another one.
    assert coalescer.local("t", "leave", {"clientId": "c1", "userId": None}) is False
    diffs, again = coalescer.flush()
    assert [d.delivery["leaves"] for d in diffs] == [[{"clientId": "c1", "userId": None}]]
    # A flush with nothing pending stops the timer: the next event arms it again.
    assert coalescer.flush() == ([], False)
    assert coalescer.local("t", "join", entry(9).to_wire()) is True


def test_coalescer_join_then_leave_is_one_leave_and_leave_then_join_is_one_join():
    coalescer = DiffCoalescer(1.0)
    coalescer.local("t", "join", entry(1).to_wire())
    coalescer.local("t", "leave", {"clientId": "c1", "userId": None})
    coalescer.local("t", "leave", {"clientId": "c2", "userId": None})
    coalescer.local("t", "join", entry(2).to_wire())
    (diff,), _ = coalescer.flush()
    assert diff.delivery["joins"] == [entry(2).to_wire()]
    assert diff.delivery["leaves"] == [{"clientId": "c1", "userId": None}]


def test_coalescer_remote_diffs_go_to_local_delivery_only():
    coalescer = DiffCoalescer(1.0)
    assert coalescer.remote("t", {"joins": [entry(1).to_wire()], "leaves": [{"clientId": "c7"}]}) is True
    assert coalescer.remote("t", "garbage") is False
    assert coalescer.remote("t", {"joins": 3, "leaves": []}) is False
    coalescer.remote("t", {"joins": [{"no": "id"}, 5], "leaves": []})
    coalescer.local("t", "join", entry(2).to_wire())
    (diff,), _ = coalescer.flush()
    assert [e["clientId"] for e in diff.delivery["joins"]] == ["c1", "c2"]
    assert diff.delivery["leaves"] == [{"clientId": "c7", "userId": None}]
    assert diff.broadcast == {"type": "PRESENCE_DIFF", "topic": "t", "joins": [entry(2).to_wire()], "leaves": []}


def test_coalescer_keeps_topics_apart():
    coalescer = DiffCoalescer(1.0)
    coalescer.local("a", "join", entry(1).to_wire())
    coalescer.local("b", "join", entry(2).to_wire())
    diffs, _ = coalescer.flush()
    assert {d.topic: [e["clientId"] for e in d.delivery["joins"]] for d in diffs} == {"a": ["c1"], "b": ["c2"]}


# -- the service over a fake loop ----------------------------------------------------------------


class FakeLoop:
    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, object]] = []
        self.published: list[tuple[float, str, dict]] = []

    def set_timeout(self, seconds, fn):
        self.timers.append((self.now + seconds, fn))
        return len(self.timers)

    def publish(self, topic, payload, opcode):
        self.published.append((self.now, topic, orjson.loads(payload)))
        return True

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            due = sorted((t for t in self.timers if t[0] <= end), key=lambda t: t[0])
            if not due:
                break
            when, fn = due[0]
            self.timers.remove((when, fn))
            self.now = when
            fn()
        self.now = end


class FakeClient:
    def __init__(self, n: int, user: str | None = "u", topics_allowed=None) -> None:
        self.id = f"c{n}"
        self.user_id = user
        self.claims = {"info": {"n": n}}
        self.topics_allowed = topics_allowed
        self.closed = False
        self.sent: list = []

    def send(self, message) -> None:
        self.sent.append(message)


def service(interval: float = 1.0) -> tuple[PresenceService, FakeLoop]:
    loop = FakeLoop()
    pubsub = PubSub(loop.publish)
    metrics = Metrics(lambda: {})
    presence = PresenceService(pubsub, loop.publish, loop.set_timeout, metrics, 30.0, interval)
    presence.add(PresenceOptions("room.*", join_leave=True))
    presence.add(PresenceOptions("quiet.*"))
    return presence, loop


def test_service_sends_at_most_one_diff_per_topic_per_interval():
    presence, loop = service(1.0)
    for n in range(300):
        presence.subscription(FakeClient(n), "room.1", True)
        loop.advance(0.01)  # joins keep arriving over 3 s
    for n in range(0, 300, 2):
        presence.subscription(FakeClient(n), "room.1", False)
        loop.advance(0.005)
    loop.advance(3.0)
    times = [when for when, topic, _ in loop.published if topic == "room.1"]
    assert len(times) >= 3
    assert all(b - a >= 1.0 - 1e-9 for a, b in zip(times, times[1:])), times
    joined = set()
    for _, _, diff in loop.published:
        joined |= {e["clientId"] for e in diff["joins"]}
        joined -= {e["clientId"] for e in diff["leaves"]}
    assert joined == {f"c{n}" for n in range(1, 300, 2)}
    assert presence.counters.diffs_sent == len(times)


def test_service_tracks_topics_without_join_leave_silently():
    presence, loop = service()
    presence.subscription(FakeClient(1), "quiet.1", True)
    presence.subscription(FakeClient(2), "elsewhere", True)
    loop.advance(5.0)
    assert loop.published == []
    assert presence.local.entries("quiet.1") == [{"clientId": "c1", "userId": "u", "info": {"n": 1}}]
    assert "elsewhere" not in presence.local.topics


def test_service_answers_requests_and_refuses_bad_ones():
    presence, _ = service()
    client = FakeClient(1, topics_allowed=["room.*", "plain"])
    presence.subscription(client, "room.1", True)
    reply = presence.handle_presence(client, {"type": "PRESENCE", "topic": "room.1"}, None)
    assert reply == {"type": "PRESENCE_RESULT", "topic": "room.1",
                     "clients": [{"clientId": "c1", "userId": "u", "info": {"n": 1}}]}
    assert presence.handle_stats(client, {"type": "PRESENCE_STATS", "topic": "room.1"}, None) == {
        "type": "PRESENCE_STATS_RESULT", "topic": "room.1", "numClients": 1, "numUsers": 1}
    with pytest.raises(ProtocolError) as refused:
        presence.handle_presence(client, {"type": "PRESENCE", "topic": "plain"}, None)
    assert refused.value.code == "NO_PRESENCE"
    with pytest.raises(ProtocolError) as refused:
        presence.handle_stats(client, {"type": "PRESENCE_STATS", "topic": "secret"}, None)
    assert refused.value.code == "FORBIDDEN"
    with pytest.raises(ProtocolError) as refused:
        presence.handle_presence(client, {"type": "PRESENCE"}, None)
    assert refused.value.code == "INVALID_MESSAGE"


def test_service_replies_later_when_the_store_answers_later():
    presence, _ = service()
    jobs = []

    class Broker:
        def run(self, job, done):
            jobs.append((job, done))

    presence.use_redis(Broker(), store=object())  # type: ignore[arg-type]
    client = FakeClient(1)
    assert presence.handle_presence(client, {"type": "PRESENCE", "topic": "room.1", "id": 4}, None) is REPLIED
    assert len(jobs) == 1  # the read, nothing else: no client of this worker joined
    jobs[0][1]([{"clientId": "c9", "userId": None, "info": None}])
    assert client.sent == [{"type": "PRESENCE_RESULT", "topic": "room.1", "id": 4,
                            "clients": [{"clientId": "c9", "userId": None, "info": None}]}]
    jobs.clear()
    presence.handle_stats(client, {"type": "PRESENCE_STATS", "topic": "room.1", "id": 5}, None)
    from uws_py.realtime.presence import PresenceUnavailable
    jobs[-1][1](PresenceUnavailable("down"))
    assert client.sent[-1] == {"type": "ERROR", "code": "UNAVAILABLE", "message": "down", "id": 5}


def test_remote_diffs_join_the_next_local_diff():
    presence, loop = service(1.0)
    assert presence.remote_diff("room.1", b'{"type":"MESSAGE"}') is False
    assert presence.remote_diff("room.1", DIFF_PREFIX + b"not json") is True
    remote = orjson.dumps({"type": "PRESENCE_DIFF", "topic": "room.1", "joins": [entry(5).to_wire()], "leaves": []})
    for _ in range(10):
        assert presence.remote_diff("room.1", remote) is True
    presence.subscription(FakeClient(1), "room.1", True)
    loop.advance(1.0)
    assert len(loop.published) == 1
    assert sorted(e["clientId"] for e in loop.published[0][2]["joins"]) == ["c1", "c5"]
