"""uws_py.batching: Batching options and the per-client Batcher, driven by a fake clock."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from uws_py.batching import Batcher, Batching


class FakeClock:
    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.now


def message(n: int) -> dict[str, Any]:
    return {"type": "MESSAGE", "n": n}


def batcher(max_size: int = 3, clock: Any = None) -> Batcher:
    return Batcher(Batching(max_size=max_size, max_wait_ms=50), clock or FakeClock())


def unwrap(frames: list[Any]) -> list[Any]:
    """The messages inside frames, in the order the client reads them."""
    out: list[Any] = []
    for frame in frames:
        if frame.get("type") == "BATCH":
            assert len(frame["messages"]) >= 2
            out.extend(frame["messages"])
        else:
            out.append(frame)
    return out


def test_defaults() -> None:
    options = Batching()
    assert (options.max_size, options.max_wait_ms) == (10, 50.0)


@pytest.mark.parametrize("max_size, max_wait_ms", [(0, 50), (-1, 50), (10, 0), (10, -5)])
def test_batching_validation(max_size: int, max_wait_ms: float) -> None:
    with pytest.raises(ValueError, match="max_size"):
        Batching(max_size=max_size, max_wait_ms=max_wait_ms)


def test_batching_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Batching().max_size = 3  # type: ignore[misc]


def test_timer_requested_only_when_the_queue_becomes_non_empty() -> None:
    b = batcher(max_size=5)
    assert b.add(message(1)) == ([], True)
    assert b.add(message(2)) == ([], False)
    assert b.add(message(3)) == ([], False)
    b.flush()
    assert b.add(message(4)) == ([], True)


def test_size_flush_at_max_size() -> None:
    clock = FakeClock(1234)
    b = batcher(max_size=3, clock=clock)
    b.add(message(1))
    b.add(message(2))
    frames, start_timer = b.add(message(3))
    assert start_timer is False
    assert frames == [{"type": "BATCH", "timestamp": 1234, "messages": [message(1), message(2), message(3)]}]
    assert b.queue == []
    assert b.add(message(4)) == ([], True)


def test_max_size_one_sends_every_message_alone_without_a_timer() -> None:
    b = batcher(max_size=1)
    for n in range(3):
        assert b.add(message(n)) == ([message(n)], False)


def test_lone_message_is_not_wrapped() -> None:
    clock = FakeClock()
    b = batcher(clock=clock)
    b.add(message(1))
    assert b.flush() == [message(1)]
    assert clock.calls == 0


def test_two_or_more_are_wrapped_with_the_clock_timestamp() -> None:
    clock = FakeClock(42)
    b = batcher(max_size=10, clock=clock)
    b.add(message(1))
    b.add(message(2))
    clock.now = 99
    assert b.flush() == [{"type": "BATCH", "timestamp": 99, "messages": [message(1), message(2)]}]
    assert clock.calls == 1


def test_flush_of_an_empty_queue_sends_nothing() -> None:
    b = batcher()
    assert b.flush() == []
    b.add(message(1))
    b.flush()
    assert b.flush() == []


def test_priority_on_an_empty_queue_leaves_at_once() -> None:
    b = batcher()
    assert b.add(message(1), priority=True) == ([message(1)], False)
    assert b.queue == []


def test_priority_flushes_a_lone_queued_message_first() -> None:
    b = batcher()
    b.add(message(1))
    assert b.add(message(2), priority=True) == ([message(1), message(2)], False)
    assert b.queue == []


def test_priority_flushes_the_queue_as_a_batch_then_itself() -> None:
    b = batcher(max_size=10, clock=FakeClock(7))
    b.add(message(1))
    b.add(message(2))
    frames, start_timer = b.add({"type": "ERROR", "code": "UNAUTHORIZED"}, priority=True)
    assert start_timer is False
    assert frames == [
        {"type": "BATCH", "timestamp": 7, "messages": [message(1), message(2)]},
        {"type": "ERROR", "code": "UNAUTHORIZED"},
    ]


def test_the_returned_batch_does_not_alias_the_queue() -> None:
    b = batcher(max_size=10)
    b.add(message(1))
    b.add(message(2))
    (frame,) = b.flush()
    b.add(message(3))
    assert frame["messages"] == [message(1), message(2)]


@pytest.mark.parametrize("seed", range(200))
def test_order_preserved_across_random_sequences(seed: int) -> None:
    rng = random.Random(seed)
    max_size = rng.randint(1, 8)
    b = Batcher(Batching(max_size=max_size, max_wait_ms=10), FakeClock())
    sent: list[Any] = []
    added = 0
    timer_since_empty = False
    for _ in range(rng.randint(0, 120)):
        action = rng.random()
        if action < 0.1:
            sent.extend(b.flush())  # the timer fired
        else:
            frames, start_timer = b.add(message(added), priority=action < 0.25)
            added += 1
            sent.extend(frames)
            if start_timer:
                assert len(b.queue) == 1
                timer_since_empty = True
            for frame in frames:
                if frame.get("type") == "BATCH":
                    assert 2 <= len(frame["messages"]) <= max_size
        assert len(b.queue) < max_size
        if not b.queue:
            timer_since_empty = False
        # Whatever waits in the queue has a timer that will flush it.
        assert timer_since_empty == bool(b.queue)
    sent.extend(b.flush())
    assert [m["n"] for m in unwrap(sent)] == list(range(added))
