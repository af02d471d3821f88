"""Topics: who may subscribe and publish (policy), and the fan-out of a publish to local
subscribers (the core's topic tree) and to other processes (the broker)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from ..auth import topic_matches
from .protocol import FORBIDDEN, INVALID_MESSAGE, TEXT, ProtocolError, encode

if TYPE_CHECKING:
    from ..broker import Broker
    from .session import Client

# hook(client, topic, action) -> bool, action being "subscribe" or "publish".
TopicHook = Callable[["Client", str, str], bool]
# publish(topic, payload, opcode) -> whether anyone subscribed: the App's.
LocalPublish = Callable[[str, bytes, int], bool]


class PubSub:
    """Topic policy and fan-out for one server.

    Args:
        publish_local: the core's ``publish(topic, payload, opcode)``.
        broker: carries publishes to and from other processes; None keeps them local.
    """

    __slots__ = ("publish_local", "broker", "topic_hook")

    def __init__(self, publish_local: LocalPublish, broker: Optional["Broker"] = None) -> None:
        self.publish_local = publish_local
        self.broker = broker
        self.topic_hook: Optional[TopicHook] = None  # the application's, set by authorize_topic

    def check_topic(self, client: "Client", topic: Any, action: str) -> None:
        """Raises ProtocolError unless the client may act on the topic.

        Args:
            client: who asks (its ``topics_allowed`` from the token, then the hook).
            topic: the topic as the client sent it (INVALID_MESSAGE unless a non-empty str).
            action: "subscribe" or "publish".
        """
        if not isinstance(topic, str) or not topic:
            raise ProtocolError(INVALID_MESSAGE, "field 'topic' must be a non-empty string")
        if not topic_matches(client.topics_allowed, topic):
            raise ProtocolError(FORBIDDEN, f"not allowed to {action} {topic!r}")
        if self.topic_hook is not None and not self.topic_hook(client, topic, action):
            raise ProtocolError(FORBIDDEN, f"not allowed to {action} {topic!r}")

    def publish_from(self, client: "Client", topic: str, data: Any, echo: bool) -> None:
        """A client's MESSAGE to every other subscriber, here and through the broker.

        Args:
            client: the publisher (its socket skips itself in the local fan-out).
            topic: an already checked topic.
            data: the payload's ``data``.
            echo: also send the MESSAGE back to the publisher.
        """
        message = {"type": "MESSAGE", "topic": topic, "data": data, "from": client.id}
        payload = encode(message)
        if client.ws is not None:
            client.ws.publish(topic, payload, TEXT)
        if self.broker is not None:
            self.broker.publish(topic, payload)
        if echo:
            client.send(message)

    def publish(self, topic: str, data: Any) -> bool:
        """A server-originated MESSAGE (``from`` is null) to every subscriber, in every
        process when there is a broker. Loop thread.

        Args:
            topic: the topic.
            data: the payload's ``data``.

        Returns whether this process had subscribers.
        """
        payload = encode({"type": "MESSAGE", "topic": topic, "data": data, "from": None})
        if self.broker is not None:
            self.broker.publish(topic, payload)
        return self.publish_local(topic, payload, TEXT)

    def deliver_remote(self, topic: str, payload: bytes) -> None:
        """Another process's publish, delivered by the broker on the loop thread.

        Args:
            topic: the topic.
            payload: the encoded MESSAGE, sent as it is.
        """
        self.publish_local(topic, payload, TEXT)

    def on_subscription(self, ws: Any, topic: str, count: int, before: int) -> None:
        """The core's subscription event: the broker follows topics that gain their first
        local subscriber and leave after their last.

        Args:
            ws: the socket that (un)subscribed.
            topic: the topic.
            count: local subscribers now.
            before: local subscribers before.
        """
        broker = self.broker
        if broker is None:
            return
        if before == 0 and count > 0:
            broker.subscribe(topic)
        elif count == 0 and before > 0:
            broker.unsubscribe(topic)

    def start(self, schedule: Callable[[Callable[[], None]], None]) -> None:
        """Starts the broker, if any.

        Args:
            schedule: the loop's thread-safe ``defer``, through which deliveries arrive.
        """
        if self.broker is not None:
            self.broker.start(self.deliver_remote, schedule)

    def stop(self) -> None:
        """Stops the broker, if any."""
        if self.broker is not None:
            self.broker.stop()
