"""Subscription without a network: the SUBSCRIBE it asks for, and what it delivers from a
SUBSCRIBED reply and live MESSAGEs (recovered first, each offset once, gaps reported, jumps
in live offsets held for recovery)."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from uws_py.sdk import Position, Publication, SubscribedEvent, Subscription, SubscriptionState

EPOCH = "a1b2c3d4"


class Recorder:
    def __init__(self, since: Optional[Position] = None, topic: str = "chat.1") -> None:
        self.publications: list[Publication] = []
        self.events: list[SubscribedEvent] = []
        self.subscription = Subscription(None, topic, self.publications.append, self.events.append, since)

    @property
    def offsets(self) -> list[Optional[int]]:
        return [p.offset for p in self.publications]


def reply(offset: Optional[int], epoch: Optional[str] = EPOCH, recovered: bool = False, was_recovering: bool = False,
          publications: tuple[int, ...] = ()) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "SUBSCRIBED", "topic": "chat.1", "id": 1}
    if offset is not None:
        message.update(epoch=epoch, offset=offset, wasRecovering=was_recovering, recovered=recovered)
        if was_recovering:
            message["publications"] = [{"data": o, "from": None, "offset": o} for o in publications]
    return message


def live(offset: Optional[int]) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "MESSAGE", "topic": "chat.1", "data": offset, "from": "x"}
    if offset is not None:
        message["offset"] = offset
    return message


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_first_subscribe_does_not_recover_and_a_saved_position_does():
    assert "since" not in Recorder().subscription.subscribe_message(1)
    message = Recorder(since=Position(EPOCH, 7)).subscription.subscribe_message(3)
    assert message == {"type": "SUBSCRIBE", "topic": "chat.1", "id": 3, "recover": True,
                       "since": {"epoch": EPOCH, "offset": 7}}


def test_resubscribe_recovers_from_the_last_offset_delivered():
    async def scenario():
        r = Recorder()
        r.subscription.subscribe_message(1)
        await r.subscription.on_subscribed_reply(reply(3))
        for offset in (4, 5):
            await r.subscription.on_live(live(offset))
        r.subscription.connection_lost()
        assert r.subscription.subscribe_message(2)["since"] == {"epoch": EPOCH, "offset": 5}

    run(scenario())


def test_recovered_then_held_live_each_offset_once_in_order():
    """Live MESSAGEs that arrived while the SUBSCRIBE was in flight overlap the recovered ones."""
    async def scenario():
        r = Recorder(since=Position(EPOCH, 10))
        r.subscription.subscribe_message(1)
        for offset in (12, 13, 14):
            await r.subscription.on_live(live(offset))
        assert r.publications == []  # held until SUBSCRIBED
        event = await r.subscription.on_subscribed_reply(
            reply(13, recovered=True, was_recovering=True, publications=(11, 12, 13)))
        assert r.offsets == [11, 12, 13, 14]
        assert [p.recovered for p in r.publications] == [True, True, True, False]
        assert r.subscription.stats.duplicates_skipped == 2
        assert event is not None and event.recovered and event.recovered_count == 3
        assert event.since == Position(EPOCH, 10) and event.position == Position(EPOCH, 14)
        await r.subscription.on_live(live(14))
        await r.subscription.on_live(live(15))
        assert r.offsets == [11, 12, 13, 14, 15]

    run(scenario())


def test_recovered_publications_already_delivered_are_skipped_and_the_top_is_kept():
    async def scenario():
        r = Recorder(since=Position(EPOCH, 5))
        r.subscription.subscribe_message(1)
        r.subscription.tracker.offset = 7  # 6 and 7 came live before the connection dropped
        await r.subscription.on_subscribed_reply(reply(8, recovered=True, was_recovering=True,
                                                       publications=(6, 7, 8)))
        assert r.offsets == [8]
        assert r.subscription.position == Position(EPOCH, 8)

    run(scenario())


def test_recovered_false_reports_a_gap_and_continues_from_the_servers_position():
    async def scenario():
        r = Recorder(since=Position(EPOCH, 40))
        r.subscription.subscribe_message(1)
        event = await r.subscription.on_subscribed_reply(reply(900, was_recovering=True))
        assert event is not None and event.gap and not event.recovered
        assert event.since == Position(EPOCH, 40) and event.position == Position(EPOCH, 900)
        assert r.subscription.stats.gaps == 1 and r.publications == []
        await r.subscription.on_live(live(901))
        assert r.offsets == [901] and r.subscription.stats.live_jumps == 0

    run(scenario())


def test_a_new_epoch_restarts_offsets_without_taking_them_for_duplicates():
    async def scenario():
        r = Recorder(since=Position(EPOCH, 500))
        r.subscription.subscribe_message(1)
        event = await r.subscription.on_subscribed_reply(reply(2, epoch="ffff0000", was_recovering=True))
        assert event is not None and event.gap
        await r.subscription.on_live(live(3))
        assert r.offsets == [3] and r.subscription.position == Position("ffff0000", 3)

    run(scenario())


def test_a_jump_in_live_offsets_is_held_for_recovery_not_delivered():
    async def scenario():
        r = Recorder()
        r.subscription.subscribe_message(1)
        await r.subscription.on_subscribed_reply(reply(0))
        await r.subscription.on_live(live(1))
        await r.subscription.on_live(live(4))
        await r.subscription.on_live(live(5))
        assert r.offsets == [1]
        assert r.subscription.recovery_needed and r.subscription.state is SubscriptionState.SUBSCRIBING
        assert r.subscription.stats.live_jumps == 1
        # The recovery subscribes from the last offset delivered.
        assert r.subscription.subscribe_message(2)["since"] == {"epoch": EPOCH, "offset": 1}
        assert not r.subscription.recovery_needed

    run(scenario())


def test_a_jump_among_the_held_messages_stops_their_delivery_there():
    async def scenario():
        r = Recorder()
        r.subscription.subscribe_message(1)
        for offset in (3, 5, 6):
            await r.subscription.on_live(live(offset))
        await r.subscription.on_subscribed_reply(reply(2))
        assert r.offsets == [3]
        assert r.subscription.recovery_needed and r.subscription.position == Position(EPOCH, 3)

    run(scenario())


def test_plain_topics_deliver_everything_and_have_no_position():
    async def scenario():
        r = Recorder(topic="room")
        message = r.subscription.subscribe_message(1)
        assert "since" not in message
        await r.subscription.on_live(live(None))  # held
        event = await r.subscription.on_subscribed_reply({"type": "SUBSCRIBED", "topic": "room", "id": 1})
        await r.subscription.on_live(live(None))
        assert len(r.publications) == 2 and r.subscription.position is None
        assert event is not None and event.position is None and not event.gap
        r.subscription.connection_lost()
        assert "since" not in r.subscription.subscribe_message(2)

    run(scenario())


def test_a_reply_after_unsubscribe_delivers_nothing():
    async def scenario():
        r = Recorder(since=Position(EPOCH, 1))
        r.subscription.subscribe_message(1)
        r.subscription.ended()
        assert await r.subscription.on_subscribed_reply(
            reply(3, recovered=True, was_recovering=True, publications=(2, 3))) is None
        await r.subscription.on_live(live(4))
        assert r.publications == [] and r.events == []

    run(scenario())


def test_an_exception_in_on_message_does_not_stop_delivery():
    async def scenario():
        seen: list[int] = []

        def flaky(publication: Publication) -> None:
            seen.append(publication.offset or 0)
            if publication.offset == 1:
                raise RuntimeError("application bug")

        subscription = Subscription(None, "chat.1", flaky)
        subscription.subscribe_message(1)
        await subscription.on_subscribed_reply(reply(0))
        for offset in (1, 2):
            await subscription.on_live(live(offset))
        assert seen == [1, 2]

    run(scenario())
