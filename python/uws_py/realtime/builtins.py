"""The built-in message types a realtime server answers itself: SUBSCRIBE, UNSUBSCRIBE,
PUBLISH, HISTORY, PING and AUTH (BATCH, which dispatches, lives in dispatch.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from ..auth import AuthError, JWTAuth, identity
from ..broker.redact import redact
from .dispatch import REPLIED
from .history import (
    DEFAULT_RECOVER_LIMIT, HistoryError, NoHistory, Position, Recovery, UnrecoverablePosition, parse_limit,
    parse_since,
)
from .protocol import FORBIDDEN, INVALID_MESSAGE, UNAUTHORIZED, ProtocolError, now_ms

if TYPE_CHECKING:
    from ..metrics import Metrics
    from .pubsub import PubSub
    from .session import Client


def history_refusal(exc: HistoryError) -> ProtocolError:
    """The ERROR a history error is answered with (UNRECOVERABLE_POSITION carries the
    current ``epoch`` and ``offset``).

    Args:
        exc: the store's or the parser's refusal.
    """
    if isinstance(exc, UnrecoverablePosition):
        return ProtocolError(exc.code, str(exc), **exc.position.to_wire())
    return ProtocolError(exc.code, redact(str(exc)))


def parse_recover(message: dict[str, Any]) -> Optional[Position]:
    """SUBSCRIBE's ``recover``/``since``: the position to recover from, or None when not
    recovering.

    Args:
        message: the SUBSCRIBE request.

    Raises ProtocolError(INVALID_MESSAGE) for a ``recover`` that is not a boolean, a
    ``since`` of the wrong shape, or ``recover: true`` without ``since``.
    """
    recover = message.get("recover", False)
    if type(recover) is not bool:
        raise ProtocolError(INVALID_MESSAGE, "field 'recover' must be a boolean")
    since = message.get("since")
    if since is None and not recover:
        return None
    try:
        position = parse_since(since)
    except HistoryError as exc:
        raise history_refusal(exc) from None
    return position if recover else None

# builtin(client, message, out) -> reply; ``out`` is the BATCH being collected, or None.
Builtin = Callable[["Client", dict[str, Any], Optional[list[Any]]], Any]


class Builtins:
    """Handlers of the built-in types.

    Args:
        auth: verifies AUTH's refreshed token; None refuses AUTH.
        metrics: counts refused tokens.
        schedule_expiry: re-arms a client's expiry after AUTH (``TokenExpiry.schedule``).
        pubsub: topic policy and the history store of history topics.
        recover_limit: the most publications one recovery returns, and HISTORY's limit cap.
    """

    def __init__(self, auth: Optional[JWTAuth], metrics: "Metrics",
                 schedule_expiry: Callable[["Client"], None], pubsub: "PubSub",
                 recover_limit: int = DEFAULT_RECOVER_LIMIT) -> None:
        self.auth = auth
        self.metrics = metrics
        self.schedule_expiry = schedule_expiry
        self.pubsub = pubsub
        self.recover_limit = recover_limit

    def table(self) -> dict[str, Builtin]:
        """type -> handler, for the dispatcher."""
        return {
            "SUBSCRIBE": self.subscribe,
            "UNSUBSCRIBE": self.unsubscribe,
            "PUBLISH": self.publish,
            "HISTORY": self.history,
            "PING": self.ping,
            "AUTH": self.authenticate,
        }

    def subscribe(self, client: "Client", message: dict[str, Any], out: Optional[list[Any]]) -> dict[str, Any]:
        """SUBSCRIBE ``topic`` [``recover`` ``since``] -> SUBSCRIBED (FORBIDDEN/INVALID_MESSAGE
        raised by the policy). On a history topic SUBSCRIBED carries the position the
        subscription became live at and, when recovering, the missed publications.

        The store is synchronous and on this thread, so subscribing and then reading is
        atomic: every publication up to the returned offset is in the answer, every later
        one arrives live.

        Args:
            client: the sender.
            message: the request.
            out: the BATCH being collected, or None.
        """
        topic = message.get("topic")
        pubsub = self.pubsub
        if not (pubsub.history_on and isinstance(topic, str) and pubsub.is_history_topic(topic)):
            client.subscribe(topic)  # type: ignore[arg-type]
            return {"type": "SUBSCRIBED", "topic": topic}
        since = parse_recover(message)
        if pubsub.relay is not None:
            # Through Redis: SUBSCRIBED (or ERROR) is sent when the read is done, outside a BATCH.
            pubsub.check_topic(client, topic, "subscribe")
            if client.ws is not None and not client.closed:
                pubsub.relay.subscribe(client, topic, since, message.get("id"))
            return REPLIED
        client.subscribe(topic)
        if since is None:
            position = pubsub.history.position(topic)
            return {"type": "SUBSCRIBED", "topic": topic, **position.to_wire(),
                    "wasRecovering": False, "recovered": False}
        recovery: Recovery = pubsub.history.recover(topic, since, self.recover_limit)
        return {"type": "SUBSCRIBED", "topic": topic, **recovery.position.to_wire(),
                "wasRecovering": True, "recovered": recovery.recovered,
                "publications": [publication.to_wire() for publication in recovery.publications]}

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
        pubsub, topic = self.pubsub, message.get("topic")
        if pubsub.relay is not None and isinstance(topic, str) and pubsub.history_on and pubsub.is_history_topic(topic):
            # Through Redis: PUBLISHED (or ERROR UNAVAILABLE) is sent when the store answered.
            pubsub.check_topic(client, topic, "publish")
            pubsub.relay.publish(client, topic, message["data"], bool(message.get("echo", False)),
                                 message.get("id"), "id" in message)
            return REPLIED
        position = client.publish(message.get("topic"), message["data"], bool(message.get("echo", False)))  # type: ignore[arg-type]
        if "id" not in message:
            return None
        if position is None:
            return {"type": "PUBLISHED", "topic": message["topic"]}
        return {"type": "PUBLISHED", "topic": message["topic"], "offset": position.offset, "epoch": position.epoch}

    def history(self, client: "Client", message: dict[str, Any], out: Optional[list[Any]]) -> dict[str, Any]:
        """HISTORY ``topic`` [``limit`` ``since`` ``reverse``] -> HISTORY_RESULT; NO_HISTORY on
        a plain topic, UNRECOVERABLE_POSITION for a ``since`` not in the current history,
        INVALID_MESSAGE for a bad ``limit``/``since``/``reverse``. Authorized like SUBSCRIBE
        (action "history").

        Args:
            client: the sender.
            message: the request.
            out: the BATCH being collected, or None.
        """
        topic = message.get("topic")
        pubsub = self.pubsub
        pubsub.check_topic(client, topic, "history")
        reverse = message.get("reverse", False)
        if type(reverse) is not bool:
            raise ProtocolError(INVALID_MESSAGE, "field 'reverse' must be a boolean")
        try:
            if not pubsub.is_history_topic(topic):
                raise NoHistory(topic)
            limit = parse_limit(message.get("limit"), self.recover_limit)
            since = parse_since(message["since"]) if message.get("since") is not None else None
            if pubsub.relay is not None:
                pubsub.relay.history(client, topic, since, limit, reverse, message.get("id"))
                return REPLIED  # type: ignore[return-value]
            page = pubsub.history.read(topic, since, limit, reverse)
        except HistoryError as exc:
            raise history_refusal(exc) from None
        return {"type": "HISTORY_RESULT", "topic": topic, **page.position.to_wire(),
                "publications": [publication.to_wire() for publication in page.publications]}

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
