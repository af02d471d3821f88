"""Kept for imports written before the realtime package: see :mod:`uws_py.realtime.protocol`."""

from .realtime.protocol import (
    BUILTIN_TYPES, ERROR_CODES, FORBIDDEN, INTERNAL, INVALID_MESSAGE, PAYLOAD_TOO_LARGE, RATE_LIMITED,
    UNAUTHORIZED, UNKNOWN_TYPE, ProtocolError, check_message, decode, encode, encode_reply, error, now_ms,
)

__all__ = [
    "BUILTIN_TYPES", "ERROR_CODES", "FORBIDDEN", "INTERNAL", "INVALID_MESSAGE", "PAYLOAD_TOO_LARGE", "RATE_LIMITED",
    "UNAUTHORIZED", "UNKNOWN_TYPE", "ProtocolError", "check_message", "decode", "encode", "encode_reply", "error",
    "now_ms",
]
