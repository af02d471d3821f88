"""A subscription of the client SDK: its position in the topic's history, the live messages
held while a (re)subscribe is in flight, and delivery without duplicates."""

from __future__ import annotations

import asyncio
import collections
import enum
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional, Union

from .errors import ClientClosed, ServerError
from .policy import OffsetTracker, Verdict
from .presence import PresenceDiff, parse_diff

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
    """One SUBSCRIBED, reported once its recovered publications (and the live ones held
    meanwhile) were delivered.

    position: where the subscription is live from (None on a plain topic); since: the
    position this subscribe recovered from (None when it did not try); was_recovering: it
    tried, recovered: it got everything missed (``recovered_count`` publications);
    resubscribe: not the first SUBSCRIBED of this subscription (a reconnect, an
    ``insufficient_state`` push, or a jump in live offsets).
    """

    topic: str
    position: Optional[Position]
    was_recovering: bool
    recovered: bool
    recovered_count: int
    resubscribe: bool
    since: Optional[Position] = None

    @property
    def gap(self) -> bool:
        """True when recovery was tried and failed (``recovered: false``): the publications
        after ``since`` up to ``position`` (all of them when the epoch changed) were missed
        and the server cannot give them; reload that state from the application's source."""
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
    live_jumps: int = 0
    presence_diffs: int = 0


OnMessage = Callable[[Publication], Union[None, Awaitable[None]]]
OnSubscribed = Callable[[SubscribedEvent], Any]
OnPresence = Callable[[PresenceDiff], Any]


class Subscription:
    """A topic the client stays subscribed to across reconnects. Made by
    ``RealtimeClient.subscribe``; ``await subscription.unsubscribe()`` ends it."""

    def __init__(self, client: Any, topic: str, on_message: OnMessage,
                 on_subscribed: Optional[OnSubscribed] = None, since: Optional[Position] = None,
                 on_presence: Optional[OnPresence] = None) -> None:
        """client: the RealtimeClient (only its unsubscribe entry point is used); since: a
        saved position to recover from on the first subscribe; on_presence(diff): each
        PRESENCE_DIFF of the topic (presence with join_leave)."""
        self._client = client
        self.topic = topic
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.on_presence = on_presence
        self.state = SubscriptionState.SUBSCRIBING
        self.tracker = OffsetTracker(since.epoch if since else None, since.offset if since else None)
        self.stats = SubscriptionStats()
        self.error: Optional[BaseException] = None
        # Set when a live MESSAGE skipped offsets: the client recovers from ``position``.
        self.recovery_needed = False
        self._held: collections.deque[dict[str, Any]] = collections.deque()
        self._since: Optional[Position] = None
        # False once: the next subscribe does not recover (its reply would be too big).
        self._recover_next = True
        self._gave_up = False
        self._settled = asyncio.Event()

    @property
    def position(self) -> Optional[Position]:
        """The last position delivered (or reported by SUBSCRIBED); None on a plain topic."""
        if self.tracker.epoch is None or self.tracker.offset is None:
            return None
        return Position(self.tracker.epoch, self.tracker.offset)

    @property
    def resubscribe(self) -> bool:
        """True once a SUBSCRIBED came: the next subscribe is a resubscribe."""
        return self.stats.subscribes > 0

    async def unsubscribe(self) -> None:
        """Leaves the topic for good (UNSUBSCRIBE when connected)."""
        await self._client._unsubscribe(self)

    async def wait_subscribed(self) -> None:
        """Returns once the first SUBSCRIBED was handled; raises the error that ended the
        subscription first (a ServerError refusal, or ClientClosed)."""
        await self._settled.wait()
        if self.state is SubscriptionState.UNSUBSCRIBED and self.stats.subscribes == 0:
            if isinstance(self.error, ServerError):
                raise self.error
            raise ClientClosed(f"the subscription to {self.topic!r} ended before SUBSCRIBED", self.error)

    # -- driven by the client's reader ---------------------------------------------------

    def subscribe_message(self, request_id: int) -> dict[str, Any]:
        """The SUBSCRIBE to send now, recovering from the saved position when there is one;
        live messages are held until its reply."""
        self.state = SubscriptionState.SUBSCRIBING
        self.recovery_needed = False
        # What was held came before this SUBSCRIBE was sent: all of it is at or below the top
        # the reply will recover to, so nothing is lost by dropping it.
        self._held.clear()
        message: dict[str, Any] = {"type": "SUBSCRIBE", "topic": self.topic, "id": request_id}
        self._since = self.position
        self._gave_up = self._since is not None and not self._recover_next
        self._recover_next = True
        if self._since is not None and not self._gave_up:
            message["recover"] = True
            message["since"] = {"epoch": self._since.epoch, "offset": self._since.offset}
        return message

    def give_up_recovery(self) -> None:
        """The next subscribe goes live from the server's position without recovering; its
        SubscribedEvent is a gap from the current position."""
        self._recover_next = False

    async def on_live(self, message: dict[str, Any]) -> None:
        """A MESSAGE for this topic. When its offset skips some (the server dropped MESSAGEs
        for a slow reader, or lost continuity), it is not delivered: ``recovery_needed`` is
        set and messages are held until the client has resubscribed from ``position``."""
        if self.state is SubscriptionState.SUBSCRIBING:
            self._held.append(message)
        elif self.state is SubscriptionState.SUBSCRIBED:
            await self._deliver(message, recovered=False)

    async def on_subscribed_reply(self, reply: dict[str, Any]) -> Optional[SubscribedEvent]:
        """The SUBSCRIBED reply: recovered publications first, then the live messages held
        meanwhile, each offset once. None when the subscription already ended."""
        if self.state is SubscriptionState.UNSUBSCRIBED:
            return None
        resubscribe = self.resubscribe
        # A recovery given up counts as one that failed: the application must hear of the gap.
        was_recovering = bool(reply.get("wasRecovering", False)) or self._gave_up
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
        # The state is SUBSCRIBED before the held messages go, so that a jump among them
        # (or in live ones that arrive while the application is awaited) is seen.
        self.state = SubscriptionState.SUBSCRIBED
        held, self._held = self._held, collections.deque()
        while held and self.state is SubscriptionState.SUBSCRIBED:
            await self._deliver(held.popleft(), recovered=False)
        if self.recovery_needed:
            self._held.extend(held)  # after the message that jumped; the recovery covers them
        event = SubscribedEvent(self.topic, self.position, was_recovering, recovered, len(publications), resubscribe,
                                self._since if was_recovering else None)
        self._settled.set()
        if self.on_subscribed is not None:
            try:
                await _call(self.on_subscribed, event)
            except Exception:
                logger.exception("on_subscribed for %r raised", self.topic)
        return event

    async def on_presence_diff(self, message: dict[str, Any]) -> Optional[PresenceDiff]:
        """A PRESENCE_DIFF for this topic, passed to on_presence (None when the subscription
        ended). Diffs are not held during a resubscribe like MESSAGEs: they carry no offset to
        order by, and each describes what changed at the server, whatever came before."""
        if self.state is SubscriptionState.UNSUBSCRIBED:
            return None
        diff = parse_diff(message)
        self.stats.presence_diffs += 1
        if self.on_presence is not None:
            try:
                await _call(self.on_presence, diff)
            except Exception:
                logger.exception("on_presence for %r raised", self.topic)
        return diff

    def connection_lost(self) -> None:
        """The connection ended: the next one subscribes again."""
        if self.state is not SubscriptionState.UNSUBSCRIBED:
            self.state = SubscriptionState.SUBSCRIBING
        self._held.clear()

    def ended(self, error: Optional[BaseException] = None) -> None:
        """The subscription is over: unsubscribed, refused (error: the ServerError) or the
        client closed (error: why)."""
        self.state = SubscriptionState.UNSUBSCRIBED
        self.error = error
        self._held.clear()
        self._settled.set()

    async def _deliver(self, message: dict[str, Any], recovered: bool) -> None:
        offset = message.get("offset")
        known = self.tracker.offset
        if not recovered and isinstance(offset, int) and known is not None and offset > known + 1:
            # Offsets (known, offset) never arrived: hold this one and what follows, and let
            # the client recover them (they are at or below the top of that recovery).
            self.stats.live_jumps += 1
            logger.warning("%r: live offset %d after %d; recovering the %d missed", self.topic, offset, known,
                           offset - known - 1)
            self.state = SubscriptionState.SUBSCRIBING
            self.recovery_needed = True
            self._held.append(message)
            return
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
