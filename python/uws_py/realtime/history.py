"""Per-topic history: which topics keep one, positions, the recovery rule, and the in-memory store.

Nothing here does I/O. The in-memory store is synchronous because the server's loop thread
(``RealtimeServer.run()``) has no asyncio loop; the Redis store (``history_redis``) shares the
types, the errors and the recovery rule defined here (docs: /work/plan/spec-history.md).

A publication is kept as the MESSAGE payload exactly as it is sent live (its offset included),
built from a head and a tail around the offset (:func:`message_parts`), so that both stores
assign the offset at the moment they append and nothing is encoded twice.
"""

from __future__ import annotations

import fnmatch
import re
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterable, Optional, Sequence

import orjson

# The most publications one recovery returns, and the cap of a HISTORY limit (spec default).
DEFAULT_RECOVER_LIMIT = 1000
# The position of a topic (epoch + top offset) outlives its publications by this factor of the
# ttl: a client that missed nothing still recovers after an idle ttl, and offsets go on instead
# of restarting in a new epoch. Both stores use it (Redis: the meta key's EXPIRE).
POSITION_TTL_FACTOR = 2
# Bytes counted per kept publication beyond its payload: the Publication object, its bytes
# header and the deque slot. An estimate, so that many tiny publications still count.
PUBLICATION_OVERHEAD = 120
DEFAULT_MEMORY_CAP = 64 * 1024 * 1024
# Distinct topics whose "history or not" answer is cached; past it the cache starts over, so a
# client publishing to endless random topic names cannot grow it without bound.
OPTIONS_CACHE_SIZE = 10_000


# -- errors: each carries the ERROR code the server answers with ------------------------------


class HistoryError(Exception):
    """Base of the history errors; ``code`` is the ERROR code of the reply."""

    code = "INTERNAL"


class InvalidHistoryRequest(HistoryError):
    """A ``since`` or ``limit`` of the wrong shape or range (ERROR ``INVALID_MESSAGE``)."""

    code = "INVALID_MESSAGE"


class NoHistory(HistoryError):
    """HISTORY (or a history operation) on a topic that matches no history pattern."""

    code = "NO_HISTORY"

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} has no history")
        self.topic = topic


class UnrecoverablePosition(HistoryError):
    """HISTORY ``since`` from another epoch or beyond the top; ``position`` is the current one
    (the ERROR reply carries its ``epoch`` and ``offset``)."""

    code = "UNRECOVERABLE_POSITION"

    def __init__(self, topic: str, since: "Position", position: "Position") -> None:
        super().__init__(
            f"position {since.epoch}:{since.offset} is not in the history of {topic!r} "
            f"(current {position.epoch}:{position.offset})"
        )
        self.topic = topic
        self.since = since
        self.position = position


class HistoryUnavailable(HistoryError):
    """The history storage (Redis) cannot be reached: the publish is refused, not delivered
    without an offset (ERROR ``UNAVAILABLE``)."""

    code = "UNAVAILABLE"


# -- options by pattern -----------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryOptions:
    """Topics matching the fnmatch ``pattern`` keep their last ``size`` publications for
    ``ttl`` seconds, counted from the topic's last publish."""

    pattern: str
    size: int = 100
    ttl: float = 300.0

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ValueError("history pattern must be a non-empty string")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"history size of {self.pattern!r} must be an integer >= 1, got {self.size!r}")
        if isinstance(self.ttl, bool) or not isinstance(self.ttl, (int, float)) or not self.ttl > 0:
            raise ValueError(f"history ttl of {self.pattern!r} must be a number of seconds > 0, got {self.ttl!r}")


class HistoryPolicy:
    """The registered patterns, first match (registration order) wins.

    ``options_for`` is on every publish path, so a server without any pattern answers with
    one truth test, and answers for topics seen before come from a bounded dict.
    """

    def __init__(self, options: Sequence[HistoryOptions] = ()) -> None:
        """A policy of the given patterns.

        Args:
            options: patterns in priority order (more can be added with :meth:`add`).
        """
        self._options: list[tuple[re.Pattern[str], HistoryOptions]] = []
        self._cache: dict[str, Optional[HistoryOptions]] = {}
        for option in options:
            self.add(option)

    def add(self, options: HistoryOptions) -> None:
        """Registers a pattern after those already registered.

        Args:
            options: the pattern with its size and ttl.
        """
        self._options.append((re.compile(fnmatch.translate(options.pattern)), options))
        self._cache.clear()

    @property
    def patterns(self) -> tuple[HistoryOptions, ...]:
        """Every registered option, in priority order."""
        return tuple(option for _, option in self._options)

    def __bool__(self) -> bool:
        return bool(self._options)

    def options_for(self, topic: str) -> Optional[HistoryOptions]:
        """The options of the first pattern topic matches, None for a plain topic.

        Args:
            topic: the topic name.
        """
        if not self._options:
            return None
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = next((option for regex, option in self._options if regex.match(topic)), None)
        if len(self._cache) >= OPTIONS_CACHE_SIZE:
            self._cache.clear()
        self._cache[topic] = found
        return found


# -- positions and publications ---------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a topic's stream stands: ``offset`` counts publications within ``epoch``."""

    epoch: str
    offset: int

    def to_wire(self) -> dict[str, Any]:
        """The ``{"epoch", "offset"}`` fields of SUBSCRIBED, PUBLISHED and HISTORY_RESULT."""
        return {"epoch": self.epoch, "offset": self.offset}


@dataclass(frozen=True)
class Publication:
    """One kept publication: its offset and the MESSAGE payload as it was sent live."""

    offset: int
    payload: bytes

    def to_wire(self) -> dict[str, Any]:
        """The ``{"data", "from", "offset"}`` entry of ``publications``."""
        message = orjson.loads(self.payload)
        return {"data": message.get("data"), "from": message.get("from"), "offset": self.offset}


def new_epoch() -> str:
    """A fresh epoch: 8 random hex characters."""
    return secrets.token_hex(4)


def message_parts(topic: str, data: Any, sender: Optional[str]) -> tuple[bytes, bytes]:
    """The MESSAGE of a history topic split around its offset: ``head + b"42" + tail`` is
    ``{"type":"MESSAGE","topic":...,"data":...,"from":...,"offset":42}``.

    Args:
        topic: the topic
        data: the published data (orjson-serializable)
        sender: the publisher's client id, None for the server.
    """
    encoded = orjson.dumps({"type": "MESSAGE", "topic": topic, "data": data, "from": sender})
    return encoded[:-1] + b',"offset":', b"}"


def sender_of(payload: bytes) -> Optional[str]:
    """The ``from`` of a kept MESSAGE payload (built by :func:`message_parts`), None for the
    server's. Read from the end, where ``"from"`` and ``"offset"`` are the last two fields,
    so the data, whatever it holds, is never looked at."""
    end = payload.rfind(b',"offset":')
    start = payload.rfind(b',"from":', 0, end)
    value = payload[start + 8:end]
    return None if value == b"null" else value[1:-1].decode()


def join_payload(head: bytes, offset: int, tail: bytes) -> bytes:
    """The payload a publication with this offset is sent and kept as."""
    return b"%s%d%s" % (head, offset, tail)


# -- request validation -----------------------------------------------------------------------


def parse_since(value: Any) -> Position:
    """The ``since`` of SUBSCRIBE or HISTORY as a Position.

    Args:
        value: the decoded JSON value.

    Raises:
        InvalidHistoryRequest: unless it is ``{"epoch": str, "offset": int >= 0}`` (booleans are not
            integers).
    """
    if not isinstance(value, dict):
        raise InvalidHistoryRequest("field 'since' must be an object with 'epoch' and 'offset'")
    epoch, offset = value.get("epoch"), value.get("offset")
    if not isinstance(epoch, str):
        raise InvalidHistoryRequest("field 'since.epoch' must be a string")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidHistoryRequest("field 'since.offset' must be a non-negative integer")
    return Position(epoch, offset)


def parse_limit(value: Any, maximum: int) -> int:
    """The ``limit`` of HISTORY; absent (None) means ``maximum``.

    Args:
        value: the decoded JSON value
        maximum: the server's ``history_recover_limit``.

    Raises:
        InvalidHistoryRequest: unless it is an integer in 0..maximum.
    """
    if value is None:
        return maximum
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise InvalidHistoryRequest(f"field 'limit' must be an integer from 0 to {maximum}")
    return value


# -- the recovery rule (one owner, used by every store) ---------------------------------------


class RecoveryOutcome(str, Enum):
    """Why a recovery answered as it did; the label of the recoveries metric."""

    RECOVERED = "recovered"
    EPOCH_CHANGED = "epoch_changed"  # the history the client counted from is gone
    FUTURE_OFFSET = "future_offset"  # since.offset beyond the top of the right epoch
    TOO_MANY = "too_many"  # more missed than the recover limit
    GAP = "gap"  # trimmed by size, expired, or evicted: not every missed one is kept


@dataclass(frozen=True)
class Recovery:
    """The answer to ``SUBSCRIBE {"recover": true, "since": ...}``.

    ``position`` is the top the subscription continues from; ``publications`` are every one in
    (since.offset, position.offset] in order when ``recovered``, else empty.
    """

    recovered: bool
    position: Position
    publications: tuple[Publication, ...]
    outcome: RecoveryOutcome


def recovery_precheck(current: Position, since: Position, limit: int) -> Optional[RecoveryOutcome]:
    """The failures known from the positions alone (no read needed), else None.

    Args:
        current: the topic's position
        since: the client's
        limit: the recover limit.
    """
    if since.epoch != current.epoch:
        return RecoveryOutcome.EPOCH_CHANGED
    if since.offset > current.offset:
        return RecoveryOutcome.FUTURE_OFFSET
    if current.offset - since.offset > limit:
        return RecoveryOutcome.TOO_MANY
    return None


def decide_recovery(current: Position, since: Position, found: Sequence[Publication], limit: int) -> Recovery:
    """The recovery decision of the spec.

    Args:
        current: the topic's position read together with ``found``
        since: the client's position
        found: the kept publications with offset > since.offset, ascending (at least the first
            ``current.offset - since.offset`` of them when they exist)
        limit: the recover limit.

    Returns:
        recovered True only if the epochs match and exactly the offsets since+1 .. top are in
            ``found``, in order; otherwise recovered False with no publications.
    """
    failed = recovery_precheck(current, since, limit)
    if failed is None:
        missed = current.offset - since.offset
        wanted = tuple(found[:missed])
        if len(wanted) == missed and all(p.offset == since.offset + 1 + i for i, p in enumerate(wanted)):
            return Recovery(True, current, wanted, RecoveryOutcome.RECOVERED)
        failed = RecoveryOutcome.GAP
    return Recovery(False, current, (), failed)


def check_history_since(topic: str, current: Position, since: Optional[Position]) -> None:
    """HISTORY's rule for ``since``: it must name the current epoch and not pass the top.

    Args:
        topic: for the error text
        current: the topic's position
        since: the request's.

    Raises:
        UnrecoverablePosition: carrying ``current``.
    """
    if since is not None and (since.epoch != current.epoch or since.offset > current.offset):
        raise UnrecoverablePosition(topic, since, current)


def select_page(found: Sequence[Publication], since: Optional[Position], limit: int,
                reverse: bool) -> tuple[Publication, ...]:
    """One HISTORY page out of every kept publication of a topic (ascending).

    Forward: offsets > since.offset (all without since), oldest first. Reverse: offsets <
    since.offset (all without since), newest first. ``since`` is exclusive both ways, so the
    last offset of a page is the ``since`` of the next.
    """
    if limit <= 0:
        return ()
    if not reverse:
        start = 0 if since is None else since.offset
        return tuple(p for p in found if p.offset > start)[:limit]
    page = [p for p in found if since is None or p.offset < since.offset]
    return tuple(reversed(page[-limit:]))


@dataclass(frozen=True)
class HistoryPage:
    """A HISTORY_RESULT: the current position and the selected publications."""

    position: Position
    publications: tuple[Publication, ...]


# -- metrics ------------------------------------------------------------------------------------


@dataclass
class HistoryMetrics:
    """Counters the metrics module reads at scrape time; both stores and :class:`Continuity`
    add to the one instance they are given."""

    recoveries: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in RecoveryOutcome})
    publications_recovered: int = 0
    gaps_detected: int = 0
    gaps_filled: int = 0  # offset jumps a worker filled from the history itself
    topics_evicted: int = 0
    publications_trimmed_by_cap: int = 0

    def count_recovery(self, recovery: Recovery) -> None:
        """Adds one recovery to its outcome and its publications to the recovered total."""
        self.recoveries[recovery.outcome.value] += 1
        self.publications_recovered += len(recovery.publications)


# -- the in-memory store ------------------------------------------------------------------------


class _TopicState:
    __slots__ = ("epoch", "top", "kept", "bytes", "touched", "ttl")

    def __init__(self, epoch: str, ttl: float, now: float) -> None:
        self.epoch = epoch
        self.top = 0
        self.kept: deque[Publication] = deque()
        self.bytes = 0
        self.touched = now
        self.ttl = ttl


class MemoryHistory:
    """History kept in this process (no broker): bounded per topic by ``size`` and ``ttl``,
    and all together by ``memory_cap`` bytes.

    Over the cap, whole topics are evicted, least recently published first (their next
    publish starts a new epoch, as a Redis key eviction would); a single topic that alone
    passes the cap loses its oldest publications instead, never its position. Expired state
    is dropped when touched and by :meth:`sweep`, which the owner calls from a timer.
    """

    def __init__(self, policy: HistoryPolicy, memory_cap: int = DEFAULT_MEMORY_CAP,
                 metrics: Optional[HistoryMetrics] = None, clock: Callable[[], float] = time.monotonic,
                 epochs: Callable[[], str] = new_epoch) -> None:
        """An empty in-process store.

        Args:
            policy: which topics keep history.
            memory_cap: bytes for all topics together.
            metrics: counters to add to (a new one by default).
            clock: seconds, monotonic.
            epochs: makes a fresh epoch (injectable for tests).
        """
        if memory_cap < 1:
            raise ValueError(f"history memory cap must be >= 1 byte, got {memory_cap}")
        self.policy = policy
        self.memory_cap = memory_cap
        self.metrics = metrics if metrics is not None else HistoryMetrics()
        self.memory_bytes = 0
        self._clock = clock
        self._epochs = epochs
        # Least recently published first: the eviction order.
        self._topics: OrderedDict[str, _TopicState] = OrderedDict()

    @property
    def topics(self) -> int:
        """How many topics have state (position and maybe publications)."""
        return len(self._topics)

    def publish(self, topic: str, head: bytes, tail: bytes) -> tuple[Position, Publication]:
        """Assigns the next offset and keeps the publication.

        Args:
            topic: a history topic
            head: from :func:`message_parts`.
            tail: from :func:`message_parts`.

        Returns:
            the new position and the publication (its payload is what to send live).

        Raises:
            NoHistory: for a plain topic.
        """
        options = self._options(topic)
        now = self._clock()
        state = self._state(topic, options, now)
        state.top += 1
        publication = Publication(state.top, join_payload(head, state.top, tail))
        state.kept.append(publication)
        self._grow(state, len(publication.payload) + PUBLICATION_OVERHEAD)
        while len(state.kept) > options.size:
            self._drop_oldest(state)
        state.touched = now
        state.ttl = options.ttl
        self._topics.move_to_end(topic)
        self._enforce_cap(state)
        return Position(state.epoch, state.top), publication

    def position(self, topic: str) -> Position:
        """The topic's current position, creating its epoch (offset 0) if it has none yet.

        Raises:
            NoHistory: for a plain topic.
        """
        state = self._state(topic, self._options(topic), self._clock())
        return Position(state.epoch, state.top)

    def recover(self, topic: str, since: Position, limit: int = DEFAULT_RECOVER_LIMIT) -> Recovery:
        """The SUBSCRIBE recovery answer (see :func:`decide_recovery`), counted in metrics.

        Args:
            topic: a history topic
            since: the client's position (from :func:`parse_since`)
            limit: the recover limit.

        Raises:
            NoHistory: for a plain topic.
        """
        state = self._state(topic, self._options(topic), self._clock())
        current = Position(state.epoch, state.top)
        found: Sequence[Publication] = ()
        if recovery_precheck(current, since, limit) is None:
            found = [p for p in state.kept if p.offset > since.offset]
        recovery = decide_recovery(current, since, found, limit)
        self.metrics.count_recovery(recovery)
        return recovery

    def read(self, topic: str, since: Optional[Position] = None, limit: int = DEFAULT_RECOVER_LIMIT,
             reverse: bool = False) -> HistoryPage:
        """A HISTORY page (see :func:`select_page`).

        Args:
            topic: a history topic
            since: exclusive start, None for the oldest (newest with reverse)
            limit: at most this many (already checked by :func:`parse_limit`)
            reverse: newest first.

        Raises:
            NoHistory: for a plain topic
            UnrecoverablePosition: for a since from another epoch or beyond the top.
        """
        state = self._state(topic, self._options(topic), self._clock())
        current = Position(state.epoch, state.top)
        check_history_since(topic, current, since)
        return HistoryPage(current, select_page(state.kept, since, limit, reverse))

    def sweep(self) -> int:
        """Drops expired publications and positions of every topic; returns how many topics
        were dropped entirely."""
        now = self._clock()
        dropped = 0
        for topic in list(self._topics):
            state = self._topics[topic]
            if self._expire(topic, state, now):
                dropped += 1
        return dropped

    # -- internals ------------------------------------------------------------------------------

    def _options(self, topic: str) -> HistoryOptions:
        options = self.policy.options_for(topic)
        if options is None:
            raise NoHistory(topic)
        return options

    def _state(self, topic: str, options: HistoryOptions, now: float) -> _TopicState:
        state = self._topics.get(topic)
        if state is None or self._expire(topic, state, now):
            state = _TopicState(self._epochs(), options.ttl, now)
            self._topics[topic] = state
        return state

    def _expire(self, topic: str, state: _TopicState, now: float) -> bool:
        """Applies the ttl; True when the whole topic (its position too) is gone."""
        idle = now - state.touched
        if idle >= state.ttl * POSITION_TTL_FACTOR:
            self._remove(topic, state)
            return True
        if idle >= state.ttl:
            while state.kept:
                self._drop_oldest(state)
        return False

    def _grow(self, state: _TopicState, size: int) -> None:
        state.bytes += size
        self.memory_bytes += size

    def _drop_oldest(self, state: _TopicState) -> None:
        publication = state.kept.popleft()
        size = len(publication.payload) + PUBLICATION_OVERHEAD
        state.bytes -= size
        self.memory_bytes -= size

    def _remove(self, topic: str, state: _TopicState) -> None:
        self.memory_bytes -= state.bytes
        del self._topics[topic]

    def _enforce_cap(self, state: _TopicState) -> None:
        # The publishing topic was just moved to the end, so it is evicted from last.
        while self.memory_bytes > self.memory_cap and len(self._topics) > 1:
            oldest = next(iter(self._topics))
            self._remove(oldest, self._topics[oldest])
            self.metrics.topics_evicted += 1
        while self.memory_bytes > self.memory_cap and len(state.kept) > 1:
            self._drop_oldest(state)
            self.metrics.publications_trimmed_by_cap += 1


# -- continuity of what a worker delivers ------------------------------------------------------


class Continuity(str, Enum):
    """How a publication received from the broker relates to what the worker delivered."""

    NEXT = "next"  # offset last+1 of the same epoch: deliver
    DUPLICATE = "duplicate"  # offset <= last: already delivered, drop
    GAP = "gap"  # offset > last+1: fill last+1 .. offset-1 from history, or push insufficient_state
    EPOCH_CHANGED = "epoch_changed"  # the history was lost: push insufficient_state
    UNTRACKED = "untracked"  # no position known for the topic yet


class DeliveryTracker:
    """The last position each history topic was delivered at in this worker, to notice an
    offset jump or an epoch change in what the broker hands over (counted as gaps)."""

    def __init__(self, metrics: Optional[HistoryMetrics] = None) -> None:
        """A tracker that has seen no delivery yet.

        Args:
            metrics: counters to add gaps to (a new one by default).
        """
        self.metrics = metrics if metrics is not None else HistoryMetrics()
        self._last: dict[str, Position] = {}

    def track(self, topic: str, position: Position) -> None:
        """Sets where topic stands (e.g. the top a subscription became live at, or the end of
        a gap fill)."""
        self._last[topic] = position

    def last(self, topic: str) -> Optional[Position]:
        """The last delivered position of topic, None if untracked."""
        return self._last.get(topic)

    def forget(self, topic: str) -> None:
        """Stops tracking topic (its last local subscriber left)."""
        self._last.pop(topic, None)

    def observe(self, topic: str, epoch: str, offset: int) -> Continuity:
        """Classifies a received publication; on NEXT the tracked position advances to it.
        On GAP and EPOCH_CHANGED the position is left for the owner to fill or reset.

        Args:
            topic: its topic
            epoch: its position as the broker carried it.
            offset: its position as the broker carried it.
        """
        last = self._last.get(topic)
        if last is None:
            return Continuity.UNTRACKED
        if epoch != last.epoch:
            self.metrics.gaps_detected += 1
            return Continuity.EPOCH_CHANGED
        if offset <= last.offset:
            return Continuity.DUPLICATE
        if offset > last.offset + 1:
            self.metrics.gaps_detected += 1
            return Continuity.GAP
        self._last[topic] = Position(epoch, offset)
        return Continuity.NEXT

    def topics(self) -> list[str]:
        """Every tracked topic."""
        return list(self._last)

    def connection_lost(self, lost: Optional[Iterable[str]] = None) -> list[str]:
        """Every tracked topic (of ``lost``, when given): after a broker reconnect each may have
        missed publications and must be filled from history (from :meth:`last`) or told
        insufficient_state. Counted as one gap per topic.

        Args:
            lost: the topics whose broker subscription was lost; None: every topic.
        """
        topics = list(self._last) if lost is None else [topic for topic in lost if topic in self._last]
        self.metrics.gaps_detected += len(topics)
        return topics
