"""Topics: who may subscribe and publish (policy), and the fan-out of a publish to local
subscribers (the core's topic tree) and to other processes (the broker)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from ..auth import topic_matches
from .history import HistoryPolicy, MemoryHistory, Position, message_parts
from .protocol import FORBIDDEN, INVALID_MESSAGE, LIMIT_EXCEEDED, TEXT, ProtocolError, encode

if TYPE_CHECKING:
    from ..broker import Broker
    from .presence_service import PresenceService
    from .relay import HistoryRelay
    from .session import Client

# hook(client, topic, action) -> bool, action being "subscribe", "publish", "history" or "presence".
TopicHook = Callable[["Client", str, str], bool]
# publish(topic, payload, opcode) -> whether anyone subscribed: the App's (with compress bound
# when the server compresses; the core then deflates once per shared window, not per socket).
LocalPublish = Callable[[str, bytes, int], bool]
# intercept(topic, payload) -> True when it consumed another process's delivery itself
# (a presence diff, a control message) instead of its going to the topic's subscribers.
Intercept = Callable[[str, bytes], bool]


class PubSub:
    """Topic policy and fan-out for one server.

    Topics matching a history pattern go through ``history`` (an offset assigned, the
    publication kept as the exact MESSAGE bytes sent live); every other topic takes the
    plain path, which costs one ``options_for`` lookup more only when patterns exist.

    Args:
        publish_local: the core's ``publish(topic, payload, opcode)``.
        broker: carries publishes to and from other processes; None keeps them local.
        policy: the history patterns (empty: every topic is plain).
        history: the in-process store of the history topics.
        compress: a client's publish is fanned out compressed (``ws.publish(..., compress)``).
    """

    __slots__ = ("publish_local", "broker", "topic_hook", "policy", "history", "relay", "history_on", "compress",
                 "max_subscriptions", "max_topic_length", "presence", "intercept", "reserved")

    def __init__(self, publish_local: LocalPublish, broker: Optional["Broker"] = None,
                 policy: Optional[HistoryPolicy] = None, history: Optional[MemoryHistory] = None,
                 compress: bool = False) -> None:
        self.publish_local = publish_local
        self.compress = compress
        # Bounds of what one client can make this process hold (RealtimeServer's defaults).
        self.max_subscriptions = 128
        self.max_topic_length = 255
        self.broker = broker
        self.topic_hook: Optional[TopicHook] = None  # the application's, set by authorize_topic
        self.policy = policy if policy is not None else HistoryPolicy()
        # A plain attribute read on every publish: a server without patterns pays nothing more.
        self.history_on = bool(self.policy)
        self.history = history if history is not None else MemoryHistory(self.policy)
        # With a Redis broker, history topics go through the relay instead of ``history``.
        self.relay: Optional["HistoryRelay"] = None
        # Told of every (un)subscription once a presence pattern exists; None costs nothing.
        self.presence: Optional["PresenceService"] = None
        self.intercept: Optional[Intercept] = None
        # reserved(topic) -> True for topics only the server may use (users.py's per-user topics).
        self.reserved: Optional[Callable[[str], bool]] = None

    def is_history_topic(self, topic: str) -> bool:
        """Whether topic keeps a history.

        Args:
            topic: the topic name.
        """
        return self.policy.options_for(topic) is not None

    def check_topic(self, client: "Client", topic: Any, action: str) -> None:
        """Raises ProtocolError unless the client may act on the topic.

        Args:
            client: who asks (its ``topics_allowed`` from the token, then the hook).
            topic: the topic as the client sent it (INVALID_MESSAGE unless a non-empty str).
            action: "subscribe", "publish", "history" or "presence". A topic longer than
                ``max_topic_length``, or a new subscription past ``max_subscriptions``, is
                refused with LIMIT_EXCEEDED.
        """
        if not isinstance(topic, str) or not topic:
            raise ProtocolError(INVALID_MESSAGE, "field 'topic' must be a non-empty string")
        if self.reserved is not None and self.reserved(topic):
            raise ProtocolError(FORBIDDEN, f"topic {topic!r} is reserved for the server")
        if len(topic) > self.max_topic_length:
            raise ProtocolError(LIMIT_EXCEEDED, f"a topic has at most {self.max_topic_length} characters, "
                                f"this one {len(topic)}", limit="maxTopicLength", max=self.max_topic_length)
        if action == "subscribe":
            ws = client.ws
            if ws is not None and not ws.is_subscribed(topic) and len(ws.get_topics()) >= self.max_subscriptions:
                raise ProtocolError(LIMIT_EXCEEDED, f"at most {self.max_subscriptions} subscriptions per connection",
                                    limit="maxSubscriptions", max=self.max_subscriptions)
        if not topic_matches(client.topics_allowed, topic):
            raise ProtocolError(FORBIDDEN, f"not allowed to {action} {topic!r}")
        if self.topic_hook is not None and not self.topic_hook(client, topic, action):
            raise ProtocolError(FORBIDDEN, f"not allowed to {action} {topic!r}")

    def publish_from(self, client: "Client", topic: str, data: Any, echo: bool) -> Optional[Position]:
        """A client's MESSAGE to every other subscriber, here and through the broker.

        Args:
            client: the publisher (its socket skips itself in the local fan-out).
            topic: an already checked topic.
            data: the payload's ``data``.
            echo: also send the MESSAGE back to the publisher.

        Returns the position of the publication on a history topic, None on a plain one.
        """
        if self.history_on and self.policy.options_for(topic) is not None:
            return self._publish_history(client, topic, data, echo)
        message = {"type": "MESSAGE", "topic": topic, "data": data, "from": client.id}
        payload = encode(message)
        if client.ws is not None:
            client.ws.publish(topic, payload, TEXT, self.compress)
        if self.broker is not None:
            self.broker.publish(topic, payload)
        if echo:
            client.send(message)
        return None

    def _publish_history(self, client: "Client", topic: str, data: Any, echo: bool) -> Position:
        head, tail = message_parts(topic, data, client.id)
        position, publication = self.history.publish(topic, head, tail)
        if client.ws is not None:
            client.ws.publish(topic, publication.payload, TEXT, self.compress)
        if echo:
            client.send({"type": "MESSAGE", "topic": topic, "data": data, "from": client.id,
                         "offset": publication.offset})
        return position

    def publish(self, topic: str, data: Any, confirm: Optional[Callable[[bool], None]] = None) -> bool:
        """A server-originated MESSAGE (``from`` is null) to every subscriber, in every
        process when there is a broker. On a history topic it gets the next offset. Loop thread.

        Args:
            topic: the topic.
            data: the payload's ``data``.
            confirm: with a broker, called on the loop thread with whether the broker took
                the publish (a history topic's: whether it was stored).

        Returns whether this process had subscribers (False for a history topic with a broker:
        its delivery comes later, through the broker).
        """
        if self.history_on and self.policy.options_for(topic) is not None:
            if self.relay is not None:
                self.relay.publish(None, topic, data, False, None, False, confirm)
                return False
            head, tail = message_parts(topic, data, None)
            _, publication = self.history.publish(topic, head, tail)
            return self.publish_local(topic, publication.payload, TEXT)
        payload = encode({"type": "MESSAGE", "topic": topic, "data": data, "from": None})
        if self.broker is not None:
            if confirm is None:
                self.broker.publish(topic, payload)
            else:
                self.broker.publish(topic, payload, confirm)
        return self.publish_local(topic, payload, TEXT)

    def deliver_remote(self, topic: str, payload: bytes) -> None:
        """Another process's publish, delivered by the broker on the loop thread.

        Args:
            topic: the topic.
            payload: the encoded MESSAGE, sent as it is.
        """
        if self.intercept is not None and self.intercept(topic, payload):
            return
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
        if self.presence is not None:
            self.presence.subscription(ws.get_user_data(), topic, count > before)
        broker = self.broker
        if broker is None:
            return
        relay = self.relay
        if relay is not None and count < before:
            relay.unsubscribed(ws.get_user_data(), topic)
        if before == 0 and count > 0:
            broker.subscribe(topic)
        elif count == 0 and before > 0 and not (relay is not None and topic in relay.pending):
            broker.unsubscribe(topic)

    def start(self, schedule: Callable[[Callable[[], None]], None]) -> None:
        """Starts the broker, if any.

        Args:
            schedule: the loop's thread-safe ``defer``, through which deliveries arrive.
        """
        if self.broker is not None:
            if self.relay is not None:
                self.broker.start(self.deliver_remote, schedule, deliver_positioned=self.relay.deliver,
                                  on_connection=self.relay.connection)
            else:
                self.broker.start(self.deliver_remote, schedule)

    def stop(self) -> None:
        """Stops the broker, if any."""
        if self.broker is not None:
            self.broker.stop()
