"""Data in both directions: framing at every length encoding, fragmentation, ping/pong, and the
Python types the handlers see and send."""

from __future__ import annotations

import time

import pytest

from tests.support.harness import payload_of_size, text_of_size
from uws_py import CompressOptions, OpCode, SendStatus
from tests.support.wsclient import Op, connect, encode_frame

# 125/126 and 65535/65536 are the edges of the 7-bit, 16-bit and 64-bit length encodings.
SIZES = [0, 1, 125, 126, 127, 65535, 65536, 1024 * 1024]
ROOMY = {"max_payload_length": 2 * 1024 * 1024}


@pytest.fixture
def roomy_echo_server(make_server, recorder):
    return make_server(recorder.behavior(**ROOMY))


@pytest.mark.parametrize("size", SIZES)
def test_binary_echo(roomy_echo_server, recorder, size):
    payload = payload_of_size(size, seed=size)
    with connect(*roomy_echo_server.address) as client:
        client.send_binary(payload)
        assert client.recv_message(timeout=10) == (Op.BINARY, payload)
    _, message, opcode = recorder.next_message()
    assert opcode == OpCode.BINARY
    assert type(message) is bytes
    assert message == payload


@pytest.mark.parametrize("size", SIZES)
def test_text_echo(roomy_echo_server, recorder, size):
    text = text_of_size(size)
    with connect(*roomy_echo_server.address) as client:
        client.send_text(text)
        reply = client.recv_message(timeout=10)
        assert reply.opcode == Op.TEXT
        assert reply.text == text
    _, message, opcode = recorder.next_message()
    assert opcode == OpCode.TEXT
    assert type(message) is str
    assert message == text


def test_fragmented_text_with_ping_between_fragments(echo_server):
    text = "fragmented ✓ message"
    data = text.encode()
    with connect(*echo_server.address) as client:
        client.send_raw(
            encode_frame(Op.TEXT, data[:5], fin=False)
            + encode_frame(Op.PING, b"mid-message")
            + encode_frame(Op.CONTINUATION, data[5:12], fin=False)
            + encode_frame(Op.CONTINUATION, data[12:], fin=True)
        )
        pong = client.recv_frame()
        assert pong == (True, Op.PONG, b"mid-message")
        assert client.recv_message() == (Op.TEXT, data)


def test_fragmented_binary_in_many_pieces(roomy_echo_server):
    payload = payload_of_size(100_000)
    pieces = [payload[i : i + 7000] for i in range(0, len(payload), 7000)]
    frames = encode_frame(Op.BINARY, pieces[0], fin=False)
    frames += b"".join(encode_frame(Op.CONTINUATION, p, fin=False) for p in pieces[1:-1])
    frames += encode_frame(Op.CONTINUATION, pieces[-1], fin=True)
    with connect(*roomy_echo_server.address) as client:
        client.send_raw(frames)
        assert client.recv_message(timeout=10) == (Op.BINARY, payload)


def test_utf8_character_split_across_fragments_is_valid(echo_server):
    data = "€uro".encode()  # the euro sign is 3 bytes; split it 1 + 2
    with connect(*echo_server.address) as client:
        client.send_raw(
            encode_frame(Op.TEXT, data[:1], fin=False)
            + encode_frame(Op.CONTINUATION, data[1:], fin=True)
        )
        assert client.recv_message() == (Op.TEXT, data)


def test_empty_fragments(echo_server):
    with connect(*echo_server.address) as client:
        client.send_raw(
            encode_frame(Op.TEXT, b"", fin=False)
            + encode_frame(Op.CONTINUATION, b"", fin=False)
            + encode_frame(Op.CONTINUATION, b"", fin=True)
        )
        assert client.recv_message() == (Op.TEXT, b"")


@pytest.mark.parametrize(
    "payload", [b"", b"ping!", payload_of_size(125)], ids=["empty", "short", "125"]
)
def test_ping_gets_pong_with_same_payload(echo_server, recorder, payload):
    with connect(*echo_server.address) as client:
        client.send_frame(Op.PING, payload)
        assert client.recv_frame() == (True, Op.PONG, payload)
    assert recorder.messages.empty(), "a ping reached the message handler"


def test_unsolicited_pong_is_ignored(echo_server, recorder):
    with connect(*echo_server.address) as client:
        client.send_frame(Op.PONG, b"nobody asked")
        client.send_text("after pong")
        assert client.recv_message() == (Op.TEXT, b"after pong")
    _, message, _ = recorder.next_message()
    assert message == "after pong"


def test_many_messages_in_one_write_are_echoed_in_order(echo_server):
    messages = [f"message {i}".encode() for i in range(200)]
    with connect(*echo_server.address) as client:
        client.send_raw(b"".join(encode_frame(Op.TEXT, m) for m in messages))
        for expected in messages:
            assert client.recv_message() == (Op.TEXT, expected)


def test_frame_arriving_one_byte_at_a_time(echo_server):
    payload = payload_of_size(300)
    frame = encode_frame(Op.BINARY, payload)
    with connect(*echo_server.address) as client:
        for i in range(len(frame)):
            client.send_raw(frame[i : i + 1])
            if i < 12:
                # Pause inside the header so the parser sees it in pieces, not as one read.
                time.sleep(0.005)
        assert client.recv_message() == (Op.BINARY, payload)


def test_sent_python_types_map_to_opcodes(make_server, recorder):
    statuses = []

    def on_message(ws, message, opcode):
        statuses.append(ws.send("a str"))
        statuses.append(ws.send(b"bytes"))
        statuses.append(ws.send(bytearray(b"bytearray")))
        statuses.append(ws.send(memoryview(b"xxmemoryviewxx")[2:-2]))
        statuses.append(ws.send(b"bytes as text", OpCode.TEXT))
        statuses.append(ws.send("str as binary", OpCode.BINARY))
        statuses.append(ws.send(b"keyword opcode", opcode=OpCode.TEXT))

    server = make_server(recorder.behavior(message=recorder.guard(on_message)))
    with connect(*server.address) as client:
        client.send_text("go")
        received = [client.recv_message() for _ in range(7)]
    assert received == [
        (Op.TEXT, b"a str"),
        (Op.BINARY, b"bytes"),
        (Op.BINARY, b"bytearray"),
        (Op.BINARY, b"memoryview"),
        (Op.TEXT, b"bytes as text"),
        (Op.BINARY, b"str as binary"),
        (Op.TEXT, b"keyword opcode"),
    ]
    assert statuses == [SendStatus.SUCCESS] * 7


def test_compress_flag_without_negotiation_sends_plain_frames(make_server, recorder):
    def on_message(ws, message, opcode):
        ws.send(message, opcode, compress=True)

    behavior = recorder.behavior(
        message=recorder.guard(on_message), compression=CompressOptions.DISABLED
    )
    server = make_server(behavior)
    with connect(*server.address) as client:
        client.send_text("z" * 1000)
        # parse_frame refuses RSV1 on a frame from a server that negotiated no extension.
        assert client.recv_message() == (Op.TEXT, b"z" * 1000)


def test_cork_sends_everything_queued_inside_it(make_server, recorder):
    def on_message(ws, message, opcode):
        ws.cork(lambda: [ws.send(f"{message}-{i}") for i in range(3)])

    server = make_server(recorder.behavior(message=recorder.guard(on_message)))
    with connect(*server.address) as client:
        client.send_text("corked")
        assert [client.recv_message().text for _ in range(3)] == [
            "corked-0",
            "corked-1",
            "corked-2",
        ]


def test_message_of_exactly_max_payload_length_is_accepted(make_server, recorder):
    server = make_server(recorder.behavior(max_payload_length=1024))
    with connect(*server.address) as client:
        client.send_binary(payload_of_size(1024))
        assert client.recv_message() == (Op.BINARY, payload_of_size(1024))


def test_remote_address_is_loopback(echo_server, recorder):
    with connect(*echo_server.address):
        ws = recorder.next_open()
        assert echo_server.call(ws.get_remote_address) == "127.0.0.1"
