"""NATS as the broker, for pub/sub (nats-py's asyncio client on the broker thread).

``NatsBroker("nats://host:4222")`` (several servers: ``nats://h1:4222,nats://h2:4222``;
``tls://`` for TLS). NATS carries plain topics only; it keeps no history. With history topics
on, give ``history=`` a Redis broker (``RedisBroker`` or ``RedisClusterBroker``,
``--history-store`` in the CLI): history topics then go through Redis exactly as with a Redis
broker (the store's script publishes on the Redis channel, in offset order), and NATS carries
everything else.

Subjects: a topic ``t`` is the subject ``uws.`` + :func:`subject_token` (t). Dots stay token
separators; inside a token every character other than ``A-Z a-z 0-9 _ -`` is written ``~XX``
per UTF-8 byte (``*`` ``~2A``, ``>`` ``~3E``, space ``~20``, ``~`` ``~7E``, ``é`` ``~C3~A9``),
and an empty token (``a..b``, a leading or trailing dot) is ``~``. So every topic makes a
valid subject with no wildcard in it, and two topics never share one.

Connection: nats-py reconnects by itself (every 0.2 s, for ever) and sends every subscription
again; the broker reports the loss (``on_connection(False)``, ``connected`` 0) at the
disconnection and ``on_connection(True)`` once a round trip after the reconnection shows the
server has the subscriptions. Publishes made while disconnected are not queued: they are
counted in ``publish_failures`` (at most once, as with Redis).
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any, Coroutine, Optional

from . import Deliver, DeliverPositioned, OnConnection, Schedule
from .redact import redacting_logger
from .threaded import ThreadedBroker

logger = redacting_logger("uws_py.broker")

SUBJECT_PREFIX = "uws."
BACKOFF_START = 0.2
BACKOFF_CAP = 5.0
# Seconds for a connect attempt and for a flush round trip.
TIMEOUT = 2.0
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def subject_token(topic: str) -> str:
    """The escaped form of topic (see the module docstring); dots stay separators."""
    tokens = []
    for part in topic.split("."):
        if not part:
            tokens.append("~")
            continue
        tokens.append("".join(chr(byte) if byte in _PLAIN else f"~{byte:02X}"
                              for byte in part.encode("utf-8", "surrogateescape")))
    return ".".join(tokens)


def topic_of_token(token: str) -> str:
    """The topic :func:`subject_token` escaped."""
    parts = []
    for part in token.split("."):
        if part == "~":
            parts.append("")
            continue
        raw = bytearray()
        index = 0
        while index < len(part):
            if part[index] == "~":
                raw.append(int(part[index + 1:index + 3], 16))
                index += 3
            else:
                raw.append(ord(part[index]))
                index += 1
        parts.append(raw.decode("utf-8", "surrogateescape"))
    return ".".join(parts)


class NatsBroker(ThreadedBroker):
    """Pub/sub through NATS; history (if any) through ``history``, a Redis broker.

    Args:
        url: ``nats://host:port`` (comma-separated for several servers)
        subject_prefix: the first token(s) of every subject
        history: the Redis broker that carries history topics and stores their history (None: no
            history topics possible).
    """

    system = "NATS"

    def __init__(self, url: str, subject_prefix: str = SUBJECT_PREFIX, history: Optional[ThreadedBroker] = None) -> None:
        try:
            importlib.import_module("nats")
        except ImportError:
            raise RuntimeError("the NATS broker needs nats-py: pip install 'uws-py[nats]'") from None
        super().__init__(url)
        self.prefix = subject_prefix
        self.servers = [server.strip() for server in url.split(",") if server.strip()]
        self.history_broker = history
        self._client: Any = None
        self._subscriptions: dict[str, Any] = {}

    def channel(self, topic: str) -> str:
        """The NATS subject of topic."""
        return self.prefix + subject_token(topic)

    @staticmethod
    def channel_of(topic: str, subject_prefix: str = SUBJECT_PREFIX) -> str:
        """The subject of topic under a prefix, without a broker (for monitoring)."""
        return subject_prefix + subject_token(topic)

    def topic_of(self, channel: bytes) -> str:
        return topic_of_token(channel.decode("ascii")[len(self.prefix):])

    # -- server side: a history broker beside this one ------------------------------------

    def start(self, deliver: Deliver, schedule: Schedule, *, deliver_positioned: Optional[DeliverPositioned] = None,
              on_connection: Optional[OnConnection] = None) -> None:
        """See :meth:`Broker.start`; with a history broker, history deliveries and connection
        changes come from it (NATS carries no history publication)."""
        if self.history_broker is None:
            super().start(deliver, schedule, on_connection=on_connection)
        else:
            super().start(deliver, schedule)
            self.history_broker.start(deliver, schedule, deliver_positioned=deliver_positioned,
                                      on_connection=on_connection)

    def unsubscribe(self, topic: str) -> None:
        super().unsubscribe(topic)
        history = self.history_broker
        if history is not None and topic in history._topics:
            history.unsubscribe(topic)

    def stop(self) -> None:
        super().stop()
        if self.history_broker is not None:
            self.history_broker.stop()

    # -- broker thread ---------------------------------------------------------------------

    def _tasks(self) -> list[Coroutine[Any, Any, None]]:
        return [self._publisher(), self._connector()]

    async def _connector(self) -> None:
        import nats

        backoff = BACKOFF_START
        while not self._stopping:
            try:
                client = await nats.connect(
                    servers=self.servers, connect_timeout=TIMEOUT, allow_reconnect=True,
                    max_reconnect_attempts=-1, reconnect_time_wait=0.2, ping_interval=5, max_outstanding_pings=2,
                    disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
                    error_cb=self._error, name="uws-py",
                )
            except Exception as exc:
                logger.debug("NATS connect failed: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_CAP, backoff * 2)
                continue
            self._client = client
            try:
                for topic in list(self._topics):
                    await self._subscribe(topic)
                await client.flush(timeout=TIMEOUT)
            except Exception as exc:
                logger.warning("NATS subscribe after connecting failed: %s", exc)
            self._up(list(self._subscriptions))
            return

    async def _subscribe(self, topic: str) -> None:
        subject = self.channel(topic)
        if subject in self._subscriptions:
            return

        async def on_message(message: Any) -> None:
            self._received(message.subject.encode("ascii"), message.data)

        self._subscriptions[subject] = await self._client.subscribe(subject, cb=on_message)

    def _up(self, subjects: list[str]) -> None:
        """The server has every subscription in subjects: confirm them, report connected."""
        self._counters["connected"] = 1
        self._resubscribing = None
        for subject in subjects:
            self._subscription_confirmed(subject.encode("ascii"))
        self._notify(self._on_connection, True)
        self.ready.set()

    async def _disconnected(self) -> None:
        if self._counters["connected"]:
            logger.warning("lost the NATS connection; reconnecting")
            self._connection_lost()

    async def _reconnected(self) -> None:
        client = self._client
        try:
            await client.flush(timeout=TIMEOUT)  # the server has processed the resent SUBs
        except Exception as exc:
            logger.debug("NATS flush after reconnecting failed: %s", exc)
            return
        self._counters["reconnects"] += 1
        logger.info("reconnected to NATS; resubscribed to %d topic(s)", len(self._subscriptions))
        self._up(list(self._subscriptions))

    async def _error(self, exc: Exception) -> None:
        logger.debug("NATS client error: %s", exc)

    async def _apply_subscription(self, topic: str, subscribe: bool) -> None:
        client = self._client
        if client is None:
            return  # applied from self._topics once connected
        subject = self.channel(topic)
        try:
            if subscribe and topic in self._topics:
                await self._subscribe(topic)
                await client.flush(timeout=TIMEOUT)
                if self._counters["connected"]:
                    self._subscription_confirmed(subject.encode("ascii"))
            elif not subscribe and topic not in self._topics:
                subscription = self._subscriptions.pop(subject, None)
                if subscription is not None:
                    await subscription.unsubscribe()
        except Exception as exc:
            logger.debug("NATS (un)subscribe of %r failed: %s", topic, exc)

    async def _publisher(self) -> None:
        assert self._outbox is not None
        while True:
            topic, payload, done, trace = await self._outbox.get()
            client = self._client
            if client is None or not client.is_connected:
                self._failed(1)
                self._notify(done, False)
                continue
            try:
                await client.publish(self.channel(topic), self.frame_head(trace) + b"|" + payload)
                self._counters["published"] += 1
                self._notify(done, True)
            except Exception as exc:
                logger.debug("NATS publish failed: %s", exc)
                self._failed(1)
                self._notify(done, False)

