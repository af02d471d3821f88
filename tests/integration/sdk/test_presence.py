"""The client SDK's presence and user features against a real `uws-py serve` process
(tests.support.presence_app: presence with join_leave on room.*, admin.* types that call
send_to_user and disconnect_user): presence(), presence_stats(), on_presence diffs when
another client joins and leaves, on_user_message, and the close code of disconnect_user."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import pytest

from uws_py.sdk import (
    ClientClosed, ClientOptions, ClientState, ConnectionLost, PresenceDiff, PresenceEntry, PresenceStats, Publication,
    ServerError, connect,
)

from tests.integration.sdk.test_client import eventually, run, url
from tests.support import presence_app
from tests.support.procutil import UwsServer
from tests.support.realtime import make_token

FAST = ClientOptions(min_delay=0.05, max_delay=0.3, open_timeout=3.0, request_timeout=3.0, ping_interval=None)
DIFF_INTERVAL = "0.2"


def token(user: str, **claims: Any) -> str:
    return make_token(user, ttl=600, secret=presence_app.SECRET, **claims)


@pytest.fixture
def presence_hub():
    # No UWS_TEST_BROKER: one process, presence in memory.
    server = UwsServer("tests.support.presence_app:make", "--presence-diff-interval", DIFF_INTERVAL,
                       "--log-level", "warning")
    yield url(server.port)
    server.stop()


def test_presence_and_stats_list_the_subscribers(presence_hub):
    async def scenario() -> None:
        async with connect(presence_hub, token=token("alice", info={"name": "Alice"}), options=FAST) as alice, \
                connect(presence_hub, token=token("bob"), options=FAST) as bob, \
                connect(presence_hub, token=token("bob"), options=FAST) as bob2:
            for client in (alice, bob, bob2):
                await client.subscribe("room.1", lambda p: None)
            entries = await bob.presence("room.1")
            assert sorted(entries, key=lambda e: e.client_id) == sorted([
                PresenceEntry(alice.client_id, "alice", {"name": "Alice"}),
                PresenceEntry(bob.client_id, "bob", None),
                PresenceEntry(bob2.client_id, "bob", None),
            ], key=lambda e: e.client_id)
            assert await alice.presence_stats("room.1") == PresenceStats("room.1", 3, 2)
            await bob2.subscriptions["room.1"].unsubscribe()
            assert await alice.presence_stats("room.1") == PresenceStats("room.1", 2, 2)
            # Asking needs no subscription; a topic without presence is a ServerError.
            async with connect(presence_hub, token=token("carol"), options=FAST) as carol:
                assert len(await carol.presence("room.1")) == 2
                with pytest.raises(ServerError) as refused:
                    await carol.presence("news")
                assert refused.value.code == "NO_PRESENCE"
                with pytest.raises(ServerError) as reserved:
                    await carol.presence_stats("#user:alice")
                assert reserved.value.code == "FORBIDDEN"

    run(scenario())


def test_on_presence_gets_a_diff_when_another_client_joins_and_leaves(presence_hub):
    async def scenario() -> None:
        diffs: list[PresenceDiff] = []
        async with connect(presence_hub, token=token("watcher"), options=FAST) as watcher:
            subscription = await watcher.subscribe("room.2", lambda p: None, on_presence=diffs.append)
            await eventually(lambda: diffs, "the watcher's own join")
            assert diffs[0].joins == [PresenceEntry(watcher.client_id, "watcher", None)] and diffs[0].leaves == []
            async with connect(presence_hub, token=token("bob", info=[1, 2]), options=FAST) as bob:
                await bob.subscribe("room.2", lambda p: None)
                await eventually(lambda: len(diffs) >= 2, "bob's join")
                assert diffs[1].topic == "room.2" and diffs[1].leaves == []
                assert diffs[1].joins == [PresenceEntry(bob.client_id, "bob", [1, 2])]
                bob_id = bob.client_id
            await eventually(lambda: len(diffs) >= 3, "bob's leave")
            assert diffs[2].joins == [] and diffs[2].leaves == [PresenceEntry(bob_id, "bob", None)]
            assert diffs[2].timestamp - diffs[1].timestamp >= float(DIFF_INTERVAL) * 1000 - 2
            assert subscription.stats.presence_diffs == 3
            await subscription.unsubscribe()
            # Left: the diff of its own leave is not delivered to a subscription that ended.
            await asyncio.sleep(float(DIFF_INTERVAL) * 2)
            assert len(diffs) == 3

    run(scenario())


def test_a_message_from_send_to_user_reaches_every_connection_of_the_user(presence_hub):
    async def scenario() -> None:
        got: dict[str, list[Publication]] = {"a1": [], "a2": [], "bob": []}

        async def slow_append(publication: Publication) -> None:
            await asyncio.sleep(0)
            got["a2"].append(publication)

        async with connect(presence_hub, token=token("alice"), options=FAST, on_user_message=got["a1"].append) as a1, \
                connect(presence_hub, token=token("alice"), options=FAST, on_user_message=slow_append) as a2, \
                connect(presence_hub, token=token("bob"), options=FAST, on_user_message=got["bob"].append) as bob:
            assert a1.user_topic == a2.user_topic == "#user:alice"
            reply = await bob.request("admin.send", {"user": "alice", "data": {"unread": 3}})
            assert reply["local"] == 2
            await eventually(lambda: got["a1"] and got["a2"], "alice's two connections")
            expected = Publication("#user:alice", {"unread": 3}, None, None)
            assert got["a1"] == [expected] and got["a2"] == [expected]
            assert a1.stats.user_messages == 1 and a1.subscriptions == {}
            await bob.request("admin.send", {"user": "bob", "data": "to bob"})
            await eventually(lambda: got["bob"], "bob's own message")
            assert got["bob"] == [Publication("#user:bob", "to bob", None, None)]
            assert len(got["a1"]) == 1

    run(scenario())


def test_disconnect_user_with_a_4xxx_code_closes_the_client_for_good_with_that_code(presence_hub):
    async def scenario() -> None:
        states: list[tuple[ClientState, Optional[BaseException]]] = []
        alice = connect(presence_hub, token=token("alice"), options=FAST, on_state=lambda s, e: states.append((s, e)))
        await alice.start()
        async with connect(presence_hub, token=token("admin"), options=FAST) as admin:
            assert (await admin.request("admin.kick", {"user": "alice", "code": 4001}))["local"] == 1
            await alice.wait_for(ClientState.CLOSED, timeout=5.0)
            error = alice.error
            assert isinstance(error, ClientClosed)
            assert (error.close_code, error.close_reason) == (4001, "kicked")
            assert states[-1] == (ClientState.CLOSED, error)
            assert alice.stats.connects == 1  # final: no reconnect
            with pytest.raises(ClientClosed):
                await alice.ping()
            assert (await admin.presence_stats("room.1")).num_clients == 0
        await alice.close()

    run(scenario())


def test_disconnect_user_with_a_3xxx_code_reconnects_and_reports_the_code(presence_hub):
    async def scenario() -> None:
        lost: list[BaseException] = []

        def on_state(state: ClientState, error: Optional[BaseException]) -> None:
            if state is ClientState.DISCONNECTED and error is not None:
                lost.append(error)

        async with connect(presence_hub, token=token("alice"), options=FAST, on_state=on_state) as alice, \
                connect(presence_hub, token=token("admin"), options=FAST) as admin:
            first_id = alice.client_id
            await alice.subscribe("room.3", lambda p: None)
            await admin.request("admin.kick", {"user": "alice", "code": 3001})
            await eventually(lambda: alice.stats.connects == 2 and alice.state is ClientState.CONNECTED, "the reconnect")
            assert isinstance(lost[0], ConnectionLost)
            assert (lost[0].close_code, lost[0].close_reason) == (3001, "kicked")
            assert alice.client_id != first_id
            await eventually(lambda: alice.subscriptions["room.3"].stats.subscribes == 2, "the resubscribe")
            entries = await admin.presence("room.3")
            assert [e.client_id for e in entries] == [alice.client_id]

    run(scenario())


def test_only_messages_on_the_own_user_topic_reach_on_user_message():
    """A scripted server sends what a real one never would (another user's topic, a diff of a
    topic not subscribed): the client passes on only what is addressed to its own user."""
    from tests.support.scripted_server import ScriptedServer

    async def scenario() -> None:
        got: list[Publication] = []
        diffs: list[PresenceDiff] = []
        async with ScriptedServer(user_id="alice") as server, \
                connect(server.url, options=FAST, on_user_message=got.append) as client:
            conn = await server.next_connection()
            subscribing = asyncio.create_task(client.subscribe("room.1", lambda p: None, on_presence=diffs.append))
            request = await conn.expect("SUBSCRIBE")
            await conn.send({"type": "SUBSCRIBED", "topic": "room.1", "id": request["id"]})
            await subscribing
            await conn.send({"type": "MESSAGE", "topic": "#user:bob", "data": 1, "from": None})
            await conn.send({"type": "PRESENCE_DIFF", "topic": "room.9", "timestamp": 1, "joins": [], "leaves": []})
            await conn.send({"type": "MESSAGE", "topic": "#user:alice", "data": 2, "from": None})
            await conn.send({"type": "PRESENCE_DIFF", "topic": "room.1", "timestamp": 2, "joins": [], "leaves": []})
            await eventually(lambda: got and diffs, "the user message and the diff")
            assert got == [Publication("#user:alice", 2, None, None)]
            assert diffs == [PresenceDiff("room.1", 2, [], [])]

    run(scenario())
