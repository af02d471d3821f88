"""The built-in message types a realtime server answers itself: SUBSCRIBE, UNSUBSCRIBE,
PUBLISH, PING and AUTH (BATCH, which dispatches, lives in dispatch.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from ..auth import AuthError, JWTAuth, identity
from .protocol import FORBIDDEN, INVALID_MESSAGE, UNAUTHORIZED, ProtocolError, now_ms

if TYPE_CHECKING:
    from ..metrics import Metrics
    from .session import Client

# builtin(client, message, out) -> reply; ``out`` is the BATCH being collected, or None.
Builtin = Callable[["Client", dict[str, Any], Optional[list[Any]]], Any]


class Builtins:
    """Handlers of the built-in types.

    Args:
        auth: verifies AUTH's refreshed token; None refuses AUTH.
        metrics: counts refused tokens.
        schedule_expiry: re-arms a client's expiry after AUTH (``TokenExpiry.schedule``).
    """

    def __init__(self, auth: Optional[JWTAuth], metrics: "Metrics",
                 schedule_expiry: Callable[["Client"], None]) -> None:
        self.auth = auth
        self.metrics = metrics
        self.schedule_expiry = schedule_expiry

    def table(self) -> dict[str, Builtin]:
        """type -> handler, for the dispatcher."""
        return {
            "SUBSCRIBE": self.subscribe,
            "UNSUBSCRIBE": self.unsubscribe,
            "PUBLISH": self.publish,
            "PING": self.ping,
            "AUTH": self.authenticate,
        }

    def subscribe(self, client: "Client", message: dict[str, Any], out: Optional[list[Any]]) -> dict[str, Any]:
        """SUBSCRIBE ``topic`` -> SUBSCRIBED (FORBIDDEN/INVALID_MESSAGE raised by the policy).

        Args:
            client: the sender.
            message: the request.
            out: the BATCH being collected, or None.
        """
        topic = message.get("topic")
        client.subscribe(topic)  # type: ignore[arg-type]
        return {"type": "SUBSCRIBED", "topic": topic}

    def unsubscribe(self, client: "Client", message: dict[str, Any], out: Optional[list[Any]]) -> dict[str, Any]:
        """UNSUBSCRIBE ``topic`` -> UNSUBSCRIBED.

        Args:
            client: the sender.
            message: the request.
            out: the BATCH being collected, or None.
        """
        topic = message.get("topic")
        if not isinstance(topic, str) or not topic:
            raise ProtocolError(INVALID_MESSAGE, "field 'topic' must be a non-empty string")
        client.unsubscribe(topic)
        return {"type": "UNSUBSCRIBED", "topic": topic}

    def publish(self, client: "Client", message: dict[str, Any], out: Optional[list[Any]]) -> Optional[dict[str, Any]]:
        """PUBLISH ``topic`` ``data`` [``echo``] -> PUBLISHED when the request has an id.

        Args:
            client: the sender.
            message: the request.
            out: the BATCH being collected, or None.
        """
        if "data" not in message:
            raise ProtocolError(INVALID_MESSAGE, "field 'data' is required")
        client.publish(message.get("topic"), message["data"], bool(message.get("echo", False)))  # type: ignore[arg-type]
        return {"type": "PUBLISHED", "topic": message["topic"]} if "id" in message else None

    def ping(self, client: "Client", message: dict[str, Any], out: Optional[list[Any]]) -> dict[str, Any]:
        """PING -> PONG with the server's time.

        Args:
            client: the sender.
            message: the request.
            out: the BATCH being collected, or None.
        """
        return {"type": "PONG", "serverTime": now_ms()}

    def authenticate(self, client: "Client", message: dict[str, Any], out: Optional[list[Any]]) -> dict[str, Any]:
        """AUTH ``token``: a refreshed token for the same user -> AUTHENTICATED.

        Args:
            client: the sender.
            message: the request.
            out: the BATCH being collected, or None.
        """
        auth = self.auth
        if auth is None:
            raise ProtocolError(INVALID_MESSAGE, "this server does not use tokens")
        token = message.get("token")
        if not isinstance(token, str):
            raise ProtocolError(INVALID_MESSAGE, "field 'token' must be a string")
        try:
            claims = auth.verify(token)
        except AuthError as exc:
            self.metrics.auth_failure(exc.reason)
            raise ProtocolError(UNAUTHORIZED, exc.message) from None
        user_id, expires_at = identity(claims, auth.user_id_claim)
        if client.user_id is not None and user_id != client.user_id:
            raise ProtocolError(FORBIDDEN, "a refreshed token must be for the same user")
        client.claims = claims
        client.topics_allowed = auth.topics_allowed(claims)
        client.token_expires_at = expires_at
        self.schedule_expiry(client)
        return {"type": "AUTHENTICATED", "expiresAt": client.token_expires_at}
