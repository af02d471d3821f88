"""Presence in one process (issue 15): PRESENCE, PRESENCE_STATS, PRESENCE_DIFF, the documented
errors, and the user operations (send_to_user, disconnect_user, publish with exclude).
A real server on loopback, raw-socket clients."""

from __future__ import annotations

from uws_py import JWTAuth
from tests.support.realtime import (
    SECRET, assert_next_is_pong, realtime_server, recv_json, request, scrape, metric,
)
from tests.support.procutil import wait_until
from tests.support.wsclient import Op, parse_close_payload

DIFF_INTERVAL = 0.2


def presence_server(join_leave: bool = True, **options):
    options.setdefault("rate_limit", None)
    options.setdefault("presence_diff_interval", DIFF_INTERVAL)
    server = realtime_server(**options)
    server.enable_presence("room.*", join_leave=join_leave)
    return server


def test_presence_lists_subscribers_with_user_and_info(serve):
    live = serve(presence_server(join_leave=False))
    alice, hello_a = live.join("alice", info={"name": "Alice"})
    alice2, hello_a2 = live.join("alice")
    bob, hello_b = live.join("bob")
    for client in (alice, alice2, bob):
        assert request(client, {"type": "SUBSCRIBE", "topic": "room.1"})["type"] == "SUBSCRIBED"
    reply = request(bob, {"type": "PRESENCE", "topic": "room.1", "id": 7})
    assert (reply["type"], reply["topic"], reply["id"]) == ("PRESENCE_RESULT", "room.1", 7)
    assert sorted(reply["clients"], key=lambda e: e["clientId"]) == sorted([
        {"clientId": hello_a["clientId"], "userId": "alice", "info": {"name": "Alice"}},
        {"clientId": hello_a2["clientId"], "userId": "alice", "info": None},
        {"clientId": hello_b["clientId"], "userId": "bob", "info": None},
    ], key=lambda e: e["clientId"])
    stats = request(bob, {"type": "PRESENCE_STATS", "topic": "room.1", "id": 8})
    assert stats == {"type": "PRESENCE_STATS_RESULT", "topic": "room.1", "id": 8, "numClients": 3, "numUsers": 2}

    assert request(alice2, {"type": "UNSUBSCRIBE", "topic": "room.1"})["type"] == "UNSUBSCRIBED"
    alice.disconnect()

    def without_alice():
        reply = request(bob, {"type": "PRESENCE", "topic": "room.1", "id": 9})
        return reply if all(entry["userId"] != "alice" for entry in reply["clients"]) else None

    # The server sees the TCP close on its next read: polled, not slept on.
    after = wait_until(without_alice, "alice's closed connection leaving the presence of room.1")
    assert after["clients"] == [{"clientId": hello_b["clientId"], "userId": "bob", "info": None}]
    assert request(bob, {"type": "PRESENCE_STATS", "topic": "room.1"})["numUsers"] == 1


def test_presence_errors_are_documented(serve):
    server = presence_server()

    @server.authorize_topic
    def allow(client, topic, action):
        return not (action == "presence" and topic == "room.secret")

    live = serve(server)
    client, _ = live.join("alice", topics=["room.*", "plain"])
    assert request(client, {"type": "PRESENCE", "topic": "plain", "id": 1}) == {
        "type": "ERROR", "code": "NO_PRESENCE", "message": "topic 'plain' has no presence", "id": 1}
    refused = request(client, {"type": "PRESENCE_STATS", "topic": "other", "id": 2})
    assert (refused["code"], refused["id"]) == ("FORBIDDEN", 2), refused
    refused = request(client, {"type": "PRESENCE", "topic": "room.secret", "id": 3})
    assert (refused["code"], refused["id"]) == ("FORBIDDEN", 3), refused
    bad = request(client, {"type": "PRESENCE", "topic": 5, "id": 4})
    assert (bad["code"], bad["id"]) == ("INVALID_MESSAGE", 4), bad
    reserved = request(client, {"type": "SUBSCRIBE", "topic": "#user:bob", "id": 5})
    assert (reserved["code"], reserved["id"]) == ("FORBIDDEN", 5), reserved
    batch = request(client, {"type": "BATCH", "messages": [{"type": "PRESENCE", "topic": "room.1", "id": 6}]})
    assert batch["messages"] == [{"type": "PRESENCE_RESULT", "topic": "room.1", "clients": [], "id": 6}]
    assert_next_is_pong(client)


def test_join_and_leave_reach_subscribers_in_one_coalesced_diff(serve):
    live = serve(presence_server())
    watcher, hello_w = live.join("watcher")
    assert request(watcher, {"type": "SUBSCRIBE", "topic": "room.1"})["type"] == "SUBSCRIBED"
    own = recv_json(watcher)
    assert own == {"type": "PRESENCE_DIFF", "topic": "room.1", "leaves": [], "timestamp": own["timestamp"],
                   "joins": [{"clientId": hello_w["clientId"], "userId": "watcher", "info": None}]}
    joined = []
    for n in range(5):
        client, hello = live.join(f"user{n}")
        send_json_subscribe(client, "room.1")
        joined.append((client, hello))
    diff = recv_json(watcher)
    assert diff["type"] == "PRESENCE_DIFF" and diff["leaves"] == []
    assert sorted(e["clientId"] for e in diff["joins"]) == sorted(h["clientId"] for _, h in joined)
    joined[0][0].disconnect()
    left = recv_json(watcher)
    assert left == {"type": "PRESENCE_DIFF", "topic": "room.1", "joins": [], "timestamp": left["timestamp"],
                    "leaves": [{"clientId": joined[0][1]["clientId"], "userId": "user0"}]}
    assert left["timestamp"] - diff["timestamp"] >= DIFF_INTERVAL * 1000 - 2  # whole-millisecond timers
    samples = scrape(live)
    assert metric(samples, "uws_presence_diffs_sent_total") == 3
    assert metric(samples, "uws_presence_entries") == 5


def send_json_subscribe(client, topic: str) -> None:
    reply = request(client, {"type": "SUBSCRIBE", "topic": topic, "id": "s"})
    assert reply["type"] == "SUBSCRIBED", reply


def test_send_to_user_and_disconnect_user_in_one_process(serve):
    server = presence_server()
    live = serve(server)
    alice1, _ = live.join("alice")
    alice2, _ = live.join("alice")
    bob, _ = live.join("bob")
    run_on_loop(live, lambda: server.engine.users.send_to_user("alice", {"hi": 1}))
    for client in (alice1, alice2):
        assert recv_json(client) == {"type": "MESSAGE", "topic": "#user:alice", "data": {"hi": 1}, "from": None}
    assert_next_is_pong(bob)
    run_on_loop(live, lambda: server.engine.users.disconnect_user("alice", 4000, "banned"))
    for client in (alice1, alice2):
        message = client.recv_message(5.0)
        assert message.opcode == Op.CLOSE
        assert parse_close_payload(message.payload) == (4000, b"banned")
    assert_next_is_pong(bob)


def test_publish_with_exclude_skips_the_listed_clients(serve):
    server = presence_server()
    live = serve(server)
    clients = [live.join(f"u{n}") for n in range(4)]
    for client, _ in clients:
        send_json_subscribe(client, "news")
    excluded = [clients[0][1]["clientId"], clients[1][1]["clientId"]]
    run_on_loop(live, lambda: server.publish("news", "x", exclude=excluded))
    for client, _ in clients[2:]:
        assert recv_json(client) == {"type": "MESSAGE", "topic": "news", "data": "x", "from": None}
    for client, _ in clients[:2]:
        assert_next_is_pong(client)
    run_on_loop(live, lambda: server.publish("news", "y", exclude=excluded[:1]))
    for client, _ in clients[1:]:
        assert recv_json(client)["data"] == "y"
    assert_next_is_pong(clients[0][0])


def run_on_loop(live, fn) -> None:
    """Runs fn on the server's loop thread (where every server method runs) and waits for it."""
    import threading

    done = threading.Event()
    failure: list = []

    def call() -> None:
        try:
            fn()
        except BaseException as exc:  # reported to the test below
            failure.append(exc)
        finally:
            done.set()

    live.server.app.defer(call)
    assert done.wait(5.0), "the server loop did not run the call"
    if failure:
        raise failure[0]


def test_bad_presence_options_are_refused():
    import pytest

    with pytest.raises(ValueError, match="presence_ttl"):
        realtime_server(presence_ttl=0)
    with pytest.raises(ValueError, match="join_leave"):
        realtime_server().enable_presence("a.*", join_leave="yes")
    with pytest.raises(ValueError, match="close code"):
        realtime_server(auth=JWTAuth(secret=SECRET)).engine.users.disconnect_user("a", 1006)


def test_async_server_methods_answer_from_the_serving_loop():
    import pytest

    from tests.support.wsclient import connect
    from uws_py.realtime.presence import NoPresence
    from tests.support.realtime import make_token

    from tests.support.realtime import AsyncServed

    served = AsyncServed(presence_server())
    try:
        clients = [connect("127.0.0.1", served.port, "/realtime",
                           headers=[("Authorization", f"Bearer {make_token(user, info=n)}")])
                   for n, user in enumerate(["alice", "alice", "bob"])]
        ids = [recv_json(client)["clientId"] for client in clients]
        for client in clients:
            send_json_subscribe(client, "room.7")
        assert sorted(e["clientId"] for e in served.call(served.server.presence("room.7"))) == sorted(ids)
        assert served.call(served.server.presence_stats("room.7")) == {"numClients": 3, "numUsers": 2}
        with pytest.raises(NoPresence):
            served.call(served.server.presence("news"))
        assert served.call(served.server.send_to_user("bob", [1, 2])) == 1
        message = recv_json(clients[2])
        while message["type"] == "PRESENCE_DIFF":
            message = recv_json(clients[2])
        assert message == {"type": "MESSAGE", "topic": "#user:bob", "data": [1, 2], "from": None}
        assert served.call(served.server.disconnect_user("alice", 3001, "bye")) == 2
        for client in clients[:2]:
            assert client.expect_close(5.0) == (3001, b"bye")
        for client in clients:
            client.disconnect()
    finally:
        served.stop()
