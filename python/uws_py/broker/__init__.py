"""Pub/sub across processes and machines through a real broker.

A :class:`Broker` carries publishes between server processes. The server calls
:meth:`Broker.subscribe` when a topic gets its first local subscriber and
:meth:`Broker.unsubscribe` after its last, :meth:`Broker.publish` for every publish, and
receives other processes' publishes through the ``deliver`` callback, always on its loop
thread. Delivery guarantees are those of the broker (Redis pub/sub: at most once; see
docs/scaling.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

Deliver = Callable[[str, bytes], None]
Schedule = Callable[[Callable[[], None]], None]


class Broker(ABC):
    """The interface a broker implements (Redis today; NATS can sit beside it)."""

    @abstractmethod
    def start(self, deliver: Deliver, schedule: Schedule) -> None:
        """Connects in the background. ``deliver(topic, payload)`` must be called through
        ``schedule`` (the server's thread-safe ``defer``)."""

    @abstractmethod
    def subscribe(self, topic: str) -> None:
        """Starts receiving topic (the first local subscriber arrived). Loop thread."""

    @abstractmethod
    def unsubscribe(self, topic: str) -> None:
        """Stops receiving topic (its last local subscriber left). Loop thread."""

    @abstractmethod
    def publish(self, topic: str, payload: bytes) -> None:
        """Sends payload to the other processes; never blocks the caller."""

    @abstractmethod
    def stop(self) -> None:
        """Disconnects; publishes not yet sent are counted as failed."""

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters: published, received, publish_failures, reconnects, connected (0/1)."""
