"""Kept for imports written before the realtime package: see :mod:`uws_py.realtime.protocol`."""

from .realtime.protocol import (
    BUILTIN_TYPES, ERROR_CODES, FORBIDDEN, INTERNAL, INVALID_MESSAGE, LIMIT_EXCEEDED, NO_HISTORY, NO_PRESENCE, PAYLOAD_TOO_LARGE, RATE_LIMITED,
    UNAUTHORIZED, UNAVAILABLE, UNKNOWN_TYPE, UNRECOVERABLE_POSITION, ProtocolError, check_message, decode, encode, encode_reply, error, now_ms,
)

__all__ = [
    "BUILTIN_TYPES", "ERROR_CODES", "FORBIDDEN", "INTERNAL", "INVALID_MESSAGE", "LIMIT_EXCEEDED", "NO_HISTORY", "NO_PRESENCE", "PAYLOAD_TOO_LARGE",
    "RATE_LIMITED", "UNAUTHORIZED", "UNAVAILABLE", "UNKNOWN_TYPE", "UNRECOVERABLE_POSITION", "ProtocolError", "check_message", "decode", "encode", "encode_reply", "error",
    "now_ms",
]
