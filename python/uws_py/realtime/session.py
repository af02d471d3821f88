"""The server-side connection object handlers receive: :class:`Client`.

A client knows its socket and one shared :class:`SessionContext` (pub/sub, the loop's timer,
the counters), never the server: what it may do is exactly what the context offers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import orjson

from .._core import SendStatus
from .protocol import TEXT, encode_failure

if TYPE_CHECKING:
    from ..batching import Batcher
    from ..metrics import Metrics
    from ..ratelimit import TokenBucket
    from .history import Position
    from .pubsub import PubSub

_dumps = orjson.dumps


class SessionContext:
    """What every client of one server shares: the narrow collaborators a client uses.

    Args:
        pubsub: topic policy and fan-out (:class:`uws_py.realtime.pubsub.PubSub`).
        set_timeout: ``set_timeout(seconds, fn) -> timer id`` of the loop (the batch timer).
        counters: where ``batches_sent`` is counted (the server's Metrics).
        compress: ask the core to deflate what clients are sent (it does so only for a
            socket that negotiated permessage-deflate, above the route's compression_threshold).
    """

    __slots__ = ("pubsub", "set_timeout", "counters", "compress")

    def __init__(self, pubsub: "PubSub", set_timeout: Callable[[float, Callable[[], Any]], int],
                 counters: "Metrics", compress: bool = False) -> None:
        self.pubsub = pubsub
        self.set_timeout = set_timeout
        self.counters = counters
        self.compress = compress


class Client:
    """One connection: identity (``id``, ``user_id``, ``claims``) and what a handler may do
    with it (``send``, ``subscribe``, ``unsubscribe``, ``publish``, ``close``).

    Args:
        context: the server's shared :class:`SessionContext`.
        client_id: the id announced in CONNECTED.
        claims: the verified token's claims (or what the authenticate hook returned).
        topics_allowed: topic patterns the claims grant, None for any topic.
        remote_address: the peer's address.
    """

    __slots__ = (
        "id", "user_id", "claims", "topics_allowed", "remote_address", "ws", "context",
        "bucket", "batcher", "batch_timer", "expiry_timer", "token_expires_at", "closed",
    )

    def __init__(self, context: SessionContext, client_id: str, claims: dict[str, Any],
                 topics_allowed: Optional[list[str]], remote_address: str) -> None:
        self.id = client_id
        self.context = context
        self.claims = claims
        self.user_id: Optional[str] = None
        self.topics_allowed = topics_allowed
        self.remote_address = remote_address
        self.ws: Any = None  # the WebSocket from open to close
        self.bucket: Optional["TokenBucket"] = None
        self.batcher: Optional["Batcher"] = None
        self.batch_timer: Optional[int] = None
        self.expiry_timer: Optional[int] = None
        self.token_expires_at: Optional[float] = None
        self.closed = False

    def __repr__(self) -> str:
        return f"<Client {self.id} user={self.user_id!r} {self.remote_address}>"

    def send(self, message: Any, priority: bool = False) -> SendStatus:
        """Sends a message to this client.

        Args:
            message: a dict (serialized with orjson; one it cannot encode becomes INTERNAL).
            priority: with batching on, send at once (after what was queued before it)
                instead of waiting up to max_wait_ms to leave in a BATCH frame.

        Returns the core's :class:`uws_py.SendStatus` of the last frame written: SUCCESS,
        BACKPRESSURE (sent, but the socket's buffer is filling: slow down) or DROPPED (over
        max_backpressure, or the connection is gone). With batching, a message kept for a
        later BATCH frame is SUCCESS.
        """
        ws = self.ws
        if ws is None or self.closed:
            return SendStatus.DROPPED
        batcher = self.batcher
        if batcher is None:
            try:
                data = _dumps(message)
            except TypeError as exc:
                data = encode_failure(message, exc)
            return ws.send(data, TEXT, self.context.compress)  # the native SendStatus member
        frames, start_timer = batcher.add(message, priority)
        status = self._write(frames) if frames else SendStatus.SUCCESS
        if start_timer:
            self.batch_timer = self.context.set_timeout(batcher.options.max_wait_ms / 1000.0, self.flush)
        return status

    def flush(self) -> None:
        """Sends whatever the batcher holds now."""
        self.batch_timer = None
        if self.batcher is not None and not self.closed:
            self._write(self.batcher.flush())

    def _write(self, frames: list[Any]) -> SendStatus:
        ws = self.ws
        if ws is None or self.closed:
            return SendStatus.DROPPED
        compress = self.context.compress
        status = SendStatus.SUCCESS
        for frame in frames:
            if frame.get("type") == "BATCH":
                self.context.counters.batches_sent += 1
            try:
                data = _dumps(frame)
            except TypeError as exc:
                data = encode_failure(frame, exc)
            status = ws.send(data, TEXT, compress)
        return status

    def subscribe(self, topic: str) -> bool:
        """Subscribes to a topic.

        Args:
            topic: the topic; the token's topic claim and the server's authorize_topic hook
                must allow it, else ProtocolError(FORBIDDEN) is raised.

        Returns False when already subscribed (or the connection is gone).
        """
        self.context.pubsub.check_topic(self, topic, "subscribe")
        return self.ws is not None and not self.closed and self.ws.subscribe(topic)

    def unsubscribe(self, topic: str) -> bool:
        """Unsubscribes from ``topic``; False when not subscribed.

        Args:
            topic: the topic.
        """
        return self.ws is not None and not self.closed and self.ws.unsubscribe(topic)

    def publish(self, topic: str, data: Any, echo: bool = False) -> Optional["Position"]:
        """Publishes as this client: every other subscriber (in every process, with a
        broker) gets a MESSAGE with ``from`` set to this client's id.

        Args:
            topic: the topic (checked as for :meth:`subscribe`, action "publish").
            data: any JSON-encodable value.
            echo: also send the MESSAGE to this client.

        Returns the publication's position on a history topic (None on a plain one).
        """
        pubsub = self.context.pubsub
        pubsub.check_topic(self, topic, "publish")
        return pubsub.publish_from(self, topic, data, echo)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Starts the close handshake.

        Args:
            code: the WebSocket close code.
            reason: the close reason.
        """
        if self.ws is not None and not self.closed:
            self.ws.end(code, reason)
