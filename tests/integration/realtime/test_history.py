"""History topics in one process (issue 13, /work/plan/spec-history.md): offsets on MESSAGE and
PUBLISHED, recovery on SUBSCRIBE, HISTORY paging, and the documented errors for bad input.
A real server on loopback, raw-socket clients."""

from __future__ import annotations

from tests.support.realtime import (
    assert_next_is_pong,
    realtime_server,
    recv_json,
    request,
    send_json,
)


def history_server(size: int = 200, ttl: float = 300.0, **options):
    options.setdefault("rate_limit", None)  # these tests publish more than 100 messages a minute
    server = realtime_server(**options)
    server.history("chat.*", size=size, ttl=ttl)
    return server


def publish_all(publisher, topic: str, count: int, first: int = 0) -> list[dict]:
    """Publishes count messages with ids; returns their PUBLISHED replies."""
    replies = []
    for n in range(first, first + count):
        reply = request(publisher, {"type": "PUBLISH", "topic": topic, "id": n, "data": {"n": n}})
        assert reply["type"] == "PUBLISHED", reply
        replies.append(reply)
    return replies


def test_messages_on_a_history_topic_carry_consecutive_offsets(serve):
    live = serve(history_server())
    reader, _ = live.join("alice")
    publisher, hello = live.join("bob")
    subscribed = request(reader, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 1})
    assert subscribed == {"type": "SUBSCRIBED", "topic": "chat.1", "id": 1, "epoch": subscribed["epoch"],
                          "offset": 0, "wasRecovering": False, "recovered": False}
    assert isinstance(subscribed["epoch"], str) and len(subscribed["epoch"]) == 8

    replies = publish_all(publisher, "chat.1", 3)
    assert [(r["offset"], r["epoch"]) for r in replies] == [(n, subscribed["epoch"]) for n in (1, 2, 3)]
    received = [recv_json(reader) for _ in range(3)]
    assert received == [
        {"type": "MESSAGE", "topic": "chat.1", "data": {"n": n}, "from": hello["clientId"], "offset": n + 1}
        for n in range(3)
    ]
    assert_next_is_pong(reader)


def test_plain_topics_keep_the_wire_format_without_positions(serve):
    live = serve(history_server())
    reader, _ = live.join("alice")
    publisher, _ = live.join("bob")
    assert request(reader, {"type": "SUBSCRIBE", "topic": "news", "id": 1}) == {
        "type": "SUBSCRIBED", "topic": "news", "id": 1}
    assert request(publisher, {"type": "PUBLISH", "topic": "news", "id": 2, "data": 7}) == {
        "type": "PUBLISHED", "topic": "news", "id": 2}
    message = recv_json(reader)
    assert set(message) == {"type", "topic", "data", "from"}


def test_connected_carries_the_token_expiry(serve):
    live = serve(history_server())
    _, connected = live.join("alice", ttl=120)
    assert isinstance(connected["expiresAt"], (int, float)) and connected["expiresAt"] > 0


# -- issue 13 test 1: cut, publish 100, reconnect with since ----------------------------------


def test_reconnect_with_since_recovers_exactly_the_missed_hundred_then_goes_on_live(serve):
    live = serve(history_server(size=200))
    reader, _ = live.join("alice")
    publisher, _ = live.join("bob")
    subscribed = request(reader, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 1})
    epoch = subscribed["epoch"]
    publish_all(publisher, "chat.1", 5)
    seen = [recv_json(reader)["offset"] for _ in range(5)]
    assert seen == [1, 2, 3, 4, 5]

    reader.reset()  # the TCP connection is cut: no close frame
    missed = publish_all(publisher, "chat.1", 100, first=5)
    assert [r["offset"] for r in missed] == list(range(6, 106))

    again, _ = live.join("alice")
    recovered = request(again, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 2, "recover": True,
                                "since": {"epoch": epoch, "offset": seen[-1]}})
    assert recovered["type"] == "SUBSCRIBED", recovered
    assert (recovered["epoch"], recovered["offset"]) == (epoch, 105)
    assert recovered["wasRecovering"] is True and recovered["recovered"] is True
    assert [p["offset"] for p in recovered["publications"]] == list(range(6, 106))
    assert [p["data"] for p in recovered["publications"]] == [{"n": n} for n in range(5, 105)]
    assert all(p["from"] is not None for p in recovered["publications"])

    publish_all(publisher, "chat.1", 1, first=105)
    next_live = recv_json(again)
    assert (next_live["type"], next_live["offset"], next_live["data"]) == ("MESSAGE", 106, {"n": 105})
    assert_next_is_pong(again, "no duplicate after the live message")


def test_server_publish_on_a_history_topic_is_kept_with_a_null_sender(serve):
    server = history_server()
    live = serve(server)
    reader, _ = live.join("alice")
    request(reader, {"type": "SUBSCRIBE", "topic": "chat.s", "id": 1})
    server.app.defer(lambda: server.publish("chat.s", "from the server"))
    assert recv_json(reader) == {"type": "MESSAGE", "topic": "chat.s", "data": "from the server",
                                 "from": None, "offset": 1}
    page = request(reader, {"type": "HISTORY", "topic": "chat.s", "id": 2})
    assert page["publications"] == [{"data": "from the server", "from": None, "offset": 1}]


# -- issue 13 test 3: more missed than size or than the recover limit -------------------------


def test_more_missed_than_size_answers_recovered_false_with_the_position(serve):
    live = serve(history_server(size=10))
    reader, _ = live.join("alice")
    publisher, _ = live.join("bob")
    epoch = request(reader, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 1})["epoch"]
    reader.reset()
    publish_all(publisher, "chat.1", 20)

    again, _ = live.join("alice")
    answer = request(again, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 2, "recover": True,
                             "since": {"epoch": epoch, "offset": 0}})
    assert answer == {"type": "SUBSCRIBED", "topic": "chat.1", "id": 2, "epoch": epoch, "offset": 20,
                      "wasRecovering": True, "recovered": False, "publications": []}
    publish_all(publisher, "chat.1", 1, first=20)
    assert recv_json(again)["offset"] == 21  # the subscription is live from the returned position


def test_more_missed_than_the_recover_limit_answers_recovered_false(serve):
    live = serve(history_server(size=100, history_recover_limit=5))
    reader, _ = live.join("alice")
    publisher, _ = live.join("bob")
    epoch = request(reader, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 1})["epoch"]
    reader.reset()
    publish_all(publisher, "chat.1", 6)

    again, _ = live.join("alice")
    answer = request(again, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 2, "recover": True,
                             "since": {"epoch": epoch, "offset": 0}})
    assert (answer["recovered"], answer["publications"], answer["offset"]) == (False, [], 6)
    within = request(again, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 3, "recover": True,
                             "since": {"epoch": epoch, "offset": 1}})
    assert within["recovered"] is True
    assert [p["offset"] for p in within["publications"]] == [2, 3, 4, 5, 6]


# -- HISTORY ------------------------------------------------------------------------------------


def test_history_pages_forward_and_in_reverse(serve):
    live = serve(history_server())
    client, _ = live.join("alice")
    publish_all(client, "chat.h", 10)
    first = request(client, {"type": "HISTORY", "topic": "chat.h", "id": 1, "limit": 4})
    epoch = first["epoch"]
    assert (first["type"], first["offset"]) == ("HISTORY_RESULT", 10)
    assert [p["offset"] for p in first["publications"]] == [1, 2, 3, 4]
    second = request(client, {"type": "HISTORY", "topic": "chat.h", "id": 2, "limit": 4,
                              "since": {"epoch": epoch, "offset": 4}})
    assert [p["offset"] for p in second["publications"]] == [5, 6, 7, 8]
    newest = request(client, {"type": "HISTORY", "topic": "chat.h", "id": 3, "limit": 3, "reverse": True})
    assert [p["offset"] for p in newest["publications"]] == [10, 9, 8]


def test_history_is_authorized_with_action_history(serve):
    server = history_server()
    actions = []

    @server.authorize_topic
    def allow(client, topic, action):
        actions.append(action)
        return action != "history"

    live = serve(server)
    client, _ = live.join("alice")
    refused = request(client, {"type": "HISTORY", "topic": "chat.1", "id": 1})
    assert (refused["type"], refused["code"]) == ("ERROR", "FORBIDDEN")
    assert actions == ["history"]


# -- issue 13 test 7: bad input gets the documented errors, the connection goes on ---------------


def test_bad_since_is_invalid_message_and_subscribes_nothing(serve):
    live = serve(history_server())
    client, _ = live.join("alice")
    publisher, _ = live.join("bob")
    epoch = request(client, {"type": "HISTORY", "topic": "chat.1", "id": 0})["epoch"]
    bad = ["x", 5, [epoch, 1], {"epoch": 1, "offset": 0}, {"epoch": epoch}, {"epoch": epoch, "offset": -1},
           {"epoch": epoch, "offset": True}, {"epoch": epoch, "offset": 1.5}, {"epoch": epoch, "offset": "1"}]
    for n, since in enumerate(bad, start=1):
        answer = request(client, {"type": "SUBSCRIBE", "topic": "chat.1", "id": n, "recover": True, "since": since})
        assert (answer["type"], answer["code"], answer["id"]) == ("ERROR", "INVALID_MESSAGE", n), (since, answer)
    answer = request(client, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 99, "recover": "yes"})
    assert (answer["type"], answer["code"]) == ("ERROR", "INVALID_MESSAGE")
    publish_all(publisher, "chat.1", 1)
    assert_next_is_pong(client, "no MESSAGE: nothing was subscribed")


def test_unknown_epoch_or_future_offset_on_subscribe_is_recovered_false(serve):
    live = serve(history_server())
    client, _ = live.join("alice")
    publisher, _ = live.join("bob")
    publish_all(publisher, "chat.1", 3)
    unknown = request(client, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 1, "recover": True,
                               "since": {"epoch": "deadbeef", "offset": 2}})
    assert (unknown["type"], unknown["recovered"], unknown["publications"], unknown["offset"]) == (
        "SUBSCRIBED", False, [], 3)
    future = request(client, {"type": "SUBSCRIBE", "topic": "chat.1", "id": 2, "recover": True,
                              "since": {"epoch": unknown["epoch"], "offset": 50}})
    assert (future["type"], future["recovered"], future["publications"]) == ("SUBSCRIBED", False, [])


def test_bad_history_requests_get_documented_errors_and_the_connection_goes_on(serve):
    live = serve(history_server(history_recover_limit=50))
    client, _ = live.join("alice")
    publish_all(client, "chat.1", 3)
    epoch = request(client, {"type": "HISTORY", "topic": "chat.1", "id": 0})["epoch"]

    def code_of(message):
        answer = request(client, message)
        assert answer["type"] == "ERROR" and answer["id"] == message["id"], answer
        return answer

    assert code_of({"type": "HISTORY", "topic": "plain", "id": 1})["code"] == "NO_HISTORY"
    for n, limit in enumerate([51, 10**12, -1, True, "5", 2.5], start=2):
        assert code_of({"type": "HISTORY", "topic": "chat.1", "id": n, "limit": limit})["code"] == "INVALID_MESSAGE"
    assert code_of({"type": "HISTORY", "topic": "chat.1", "id": 10, "since": "x"})["code"] == "INVALID_MESSAGE"
    assert code_of({"type": "HISTORY", "topic": "chat.1", "id": 11, "reverse": 1})["code"] == "INVALID_MESSAGE"
    for n, since in enumerate([{"epoch": "deadbeef", "offset": 1}, {"epoch": epoch, "offset": 4}], start=12):
        answer = code_of({"type": "HISTORY", "topic": "chat.1", "id": n, "since": since})
        assert (answer["code"], answer["epoch"], answer["offset"]) == ("UNRECOVERABLE_POSITION", epoch, 3)
    assert code_of({"type": "HISTORY", "topic": "", "id": 14})["code"] == "INVALID_MESSAGE"
    assert request(client, {"type": "HISTORY", "topic": "chat.1", "id": 15, "limit": 0})["publications"] == []
    assert_next_is_pong(client)
    send_json(client, {"type": "PUBLISH", "topic": "chat.1", "id": 16, "data": 1})
    assert recv_json(client)["offset"] == 4


def test_metrics_count_recoveries_by_outcome_and_the_memory_kept(serve):
    from tests.support.realtime import metric, scrape

    live = serve(history_server(size=5))
    client, _ = live.join("alice")
    epoch = request(client, {"type": "SUBSCRIBE", "topic": "chat.m", "id": 1})["epoch"]
    publish_all(client, "chat.m", 8)
    request(client, {"type": "SUBSCRIBE", "topic": "chat.m", "id": 2, "recover": True,
                     "since": {"epoch": epoch, "offset": 6}})
    request(client, {"type": "SUBSCRIBE", "topic": "chat.m", "id": 3, "recover": True,
                     "since": {"epoch": epoch, "offset": 0}})
    samples = scrape(live)
    assert metric(samples, "uws_history_recoveries_total", outcome="recovered") == 1
    assert metric(samples, "uws_history_recoveries_total", outcome="gap") == 1
    assert metric(samples, "uws_history_publications_recovered_total") == 2
    assert metric(samples, "uws_history_memory_bytes") > 0 and metric(samples, "uws_history_topics") == 1


def test_a_subscribed_publisher_gets_its_own_message_only_with_echo(serve):
    """The same rule as with a broker (tests/integration/broker/test_history_hubs.py) and as
    on plain topics: the publisher's copy comes only with echo, once."""
    live = serve(history_server())
    publisher, hello = live.join("alice")
    other, _ = live.join("bob")
    for client in (publisher, other):
        request(client, {"type": "SUBSCRIBE", "topic": "chat.e", "id": 1})
    assert request(publisher, {"type": "PUBLISH", "topic": "chat.e", "id": 2, "data": 1})["offset"] == 1
    assert recv_json(other)["offset"] == 1
    assert_next_is_pong(publisher, "no MESSAGE to a subscribed publisher without echo")
    send_json(publisher, {"type": "PUBLISH", "topic": "chat.e", "data": 2, "echo": True})
    echoed = recv_json(publisher)
    assert (echoed["type"], echoed["offset"], echoed["from"]) == ("MESSAGE", 2, hello["clientId"])
    assert recv_json(other)["offset"] == 2
    assert_next_is_pong(publisher, "one echoed copy")
