"""A connected client of the realtime server, as handlers see it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

from . import protocol
import orjson

from ._core import OpCode, WebSocket

_dumps = orjson.dumps
_TEXT = int(OpCode.TEXT)

if TYPE_CHECKING:
    from .batching import Batcher
    from .ratelimit import TokenBucket
    from .server import RealtimeServer


logger = logging.getLogger("uws_py.realtime")


def _encoding_failure(message: Any, exc: Exception) -> bytes:
    """What the client gets instead of a message that cannot be serialized: INTERNAL."""
    logger.error("cannot encode a message for a client: %s", exc)
    request_id = message.get("id") if isinstance(message, dict) else None
    reply = protocol.error(protocol.INTERNAL, "the reply could not be encoded")
    if isinstance(request_id, (str, int, float, bool)) or request_id is None:
        if request_id is not None:
            reply["id"] = request_id
    return _dumps(reply)


class Client:
    """One connection: identity (``id``, ``user_id``, ``claims``) and what a handler may do
    with it (``send``, ``subscribe``, ``unsubscribe``, ``publish``, ``close``)."""

    __slots__ = (
        "id", "user_id", "claims", "topics_allowed", "remote_address", "ws", "server",
        "bucket", "batcher", "batch_timer", "expiry_timer", "token_expires_at", "closed",
    )

    def __init__(self, server: "RealtimeServer", client_id: str, claims: dict[str, Any],
                 topics_allowed: Optional[list[str]], remote_address: str) -> None:
        self.id = client_id
        self.server = server
        self.claims = claims
        self.user_id: Optional[str] = None
        self.topics_allowed = topics_allowed
        self.remote_address = remote_address
        self.ws: Optional[WebSocket] = None
        self.bucket: Optional["TokenBucket"] = None
        self.batcher: Optional["Batcher"] = None
        self.batch_timer: Optional[int] = None
        self.expiry_timer: Optional[int] = None
        self.token_expires_at: Optional[float] = None
        self.closed = False

    def __repr__(self) -> str:
        return f"<Client {self.id} user={self.user_id!r} {self.remote_address}>"

    def send(self, message: Any, priority: bool = False) -> None:
        """Sends a message (a dict, serialized with orjson). With batching on, it may wait up
        to max_wait_ms to leave in a BATCH frame; ``priority`` sends at once (after what was
        queued before it)."""
        ws = self.ws
        if ws is None or self.closed:
            return
        batcher = self.batcher
        if batcher is None:
            try:
                data = _dumps(message)
            except TypeError as exc:  # a reply orjson cannot encode (a set, 255+ levels deep...)
                data = _encoding_failure(message, exc)
            ws.send(data, _TEXT)
            return
        frames, start_timer = batcher.add(message, priority)
        if frames:
            self._write(frames)
        if start_timer:
            self.batch_timer = self.server.app.set_timeout(batcher.options.max_wait_ms / 1000.0, self.flush)

    def flush(self) -> None:
        """Sends whatever the batcher holds now."""
        self.batch_timer = None
        if self.batcher is not None and not self.closed:
            self._write(self.batcher.flush())

    def _write(self, frames: list[Any]) -> None:
        ws = self.ws
        if ws is None or self.closed:
            return
        for frame in frames:
            if frame.get("type") == "BATCH":
                self.server.metrics.batches_sent += 1
            try:
                data = _dumps(frame)
            except TypeError as exc:
                data = _encoding_failure(frame, exc)
            ws.send(data, _TEXT)

    def subscribe(self, topic: str) -> bool:
        """Subscribes to topic if the token and the server's hook allow it; raises
        ProtocolError(FORBIDDEN) otherwise. False when already subscribed."""
        self.server.check_topic(self, topic, "subscribe")
        return self.ws is not None and not self.closed and self.ws.subscribe(topic)

    def unsubscribe(self, topic: str) -> bool:
        """False when not subscribed."""
        return self.ws is not None and not self.closed and self.ws.unsubscribe(topic)

    def publish(self, topic: str, data: Any, echo: bool = False) -> None:
        """Publishes data to topic as this client (every other subscriber gets a MESSAGE)."""
        self.server.check_topic(self, topic, "publish")
        self.server.publish_from(self, topic, data, echo)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Starts the close handshake."""
        if self.ws is not None and not self.closed:
            self.ws.end(code, reason)
