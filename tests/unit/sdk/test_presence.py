"""Presence in the client SDK without a network: PRESENCE_RESULT, PRESENCE_STATS_RESULT and
PRESENCE_DIFF read into typed values, a subscription passing diffs to on_presence, and the
close code a Decision carries to the application."""

from __future__ import annotations

import asyncio
from typing import Any

from uws_py.sdk import Action, PresenceDiff, PresenceEntry, PresenceStats, Subscription, decide_close
from uws_py.sdk.presence import parse_diff, parse_entries, parse_stats

DIFF = {"type": "PRESENCE_DIFF", "topic": "room.1", "timestamp": 1700000001000,
        "joins": [{"clientId": "a1", "userId": "alice", "info": {"name": "Alice"}}],
        "leaves": [{"clientId": "b1", "userId": "bob"}]}


def test_entries_are_read_and_malformed_ones_skipped():
    raw = [{"clientId": "a1", "userId": "alice", "info": {"n": 1}}, {"clientId": "x", "userId": None, "info": None},
           {"userId": "no client id"}, "not an object", {"clientId": 5}, {"clientId": "y", "userId": 7}]
    assert parse_entries(raw) == [PresenceEntry("a1", "alice", {"n": 1}), PresenceEntry("x", None, None),
                                  PresenceEntry("y", None, None)]
    assert parse_entries(None) == [] and parse_entries({"clientId": "a"}) == []


def test_stats_and_diff_are_typed():
    assert parse_stats("room.1", {"numClients": 3, "numUsers": 2}) == PresenceStats("room.1", 3, 2)
    assert parse_stats("room.1", {"numClients": "3"}) == PresenceStats("room.1", 0, 0)
    assert parse_diff(DIFF) == PresenceDiff("room.1", 1700000001000, [PresenceEntry("a1", "alice", {"name": "Alice"})],
                                            [PresenceEntry("b1", "bob", None)])


def test_a_subscription_passes_diffs_to_on_presence_until_it_ends():
    async def scenario() -> None:
        diffs: list[PresenceDiff] = []

        async def on_presence(diff: PresenceDiff) -> None:
            await asyncio.sleep(0)
            diffs.append(diff)

        subscription = Subscription(None, "room.1", lambda p: None, on_presence=on_presence)
        # Before SUBSCRIBED (a diff may overtake it): delivered, not held.
        assert await subscription.on_presence_diff(DIFF) == parse_diff(DIFF)
        assert diffs == [parse_diff(DIFF)] and subscription.stats.presence_diffs == 1
        subscription.ended()
        assert await subscription.on_presence_diff(DIFF) is None
        assert len(diffs) == 1

    asyncio.run(scenario())


def test_a_raising_on_presence_is_logged_and_the_subscription_goes_on(caplog):
    def broken(diff: Any) -> None:
        raise RuntimeError("app bug")

    subscription = Subscription(None, "room.1", lambda p: None, on_presence=broken)
    assert asyncio.run(subscription.on_presence_diff(DIFF)) is not None
    assert "on_presence for 'room.1' raised" in caplog.text


def test_decisions_carry_the_close_frame():
    final = decide_close(4000, "banned", can_refresh=True)
    assert (final.action, final.close_code, final.close_reason) == (Action.STOP, 4000, "banned")
    again = decide_close(3001, "move", can_refresh=False)
    assert (again.action, again.close_code, again.close_reason) == (Action.RECONNECT, 3001, "move")
    lost = decide_close(None, "", can_refresh=False)
    assert (lost.action, lost.close_code, lost.close_reason) == (Action.RECONNECT, None, "")
