"""A small synchronous WebSocket client on a raw socket, for driving the server in tests.

It speaks just enough RFC 6455 to exercise a server, and it lets a test break the protocol on
purpose (unmasked frames, reserved bits, unknown opcodes, oversize control frames), which a real
client library refuses to do. Given an ssl.SSLContext (tls=...), it speaks the same over
TLS. Every socket operation runs against a deadline, so a server that
stops answering fails a test instead of hanging it.

It checks what the server sends: a masked server frame, reserved bits that were not negotiated,
invalid UTF-8 in a text message or a malformed close payload raise ProtocolViolation, an
AssertionError, so pytest reports it as a failure of the server.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import struct
import time
import zlib
from enum import IntEnum
from typing import Iterable, NamedTuple, Optional, Union

WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFAULT_TIMEOUT = 5.0
# A response head larger than this is a server bug, not something to keep reading.
MAX_RESPONSE_HEAD = 64 * 1024
RECV_CHUNK = 256 * 1024

# Reserved bits as the 3-bit value send_frame(rsv=...) takes.
RSV1, RSV2, RSV3 = 4, 2, 1

HeaderList = Union[dict, Iterable[tuple]]


class Op(IntEnum):
    CONTINUATION = 0
    TEXT = 1
    BINARY = 2
    CLOSE = 8
    PING = 9
    PONG = 10


class ProtocolViolation(AssertionError):
    """The server sent something that RFC 6455 or HTTP/1.1 forbids."""


class ConnectionClosed(Exception):
    """The server closed (or reset) the TCP connection."""


class HandshakeRefused(Exception):
    """The server answered the upgrade request with something other than 101."""

    def __init__(self, response: HttpResponse):
        super().__init__(f"handshake refused: {response.status} {response.body[:200]!r}")
        self.response = response


class HttpResponse(NamedTuple):
    status: int
    headers: dict  # lowercase name -> value; repeated headers joined with ", "
    body: bytes


class Frame(NamedTuple):
    fin: bool
    opcode: int
    payload: bytes


class Message(NamedTuple):
    opcode: int
    payload: bytes

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value a server must answer to Sec-WebSocket-Key `key`."""
    digest = hashlib.sha1(key.encode("ascii") + WEBSOCKET_GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii")


def apply_mask(data: bytes, mask_key: bytes) -> bytes:
    if not data:
        return b""
    # One big-integer XOR is far faster in CPython than a per-byte loop for 1 MiB payloads.
    repeated = (mask_key * (len(data) // 4 + 1))[: len(data)]
    masked = int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")
    return masked.to_bytes(len(data), "big")


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    mask_key: Optional[bytes] = None,
) -> bytes:
    """One frame on the wire. mask=False and rsv!=0 exist to send what a server must refuse."""
    payload = bytes(payload)
    first = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0xF)
    mask_bit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return header + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return header + key + apply_mask(payload, key)


def parse_frame(buffer: Union[bytes, bytearray]) -> Optional[tuple]:
    """Parses one server frame at the start of buffer: (Frame, bytes consumed), or None if the
    buffer holds only part of a frame. No extension is ever negotiated, so any reserved bit is
    a violation."""
    parsed = parse_frame_with_rsv(buffer)
    if parsed is None:
        return None
    frame, _, used = parsed
    return frame, used


def parse_frame_with_rsv(buffer: Union[bytes, bytearray], allowed_rsv: int = 0) -> Optional[tuple]:
    """Like parse_frame, returning (Frame, rsv, bytes consumed); reserved bits outside
    allowed_rsv (RSV1 once permessage-deflate is negotiated) are a violation."""
    if len(buffer) < 2:
        return None
    first, second = buffer[0], buffer[1]
    rsv = (first >> 4) & 0x7
    if rsv & ~allowed_rsv:
        raise ProtocolViolation(f"server frame has reserved bits {rsv:#05b} set")
    if second & 0x80:
        raise ProtocolViolation("server frame is masked (RFC 6455 5.1 forbids it)")
    length = second & 0x7F
    offset = 2
    if length == 126:
        if len(buffer) < 4:
            return None
        (length,) = struct.unpack_from("!H", buffer, 2)
        offset = 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        (length,) = struct.unpack_from("!Q", buffer, 2)
        offset = 10
    if len(buffer) < offset + length:
        return None
    frame = Frame(bool(first & 0x80), first & 0x0F, bytes(buffer[offset : offset + length]))
    return frame, rsv, offset + length


def encode_close_payload(code: Optional[int] = None, reason: Union[bytes, str] = b"") -> bytes:
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


def parse_close_payload(payload: bytes) -> tuple:
    """(code, reason bytes) of a close frame; code is None for an empty payload."""
    if not payload:
        return None, b""
    if len(payload) == 1:
        raise ProtocolViolation("close payload of 1 byte (RFC 6455 5.5.1)")
    (code,) = struct.unpack_from("!H", payload)
    return code, bytes(payload[2:])


DEFLATE_TAIL = b"\x00\x00\xff\xff"
# Inflated bytes per zlib call; well under any window, so the window bound is enforced.
INFLATE_STEP = 512
INFLATE_INPUT_STEP = 4096


def parse_extensions(value: Optional[str]) -> list:
    """A Sec-WebSocket-Extensions value as [(name, [(parameter, value or None), ...]), ...], in
    order, parameters in the order written; quotes around a value are removed."""
    if not value:
        return []
    extensions = []
    for extension in value.split(","):
        name, *parameters = [part.strip() for part in extension.split(";")]
        parsed = []
        for parameter in parameters:
            key, eq, raw = parameter.partition("=")
            raw = raw.strip()
            if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                raw = raw[1:-1]
            parsed.append((key.strip(), raw if eq else None))
        extensions.append((name, parsed))
    return extensions


def deflate_message(data: bytes, window_bits: int = 15, compressor=None) -> bytes:
    """One permessage-deflate message body (RFC 7692 7.2.1): raw deflate ended by a sync flush,
    its trailing 00 00 FF FF removed. A compressor (zlib.compressobj with wbits=-window_bits)
    passed in keeps its context across messages; without one every message starts afresh."""
    if compressor is None:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -window_bits)
    body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(DEFLATE_TAIL), "zlib sync flush did not end with 00 00 FF FF"
    return body[:-4]


def handshake_request(
    path: str = "/",
    host: str = "127.0.0.1",
    key: Optional[str] = None,
    protocols: Optional[Iterable[str]] = None,
    headers: Optional[HeaderList] = None,
    omit: Iterable[str] = (),
    version: str = "13",
) -> bytes:
    """An upgrade request head. `omit` drops default headers by name, to build broken requests."""
    omitted = {name.lower() for name in omit}
    lines = [f"GET {path} HTTP/1.1"]
    defaults = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key if key is not None else new_key()),
        ("Sec-WebSocket-Version", version),
    ]
    if protocols:
        defaults.append(("Sec-WebSocket-Protocol", ", ".join(protocols)))
    extra = list(headers.items()) if isinstance(headers, dict) else list(headers or ())
    for name, value in defaults + extra:
        if name.lower() not in omitted:
            lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _recv_some(sock: socket.socket, deadline: float, what: str) -> bytes:
    """Up to RECV_CHUNK bytes; b"" on EOF or reset; TimeoutError once the deadline passes."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(f"timed out waiting for {what}")
    sock.settimeout(remaining)
    try:
        return sock.recv(RECV_CHUNK)
    except socket.timeout:
        raise TimeoutError(f"timed out waiting for {what}") from None
    except ConnectionResetError:
        return b""


def _read_chunked(data: bytearray, sock: socket.socket, deadline: float) -> bytes:
    body = bytearray()
    while True:
        while b"\r\n" not in data:
            chunk = _recv_some(sock, deadline, "a chunked body")
            if not chunk:
                raise ProtocolViolation("connection closed inside a chunked body")
            data += chunk
        size_line, _, rest = bytes(data).partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        while len(rest) < size + 2:
            chunk = _recv_some(sock, deadline, "a chunked body")
            if not chunk:
                raise ProtocolViolation("connection closed inside a chunked body")
            rest += chunk
        if size == 0:
            return bytes(body)
        body += rest[:size]
        data[:] = rest[size + 2 :]


def read_http_response(sock: socket.socket, deadline: float) -> tuple:
    """Reads one response: (HttpResponse, bytes received after it). A 101 has no body; what
    follows its head is the first WebSocket data."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_RESPONSE_HEAD:
            raise ProtocolViolation(f"response head larger than {MAX_RESPONSE_HEAD} bytes")
        chunk = _recv_some(sock, deadline, "an HTTP response")
        if not chunk:
            if not data:
                raise ConnectionClosed("server closed the connection without a response")
            raise ProtocolViolation(f"server closed the connection mid-head: {bytes(data)!r}")
        data += chunk
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolViolation(f"bad status line {status_line!r}")
    status = int(parts[1])
    headers: dict = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise ProtocolViolation(f"bad response header line {line!r}")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if status == 101:
        return HttpResponse(status, headers, b""), rest
    rest_buffer = bytearray(rest)
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(rest_buffer) < length:
            chunk = _recv_some(sock, deadline, "a response body")
            if not chunk:
                raise ProtocolViolation("connection closed before Content-Length bytes arrived")
            rest_buffer += chunk
        return HttpResponse(status, headers, bytes(rest_buffer[:length])), bytes(
            rest_buffer[length:]
        )
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return HttpResponse(status, headers, _read_chunked(rest_buffer, sock, deadline)), b""
    # Neither length nor chunking: the body ends when the server closes the connection.
    while True:
        chunk = _recv_some(sock, deadline, "the end of a body without Content-Length")
        if not chunk:
            return HttpResponse(status, headers, bytes(rest_buffer)), b""
        rest_buffer += chunk


def insecure_tls_context(version: Optional[ssl.TLSVersion] = None) -> ssl.SSLContext:
    """A client context that accepts any certificate (the tests' are self-signed); with version,
    only that TLS version is offered."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if version is not None:
        context.minimum_version = version
        context.maximum_version = version
    return context


def open_socket(
    host: str,
    port: int,
    timeout: float,
    recv_buffer_size: Optional[int] = None,
    tls: Optional[ssl.SSLContext] = None,
) -> socket.socket:
    """A connected TCP socket; with tls, wrapped in TLS and handshaken within timeout."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if recv_buffer_size is not None:
        # Before connect, so the window the server sees is small from the first byte.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer_size)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


def send_all_tolerating_reset(sock: socket.socket, data: bytes) -> bool:
    """Sends data; returns False instead of raising if the peer already closed or reset.

    A server that refuses a request may close before reading all of it, and the test still wants
    to read the answer it sent first."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def socket_reaches_eof(sock: socket.socket, timeout: float) -> bool:
    """Reads and discards until the peer closes (True) or the timeout passes (False)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            chunk = _recv_some(sock, deadline, "EOF")
        except TimeoutError:
            return False
        if not chunk:
            return True


def open_raw_http(
    host: str,
    port: int,
    request: bytes,
    timeout: float = DEFAULT_TIMEOUT,
    tls: Optional[ssl.SSLContext] = None,
) -> tuple:
    """Sends request bytes as they are and reads one response: (HttpResponse, socket). The caller
    closes the socket; use this when the test also checks whether the server closes it."""
    sock = open_socket(host, port, timeout, tls=tls)
    try:
        send_all_tolerating_reset(sock, request)
        response, _ = read_http_response(sock, time.monotonic() + timeout)
    except BaseException:
        sock.close()
        raise
    return response, sock


def raw_http(
    host: str,
    port: int,
    request: bytes,
    timeout: float = DEFAULT_TIMEOUT,
    tls: Optional[ssl.SSLContext] = None,
) -> HttpResponse:
    """Sends request bytes as they are; returns (status, headers, body) of the response."""
    response, sock = open_raw_http(host, port, request, timeout, tls)
    sock.close()
    return response


class TestClient:
    """One WebSocket connection after a successful handshake."""

    # A client for the tests, not a test class: pytest must not collect it.
    __test__ = False

    def __init__(self, sock: socket.socket, response: HttpResponse, leftover: bytes = b""):
        self.sock = sock
        self.response = response
        self.pings_received: list = []
        self._buffer = bytearray(leftover)
        # With permessage-deflate agreed, RSV1 marks a compressed message; otherwise any
        # reserved bit from the server is a violation.
        self.deflate_negotiated = any(
            name == "permessage-deflate"
            for name, _ in parse_extensions(response.headers.get("sec-websocket-extensions"))
        )
        # The window the inflater accepts; a test lowers it to check server_max_window_bits.
        self.inflate_window_bits = 15
        self._inflater = None

    def __enter__(self) -> TestClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.sock.close()

    @property
    def protocol(self) -> Optional[str]:
        return self.response.headers.get("sec-websocket-protocol")

    def send_raw(self, data: bytes, tolerate_reset: bool = False) -> bool:
        if tolerate_reset:
            return send_all_tolerating_reset(self.sock, data)
        self.sock.settimeout(DEFAULT_TIMEOUT)
        self.sock.sendall(data)
        return True

    def send_frame(
        self, opcode: int, payload: bytes = b"", fin: bool = True, mask: bool = True, rsv: int = 0
    ) -> None:
        self.send_raw(encode_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv))

    def send_text(self, text: Union[str, bytes]) -> None:
        payload = text.encode("utf-8") if isinstance(text, str) else text
        self.send_frame(Op.TEXT, payload)

    def send_binary(self, data: bytes) -> None:
        self.send_frame(Op.BINARY, data)

    def send_close(self, code: Optional[int] = 1000, reason: Union[bytes, str] = b"") -> None:
        self.send_frame(Op.CLOSE, encode_close_payload(code, reason))

    def recv_frame(self, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        return self.recv_frame_with_rsv(timeout)[0]

    def recv_frame_with_rsv(self, timeout: float = DEFAULT_TIMEOUT) -> tuple:
        """The next frame as it arrived, compressed or not: (Frame, rsv bits)."""
        deadline = time.monotonic() + timeout
        allowed_rsv = RSV1 if self.deflate_negotiated else 0
        while True:
            parsed = parse_frame_with_rsv(self._buffer, allowed_rsv)
            if parsed is not None:
                frame, rsv, used = parsed
                del self._buffer[:used]
                return frame, rsv
            chunk = _recv_some(self.sock, deadline, "a WebSocket frame")
            if not chunk:
                raise ConnectionClosed(
                    f"server closed the connection ({len(self._buffer)} bytes of a partial frame)"
                )
            self._buffer += chunk

    def recv_message(self, timeout: float = DEFAULT_TIMEOUT, answer_pings: bool = True) -> Message:
        """The next data message, reassembled from its fragments, or the next close frame as
        Message(Op.CLOSE, payload). Pings are recorded in pings_received (and answered with a
        pong of the same payload if answer_pings); pongs are skipped. A compressed message is
        returned inflated."""
        return self.recv_message_compressed(timeout, answer_pings)[0]

    def recv_message_compressed(
        self, timeout: float = DEFAULT_TIMEOUT, answer_pings: bool = True
    ) -> tuple:
        """Like recv_message, returning (Message, whether it arrived compressed)."""
        deadline = time.monotonic() + timeout
        opcode = None
        compressed = False
        parts = []
        while True:
            frame, rsv = self.recv_frame_with_rsv(max(deadline - time.monotonic(), 0.001))
            if frame.opcode >= Op.CLOSE:
                if not frame.fin or len(frame.payload) > 125 or rsv:
                    raise ProtocolViolation(f"invalid control frame from server: {frame.opcode}")
                if frame.opcode == Op.CLOSE:
                    parse_close_payload(frame.payload)
                    return Message(Op.CLOSE, frame.payload), False
                if frame.opcode == Op.PING:
                    self.pings_received.append(frame.payload)
                    if answer_pings:
                        self.send_frame(Op.PONG, frame.payload)
                elif frame.opcode != Op.PONG:
                    raise ProtocolViolation(f"unknown control opcode {frame.opcode} from server")
                continue
            if frame.opcode == Op.CONTINUATION:
                if opcode is None:
                    raise ProtocolViolation("continuation frame from server without a start")
                if rsv:
                    raise ProtocolViolation("RSV1 on a continuation frame (RFC 7692 6.1)")
            elif frame.opcode in (Op.TEXT, Op.BINARY):
                if opcode is not None:
                    raise ProtocolViolation("server started a message inside a fragmented one")
                opcode = frame.opcode
                compressed = bool(rsv)
            else:
                raise ProtocolViolation(f"unknown data opcode {frame.opcode} from server")
            parts.append(frame.payload)
            if frame.fin:
                payload = b"".join(parts)
                if compressed:
                    payload = self._inflate(payload)
                if opcode == Op.TEXT:
                    try:
                        payload.decode("utf-8")
                    except UnicodeDecodeError as error:
                        raise ProtocolViolation(
                            f"server sent invalid UTF-8 text: {error}"
                        ) from None
                return Message(opcode, payload), compressed

    def _inflate(self, body: bytes) -> bytes:
        # One inflater for the connection: it follows a server that keeps its context, and a
        # server that resets it never refers back, so either way it decodes. Output comes in
        # small steps so that every back reference must reach into the inflater's window: a
        # server that compresses with a larger window than agreed fails here.
        if self._inflater is None:
            self._inflater = zlib.decompressobj(-self.inflate_window_bits)
        stream = body + DEFLATE_TAIL
        parts = []
        try:
            # Input in slices too, so unconsumed_tail (copied on every call) stays short.
            for start in range(0, len(stream), INFLATE_INPUT_STEP):
                data = stream[start : start + INFLATE_INPUT_STEP]
                while True:
                    out = self._inflater.decompress(data, INFLATE_STEP)
                    parts.append(out)
                    data = self._inflater.unconsumed_tail
                    if self._inflater.eof or (not data and len(out) < INFLATE_STEP):
                        break
                if self._inflater.eof:
                    break
        except zlib.error as error:
            raise ProtocolViolation(f"server sent invalid deflate data: {error}") from None
        if self._inflater.eof:
            # A final block: RFC 7692 allows it, and the next message starts a new stream.
            self._inflater = None
        return b"".join(parts)

    def send_compressed(
        self, opcode: int, payload: Union[str, bytes], compressor=None, window_bits: int = 15
    ) -> None:
        """Sends one message compressed (RSV1 set), fresh context unless compressor is given."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        self.send_frame(opcode, deflate_message(payload, window_bits, compressor), rsv=RSV1)

    def expect_close(self, timeout: float = DEFAULT_TIMEOUT) -> tuple:
        """Skips data until the server's close frame; returns its (code, reason bytes)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = self.recv_frame(max(deadline - time.monotonic(), 0.001))
            except ConnectionClosed:
                raise AssertionError("server closed TCP without sending a close frame") from None
            if frame.opcode == Op.CLOSE:
                return parse_close_payload(frame.payload)

    def close(
        self,
        code: Optional[int] = 1000,
        reason: Union[bytes, str] = b"",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> tuple:
        """Client-initiated close handshake: returns the server's (code, reason), then closes
        the socket."""
        try:
            self.send_close(code, reason)
            return self.expect_close(timeout)
        finally:
            self.sock.close()

    def wait_for_eof(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Discards incoming data until the server closes TCP (True) or the timeout passes
        (False)."""
        self._buffer.clear()
        return socket_reaches_eof(self.sock, timeout)

    def disconnect(self) -> None:
        """Closes TCP without a close frame."""
        self.sock.close()

    def reset(self) -> None:
        """Closes TCP with a RST (SO_LINGER 0) instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def connect(
    host: str,
    port: int,
    path: str = "/",
    headers: Optional[HeaderList] = None,
    protocols: Optional[Iterable[str]] = None,
    timeout: float = DEFAULT_TIMEOUT,
    recv_buffer_size: Optional[int] = None,
    first_data: bytes = b"",
    tls: Optional[ssl.SSLContext] = None,
) -> TestClient:
    """Opens a WebSocket connection. Raises HandshakeRefused for any answer other than 101, and
    ProtocolViolation for a 101 that is not a valid WebSocket handshake. first_data is sent in
    the same write as the request, to test a server that gets frames along with the head. With
    tls (see insecure_tls_context) the connection is wss://."""
    key = new_key()
    sock = open_socket(host, port, timeout, recv_buffer_size, tls)
    try:
        sock.sendall(
            handshake_request(path, f"{host}:{port}", key, protocols, headers) + first_data
        )
        response, leftover = read_http_response(sock, time.monotonic() + timeout)
        if response.status != 101:
            raise HandshakeRefused(response)
        if response.headers.get("upgrade", "").lower() != "websocket":
            raise ProtocolViolation(f"101 without Upgrade: websocket: {response.headers}")
        connection_tokens = [
            t.strip().lower() for t in response.headers.get("connection", "").split(",")
        ]
        if "upgrade" not in connection_tokens:
            raise ProtocolViolation(f"101 without Connection: Upgrade: {response.headers}")
        if response.headers.get("sec-websocket-accept") != accept_key(key):
            raise ProtocolViolation(f"wrong Sec-WebSocket-Accept for key {key}: {response.headers}")
    except BaseException:
        sock.close()
        raise
    return TestClient(sock, response, leftover)
