"""The realtime wire format (docs/protocol.md): JSON objects with a ``type``.

The one owner of the rules both paths use: what a valid client message is (with its error
texts), how an outgoing message is encoded (with the one fallback for a reply that cannot
be), the error codes and the built-in types. No I/O.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Union

import orjson

logger = logging.getLogger("uws_py.realtime")

# Error codes sent in {"type": "ERROR", "code": ...}.
INVALID_MESSAGE = "INVALID_MESSAGE"
UNKNOWN_TYPE = "UNKNOWN_TYPE"
UNAUTHORIZED = "UNAUTHORIZED"
FORBIDDEN = "FORBIDDEN"
RATE_LIMITED = "RATE_LIMITED"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
INTERNAL = "INTERNAL"
NO_HISTORY = "NO_HISTORY"
UNRECOVERABLE_POSITION = "UNRECOVERABLE_POSITION"
UNAVAILABLE = "UNAVAILABLE"
# A per-connection bound (BATCH items, subscriptions, topic length); ``limit`` names it.
LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
NO_PRESENCE = "NO_PRESENCE"

ERROR_CODES = (INVALID_MESSAGE, UNKNOWN_TYPE, UNAUTHORIZED, FORBIDDEN, RATE_LIMITED, PAYLOAD_TOO_LARGE, INTERNAL,
               NO_HISTORY, UNRECOVERABLE_POSITION, UNAVAILABLE, LIMIT_EXCEEDED, NO_PRESENCE)

# Types the server answers itself; applications cannot register handlers for them.
BUILTIN_TYPES = frozenset({"SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", "BATCH", "PING", "AUTH", "HISTORY", "PRESENCE",
                           "PRESENCE_STATS"})

# WebSocket opcodes (RFC 6455), as plain ints so that this layer needs no native module.
TEXT = 1
BINARY = 2


class ProtocolError(Exception):
    """A message the server refuses; becomes an ERROR reply.

    Args:
        code: one of :data:`ERROR_CODES`.
        message: the human-readable reason sent to the client.
        **extra: further fields of the ERROR reply (``retryAfter`` for RATE_LIMITED).
    """

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


def now_ms() -> int:
    """Wall-clock milliseconds, as sent in ``serverTime`` and ``timestamp``."""
    return time.time_ns() // 1_000_000


def decode(data: Union[str, bytes]) -> dict[str, Any]:
    """Parses one client message.

    Args:
        data: the text (or bytes) of one WebSocket message.

    Returns the message; raises ProtocolError(INVALID_MESSAGE) unless it is a JSON object
    with a non-empty string ``type``.
    """
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(INVALID_MESSAGE, f"not JSON: {exc}") from None
    return check_message(message)


def check_message(message: Any) -> dict[str, Any]:
    """The checks of :func:`decode` on an already parsed value.

    Args:
        message: what the JSON text parsed to.

    Returns message; raises ProtocolError(INVALID_MESSAGE) naming what is wrong.
    """
    if not isinstance(message, dict):
        raise ProtocolError(INVALID_MESSAGE, "a message is a JSON object")
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        raise ProtocolError(INVALID_MESSAGE, "field 'type' must be a non-empty string")
    return message


def error(code: str, message: str, request_id: Any = None, **extra: Any) -> dict[str, Any]:
    """An ERROR message.

    Args:
        code: one of :data:`ERROR_CODES`.
        message: the reason.
        request_id: the request's ``id``, echoed when not None.
        **extra: further fields.
    """
    reply: dict[str, Any] = {"type": "ERROR", "code": code, "message": message}
    if request_id is not None:
        reply["id"] = request_id
    reply.update(extra)
    return reply


def encode(message: Any) -> bytes:
    """Serializes an outgoing message (orjson: dataclasses, datetimes and numpy included).

    Args:
        message: the message; raises TypeError when orjson cannot encode it.
    """
    return orjson.dumps(message)


def encode_failure(message: Any, exc: Exception) -> bytes:
    """The frame a client gets instead of a message that cannot be encoded: INTERNAL,
    with the request's ``id`` when it has a plain one. Logs the failure.

    Args:
        message: the message that failed to encode.
        exc: orjson's TypeError.
    """
    logger.error("cannot encode a message for a client: %s", exc)
    request_id = message.get("id") if isinstance(message, dict) else None
    reply = error(INTERNAL, "the reply could not be encoded")
    if request_id is not None and isinstance(request_id, (str, int, float, bool)):
        reply["id"] = request_id
    return orjson.dumps(reply)


def encode_reply(message: Any) -> bytes:
    """:func:`encode`, or :func:`encode_failure`'s INTERNAL frame when it cannot.

    Args:
        message: the outgoing message.
    """
    try:
        return orjson.dumps(message)
    except TypeError as exc:  # a set, a value 255+ levels deep...
        return encode_failure(message, exc)
