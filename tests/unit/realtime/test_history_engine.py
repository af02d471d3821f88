"""History topics in one process on the fake loop: the sweep timer, and SUBSCRIBE/PUBLISH
through the memory store (atomic: no relay, replies at once, inside a BATCH too)."""

from __future__ import annotations

from uws_py.realtime.history import HistoryOptions
from uws_py.realtime.server import HISTORY_SWEEP_INTERVAL


def test_the_first_pattern_arms_the_sweep_which_drops_expired_publications(harness):
    h = harness(rate_limit=None)
    assert h.loop.timers == {}
    clock = [0.0]
    h.engine.history._clock = lambda: clock[0]
    h.engine.add_history(HistoryOptions("chat.*", size=10, ttl=1.0))
    h.engine.add_history(HistoryOptions("feed.*"))
    assert [seconds for seconds, _ in h.loop.timers.values()] == [HISTORY_SWEEP_INTERVAL]
    ws = h.connect()
    ws.frames()
    h.send(ws, {"type": "PUBLISH", "topic": "chat.1", "data": 1})
    assert h.engine.history.memory_bytes > 0
    clock[0] = 5.0  # past the ttl (1 s) and past twice it: the topic's state goes
    h.loop.fire()
    assert h.engine.history.memory_bytes == 0 and h.engine.history.topics == 0
    assert len(h.loop.timers) == 1  # re-armed


def test_subscribe_and_publish_in_a_batch_answer_with_positions(harness):
    h = harness(rate_limit=None)
    h.engine.add_history(HistoryOptions("chat.*"))
    ws = h.connect()
    ws.frames()
    echo, batch = h.send(ws, {"type": "BATCH", "messages": [
        {"type": "SUBSCRIBE", "topic": "chat.1", "id": 1},
        {"type": "PUBLISH", "topic": "chat.1", "id": 2, "data": "x", "echo": True},
    ]})
    assert (echo["type"], echo["offset"]) == ("MESSAGE", 1)  # the echo leaves at once, before the BATCH
    subscribed, published = batch["messages"]
    assert (subscribed["type"], subscribed["offset"]) == ("SUBSCRIBED", 0)
    assert (published["type"], published["offset"], published["epoch"]) == ("PUBLISHED", 1, subscribed["epoch"])
