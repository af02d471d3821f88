"""The exceptions of the client SDK."""

from __future__ import annotations

from typing import Any, Optional


class RealtimeClientError(Exception):
    """Base of every error the client SDK raises."""


class Unauthorized(RealtimeClientError):
    """Raise this from ``get_token`` when no token can be had (the user logged out, the
    refresh token was revoked): the client stops retrying and closes with this error."""


class ServerError(RealtimeClientError):
    """The server answered a request with ERROR.

    code: the protocol's error code (``FORBIDDEN``, ``NO_HISTORY``, ...); message: its text;
    reply: the whole ERROR object (``retryAfter``, position fields, ...)."""

    def __init__(self, code: str, message: str, reply: Optional[dict[str, Any]] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reply = reply or {}


class ConnectionLost(RealtimeClientError):
    """The connection a request was sent on ended before its reply came; also the error
    ``on_state`` gets with DISCONNECTED. close_code, close_reason: the close frame the server
    sent, when it sent one (e.g. 3000..3999 from ``disconnect_user``: the client reconnects)."""

    def __init__(self, reason: str, *, close_code: Optional[int] = None, close_reason: str = "") -> None:
        super().__init__(reason)
        self.close_code = close_code
        self.close_reason = close_reason


class ClientClosed(RealtimeClientError):
    """The client was closed (by ``close()``, or for good after a final close code); ``cause``
    says why when it was not ``close()``. close_code, close_reason: the server's close frame
    when that is what stopped the client (1000, or 4000..4999 from the application, e.g.
    ``disconnect_user(user, 4000, "banned")``), else None and ""."""

    def __init__(self, reason: str, cause: Optional[BaseException] = None, *, close_code: Optional[int] = None,
                 close_reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause
        self.close_code = close_code
        self.close_reason = close_reason


class PublishQueueFull(RealtimeClientError):
    """A publish made while disconnected found the bounded queue full (``publish_queue_size``)."""
