"""A subscription of the client SDK: its position in the topic's history, the live messages
held while a (re)subscribe is in flight, and delivery without duplicates."""

from __future__ import annotations

import enum
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, Union

from .policy import OffsetTracker, Verdict

logger = logging.getLogger("uws_py.sdk")


@dataclass(frozen=True)
class Position:
    """A place in a topic's history: the history's ``epoch`` and an ``offset`` in it."""

    epoch: str
    offset: int


@dataclass(frozen=True)
class Publication:
    """One message of a subscription. sender: the publisher's ``clientId`` (None when the
    server published); offset: None on a plain topic; recovered: it came from the history
    in a SUBSCRIBED reply, not live."""

    topic: str
    data: Any
    sender: Optional[str]
    offset: Optional[int]
    recovered: bool = False


@dataclass(frozen=True)
class SubscribedEvent:
    """One SUBSCRIBED: the position (None on a plain topic), whether this subscribe tried to
    recover (``was_recovering``) and did (``recovered``), and how many publications it
    recovered. ``gap`` is True when recovery was tried and failed: messages were missed."""

    topic: str
    position: Optional[Position]
    was_recovering: bool
    recovered: bool
    recovered_count: int
    resubscribe: bool

    @property
    def gap(self) -> bool:
        return self.was_recovering and not self.recovered


class SubscriptionState(enum.Enum):
    SUBSCRIBING = "subscribing"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


@dataclass
class SubscriptionStats:
    """Counters of one subscription, for the application's monitoring and for tests."""

    subscribes: int = 0
    recoveries: int = 0
    gaps: int = 0
    recovered_publications: int = 0
    delivered: int = 0
    duplicates_skipped: int = 0


OnMessage = Callable[[Publication], Union[None, Awaitable[None]]]
OnSubscribed = Callable[[SubscribedEvent], Any]


class Subscription:
    """A topic the client stays subscribed to across reconnects. Made by
    ``RealtimeClient.subscribe``; ``await subscription.unsubscribe()`` ends it."""

    def __init__(self, client: Any, topic: str, on_message: OnMessage,
                 on_subscribed: Optional[OnSubscribed] = None, since: Optional[Position] = None) -> None:
        """client: the RealtimeClient (only its unsubscribe entry point is used); since: a
        saved position to recover from on the first subscribe."""
        self._client = client
        self.topic = topic
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.state = SubscriptionState.SUBSCRIBING
        self.tracker = OffsetTracker(since.epoch if since else None, since.offset if since else None)
        self.stats = SubscriptionStats()
        self.error: Optional[BaseException] = None
        self._held: list[dict[str, Any]] = []

    @property
    def position(self) -> Optional[Position]:
        """The last position delivered (or reported by SUBSCRIBED); None on a plain topic."""
        if self.tracker.epoch is None or self.tracker.offset is None:
            return None
        return Position(self.tracker.epoch, self.tracker.offset)

    async def unsubscribe(self) -> None:
        """Leaves the topic for good (UNSUBSCRIBE when connected)."""
        await self._client._unsubscribe(self)

    # -- driven by the client's reader ---------------------------------------------------

    def subscribe_message(self, request_id: int) -> dict[str, Any]:
        """The SUBSCRIBE to send now, recovering from the saved position when there is one;
        live messages are held until its reply."""
        self.state = SubscriptionState.SUBSCRIBING
        self._held.clear()
        message: dict[str, Any] = {"type": "SUBSCRIBE", "topic": self.topic, "id": request_id}
        if self.tracker.known:
            message["recover"] = True
            message["since"] = {"epoch": self.tracker.epoch, "offset": self.tracker.offset}
        return message

    async def on_live(self, message: dict[str, Any]) -> None:
        """A MESSAGE for this topic."""
        if self.state is SubscriptionState.SUBSCRIBING:
            self._held.append(message)
        elif self.state is SubscriptionState.SUBSCRIBED:
            await self._deliver(message, recovered=False)

    async def on_subscribed_reply(self, reply: dict[str, Any], resubscribe: bool) -> SubscribedEvent:
        """The SUBSCRIBED reply: recovered publications first, then the live messages held
        meanwhile, each offset once."""
        was_recovering = bool(reply.get("wasRecovering", False))
        recovered = bool(reply.get("recovered", False))
        epoch, offset = reply.get("epoch"), reply.get("offset")
        publications = (reply.get("publications") or []) if recovered else []
        self.stats.subscribes += 1
        if epoch is None or not isinstance(offset, int):
            self.tracker.reset(None, None)
        elif not recovered:
            if was_recovering:
                self.stats.gaps += 1
            self.tracker.reset(epoch, offset)
        else:
            self.stats.recoveries += 1
            self.tracker.epoch = epoch
        for publication in publications:
            self.stats.recovered_publications += 1
            await self._deliver({**publication, "topic": self.topic}, recovered=True)
        if recovered and isinstance(offset, int):
            # Everything up to the top was in `publications`: the position is the top even
            # when the last ones were duplicates.
            self.tracker.offset = max(self.tracker.offset or 0, offset)
        # Delivery may await the application; messages held meanwhile join the queue.
        while self._held:
            await self._deliver(self._held.pop(0), recovered=False)
        self.state = SubscriptionState.SUBSCRIBED
        event = SubscribedEvent(self.topic, self.position, was_recovering, recovered, len(publications), resubscribe)
        if self.on_subscribed is not None:
            await _call(self.on_subscribed, event)
        return event

    def connection_lost(self) -> None:
        """The connection ended: the next one subscribes again."""
        if self.state is not SubscriptionState.UNSUBSCRIBED:
            self.state = SubscriptionState.SUBSCRIBING
        self._held.clear()

    def ended(self, error: Optional[BaseException] = None) -> None:
        self.state = SubscriptionState.UNSUBSCRIBED
        self.error = error
        self._held.clear()

    async def _deliver(self, message: dict[str, Any], recovered: bool) -> None:
        offset = message.get("offset")
        if self.tracker.accept(offset if isinstance(offset, int) else None) is Verdict.DUPLICATE:
            self.stats.duplicates_skipped += 1
            return
        self.stats.delivered += 1
        publication = Publication(self.topic, message.get("data"), message.get("from"),
                                  offset if isinstance(offset, int) else None, recovered)
        try:
            await _call(self.on_message, publication)
        except Exception:
            logger.exception("on_message for %r raised", self.topic)


async def _call(callback: Callable[..., Any], *args: Any) -> None:
    result = callback(*args)
    if inspect.isawaitable(result):
        await result
