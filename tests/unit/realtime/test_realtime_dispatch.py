"""uws_py.realtime.dispatch: message -> handler -> reply, on a fake socket."""

from __future__ import annotations

import orjson
import pytest

from uws_py import Batching, RateLimit
from uws_py.realtime.protocol import ProtocolError

BINARY = 2


def echo_harness(harness, **options):
    h = harness(**options)

    @h.on("ECHO")
    def echo(client, message):
        return {"type": "ECHOED", "value": message.get("value")}

    return h


def test_inline_handler_reply_carries_the_request_id(harness):
    h = echo_harness(harness)
    ws = h.connect()
    assert ws.frames()[0]["type"] == "CONNECTED"
    assert h.send(ws, {"type": "ECHO", "id": 7, "value": "hi"}) == [{"type": "ECHOED", "value": "hi", "id": 7}]
    assert h.send(ws, {"type": "ECHO", "value": 1}) == [{"type": "ECHOED", "value": 1}]
    assert h.engine.router.get("ECHO").calls == 2


def test_not_json_and_not_an_object_are_invalid_messages(harness):
    h = echo_harness(harness)
    ws = h.connect()
    ws.frames()
    (reply,) = h.send(ws, "{nope")
    assert reply["type"] == "ERROR" and reply["code"] == "INVALID_MESSAGE" and reply["message"].startswith("not JSON")
    assert h.send(ws, "[1, 2]") == [{"type": "ERROR", "code": "INVALID_MESSAGE", "message": "a message is a JSON object"}]
    assert h.send(ws, {"type": "", "id": 3}) == [
        {"type": "ERROR", "code": "INVALID_MESSAGE", "message": "field 'type' must be a non-empty string", "id": 3}
    ]
    assert h.engine.metrics.errors == {"INVALID_MESSAGE": 3}


def test_unknown_type(harness):
    h = echo_harness(harness)
    ws = h.connect()
    ws.frames()
    assert h.send(ws, {"type": "NOPE", "id": "a"}) == [
        {"type": "ERROR", "code": "UNKNOWN_TYPE", "message": "no handler for type 'NOPE'", "id": "a"}
    ]


def test_handler_exceptions_become_errors_and_the_connection_goes_on(harness):
    h = harness()

    @h.on("BOOM")
    def boom(client, message):
        raise RuntimeError("broken")

    @h.on("REFUSE")
    def refuse(client, message):
        raise ProtocolError("FORBIDDEN", "not you")

    ws = h.connect()
    ws.frames()
    assert h.send(ws, {"type": "BOOM", "id": 1}) == [{"type": "ERROR", "code": "INTERNAL", "message": "internal error", "id": 1}]
    assert h.send(ws, {"type": "REFUSE", "id": 2}) == [{"type": "ERROR", "code": "FORBIDDEN", "message": "not you", "id": 2}]
    assert h.send(ws, {"type": "PING", "id": 3})[0]["type"] == "PONG"


def test_none_is_an_ack_only_for_requests_with_an_id_and_other_values_are_results(harness):
    h = harness()

    @h.on("NOTHING")
    def nothing(client, message):
        return None

    @h.on("NUMBER")
    def number(client, message):
        return 42

    ws = h.connect()
    ws.frames()
    assert h.send(ws, {"type": "NOTHING"}) == []
    assert h.send(ws, {"type": "NOTHING", "id": 1}) == [{"type": "ACK", "id": 1}]
    assert h.send(ws, {"type": "NUMBER", "id": 2}) == [{"type": "RESULT", "data": 42, "id": 2}]


def test_unencodable_reply_becomes_internal_with_the_id(harness):
    h = harness()

    @h.on("SET")
    def returns_a_set(client, message):
        return {"type": "S", "value": {1, 2}}

    ws = h.connect()
    ws.frames()
    assert h.send(ws, {"type": "SET", "id": 5}) == [
        {"type": "ERROR", "code": "INTERNAL", "message": "the reply could not be encoded", "id": 5}
    ]


def test_schema_refusal_names_the_field(harness):
    h = harness()

    def needs_n(message):
        if not isinstance(message.get("n"), int):
            raise ValueError("field 'n' must be an int")

    @h.on("STRICT", schema=needs_n)
    def strict(client, message):
        return {"type": "OK", "n": message["n"] + 1}

    ws = h.connect()
    ws.frames()
    assert h.send(ws, {"type": "STRICT", "n": "x", "id": 1}) == [
        {"type": "ERROR", "code": "INVALID_MESSAGE", "message": "field 'n' must be an int", "id": 1}
    ]
    assert h.send(ws, {"type": "STRICT", "n": 1, "id": 2}) == [{"type": "OK", "n": 2, "id": 2}]


def test_batch_answers_in_one_frame_with_the_batch_id(harness):
    h = echo_harness(harness)
    ws = h.connect()
    ws.frames()
    (reply,) = h.send(ws, {"type": "BATCH", "id": 9, "messages": [
        {"type": "ECHO", "id": 1, "value": "a"}, {"type": "NOPE", "id": 2}, "junk", {"type": "BATCH", "messages": []},
    ]})
    assert reply["type"] == "BATCH" and reply["id"] == 9 and isinstance(reply["timestamp"], int)
    assert reply["messages"] == [
        {"type": "ECHOED", "value": "a", "id": 1},
        {"type": "ERROR", "code": "UNKNOWN_TYPE", "message": "no handler for type 'NOPE'", "id": 2},
        {"type": "ERROR", "code": "INVALID_MESSAGE", "message": "each batched message is an object with a type"},
        {"type": "ERROR", "code": "INVALID_MESSAGE", "message": "a BATCH cannot contain a BATCH"},
    ]


def test_empty_batch_is_acked_and_a_batch_without_list_refused(harness):
    h = harness()
    ws = h.connect()
    ws.frames()
    assert h.send(ws, {"type": "BATCH", "id": 1, "messages": []}) == [{"type": "ACK", "id": 1}]
    assert h.send(ws, {"type": "BATCH", "messages": []}) == []
    assert h.send(ws, {"type": "BATCH", "id": 2, "messages": {}}) == [
        {"type": "ERROR", "code": "INVALID_MESSAGE", "message": "field 'messages' must be a list", "id": 2}
    ]


def test_payload_over_the_soft_limit_is_refused_in_bytes(harness):
    h = echo_harness(harness, max_payload_length=100)
    ws = h.connect()
    ws.frames()
    small = '{"type":"ECHO","value":"' + "é" * 30 + '"}'  # 60 bytes of é: under 100
    assert h.send(ws, small)[0]["type"] == "ECHOED"
    big = '{"type":"ECHO","value":"' + "é" * 45 + '"}'  # 59 characters, 104 bytes
    assert h.send(ws, big) == [{"type": "ERROR", "code": "PAYLOAD_TOO_LARGE", "message": "message over 100 bytes"}]


def test_rate_limit_refuses_then_closes_a_client_that_keeps_going(harness):
    h = echo_harness(harness, rate_limit=RateLimit(messages=2, per_seconds=3600, close_after=1))
    ws = h.connect()
    ws.frames()
    assert h.send(ws, {"type": "ECHO"})[0]["type"] == "ECHOED"
    assert h.send(ws, {"type": "ECHO"})[0]["type"] == "ECHOED"
    refused = h.send(ws, {"type": "ECHO"})
    assert refused[0]["code"] == "RATE_LIMITED" and refused[0]["retryAfter"] > 0
    h.send(ws, {"type": "ECHO"})
    assert ws.ended == []
    h.send(ws, {"type": "ECHO"})  # the third refusal is more than close_after * messages
    assert ws.ended == [(1008, "rate limit exceeded")]
    assert h.engine.metrics.rate_limited == 3


def test_binary_goes_to_the_binary_handler_or_is_refused(harness):
    h = harness()
    ws = h.connect()
    ws.frames()
    h.engine.dispatcher.on_message(ws, b"\x00\x01", BINARY)
    assert ws.frames() == [{"type": "ERROR", "code": "INVALID_MESSAGE", "message": "binary messages are not accepted"}]
    received = []
    h.engine.dispatcher.binary_handler = lambda client, data: received.append((client.id, data))
    h.engine.dispatcher.on_message(ws, b"\x00\x01", BINARY)
    assert received == [(ws.client.id, b"\x00\x01")] and ws.frames() == []


def test_batching_combines_replies_until_the_timer(harness):
    h = echo_harness(harness, batching=Batching(max_size=10, max_wait_ms=20))
    ws = h.connect()
    assert [f["type"] for f in ws.frames()] == ["CONNECTED"]  # priority: not held back
    assert h.send(ws, {"type": "ECHO", "id": 1}) == []
    assert h.send(ws, {"type": "ECHO", "id": 2}) == []
    h.loop.fire()
    (batch,) = ws.frames()
    assert batch["type"] == "BATCH" and [m["id"] for m in batch["messages"]] == [1, 2]
    assert h.engine.metrics.batches_sent == 1


def test_async_handler_without_a_serving_loop_is_an_internal_error(harness):
    h = harness()

    @h.on("SLOW")
    async def slow(client, message):
        return {"type": "DONE"}

    ws = h.connect()
    ws.frames()
    assert h.send(ws, {"type": "SLOW", "id": 1}) == [{"type": "ERROR", "code": "INTERNAL", "message": "internal error", "id": 1}]


def test_async_handler_replies_when_its_task_runs(harness):
    import asyncio

    h = harness()

    @h.on("SLOW")
    async def slow(client, message):
        await asyncio.sleep(0)
        return {"type": "DONE"}

    async def run():
        h.engine.runner.loop = asyncio.get_running_loop()
        ws = h.connect()
        ws.frames()
        assert h.send(ws, {"type": "SLOW", "id": 1}) == []
        for _ in range(5):
            await asyncio.sleep(0)
        return ws.frames()

    assert asyncio.run(run()) == [{"type": "DONE", "id": 1}]
    assert h.engine.metrics.latency["SLOW"].count == 1


@pytest.mark.parametrize("value", [None, True, 1.5, "x" * 100, [1, [2, [3]]], {"a": {"b": None}}])
def test_inline_reply_is_the_same_as_the_slow_path(harness, value):
    """The inline path (a dict sent on the spot) and Client.send encode alike."""
    h = echo_harness(harness)
    ws = h.connect()
    ws.frames()
    inline = h.send(ws, {"type": "ECHO", "id": 1, "value": value})
    ws.client.send({"type": "ECHOED", "value": value, "id": 1})
    assert inline == ws.frames() and orjson.loads(orjson.dumps(inline[0]))["value"] == value
