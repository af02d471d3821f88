"""uws_py.realtime.history: options by pattern, the recovery rule, the in-memory store (with a
fake clock) and the delivery tracker."""

from __future__ import annotations

import itertools

import orjson
import pytest

from uws_py.realtime.history import (
    PUBLICATION_OVERHEAD,
    Continuity,
    DeliveryTracker,
    HistoryMetrics,
    HistoryOptions,
    HistoryPolicy,
    InvalidHistoryRequest,
    MemoryHistory,
    NoHistory,
    Position,
    Publication,
    RecoveryOutcome,
    UnrecoverablePosition,
    decide_recovery,
    join_payload,
    message_parts,
    parse_limit,
    parse_since,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def numbered_epochs():
    counter = itertools.count(1)
    return lambda: f"epoch{next(counter)}"


def make_store(*options: HistoryOptions, cap: int = 10**9, clock=None):
    policy = HistoryPolicy(options or (HistoryOptions("chat.*", size=100, ttl=300),))
    return MemoryHistory(policy, memory_cap=cap, clock=clock or FakeClock(), epochs=numbered_epochs())


def publish(store: MemoryHistory, topic: str, data, sender="c1"):
    return store.publish(topic, *message_parts(topic, data, sender))


# -- options by pattern ---------------------------------------------------------------------------


def test_first_matching_pattern_wins_and_plain_topics_have_none():
    first = HistoryOptions("chat.vip.*", size=5, ttl=10)
    second = HistoryOptions("chat.*", size=50, ttl=60)
    policy = HistoryPolicy([first, second])
    assert policy.options_for("chat.vip.1") is first
    assert policy.options_for("chat.2") is second
    assert policy.options_for("news") is None
    assert policy.options_for("chat.vip.1") is first  # cached answer is the same
    assert HistoryPolicy().options_for("chat.1") is None
    assert not HistoryPolicy() and bool(policy)


def test_pattern_added_later_is_seen_by_cached_topics():
    policy = HistoryPolicy()
    assert policy.options_for("chat.1") is None
    option = HistoryOptions("chat.*")
    policy.add(option)
    assert policy.options_for("chat.1") is option


def test_patterns_are_case_sensitive_fnmatch():
    policy = HistoryPolicy([HistoryOptions("room.[ab]?")])
    assert policy.options_for("room.a1") is not None
    assert policy.options_for("room.c1") is None
    assert policy.options_for("ROOM.a1") is None


@pytest.mark.parametrize("kwargs", [
    {"pattern": ""}, {"pattern": "a", "size": 0}, {"pattern": "a", "size": True}, {"pattern": "a", "size": 1.5},
    {"pattern": "a", "ttl": 0}, {"pattern": "a", "ttl": -1}, {"pattern": "a", "ttl": "5"},
])
def test_bad_options_are_refused(kwargs):
    with pytest.raises(ValueError):
        HistoryOptions(**kwargs)


# -- payloads -----------------------------------------------------------------------------------


def test_message_parts_make_the_live_message_with_its_offset():
    head, tail = message_parts("chat.1", {"text": "hi", "n": [1, 2]}, "abc")
    payload = join_payload(head, 42, tail)
    assert orjson.loads(payload) == {
        "type": "MESSAGE", "topic": "chat.1", "data": {"text": "hi", "n": [1, 2]}, "from": "abc", "offset": 42,
    }
    assert Publication(42, payload).to_wire() == {"data": {"text": "hi", "n": [1, 2]}, "from": "abc", "offset": 42}
    server_head, server_tail = message_parts("t", None, None)
    assert Publication(1, join_payload(server_head, 1, server_tail)).to_wire() == {"data": None, "from": None, "offset": 1}


# -- request validation -------------------------------------------------------------------------


def test_parse_since_accepts_a_position():
    assert parse_since({"epoch": "ab12", "offset": 0}) == Position("ab12", 0)
    assert parse_since({"epoch": "", "offset": 7}) == Position("", 7)


@pytest.mark.parametrize("value", [
    None, [], "ab:1", 5, {"offset": 1}, {"epoch": "a"}, {"epoch": 1, "offset": 1}, {"epoch": "a", "offset": -1},
    {"epoch": "a", "offset": 1.0}, {"epoch": "a", "offset": True}, {"epoch": "a", "offset": "1"},
    {"epoch": None, "offset": 1},
])
def test_parse_since_refuses_wrong_shapes(value):
    with pytest.raises(InvalidHistoryRequest) as info:
        parse_since(value)
    assert info.value.code == "INVALID_MESSAGE"


def test_parse_limit():
    assert parse_limit(None, 1000) == 1000
    assert parse_limit(0, 1000) == 0
    assert parse_limit(1000, 1000) == 1000
    for bad in (-1, 1001, 10**12, True, 2.0, "5", [5]):
        with pytest.raises(InvalidHistoryRequest):
            parse_limit(bad, 1000)


# -- the recovery rule ---------------------------------------------------------------------------


def pubs(*offsets: int) -> list[Publication]:
    return [Publication(n, b"{}") for n in offsets]


def test_recovery_returns_exactly_the_missed_in_order():
    recovery = decide_recovery(Position("e", 5), Position("e", 2), pubs(3, 4, 5), limit=10)
    assert recovery.recovered and recovery.outcome is RecoveryOutcome.RECOVERED
    assert [p.offset for p in recovery.publications] == [3, 4, 5]
    assert recovery.position == Position("e", 5)


def test_recovery_of_nothing_missed_is_recovered():
    recovery = decide_recovery(Position("e", 5), Position("e", 5), (), limit=10)
    assert recovery.recovered and recovery.publications == ()


@pytest.mark.parametrize("current, since, found, limit, outcome", [
    (Position("e", 5), Position("other", 2), pubs(3, 4, 5), 10, RecoveryOutcome.EPOCH_CHANGED),
    (Position("e", 5), Position("e", 6), (), 10, RecoveryOutcome.FUTURE_OFFSET),
    (Position("e", 50), Position("e", 2), pubs(*range(3, 51)), 10, RecoveryOutcome.TOO_MANY),
    (Position("e", 5), Position("e", 2), pubs(4, 5), 10, RecoveryOutcome.GAP),  # oldest trimmed
    (Position("e", 5), Position("e", 2), pubs(3, 5), 10, RecoveryOutcome.GAP),  # hole in the middle
    (Position("e", 5), Position("e", 2), pubs(3, 4), 10, RecoveryOutcome.GAP),  # newest missing
    (Position("e", 5), Position("e", 2), (), 10, RecoveryOutcome.GAP),  # stream lost, position kept
    (Position("e", 5), Position("e", 2), pubs(101, 102), 10, RecoveryOutcome.GAP),  # new stream after loss
])
def test_recovery_fails_honestly(current, since, found, limit, outcome):
    recovery = decide_recovery(current, since, found, limit)
    assert not recovery.recovered
    assert recovery.publications == ()
    assert recovery.outcome is outcome
    assert recovery.position == current


def test_recovery_limit_is_inclusive():
    assert decide_recovery(Position("e", 12), Position("e", 2), pubs(*range(3, 13)), limit=10).recovered
    assert not decide_recovery(Position("e", 13), Position("e", 2), pubs(*range(3, 14)), limit=10).recovered


# -- the memory store ------------------------------------------------------------------------------


def test_offsets_count_per_topic_within_an_epoch():
    store = make_store()
    positions = [publish(store, "chat.1", n)[0] for n in range(3)]
    assert positions == [Position("epoch1", 1), Position("epoch1", 2), Position("epoch1", 3)]
    assert publish(store, "chat.2", "x")[0] == Position("epoch2", 1)
    position, publication = publish(store, "chat.1", "y")
    assert position == Position("epoch1", 4)
    assert orjson.loads(publication.payload)["offset"] == 4


def test_position_exists_before_any_publish_and_the_first_publish_keeps_it():
    store = make_store()
    assert store.position("chat.1") == Position("epoch1", 0)
    assert publish(store, "chat.1", 1)[0] == Position("epoch1", 1)


def test_plain_topics_raise_no_history():
    store = make_store()
    for call in (lambda: publish(store, "news", 1), lambda: store.position("news"),
                 lambda: store.read("news"), lambda: store.recover("news", Position("e", 0))):
        with pytest.raises(NoHistory) as info:
            call()
        assert info.value.code == "NO_HISTORY"
    assert store.topics == 0


def test_size_bounds_the_kept_publications():
    store = make_store(HistoryOptions("chat.*", size=3, ttl=300))
    for n in range(10):
        publish(store, "chat.1", n)
    page = store.read("chat.1")
    assert [p.offset for p in page.publications] == [8, 9, 10]
    assert [p.to_wire()["data"] for p in page.publications] == [7, 8, 9]
    assert page.position == Position("epoch1", 10)
    recovery = store.recover("chat.1", Position("epoch1", 6))
    assert not recovery.recovered and recovery.outcome is RecoveryOutcome.GAP
    assert store.recover("chat.1", Position("epoch1", 7)).recovered


def test_ttl_drops_publications_then_the_position():
    clock = FakeClock()
    store = make_store(HistoryOptions("chat.*", size=100, ttl=10), clock=clock)
    publish(store, "chat.1", "a")
    clock.now += 9.9
    publish(store, "chat.1", "b")  # ttl counts from the last publish
    clock.now += 9.9
    assert [p.offset for p in store.read("chat.1").publications] == [1, 2]
    clock.now += 0.2  # 10.1 s since the last publish: publications gone, position kept
    page = store.read("chat.1")
    assert page.publications == () and page.position == Position("epoch1", 2)
    assert store.recover("chat.1", Position("epoch1", 2)).recovered  # missed nothing
    assert store.recover("chat.1", Position("epoch1", 1)).outcome is RecoveryOutcome.GAP
    assert store.memory_bytes == 0
    clock.now += 10.0  # 2 x ttl since the last publish: the position is gone too
    assert store.position("chat.1") == Position("epoch2", 0)
    assert store.recover("chat.1", Position("epoch1", 2)).outcome is RecoveryOutcome.EPOCH_CHANGED


def test_sweep_frees_idle_topics():
    clock = FakeClock()
    store = make_store(HistoryOptions("a.*", ttl=10), HistoryOptions("b.*", ttl=100), clock=clock)
    publish(store, "a.1", "x" * 100)
    publish(store, "b.1", "y" * 100)
    before = store.memory_bytes
    clock.now += 15
    assert store.sweep() == 0  # a.1 lost its publications, kept its position
    assert store.topics == 2 and 0 < store.memory_bytes < before
    clock.now += 10
    assert store.sweep() == 1
    assert store.topics == 1
    clock.now += 200
    assert store.sweep() == 1
    assert store.topics == 0 and store.memory_bytes == 0


def test_memory_bytes_follow_what_is_kept():
    store = make_store(HistoryOptions("chat.*", size=2, ttl=300))
    _, first = publish(store, "chat.1", "a")
    _, second = publish(store, "chat.1", "bb")
    assert store.memory_bytes == len(first.payload) + len(second.payload) + 2 * PUBLICATION_OVERHEAD
    _, third = publish(store, "chat.1", "ccc")
    assert store.memory_bytes == len(second.payload) + len(third.payload) + 2 * PUBLICATION_OVERHEAD


def test_cap_evicts_least_recently_published_topics_and_their_epoch_changes():
    probe = make_store()
    one = len(publish(probe, "chat.x", "p" * 200)[1].payload) + PUBLICATION_OVERHEAD
    store = make_store(cap=one * 4 + 10)
    for topic in ("chat.a", "chat.b", "chat.c"):
        publish(store, topic, "p" * 200)
    publish(store, "chat.a", "p" * 200)  # a is now the most recent; b is the least
    assert store.metrics.topics_evicted == 0
    publish(store, "chat.d", "p" * 200)  # 5 publications > cap: b goes
    assert store.metrics.topics_evicted == 1
    assert store.memory_bytes <= store.memory_cap
    assert store.position("chat.a") == Position("epoch1", 2)
    assert store.position("chat.c") == Position("epoch3", 1)
    assert store.recover("chat.b", Position("epoch2", 0)).outcome is RecoveryOutcome.EPOCH_CHANGED
    assert publish(store, "chat.b", 1)[0].epoch not in ("epoch1", "epoch2", "epoch3", "epoch4")


def test_cap_trims_a_single_topic_without_losing_its_position():
    probe = make_store()
    one = len(publish(probe, "chat.x", "p" * 200)[1].payload) + PUBLICATION_OVERHEAD
    store = make_store(cap=one * 3 + 10)
    for _ in range(5):
        position, _ = publish(store, "chat.a", "p" * 200)
    assert position == Position("epoch1", 5)
    assert [p.offset for p in store.read("chat.a").publications] == [3, 4, 5]
    assert store.metrics.publications_trimmed_by_cap == 2 and store.metrics.topics_evicted == 0
    assert store.memory_bytes <= store.memory_cap


def test_recover_counts_outcomes_and_publications():
    store = make_store()
    for n in range(5):
        publish(store, "chat.1", n)
    recovery = store.recover("chat.1", Position("epoch1", 2))
    assert recovery.recovered
    assert [p.to_wire() for p in recovery.publications] == [
        {"data": 2, "from": "c1", "offset": 3}, {"data": 3, "from": "c1", "offset": 4},
        {"data": 4, "from": "c1", "offset": 5},
    ]
    store.recover("chat.1", Position("nope", 2))
    store.recover("chat.1", Position("epoch1", 9))
    store.recover("chat.1", Position("epoch1", 0), limit=2)
    assert store.metrics.recoveries == {
        "recovered": 1, "epoch_changed": 1, "future_offset": 1, "too_many": 1, "gap": 0,
    }
    assert store.metrics.publications_recovered == 3


def test_read_since_limit_reverse():
    store = make_store()
    for n in range(10):
        publish(store, "chat.1", n)

    def offsets(**kwargs):
        return [p.offset for p in store.read("chat.1", **kwargs).publications]

    assert offsets() == list(range(1, 11))
    assert offsets(limit=3) == [1, 2, 3]
    assert offsets(since=Position("epoch1", 3), limit=3) == [4, 5, 6]
    assert offsets(since=Position("epoch1", 10)) == []
    assert offsets(reverse=True, limit=3) == [10, 9, 8]
    assert offsets(since=Position("epoch1", 8), reverse=True, limit=3) == [7, 6, 5]
    assert offsets(since=Position("epoch1", 2), reverse=True) == [1]
    assert offsets(limit=0) == []
    assert store.read("chat.1", limit=0).position == Position("epoch1", 10)


@pytest.mark.parametrize("since", [Position("other", 3), Position("epoch1", 11)])
def test_read_from_an_unknown_position_is_unrecoverable(since):
    store = make_store()
    for n in range(10):
        publish(store, "chat.1", n)
    with pytest.raises(UnrecoverablePosition) as info:
        store.read("chat.1", since=since)
    assert info.value.code == "UNRECOVERABLE_POSITION"
    assert info.value.position == Position("epoch1", 10)


def test_metrics_object_is_shared_when_given():
    metrics = HistoryMetrics()
    store = MemoryHistory(HistoryPolicy([HistoryOptions("*")]), metrics=metrics)
    tracker = DeliveryTracker(metrics)
    store.recover("t", Position("x", 0))
    tracker.track("t", Position("e", 1))
    tracker.observe("t", "e", 5)
    assert metrics.recoveries["epoch_changed"] == 1 and metrics.gaps_detected == 1


# -- delivery tracker ------------------------------------------------------------------------------


def test_tracker_classifies_what_the_broker_hands_over():
    tracker = DeliveryTracker()
    assert tracker.observe("t", "e", 1) is Continuity.UNTRACKED
    tracker.track("t", Position("e", 4))
    assert tracker.observe("t", "e", 5) is Continuity.NEXT
    assert tracker.last("t") == Position("e", 5)
    assert tracker.observe("t", "e", 5) is Continuity.DUPLICATE
    assert tracker.observe("t", "e", 3) is Continuity.DUPLICATE
    assert tracker.observe("t", "e", 8) is Continuity.GAP
    assert tracker.last("t") == Position("e", 5)  # left for the owner to fill
    assert tracker.observe("t", "f", 1) is Continuity.EPOCH_CHANGED
    assert tracker.metrics.gaps_detected == 2
    tracker.track("u", Position("e", 0))
    assert sorted(tracker.connection_lost()) == ["t", "u"]
    assert tracker.metrics.gaps_detected == 4
    tracker.forget("t")
    assert tracker.observe("t", "e", 6) is Continuity.UNTRACKED
