"""The SDK's subscription recovery against a scripted server (tests/support/scripted_server.py):
the corner cases the zero-loss test meets only by chance, each made to happen once. Most are
regression tests of bugs found in the SDK while working on the zero-loss test; their
docstrings say what went wrong before (each of those failed against the earlier SDK)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any, Awaitable

import pytest
from websockets.exceptions import ConnectionClosed

from uws_py.sdk import ClientOptions, ClientState, ConnectionLost, Position, Publication, ServerError, SubscribedEvent, connect

from tests.support.scripted_server import ScriptedServer

FAST = ClientOptions(min_delay=0.05, max_delay=0.2, open_timeout=3.0, request_timeout=3.0, ping_interval=None)
EPOCH = "a1b2c3d4"


def run(coro: Awaitable[Any], bound: float = 20.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(bound):
            return await coro

    return asyncio.run(bounded())


def subscribed(request: dict, offset: int, epoch: str = EPOCH, **extra: Any) -> dict:
    return {"type": "SUBSCRIBED", "topic": request["topic"], "id": request["id"], "epoch": epoch,
            "offset": offset, "wasRecovering": "since" in request, "recovered": False, **extra}


def live(topic: str, offset: int) -> dict:
    return {"type": "MESSAGE", "topic": topic, "data": offset, "from": None, "offset": offset}


async def until(predicate: Any, what: str, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def test_subscribe_cut_before_its_reply_is_answered_on_the_next_connection():
    """It raised ConnectionLost and kept the subscription registered, so the application had
    no handle and could not subscribe again (ValueError)."""
    async def scenario():
        received: list[int] = []
        async with ScriptedServer() as server, connect(server.url, options=FAST) as client:
            first = await server.next_connection()
            subscribing = asyncio.create_task(client.subscribe("h.1", lambda p: received.append(p.data)))
            await first.expect("SUBSCRIBE")
            first.cut()
            second = await server.next_connection()
            request = await second.expect("SUBSCRIBE")
            assert "since" not in request  # no position yet: nothing to recover from
            await second.send(subscribed(request, 4))
            subscription = await subscribing
            await second.send(live("h.1", 5))
            await until(lambda: received == [5], "the live message")
            assert subscription.position == Position(EPOCH, 5)
            await second.expect_nothing()

    run(scenario())


def test_subscribe_made_while_reconnecting_sends_one_subscribe():
    """The new connection's resubscribe and the waiting subscribe() both sent a SUBSCRIBE."""
    async def scenario():
        async with ScriptedServer() as server, connect(server.url, options=FAST) as client:
            first = await server.next_connection()
            first.cut()
            await until(lambda: client.state is not ClientState.CONNECTED, "the client noticing the cut")
            subscribing = asyncio.create_task(client.subscribe("h.2", lambda p: None))
            second = await server.next_connection()
            request = await second.expect("SUBSCRIBE")
            await second.send(subscribed(request, 0))
            await subscribing
            await second.expect_nothing()

    run(scenario())


def test_a_subscribe_that_times_out_is_dropped_and_can_be_made_again():
    """It stayed registered after the TimeoutError: subscribing again raised ValueError."""
    async def scenario():
        async with ScriptedServer() as server, connect(server.url, options=FAST) as client:
            conn = await server.next_connection()
            with pytest.raises(TimeoutError):
                await client.subscribe("h.3", lambda p: None, timeout=0.3)
            await conn.expect("SUBSCRIBE")
            unsubscribe = await conn.expect("UNSUBSCRIBE")
            assert unsubscribe["topic"] == "h.3" and client.subscriptions == {}
            await conn.send({"type": "UNSUBSCRIBED", "topic": "h.3", "id": unsubscribe["id"]})
            again = asyncio.create_task(client.subscribe("h.3", lambda p: None))
            request = await conn.expect("SUBSCRIBE")
            await conn.send(subscribed(request, 0))
            assert (await again).topic == "h.3"
            # The abandoned first SUBSCRIBE does not break the connection when its own
            # request_timeout passes, and its late reply changes nothing.
            await asyncio.sleep(3.2)
            assert client.state is ClientState.CONNECTED and client.stats.connects == 1
            await conn.send(subscribed(conn.log[0], 0))
            await conn.expect_nothing()

    run(scenario())


def test_unavailable_on_a_resubscribe_is_retried_not_the_end_of_the_subscription():
    """Any ERROR to a resubscribe ended the subscription for good, also Redis briefly down."""
    async def scenario():
        received: list[int] = []
        async with ScriptedServer() as server, connect(server.url, options=FAST) as client:
            first = await server.next_connection()
            subscribing = asyncio.create_task(client.subscribe("h.4", lambda p: received.append(p.data)))
            await first.send(subscribed(await first.expect("SUBSCRIBE"), 2))
            subscription = await subscribing
            first.cut()
            second = await server.next_connection()
            request = await second.expect("SUBSCRIBE")
            await second.send({"type": "ERROR", "code": "UNAVAILABLE", "message": "history storage unavailable",
                               "id": request["id"]})
            retry = await second.expect("SUBSCRIBE")
            assert retry["since"] == {"epoch": EPOCH, "offset": 2}
            await second.send(subscribed(retry, 3, recovered=True,
                                         publications=[{"data": 3, "from": None, "offset": 3}]))
            await until(lambda: received == [3], "the recovered message")
            assert client.subscriptions == {"h.4": subscription}

    run(scenario())


def test_a_refused_resubscribe_ends_the_subscription_and_is_reported_to_on_error():
    async def scenario():
        errors: list[ServerError] = []
        async with ScriptedServer() as server, connect(server.url, options=FAST, on_error=errors.append) as client:
            first = await server.next_connection()
            subscribing = asyncio.create_task(client.subscribe("h.5", lambda p: None))
            await first.send(subscribed(await first.expect("SUBSCRIBE"), 0))
            subscription = await subscribing
            first.cut()
            second = await server.next_connection()
            request = await second.expect("SUBSCRIBE")
            await second.send({"type": "ERROR", "code": "FORBIDDEN", "message": "not allowed", "id": request["id"]})
            await until(lambda: errors, "on_error")
            assert errors[0].code == "FORBIDDEN"
            assert isinstance(subscription.error, ServerError) and client.subscriptions == {}
            await second.expect_nothing()

    run(scenario())


def test_a_jump_in_live_offsets_recovers_the_skipped_ones_in_order():
    """A server that skipped MESSAGEs for a slow reader made the SDK deliver 1, 3: the loss
    went unnoticed although the offsets showed it."""
    async def scenario():
        received: list[Publication] = []
        events: list[SubscribedEvent] = []
        async with ScriptedServer() as server, connect(server.url, options=FAST) as client:
            conn = await server.next_connection()
            subscribing = asyncio.create_task(client.subscribe("h.6", received.append, on_subscribed=events.append))
            await conn.send(subscribed(await conn.expect("SUBSCRIBE"), 0))
            subscription = await subscribing
            for offset in (1, 3, 4):
                await conn.send(live("h.6", offset))
            assert (await conn.expect("UNSUBSCRIBE"))["topic"] == "h.6"
            await conn.send({"type": "UNSUBSCRIBED", "topic": "h.6", "id": conn.log[-1]["id"]})
            request = await conn.expect("SUBSCRIBE")
            assert request["recover"] is True and request["since"] == {"epoch": EPOCH, "offset": 1}
            await conn.send(live("h.6", 4))  # in flight before the UNSUBSCRIBE: held, then a duplicate
            await conn.send(subscribed(request, 4, recovered=True, publications=[
                {"data": o, "from": None, "offset": o} for o in (2, 3, 4)]))
            await conn.send(live("h.6", 5))
            await until(lambda: len(received) == 5, "five messages")
            assert [p.offset for p in received] == [1, 2, 3, 4, 5]
            assert [p.recovered for p in received] == [False, True, True, True, False]
            assert subscription.stats.live_jumps == 1
            assert events[-1].recovered and events[-1].resubscribe and events[-1].since == Position(EPOCH, 1)
            await conn.expect_nothing()

    run(scenario())


def test_a_recovered_false_gap_is_reported_with_since_and_delivery_goes_on_from_the_new_position():
    async def scenario():
        received: list[int] = []
        events: list[SubscribedEvent] = []
        async with ScriptedServer() as server, connect(server.url, options=FAST) as client:
            first = await server.next_connection()
            subscribing = asyncio.create_task(client.subscribe(
                "h.7", lambda p: received.append(p.data), on_subscribed=events.append, since=Position(EPOCH, 10)))
            request = await first.expect("SUBSCRIBE")
            assert request["since"] == {"epoch": EPOCH, "offset": 10}
            await first.send(subscribed(request, 12, recovered=True, publications=[
                {"data": 11, "from": None, "offset": 11}, {"data": 12, "from": None, "offset": 12}]))
            await subscribing
            first.cut()
            second = await server.next_connection()
            request = await second.expect("SUBSCRIBE")
            assert request["since"] == {"epoch": EPOCH, "offset": 12}
            # The history was lost meanwhile (a restart without persistence): a new epoch.
            await second.send(subscribed(request, 2, epoch="ffff0000", publications=[]))
            await second.send(live("h.7", 3))
            await until(lambda: received == [11, 12, 3], "delivery from the new epoch")
            gap = events[-1]
            assert gap.gap and gap.was_recovering and not gap.recovered
            assert gap.since == Position(EPOCH, 12) and gap.position == Position("ffff0000", 2)

    run(scenario())


def test_awaiting_a_request_inside_a_callback_raises_instead_of_hanging():
    """It waited for a reply that only the blocked reader could read: the connection hung for
    request_timeout. Unsubscribing from inside on_message still works."""
    async def scenario():
        raised: list[BaseException] = []
        async with ScriptedServer() as server, connect(server.url, options=FAST) as client:
            conn = await server.next_connection()

            async def on_message(publication: Publication) -> None:
                try:
                    await client.history("h.8", limit=5)
                except RuntimeError as exc:
                    raised.append(exc)
                await subscription.unsubscribe()

            subscribing = asyncio.create_task(client.subscribe("h.8", on_message))
            await conn.send(subscribed(await conn.expect("SUBSCRIBE"), 0))
            subscription = await subscribing
            await conn.send(live("h.8", 1))
            assert (await conn.expect("UNSUBSCRIBE"))["topic"] == "h.8"
            assert len(raised) == 1 and "create_task" in str(raised[0])
            assert client.subscriptions == {}

    run(scenario())


def test_a_recovery_over_max_message_size_is_given_up_as_a_gap_not_retried_for_ever():
    """The SUBSCRIBED carrying the recovery was over max_message_size: the client closed with
    1009, reconnected, asked for the same recovery, and so on for ever, reported as 1006."""
    async def scenario():
        states: list[str] = []
        events: list[SubscribedEvent] = []
        options = ClientOptions(min_delay=0.05, max_delay=0.2, request_timeout=3.0, ping_interval=None,
                                max_message_size=4000)
        async with ScriptedServer() as server, connect(
                server.url, options=options, on_state=lambda state, error: states.append(str(error))) as client:
            first = await server.next_connection()
            subscribing = asyncio.create_task(client.subscribe("h.9", lambda p: None, on_subscribed=events.append))
            await first.send(subscribed(await first.expect("SUBSCRIBE"), 1))
            await subscribing
            first.cut()
            second = await server.next_connection()
            request = await second.expect("SUBSCRIBE")
            assert request["since"] == {"epoch": EPOCH, "offset": 1}
            big = [{"data": "x" * 1000, "from": None, "offset": o} for o in range(2, 12)]
            await second.send(subscribed(request, 11, recovered=True, publications=big))
            third = await server.next_connection()
            request = await third.expect("SUBSCRIBE")
            assert "since" not in request and "recover" not in request
            await third.send(subscribed(request, 11))
            await until(lambda: len(events) == 2, "the second SUBSCRIBED")
            assert events[-1].gap and events[-1].since == Position(EPOCH, 1)
            assert events[-1].position == Position(EPOCH, 11)
            assert any("max_message_size (4000 bytes)" in state for state in states), states
            third.cut()
            fourth = await server.next_connection()  # the next reconnect recovers again
            assert (await fourth.expect("SUBSCRIBE"))["since"] == {"epoch": EPOCH, "offset": 11}

    run(scenario())


def test_a_subscribe_that_timed_out_is_not_resubscribed_when_the_connection_drops_at_once():
    """The topic is forgotten before subscribe() raises, not in a helper task of the
    connection (which a connection ending first would cancel). The race that version had is
    too narrow to reproduce here: this checks the outcome, not that race."""
    async def scenario():
        async with ScriptedServer() as server, connect(server.url, options=FAST) as client:
            first = await server.next_connection()
            with pytest.raises(TimeoutError):
                await client.subscribe("h.10", lambda p: None, timeout=0.3)
            first.cut()
            second = await server.next_connection()
            await second.expect_nothing(0.5)
            assert client.subscriptions == {}

    run(scenario())


def test_a_request_whose_connection_ends_while_it_is_sent_leaves_no_unretrieved_future():
    """Regression (bench/chaos rolling-restart): the connection ended during the send, so the
    pending future got ConnectionLost and the send raised its own: asyncio then logged
    "Future exception was never retrieved" for the future nobody awaited."""
    async def scenario():
        reported: list[str] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context["message"]))
        async with ScriptedServer() as server, connect(server.url, options=FAST) as client:
            await server.next_connection()

            async def send_as_the_connection_ends(frame: str) -> None:
                client._connection_ended()
                raise ConnectionClosed(None, None)

            client._ws.send = send_as_the_connection_ends
            with pytest.raises(ConnectionLost):
                await client.request("PING")
        gc.collect()
        return reported

    assert [m for m in run(scenario()) if "never retrieved" in m] == []
