"""Pub/sub across processes and machines through a real broker.

A :class:`Broker` carries publishes between server processes. The server calls
:meth:`Broker.subscribe` when a topic gets its first local subscriber and
:meth:`Broker.unsubscribe` after its last, :meth:`Broker.publish` for every publish, and
receives other processes' publishes through the ``deliver`` callback, always on its loop
thread. Plain publishes get the broker's guarantees (Redis pub/sub: at most once); history
topics add offsets and recovery on top (docs/topics/delivery.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Optional

Deliver = Callable[[str, bytes], None]
# deliver_positioned(topic, payload, epoch, offset): a history publication, with its position.
DeliverPositioned = Callable[[str, bytes, str, int], None]
# on_connection(connected): the broker's receiving connection was lost (False) or is back and
# subscribed again to every topic (True); a worker then fills or reports its history gaps. A
# broker that loses part of its subscriptions (a Redis Cluster shard) calls
# on_connection(False, topics) with the topics lost; the losses add up until the next True.
OnConnection = Callable[..., None]
Schedule = Callable[[Callable[[], None]], None]


class Broker(ABC):
    """The interface a broker implements (Redis, Redis Cluster, NATS)."""

    @abstractmethod
    def start(self, deliver: Deliver, schedule: Schedule, *, deliver_positioned: Optional[DeliverPositioned] = None,
              on_connection: Optional[OnConnection] = None) -> None:
        """Connects in the background. Every callback is called through ``schedule`` (the
        server's thread-safe ``defer``).

        Args:
            deliver: ``deliver(topic, payload)`` for another process's plain publish
            schedule: runs a callable on the server's loop thread
            deliver_positioned: for a history publication (every process's, this one's included, in
                offset order; without it those go to ``deliver``)
            on_connection: told when the receiving connection is lost (``on_connection(False)``, or
                ``on_connection(False, topics)`` when only those topics' subscriptions were lost)
                and when every subscription is back (``on_connection(True)``).
        """

    @abstractmethod
    def subscribe(self, topic: str, ready: Optional[Callable[[], None]] = None) -> None:
        """Starts receiving topic (the first local subscriber arrived). Loop thread.

        Args:
            topic: the topic
            ready: called (through schedule) once the broker confirmed the subscription, i.e. every
                publish from then on will be received.
        """

    @abstractmethod
    def unsubscribe(self, topic: str) -> None:
        """Stops receiving topic (its last local subscriber left). Loop thread."""

    @abstractmethod
    def publish(self, topic: str, payload: bytes, done: Optional[Callable[[bool], None]] = None) -> None:
        """Sends payload to the other processes; never blocks the caller.

        Args:
            topic: the topic
            payload: the encoded MESSAGE
            done: if given, called (through schedule) with True once the broker accepted the
                publish, False when it could not be sent.
        """

    @abstractmethod
    def stop(self) -> None:
        """Disconnects; publishes not yet sent are counted as failed."""

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters: published, received, publish_failures, reconnects, connected (0/1)."""


def from_url(url: str, history_store: Optional[str] = None, *, publish_timeout: Optional[float] = None) -> Broker:
    """The broker a URL names: ``redis://``/``rediss://`` a :class:`~uws_py.broker.redis.RedisBroker`,
    ``redis+cluster://``/``rediss+cluster://`` a
    :class:`~uws_py.broker.redis_cluster.RedisClusterBroker`, ``nats://``/``tls://`` a
    :class:`~uws_py.broker.nats.NatsBroker`.

    Args:
        url: the broker URL
        history_store: for a NATS broker, the Redis (or Redis Cluster) URL that keeps history topics
            (None: no history topics).
        publish_timeout: a Redis (or Redis Cluster) broker's ``publish_timeout`` (None: its
            default); not for NATS.

    Raises:
        RuntimeError: when the client library is missing
        ValueError: for another scheme, a history_store beside a Redis broker (which is its own
            store), a publish_timeout for NATS or not a positive number.
    """
    scheme = url.partition("://")[0]
    timeout = {} if publish_timeout is None else {"publish_timeout": publish_timeout}
    if scheme in ("nats", "tls"):
        from .nats import NatsBroker

        if timeout:
            raise ValueError("publish_timeout is for a Redis broker; the NATS broker has none")
        return NatsBroker(url, history=from_url(history_store) if history_store else None)
    if history_store:
        raise ValueError("--history-store is for a NATS broker; a Redis broker keeps the history itself")
    if scheme in ("redis+cluster", "rediss+cluster"):
        from .redis_cluster import RedisClusterBroker

        return RedisClusterBroker(url, **timeout)
    if scheme in ("redis", "rediss"):
        from .redis import RedisBroker

        return RedisBroker(url, **timeout)
    raise ValueError(f"no broker for URL scheme {scheme!r}")
