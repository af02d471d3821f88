"""The realtime wire protocol: JSON objects with a ``type`` (see docs/protocol.md)."""

from __future__ import annotations

import time
from typing import Any, Optional

import orjson

# Error codes sent in {"type": "ERROR", "code": ...}.
INVALID_MESSAGE = "INVALID_MESSAGE"
UNKNOWN_TYPE = "UNKNOWN_TYPE"
UNAUTHORIZED = "UNAUTHORIZED"
FORBIDDEN = "FORBIDDEN"
RATE_LIMITED = "RATE_LIMITED"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
INTERNAL = "INTERNAL"

ERROR_CODES = (INVALID_MESSAGE, UNKNOWN_TYPE, UNAUTHORIZED, FORBIDDEN, RATE_LIMITED, PAYLOAD_TOO_LARGE, INTERNAL)


class ProtocolError(Exception):
    """A message the server refuses; becomes an ERROR reply with ``code``."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


def now_ms() -> int:
    """Wall-clock milliseconds, as sent in serverTime and timestamps."""
    return time.time_ns() // 1_000_000


def decode(data: "str | bytes") -> dict[str, Any]:
    """Parses one client message; raises ProtocolError(INVALID_MESSAGE) unless it is a JSON
    object with a string ``type``."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(INVALID_MESSAGE, f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(INVALID_MESSAGE, "a message is a JSON object")
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        raise ProtocolError(INVALID_MESSAGE, "field 'type' must be a non-empty string")
    return message


def error(code: str, message: str, request_id: Any = None, **extra: Any) -> dict[str, Any]:
    """An ERROR message, echoing the request's id when it had one."""
    reply: dict[str, Any] = {"type": "ERROR", "code": code, "message": message}
    if request_id is not None:
        reply["id"] = request_id
    reply.update(extra)
    return reply


def encode(message: Any) -> bytes:
    """Serializes an outgoing message (orjson: dataclasses, datetimes and numpy included)."""
    return orjson.dumps(message)


def request_id(message: dict[str, Any]) -> Optional[Any]:
    """The ``id`` a client attached to a request, if any."""
    return message.get("id")
