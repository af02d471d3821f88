"""The options and handlers of a WebSocket route (``App.ws``), typed, with their defaults."""

from __future__ import annotations

import enum
from typing import Any, Callable, Sequence, TypedDict


class CompressOptions(enum.IntFlag):
    """permessage-deflate settings of a route; a compressor and a decompressor combine with ``|``.

    The low byte selects the compressor, the next byte the decompressor.
    """

    DISABLED = 0
    SHARED_COMPRESSOR = 1
    DEDICATED_COMPRESSOR_3KB = 2
    DEDICATED_COMPRESSOR_4KB = 3
    DEDICATED_COMPRESSOR_8KB = 4
    DEDICATED_COMPRESSOR_16KB = 5
    DEDICATED_COMPRESSOR_32KB = 6
    DEDICATED_COMPRESSOR_64KB = 7
    DEDICATED_COMPRESSOR_128KB = 8
    DEDICATED_COMPRESSOR_256KB = 9
    SHARED_DECOMPRESSOR = 1 << 8
    DEDICATED_DECOMPRESSOR_512B = 2 << 8
    DEDICATED_DECOMPRESSOR_1KB = 3 << 8
    DEDICATED_DECOMPRESSOR_2KB = 4 << 8
    DEDICATED_DECOMPRESSOR_4KB = 5 << 8
    DEDICATED_DECOMPRESSOR_8KB = 6 << 8
    DEDICATED_DECOMPRESSOR_16KB = 7 << 8
    DEDICATED_DECOMPRESSOR_32KB = 8 << 8


class Behavior(TypedDict, total=False):
    """What ``App.ws(pattern, behavior)`` takes; every key is optional (defaults in
    :data:`OPTION_DEFAULTS`). Handlers run on the loop thread; any may be ``async def``
    under ``App.serve()``.

    Options as in µWebSockets: ``idle_timeout`` (seconds), ``send_pings_automatically`` (ping
    at half of it, so a live but quiet client stays), ``reset_idle_timeout_on_send`` (sending
    also counts as activity), ``max_lifetime`` (minutes, 0 = off: the connection is then closed
    with 1001), ``max_backpressure`` with ``close_on_backpressure_limit`` (over the limit a
    send or publish ends the connection with 1008 instead of being ``DROPPED``), and
    ``subprotocols`` (the server's list, preferred first: the first the client offered is
    answered, none in common means no ``Sec-WebSocket-Protocol`` header)."""

    upgrade: Callable[[Any, Any, Any], Any]  # (res, req, context): answer or res.upgrade(...)
    open: Callable[[Any], Any]  # (ws)
    message: Callable[[Any, Any, int], Any]  # (ws, message, opcode)
    drain: Callable[[Any], Any]  # (ws): its backpressure went down
    close: Callable[[Any, int, bytes], Any]  # (ws, code, reason)
    ping: Callable[[Any, bytes], Any]  # (ws, payload)
    pong: Callable[[Any, bytes], Any]  # (ws, payload)
    subscription: Callable[[Any, str, int, int], Any]  # (ws, topic, subscribers now, before)
    dropped: Callable[[Any, Any, int], Any]  # (ws, message, opcode): a send over max_backpressure
    max_payload_length: int
    idle_timeout: int
    max_backpressure: int
    close_on_backpressure_limit: bool
    send_pings_automatically: bool
    compression: int
    compression_threshold: int
    max_lifetime: int
    reset_idle_timeout_on_send: bool
    subprotocols: Sequence[str]


# RFC 6455: a subprotocol is an HTTP token (RFC 9110 section 5.6.2).
_TOKEN_CHARACTERS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def subprotocol_list(value: Any) -> list[str]:
    """The ``subprotocols`` option as a list of tokens.

    Args:
        value: a list or tuple of str.

    Raises:
        ValueError: naming the entry that is not a token, or for anything but a list/tuple.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"option 'subprotocols' must be a list of str, not {value!r}")
    for name in value:
        if not isinstance(name, str) or not name or not set(name) <= _TOKEN_CHARACTERS:
            raise ValueError(f"option 'subprotocols': {name!r} is not a valid subprotocol token")
    return list(value)


HANDLER_NAMES = ("open", "message", "drain", "close", "upgrade", "ping", "pong", "subscription", "dropped")

# Defaults of a ws() route, and why.
OPTION_DEFAULTS: dict[str, Any] = {
    # Large enough for any sane application message, small enough that one client cannot
    # make the server buffer gigabytes.
    "max_payload_length": 16 * 1024 * 1024,
    # Seconds without receiving anything; with automatic pings a live client never hits it.
    "idle_timeout": 120,
    # Bytes a slow reader may hold queued before sends to it are dropped.
    "max_backpressure": 1024 * 1024,
    # True: a send or publish over max_backpressure ends the connection with 1008 (the
    # client learns it fell behind) instead of returning DROPPED; off by default, as in
    # µWebSockets, so that existing code that handles DROPPED keeps working.
    "close_on_backpressure_limit": False,
    # Ping halfway through idle_timeout: a live but quiet client answers and stays; one
    # that is gone is closed at idle_timeout.
    "send_pings_automatically": True,
    "compression": CompressOptions.DISABLED,
    # Messages shorter than this (bytes) are sent uncompressed even with compress=True;
    # below ~64 bytes deflate's framing costs more than it saves. 0 compresses everything.
    "compression_threshold": 64,
    # Minutes a connection may stay open whatever it does (µWebSockets' unit); 0 disables.
    # Checked on the one-second tick. Bounds how long a token's rights outlive it.
    "max_lifetime": 0,
    # Sending (send, fragments, publish) also restarts idle_timeout; off: only what the
    # client sends proves it is alive.
    "reset_idle_timeout_on_send": False,
    # Subprotocols this route speaks, preferred first: the answer is the first of these the
    # client offered (as the websockets library does), or no Sec-WebSocket-Protocol header
    # when none is. Empty: the client's first offer is answered (µWebSockets' rule).
    "subprotocols": (),
}
