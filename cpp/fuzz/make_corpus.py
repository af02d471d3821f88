#!/usr/bin/env python3
"""Writes the seed corpora in cpp/fuzz/corpus/<target>/: a few valid inputs for each fuzz target,
in the input layout its source file describes, so that libFuzzer starts past the first bytes.

Run from anywhere; it overwrites the seeds it knows and leaves other files alone. The seeds are
committed, so this only needs running again when a layout or a seed changes.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


def write(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


# ---- fuzz_http_parser: the raw bytes of a request head --------------------------------------

def http_seeds() -> None:
    write("fuzz_http_parser", "upgrade", (
        b"GET /chat?token=abc%20def&room=1 HTTP/1.1\r\n"
        b"Host: example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: keep-alive, Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        b"\r\n"))
    write("fuzz_http_parser", "absolute-form-http10",
          b"GET http://example.com:8080/a/b?x=1+2&y= HTTP/1.0\r\nX-Mixed-Case:  spaced value \t\r\n\r\n")
    write("fuzz_http_parser", "leading-crlf-many-headers",
          b"\r\n\r\nPOST / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\nbody")
    write("fuzz_http_parser", "obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n")
    write("fuzz_http_parser", "incomplete", b"GET /path?q HTTP/1.1\r\nHost: exam")
    write("fuzz_http_parser", "http2", b"GET / HTTP/2.0\r\n\r\n")


# ---- fuzz_frame_parser: settings, chunk sizes, then client frames ---------------------------

ZERO_MASK = b"\0\0\0\0"


def frame(first_byte: int, payload: bytes, mask: bytes = ZERO_MASK) -> bytes:
    """A masked client frame with the shortest length encoding."""
    n = len(payload)
    if n < 126:
        head = bytes([first_byte, 0x80 | n])
    elif n <= 0xFFFF:
        head = bytes([first_byte, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first_byte, 0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def frame_seed(flags: int, chunk_sizes: list[int], stream: bytes) -> bytes:
    return bytes([flags, len(chunk_sizes)] + [size - 1 for size in chunk_sizes]) + stream


def deflate_message(message: bytes, wbits: int = 15) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10
FIN, RSV1 = 0x80, 0x40

# flags: bit 0 compression, bits 1-2 maxPayloadLength index (0, 125, 126, 70000), bit 3 stop at close


def frame_seeds() -> None:
    write("fuzz_frame_parser", "text-ping-close", frame_seed(0b0100, [], (
        frame(FIN | TEXT, b"Hello")
        + frame(FIN | PING, b"are you there")
        + frame(FIN | CLOSE, struct.pack(">H", 1000) + b"bye"))))
    write("fuzz_frame_parser", "fragmented-with-control", frame_seed(0b0110, [1, 3, 7], (
        frame(TEXT, b"Hel", mask=b"\x37\xfa\x21\x3d")
        + frame(FIN | PONG, b"")
        + frame(FIN | CONTINUATION, b"lo \xe2\x82\xac", mask=b"\x37\xfa\x21\x3d")
        + frame(FIN | BINARY, bytes(range(200))))))
    write("fuzz_frame_parser", "compressed", frame_seed(0b0111, [5], (
        frame(FIN | RSV1 | TEXT, deflate_message(b"hello hello hello"))
        + frame(RSV1 | BINARY, deflate_message(b"\x00" * 50)[:3])
        + frame(FIN | CONTINUATION, b"\x00"))))
    write("fuzz_frame_parser", "stop-at-close", frame_seed(0b1010, [2], (
        frame(FIN | CLOSE, struct.pack(">H", 4000) + "déjà".encode())
        + frame(FIN | TEXT, b"after close"))))
    write("fuzz_frame_parser", "utf8-split", frame_seed(0b0100, [1], (
        frame(TEXT, "\U0001d11e".encode()[:2])
        + frame(FIN | CONTINUATION, "\U0001d11e".encode()[2:])
        + frame(FIN | TEXT, b"\xed\xa0\x80"))))
    write("fuzz_frame_parser", "too-big", frame_seed(0b0010, [], frame(FIN | BINARY, b"x" * 126)))


# ---- fuzz_inflate: maxLength, flags, option, offers, then length-prefixed messages --------

def inflate_seed(max_length: int, flags: int, options: int, offers: bytes, messages: list[bytes]) -> bytes:
    out = struct.pack("<HBH", max_length, flags, options) + bytes([len(offers)]) + offers
    for message in messages:
        out += struct.pack("<H", len(message)) + message
    return out


def inflate_seeds() -> None:
    # flags: bits 0-2 window bits - 8, bit 3 reset before each message, bits 4-7 memLevel
    shared = 0x0101
    write("fuzz_inflate", "shared-reset", inflate_seed(
        1000, 0x7 | 0x8 | 0x80, shared, b"permessage-deflate; client_max_window_bits",
        [deflate_message(b"Hello, hello, hello!"), deflate_message(b'{"type":"chat","text":"hi"}')]))
    context = zlib.compressobj(6, zlib.DEFLATED, -15)
    first = context.compress(b"the same words again and again") + context.flush(zlib.Z_SYNC_FLUSH)
    second = context.compress(b"the same words again and again!") + context.flush(zlib.Z_SYNC_FLUSH)
    write("fuzz_inflate", "context-takeover", inflate_seed(
        4000, 0x7 | 0x90, 0x0809,
        b"permessage-deflate; server_max_window_bits=10; client_max_window_bits=12, permessage-deflate",
        [first[:-4], second[:-4]]))
    write("fuzz_inflate", "bomb", inflate_seed(
        100, 0x7 | 0x8 | 0x40, 0x0302, b"permessage-deflate; client_max_window_bits=\"9\"",
        [deflate_message(b"\x00" * 5000)]))
    write("fuzz_inflate", "invalid", inflate_seed(
        64, 0x7, 0x0001,
        b"permessage-deflate; server_no_context_takeover; server_no_context_takeover, x-webkit-deflate-frame",
        [b"\xff\xfe\xfd\xfc", b"\x03\x00"]))
    write("fuzz_inflate", "window-9", inflate_seed(
        300, 0x1 | 0x8 | 0x10, 0x0202, b"permessage-deflate; server_max_window_bits=8",
        [deflate_message(b"0123456789" * 20, wbits=9)]))
    final = zlib.compressobj(6, zlib.DEFLATED, -15)
    write("fuzz_inflate", "final-block", inflate_seed(
        200, 0x7 | 0x8 | 0x80, 0x0000, b"",
        [final.compress(b"ends with BFINAL") + final.flush(zlib.Z_FINISH) + b"trailing"]))


# ---- fuzz_topic_tree: one operation per byte -----------------------------------------------

def op(kind: int, subscriber: int, topic: int) -> int:
    return kind << 5 | subscriber << 3 | topic


SUBSCRIBE, UNSUBSCRIBE, UNSUBSCRIBE_ALL, IS_SUBSCRIBED, NUM_SUBSCRIBERS, FIND = 0, 2, 4, 5, 6, 7


def topic_tree_seeds() -> None:
    everyone_everywhere = [op(SUBSCRIBE, s, t) for s in range(4) for t in range(8)]
    write("fuzz_topic_tree", "fill-then-unsubscribe", bytes(
        everyone_everywhere + [op(UNSUBSCRIBE, s, t) for t in (3, 0, 7) for s in (1, 3, 0)]
        + [op(NUM_SUBSCRIBERS, 0, t) for t in range(8)]))
    write("fuzz_topic_tree", "unsubscribe-all", bytes(
        everyone_everywhere + [op(UNSUBSCRIBE_ALL, 2, 0), op(IS_SUBSCRIBED, 2, 5), op(SUBSCRIBE, 2, 5),
                               op(UNSUBSCRIBE_ALL, 0, 0), op(UNSUBSCRIBE_ALL, 1, 0), op(FIND, 0, 5)]))
    write("fuzz_topic_tree", "twice", bytes(
        [op(SUBSCRIBE, 0, 1), op(SUBSCRIBE, 0, 1), op(UNSUBSCRIBE, 0, 1), op(UNSUBSCRIBE, 0, 1),
         op(SUBSCRIBE, 1, 6), op(SUBSCRIBE, 2, 6), op(UNSUBSCRIBE, 1, 6), op(FIND, 0, 6)]))


# ---- fuzz_proxy_header: the raw bytes a load balancer sends first ---------------------------

V2_SIGNATURE = b"\r\n\r\n\0\r\nQUIT\n"


def proxy_v2(command: int, family: int, addresses: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack(">H", len(addresses)) + addresses


def proxy_seeds() -> None:
    write("fuzz_proxy_header", "v1-tcp4", b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n")
    write("fuzz_proxy_header", "v1-tcp6", b"PROXY TCP6 2001:db8::1 ::1 65535 80\r\n")
    write("fuzz_proxy_header", "v1-unknown", b"PROXY UNKNOWN\r\n")
    write("fuzz_proxy_header", "v2-tcp4-tlv",
          proxy_v2(1, 0x11, bytes([203, 0, 113, 7, 10, 0, 0, 1]) + struct.pack(">HH", 8080, 443) + b"\x04\x00\x01x"))
    write("fuzz_proxy_header", "v2-tcp6", proxy_v2(1, 0x21, bytes(15) + b"\x01" + bytes(15) + b"\x01" + b"\xc3\x50\x00\x50"))
    write("fuzz_proxy_header", "v2-local", proxy_v2(0, 0x00, b"") + b"\x16\x03\x01")
    write("fuzz_proxy_header", "no-header", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


if __name__ == "__main__":
    http_seeds()
    proxy_seeds()
    frame_seeds()
    inflate_seeds()
    topic_tree_seeds()
