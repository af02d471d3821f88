"""Frames a server must refuse (RFC 6455 sections 5 to 8): it fails the connection with a close
frame carrying 1002 (protocol error), 1007 (invalid UTF-8) or 1009 (too big), then closes TCP."""

from __future__ import annotations

import struct

import pytest

from tests.support.failures import INVALID_DATA, PROTOCOL_ERROR, TOO_BIG, assert_connection_failed
from tests.support.harness import payload_of_size
from tests.support.wsclient import RSV1, RSV2, RSV3, Op, connect, encode_close_payload, encode_frame

@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_invalid_close_code(echo_server, recorder, code):
    data = encode_frame(Op.CLOSE, encode_close_payload(code, b"x"))
    assert_connection_failed(echo_server, recorder, data, PROTOCOL_ERROR)


def test_close_payload_of_one_byte(echo_server, recorder):
    assert_connection_failed(echo_server, recorder, encode_frame(Op.CLOSE, b"\x03"), PROTOCOL_ERROR)


@pytest.mark.parametrize(
    "rsv", [RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3], ids=["rsv1", "rsv2", "rsv3", "all"]
)
def test_reserved_bits_on_data_frame(echo_server, recorder, rsv):
    data = encode_frame(Op.TEXT, b"hello", rsv=rsv)
    assert_connection_failed(echo_server, recorder, data, PROTOCOL_ERROR)


def test_reserved_bit_on_ping(echo_server, recorder):
    data = encode_frame(Op.PING, b"hello", rsv=RSV2)
    assert_connection_failed(echo_server, recorder, data, PROTOCOL_ERROR)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_unknown_opcode(echo_server, recorder, opcode):
    assert_connection_failed(echo_server, recorder, encode_frame(opcode, b"what"), PROTOCOL_ERROR)


@pytest.mark.parametrize("opcode", [Op.TEXT, Op.BINARY, Op.PING])
def test_unmasked_client_frame(echo_server, recorder, opcode):
    data = encode_frame(opcode, b"unmasked", mask=False)
    assert_connection_failed(echo_server, recorder, data, PROTOCOL_ERROR)


@pytest.mark.parametrize("opcode", [Op.PING, Op.PONG, Op.CLOSE])
def test_control_frame_over_125_bytes(echo_server, recorder, opcode):
    payload = encode_close_payload(1000, b"r" * 124) if opcode == Op.CLOSE else payload_of_size(126)
    assert len(payload) == 126
    assert_connection_failed(echo_server, recorder, encode_frame(opcode, payload), PROTOCOL_ERROR)


@pytest.mark.parametrize("opcode", [Op.PING, Op.PONG, Op.CLOSE])
def test_fragmented_control_frame(echo_server, recorder, opcode):
    payload = encode_close_payload(1000) if opcode == Op.CLOSE else b"frag"
    data = encode_frame(opcode, payload, fin=False) + encode_frame(
        Op.CONTINUATION, b"ment", fin=True
    )
    assert_connection_failed(echo_server, recorder, data, PROTOCOL_ERROR)


@pytest.mark.parametrize("fin", [True, False], ids=["final", "not-final"])
def test_continuation_without_start(echo_server, recorder, fin):
    data = encode_frame(Op.CONTINUATION, b"orphan", fin=fin)
    assert_connection_failed(echo_server, recorder, data, PROTOCOL_ERROR)


def test_continuation_after_a_complete_message(echo_server):
    with connect(*echo_server.address) as client:
        client.send_text("complete")
        assert client.recv_message() == (Op.TEXT, b"complete")
        client.send_frame(Op.CONTINUATION, b"late", fin=True)
        code, _ = client.expect_close()
        assert code == PROTOCOL_ERROR


@pytest.mark.parametrize("second", [Op.TEXT, Op.BINARY])
def test_new_data_frame_inside_fragmented_message(echo_server, recorder, second):
    data = encode_frame(Op.TEXT, b"first half", fin=False) + encode_frame(
        second, b"intruder", fin=True
    )
    assert_connection_failed(echo_server, recorder, data, PROTOCOL_ERROR)


INVALID_UTF8 = {
    "lone-continuation-byte": b"\x80",
    "ff-byte": b"abc\xff",
    "overlong-slash": b"\xc0\xaf",
    "overlong-3-byte": b"\xe0\x80\xaf",
    "utf16-surrogate": b"\xed\xa0\x80",
    "above-u10ffff": b"\xf4\x90\x80\x80",
    "truncated-at-end": b"euro \xe2\x82",
}


@pytest.mark.parametrize("payload", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_invalid_utf8_text(echo_server, recorder, payload):
    assert_connection_failed(echo_server, recorder, encode_frame(Op.TEXT, payload), INVALID_DATA)


def test_invalid_utf8_completed_in_later_fragment(echo_server, recorder):
    # Each fragment on its own could be a valid prefix; together they are not UTF-8.
    data = encode_frame(Op.TEXT, b"hello \xce", fin=False) + encode_frame(
        Op.CONTINUATION, b"\xff ok", fin=True
    )
    assert_connection_failed(echo_server, recorder, data, INVALID_DATA)


def test_invalid_utf8_in_first_fragment(echo_server, recorder):
    data = encode_frame(Op.TEXT, b"\xff\xfe", fin=False) + encode_frame(
        Op.CONTINUATION, b"ok", fin=True
    )
    assert_connection_failed(echo_server, recorder, data, INVALID_DATA)


def test_utf8_sequence_cut_by_end_of_fragmented_message(echo_server, recorder):
    data = encode_frame(Op.TEXT, b"ab\xf0\x9f", fin=False) + encode_frame(
        Op.CONTINUATION, b"\x98", fin=True
    )
    assert_connection_failed(echo_server, recorder, data, INVALID_DATA)


def test_invalid_utf8_in_close_reason(echo_server, recorder):
    data = encode_frame(Op.CLOSE, encode_close_payload(1000, b"bye \xff"))
    assert_connection_failed(echo_server, recorder, data, INVALID_DATA)


@pytest.fixture
def small_server(make_server, recorder):
    return make_server(recorder.behavior(max_payload_length=1024))


@pytest.mark.parametrize("size", [1025, 4096, 70_000])
def test_message_over_max_payload_length(small_server, recorder, size):
    data = encode_frame(Op.BINARY, payload_of_size(size))
    assert_connection_failed(small_server, recorder, data, TOO_BIG)


def test_oversize_accumulated_across_fragments(small_server, recorder):
    data = (
        encode_frame(Op.TEXT, b"a" * 600, fin=False)
        + encode_frame(Op.CONTINUATION, b"b" * 300, fin=False)
        + encode_frame(Op.CONTINUATION, b"c" * 300, fin=True)
    )
    assert_connection_failed(small_server, recorder, data, TOO_BIG)


def test_oversize_announced_in_header_fails_before_payload_arrives(small_server, recorder):
    """A frame header claiming 1 GiB must be refused from the header alone."""
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 30) + b"\x01\x02\x03\x04"
    assert_connection_failed(small_server, recorder, header, TOO_BIG)
