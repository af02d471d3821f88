"""The realtime layer's wire protocol (docs/protocol.md): CONNECTED, the built-in types,
replies of application handlers matched by id, and the errors a bad message gets."""

from __future__ import annotations

import queue
import time

import pytest

from tests.support.realtime import (
    WAIT,
    BUILTIN_TYPES,
    realtime_server,
    send_json,
    recv_json,
    request,
    assert_next_is_pong,
)


def test_connected_names_client_user_time_and_capabilities(serve):
    server = realtime_server(max_payload_length=4096)

    @server.on("ECHO")
    def echo(client, message):
        return {"type": "ECHOED"}

    live = serve(server)
    before_ms = time.time() * 1000
    _, first = live.join("alice")
    _, second = live.join("bob")

    assert isinstance(first["clientId"], str) and first["clientId"]
    assert first["clientId"] != second["clientId"]
    assert (first["userId"], second["userId"]) == ("alice", "bob")
    assert abs(first["serverTime"] - before_ms) < 2000, (first["serverTime"], before_ms)
    assert first["capabilities"] == {
        "batching": False,
        "compression": True,
        "compressionThreshold": 256,
        "maxPayloadLength": 4096,
        "maxBatchItems": 100,
        "maxSubscriptions": 128,
        "maxTopicLength": 255,
        "rateLimit": {"messages": 100, "perSeconds": 60.0},
        "types": BUILTIN_TYPES + ["ECHO"],
    }


def test_connected_reports_compression_off_when_disabled(serve):
    live = serve(realtime_server(compression=False, rate_limit=None))
    _, connected = live.join()
    assert connected["capabilities"]["compression"] is False
    assert connected["capabilities"]["rateLimit"] is None


# -- built-in types -----------------------------------------------------------------------------


def test_subscribe_and_unsubscribe_confirm_and_change_delivery(serve):
    live = serve(realtime_server())
    subscriber, _ = live.join("alice")
    publisher, _ = live.join("bob")

    for request_id in (1, 2):
        assert request(subscriber, {"type": "SUBSCRIBE", "topic": "room", "id": request_id}) == {
            "type": "SUBSCRIBED", "topic": "room", "id": request_id,
        }, "subscribing twice is not an error"
    send_json(publisher, {"type": "PUBLISH", "topic": "room", "data": "first"})
    assert recv_json(subscriber)["data"] == "first"
    assert_next_is_pong(subscriber, "one MESSAGE for a topic subscribed twice")

    assert request(subscriber, {"type": "UNSUBSCRIBE", "topic": "room", "id": "u"}) == {
        "type": "UNSUBSCRIBED", "topic": "room", "id": "u",
    }
    send_json(publisher, {"type": "PUBLISH", "topic": "room", "data": "second"})
    assert_next_is_pong(publisher, "no reply to a PUBLISH without id")
    assert_next_is_pong(subscriber, "no MESSAGE after UNSUBSCRIBE")


def test_subscribe_and_unsubscribe_without_topic_are_invalid(serve):
    live = serve(realtime_server())
    client, _ = live.join()
    for kind in ("SUBSCRIBE", "UNSUBSCRIBE"):
        reply = request(client, {"type": kind, "id": kind, "topic": ""})
        assert (reply["type"], reply["code"], reply["id"]) == ("ERROR", "INVALID_MESSAGE", kind), reply
        assert "topic" in reply["message"]


def test_publish_reaches_others_with_publisher_id_and_echoes_only_on_request(serve):
    live = serve(realtime_server())
    subscriber, _ = live.join("alice")
    publisher, connected = live.join("bob")
    publisher_id = connected["clientId"]
    request(subscriber, {"type": "SUBSCRIBE", "topic": "room"})
    request(publisher, {"type": "SUBSCRIBE", "topic": "room"})

    send_json(publisher, {"type": "PUBLISH", "topic": "room", "data": {"n": 1}})
    assert recv_json(subscriber) == {"type": "MESSAGE", "topic": "room", "data": {"n": 1}, "from": publisher_id}
    assert_next_is_pong(publisher, "no MESSAGE to a subscribed publisher without echo")

    send_json(publisher, {"type": "PUBLISH", "topic": "room", "data": [2], "echo": True, "id": "p2"})
    assert recv_json(subscriber) == {"type": "MESSAGE", "topic": "room", "data": [2], "from": publisher_id}
    echoed = recv_json(publisher)
    assert echoed == {"type": "MESSAGE", "topic": "room", "data": [2], "from": publisher_id}
    assert recv_json(publisher) == {"type": "PUBLISHED", "topic": "room", "id": "p2"}
    assert_next_is_pong(publisher, "one echoed copy, not a second one through the subscription")
    assert_next_is_pong(subscriber, "exactly one MESSAGE per publish")


def test_publish_without_data_is_invalid(serve):
    live = serve(realtime_server())
    client, _ = live.join()
    reply = request(client, {"type": "PUBLISH", "topic": "room", "id": 9})
    assert (reply["type"], reply["code"], reply["id"]) == ("ERROR", "INVALID_MESSAGE", 9), reply
    assert "data" in reply["message"]


def test_batch_replies_in_one_frame_in_order_with_errors_inside(serve):
    live = serve(realtime_server())
    client, _ = live.join()
    reply = request(
        client,
        {
            "type": "BATCH",
            "id": "b1",
            "messages": [
                {"type": "PING", "id": 1},
                {"type": "SUBSCRIBE", "topic": "room", "id": 2},
                {"type": "NO_SUCH_TYPE", "id": 3},
                42,
                {"type": "BATCH", "id": 5, "messages": []},
                {"type": "UNSUBSCRIBE", "topic": "room", "id": 6},
            ],
        },
    )
    assert reply["type"] == "BATCH" and reply["id"] == "b1", reply
    assert abs(reply["timestamp"] - time.time() * 1000) < 2000
    summary = [(m["type"], m.get("code"), m.get("id")) for m in reply["messages"]]
    assert summary == [
        ("PONG", None, 1),
        ("SUBSCRIBED", None, 2),
        ("ERROR", "UNKNOWN_TYPE", 3),
        ("ERROR", "INVALID_MESSAGE", None),
        ("ERROR", "INVALID_MESSAGE", 5),
        ("UNSUBSCRIBED", None, 6),
    ]
    assert_next_is_pong(client, "one BATCH frame and nothing more")


def test_batch_with_id_and_no_replies_is_acked_once(serve):
    live = serve(realtime_server())
    client, _ = live.join()
    quiet_items = [{"type": "PUBLISH", "topic": "room", "data": 1}]
    assert request(client, {"type": "BATCH", "id": 8, "messages": quiet_items}) == {"type": "ACK", "id": 8}
    send_json(client, {"type": "BATCH", "messages": quiet_items})
    assert_next_is_pong(client, "no reply to a BATCH without id and without item replies")


def test_batch_without_message_list_is_invalid(serve):
    live = serve(realtime_server())
    client, _ = live.join()
    reply = request(client, {"type": "BATCH", "id": 4, "messages": {"type": "PING"}})
    assert (reply["type"], reply["code"], reply["id"]) == ("ERROR", "INVALID_MESSAGE", 4), reply


def test_ping_gets_pong_with_server_time(serve):
    live = serve(realtime_server())
    client, _ = live.join()
    reply = request(client, {"type": "PING", "id": "p"})
    assert set(reply) == {"type", "serverTime", "id"} and reply["type"] == "PONG" and reply["id"] == "p"
    assert abs(reply["serverTime"] - time.time() * 1000) < 2000
    assert request(client, {"type": "PING"})["type"] == "PONG"


# -- application handlers -----------------------------------------------------------------------


def amount_must_be_int(message: dict) -> None:
    if not isinstance(message.get("amount"), int):
        raise ValueError("field 'amount' must be an integer")


@pytest.fixture
def app_server(serve):
    """A server with one handler per kind of return value, a failing one and a schema."""
    server = realtime_server()
    seen: queue.Queue = queue.Queue()

    @server.on("ECHO")
    def echo(client, message):
        seen.put(("ECHO", client.user_id, message))
        return {"type": "ECHOED", "text": message.get("text")}

    @server.on("NOTHING")
    def nothing(client, message):
        seen.put(("NOTHING", client.user_id, message))

    @server.on("COUNT")
    def count(client, message):
        return 3

    @server.on("BOOM")
    def boom(client, message):
        raise RuntimeError("handler failed on purpose")

    @server.on("PAY", schema=amount_must_be_int)
    def pay(client, message):
        return {"type": "PAID", "amount": message["amount"]}

    live = serve(server)
    live.seen = seen
    return live


@pytest.mark.parametrize("request_id", [7, "req-7", None])
def test_handler_dict_reply_carries_request_id(app_server, request_id):
    client, _ = app_server.join("alice")
    message = {"type": "ECHO", "text": "hi"}
    if request_id is not None:
        message["id"] = request_id
    expected = {"type": "ECHOED", "text": "hi"}
    if request_id is not None:
        expected["id"] = request_id
    assert request(client, message) == expected
    kind, user, received = app_server.seen.get(timeout=WAIT)
    assert (kind, user, received) == ("ECHO", "alice", message)


def test_handler_returning_none_is_acked_only_when_id_given(app_server):
    client, _ = app_server.join()
    assert request(client, {"type": "NOTHING", "id": "n1"}) == {"type": "ACK", "id": "n1"}
    send_json(client, {"type": "NOTHING"})
    assert_next_is_pong(client, "no reply to a None-returning handler without id")
    assert app_server.seen.get(timeout=WAIT)[0] == "NOTHING"
    assert app_server.seen.get(timeout=WAIT)[0] == "NOTHING"


def test_handler_returning_non_dict_is_wrapped_in_result(app_server):
    client, _ = app_server.join()
    assert request(client, {"type": "COUNT", "id": 5}) == {"type": "RESULT", "data": 3, "id": 5}


def test_handler_raising_is_internal_error_and_connection_survives(app_server):
    client, _ = app_server.join()
    reply = request(client, {"type": "BOOM", "id": "b"})
    assert (reply["type"], reply["code"], reply["id"]) == ("ERROR", "INTERNAL", "b"), reply
    assert "on purpose" not in reply["message"], "exception text leaked to the client"
    assert request(client, {"type": "ECHO", "text": "still here", "id": 1})["text"] == "still here"


def test_unknown_type_is_refused_with_id(app_server):
    client, _ = app_server.join()
    reply = request(client, {"type": "NOPE", "id": 11})
    assert (reply["type"], reply["code"], reply["id"]) == ("ERROR", "UNKNOWN_TYPE", 11), reply
    assert "NOPE" in reply["message"]


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"[1, 2]", b'"PING"', b'{"id": 1}', b'{"type": 5}', b'{"type": ""}'],
    ids=["bad-json", "array", "string", "no-type", "type-not-string", "empty-type"],
)
def test_malformed_message_is_invalid_and_connection_survives(app_server, payload):
    client, _ = app_server.join()
    client.send_text(payload)
    reply = recv_json(client)
    assert (reply["type"], reply["code"]) == ("ERROR", "INVALID_MESSAGE"), reply
    assert_next_is_pong(client, "the connection to stay usable")


def test_schema_failure_is_invalid_message_naming_the_field(app_server):
    client, _ = app_server.join()
    reply = request(client, {"type": "PAY", "amount": "ten", "id": "p"})
    assert (reply["type"], reply["code"], reply["id"]) == ("ERROR", "INVALID_MESSAGE", "p"), reply
    assert "amount" in reply["message"]
    assert request(client, {"type": "PAY", "amount": 10, "id": "q"}) == {"type": "PAID", "amount": 10, "id": "q"}


def test_binary_message_without_binary_handler_is_invalid(serve):
    live = serve(realtime_server())
    client, _ = live.join()
    client.send_binary(b"\x00\x01\x02")
    reply = recv_json(client)
    assert (reply["type"], reply["code"]) == ("ERROR", "INVALID_MESSAGE"), reply
    assert_next_is_pong(client)


def test_binary_message_goes_to_binary_handler(serve):
    server = realtime_server()
    received: queue.Queue = queue.Queue()

    @server.on_binary
    def on_binary(client, data):
        received.put((client.user_id, data))
        client.send({"type": "GOT_BINARY", "size": len(data)})

    live = serve(server)
    client, _ = live.join("alice")
    data = bytes(range(256)) * 4
    client.send_binary(data)
    assert recv_json(client) == {"type": "GOT_BINARY", "size": 1024}
    user, got = received.get(timeout=WAIT)
    assert user == "alice" and isinstance(got, bytes) and got == data
