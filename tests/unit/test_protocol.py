"""uws_py.protocol: decoding client messages, building ERROR replies, encoding."""

from __future__ import annotations

import time

import pytest

from uws_py import protocol
from uws_py.protocol import INVALID_MESSAGE, ProtocolError, decode, encode, error


def decode_error(data: "str | bytes") -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        decode(data)
    assert caught.value.code == INVALID_MESSAGE
    return caught.value


@pytest.mark.parametrize("data", ['{"type": "PING"}', b'{"type": "PING"}', bytearray(b'{"type":"PING"}')])
def test_decode_accepts_text_and_bytes(data: "str | bytes") -> None:
    assert decode(data) == {"type": "PING"}


def test_decode_keeps_every_field() -> None:
    message = decode('{"type": "chat", "id": 3, "data": {"text": "hi", "n": [1, 2.5, null, true]}}')
    assert message == {"type": "chat", "id": 3, "data": {"text": "hi", "n": [1, 2.5, None, True]}}


@pytest.mark.parametrize(
    "data",
    ["", b"", "{", "{type: 1}", "{'type': 'x'}", '{"type": "x"} trailing', "NaN", '{"type": "x", "n": NaN}', b"\xff\xfe"],
)
def test_decode_refuses_what_is_not_json(data: "str | bytes") -> None:
    assert decode_error(data).message.startswith("not JSON")


@pytest.mark.parametrize("data", ["[]", '["type", "x"]', '"PING"', "1", "null", "true"])
def test_decode_refuses_non_objects(data: str) -> None:
    assert "object" in decode_error(data).message


@pytest.mark.parametrize(
    "data", ["{}", '{"kind": "x"}', '{"type": ""}', '{"type": null}', '{"type": 1}', '{"type": ["x"]}', '{"type": {}}']
)
def test_decode_needs_a_non_empty_string_type(data: str) -> None:
    assert "'type'" in decode_error(data).message


def test_decode_huge_numbers_never_crash() -> None:
    # Past the double range orjson refuses the number; past 64 bits an integer becomes a float.
    decode_error('{"type": "x", "n": 1' + "0" * 400 + "}")
    decode_error('{"type": "x", "n": -1e400}')
    assert decode('{"type": "x", "n": 18446744073709551615}')["n"] == 18446744073709551615
    assert decode('{"type": "x", "n": -9223372036854775808}')["n"] == -9223372036854775808
    assert isinstance(decode('{"type": "x", "n": 18446744073709551616}')["n"], float)


@pytest.mark.parametrize("depth", [10, 500, 10_000, 100_000])
def test_decode_deep_nesting_raises_protocol_error_or_parses(depth: int) -> None:
    for document in ("[" * depth + "]" * depth, '{"type": "x", "a": ' + "[" * depth + "]" * depth + "}",
                     '{"type": "x", "a": ' + '{"a": ' * depth + "1" + "}" * depth + "}"):
        try:
            decode(document)
        except ProtocolError as exc:
            assert exc.code == INVALID_MESSAGE


def test_decode_unicode() -> None:
    text = "héllo wörld ✓ 日本語 🎉"
    assert decode('{"type": "chat", "text": "' + text + '"}')["text"] == text
    assert decode(('{"type": "chat", "text": "' + text + '"}').encode())["text"] == text
    assert decode('{"type": "\\u00e9\\ud83c\\udf89"}')["type"] == "é🎉"


def test_decode_refuses_lone_surrogates() -> None:
    decode_error('{"type": "\ud800"}')
    decode_error(b'{"type": "\xed\xa0\x80"}')


def test_error_shape_without_id() -> None:
    assert error(protocol.UNKNOWN_TYPE, "no handler") == {"type": "ERROR", "code": "UNKNOWN_TYPE", "message": "no handler"}


@pytest.mark.parametrize("request_id", [0, "abc", 7, {"n": 1}, False])
def test_error_echoes_any_id_but_none(request_id: object) -> None:
    reply = error(protocol.FORBIDDEN, "no", request_id)
    assert reply == {"type": "ERROR", "code": "FORBIDDEN", "message": "no", "id": request_id}


def test_error_carries_extra_fields() -> None:
    reply = error(protocol.RATE_LIMITED, "slow down", None, retryAfter=250)
    assert reply == {"type": "ERROR", "code": "RATE_LIMITED", "message": "slow down", "retryAfter": 250}


def test_protocol_error_keeps_code_message_and_extra() -> None:
    exc = ProtocolError(protocol.RATE_LIMITED, "slow down", retryAfter=5)
    assert (exc.code, exc.message, exc.extra, str(exc)) == ("RATE_LIMITED", "slow down", {"retryAfter": 5}, "slow down")


def test_error_codes_are_their_own_names() -> None:
    assert protocol.ERROR_CODES == (
        "INVALID_MESSAGE", "UNKNOWN_TYPE", "UNAUTHORIZED", "FORBIDDEN", "RATE_LIMITED", "PAYLOAD_TOO_LARGE", "INTERNAL",
        "NO_HISTORY", "UNRECOVERABLE_POSITION", "UNAVAILABLE",  # the history spec's (issue 13)
        "LIMIT_EXCEEDED",  # per-connection bounds (issue 12)
        "NO_PRESENCE",  # issue 15
    )
    for code in protocol.ERROR_CODES:
        assert getattr(protocol, code) == code


@pytest.mark.parametrize(
    "message",
    [
        {"type": "PING"},
        {"type": "MESSAGE", "topic": "chat.1", "data": {"text": "日本語 🎉", "n": [1, -2, 3.5, None, True]}, "from": None},
        {"type": "BATCH", "timestamp": 1700000000000, "messages": [{"type": "PONG"}, {"type": "ACK", "id": "x"}]},
    ],
)
def test_encode_round_trip(message: dict) -> None:
    encoded = encode(message)
    assert isinstance(encoded, bytes)
    assert decode(encoded) == message


def test_encode_is_compact_utf8() -> None:
    assert encode({"type": "x", "t": "é"}) == '{"type":"x","t":"é"}'.encode()


def test_now_ms_is_wall_clock_milliseconds() -> None:
    before = int(time.time() * 1000)
    assert before - 1 <= protocol.now_ms() <= int(time.time() * 1000) + 1
