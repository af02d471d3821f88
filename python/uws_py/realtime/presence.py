"""Per-topic presence: which topics track who is in them, the entry kept per client, the
in-memory store, and the coalescer of join/leave events. Nothing here does I/O.

A client is *present* in a presence topic while it is subscribed to it. Its entry is its
client id, its user id and the ``info`` of its claims (the token's ``info`` claim, or the
``info`` key of the dict the authenticate hook returned). The Redis store
(``presence_redis``) keeps the same entries for every worker; the wiring is in
``presence_service``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

import orjson

from .history import HistoryPolicy

# Seconds an entry lives in Redis without a refresh: a worker that died stops refreshing, so its
# clients disappear at most this long (plus one refresh interval of the worker that cleans up)
# after it died. Each worker refreshes its own clients every ttl / REFRESHES_PER_TTL seconds.
DEFAULT_PRESENCE_TTL = 30.0
REFRESHES_PER_TTL = 3
# Seconds between two PRESENCE_DIFFs of one topic (to the subscribers of one worker).
DEFAULT_DIFF_INTERVAL = 1.0
# The type of the wire diff, and how a broker payload carrying one starts (encode puts ``type``
# first; a MESSAGE never starts like this).
DIFF_TYPE = "PRESENCE_DIFF"
DIFF_PREFIX = b'{"type":"PRESENCE_DIFF"'


class NoPresence(Exception):
    """PRESENCE or PRESENCE_STATS on a topic that matches no presence pattern."""

    code = "NO_PRESENCE"

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} has no presence")
        self.topic = topic


class PresenceUnavailable(Exception):
    """The presence storage (Redis) cannot be reached (ERROR ``UNAVAILABLE``)."""

    code = "UNAVAILABLE"


@dataclass(frozen=True)
class PresenceOptions:
    """Topics matching the fnmatch ``pattern`` track presence; with ``join_leave`` their
    subscribers also get PRESENCE_DIFF events."""

    pattern: str
    join_leave: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ValueError("presence pattern must be a non-empty string")
        if type(self.join_leave) is not bool:
            raise ValueError(f"join_leave of {self.pattern!r} must be a boolean, got {self.join_leave!r}")


class PresencePolicy(HistoryPolicy):
    """The presence patterns; the first match wins, answers cached as for history."""

    def options_for(self, topic: str) -> Optional[PresenceOptions]:  # type: ignore[override]
        """The options of the first pattern topic matches, None when it has no presence.

        Args:
            topic: the topic name.
        """
        return super().options_for(topic)  # type: ignore[return-value]


def check_timing(ttl: float, diff_interval: float) -> None:
    """Raises ValueError unless both are numbers of seconds > 0.

    Args:
        ttl: ``presence_ttl``
        diff_interval: ``presence_diff_interval``.
    """
    for name, value in (("presence_ttl", ttl), ("presence_diff_interval", diff_interval)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")


class PresenceEntry:
    """One client present in a topic, with its wire form encoded once."""

    __slots__ = ("client_id", "user_id", "info", "encoded")

    def __init__(self, client_id: str, user_id: Optional[str], info: Any) -> None:
        self.client_id = client_id
        self.user_id = user_id
        self.info = info
        self.encoded = encode_entry(client_id, user_id, info)

    def to_wire(self) -> dict[str, Any]:
        """``{"clientId", "userId", "info"}`` as PRESENCE_RESULT and PRESENCE_DIFF carry it."""
        return {"clientId": self.client_id, "userId": self.user_id, "info": self.info}


def encode_entry(client_id: str, user_id: Optional[str], info: Any) -> bytes:
    """The entry as JSON bytes (kept in Redis as the hash value).

    Args:
        client_id: the entry's client id.
        user_id: the entry's user id.
        info: the entry's info; one orjson cannot encode is replaced by null, so one odd claim
            never breaks a topic's presence.
    """
    try:
        encoded = orjson.dumps({"clientId": client_id, "userId": user_id, "info": info})
    except TypeError:
        encoded = orjson.dumps({"clientId": client_id, "userId": user_id, "info": None})
    # orjson's result keeps the 4 KiB buffer it was written into (measured: ~4.1 KB of RSS per
    # object with orjson 3.13); an entry lives as long as its subscription, so keep an exact copy.
    return bytes(memoryview(encoded))


def info_of(claims: dict[str, Any]) -> Any:
    """The presence ``info`` of a client: its claims' ``info``, or None.

    Args:
        claims: the verified token's claims, or what the authenticate hook returned.
    """
    return claims.get("info")


def stats_of(entries: Iterable[dict[str, Any]]) -> dict[str, int]:
    """PRESENCE_STATS's counts: ``numClients``, and ``numUsers`` (distinct non-null user ids;
    anonymous clients count as clients only).

    Args:
        entries: wire entries.
    """
    clients = 0
    users = set()
    for entry in entries:
        clients += 1
        user = entry.get("userId")
        if user is not None:
            users.add(user)
    return {"numClients": clients, "numUsers": len(users)}


class MemoryPresence:
    """Presence of one process: topic -> client id -> entry. Synchronous (loop thread)."""

    def __init__(self) -> None:
        self.topics: dict[str, dict[str, PresenceEntry]] = {}

    def join(self, topic: str, entry: PresenceEntry) -> None:
        """Adds (or replaces) the client's entry.

        Args:
            topic: a presence topic
            entry: the client's entry.
        """
        self.topics.setdefault(topic, {})[entry.client_id] = entry

    def leave(self, topic: str, client_id: str) -> Optional[PresenceEntry]:
        """Removes the client's entry; returns it (None when it was not there).

        Args:
            topic: the topic
            client_id: the client.
        """
        entries = self.topics.get(topic)
        if entries is None:
            return None
        entry = entries.pop(client_id, None)
        if not entries:
            del self.topics[topic]
        return entry

    def entries(self, topic: str) -> list[dict[str, Any]]:
        """Every entry of topic in wire form (PRESENCE_RESULT's ``clients``).

        Args:
            topic: the topic.
        """
        return [entry.to_wire() for entry in self.topics.get(topic, {}).values()]

    def stats(self, topic: str) -> dict[str, int]:
        """``numClients`` and ``numUsers`` of topic.

        Args:
            topic: the topic.
        """
        entries = self.topics.get(topic, {})
        return {"numClients": len(entries),
                "numUsers": len({e.user_id for e in entries.values() if e.user_id is not None})}

    @property
    def size(self) -> int:
        """Entries kept, over every topic."""
        return sum(len(entries) for entries in self.topics.values())


class _Pending:
    """One topic's events since its last diff: the local ones (also sent to other workers)
    and those other workers reported (for local subscribers only)."""

    __slots__ = ("local_joins", "local_leaves", "remote_joins", "remote_leaves")

    def __init__(self) -> None:
        self.local_joins: dict[str, dict[str, Any]] = {}
        self.local_leaves: dict[str, dict[str, Any]] = {}
        self.remote_joins: dict[str, dict[str, Any]] = {}
        self.remote_leaves: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True)
class Diff:
    """What one flush produces for a topic: ``delivery`` for this worker's subscribers and
    ``broadcast`` (this worker's own events, None when it had none) for the other workers."""

    topic: str
    delivery: dict[str, Any]
    broadcast: Optional[dict[str, Any]]


def _merge(joins: dict[str, dict[str, Any]], leaves: dict[str, dict[str, Any]], kind: str, entry: dict[str, Any]) -> None:
    # A join cancels an earlier leave of the same client and the other way round, so a client
    # that came and went within one interval is one leave (harmless to a subscriber that never
    # saw it join, and needed by one that saw it in an earlier diff).
    client_id = entry["clientId"]
    if kind == "join":
        leaves.pop(client_id, None)
        joins[client_id] = entry
    else:
        joins.pop(client_id, None)
        leaves[client_id] = {"clientId": client_id, "userId": entry.get("userId")}


class DiffCoalescer:
    """Join/leave events in, at most one PRESENCE_DIFF per topic per ``interval`` out.

    The owner arms a timer for ``interval`` seconds when an event returns True, and calls
    :meth:`flush` when it fires, re-arming while flush says so. Since a flush happens only
    when the timer fires, and the timer is armed ``interval`` after the previous flush (or
    after an event that found it unarmed, which is later still), two diffs of one topic are
    always at least ``interval`` apart. A storm of N joins is one diff per interval with N
    entries, not N diffs to each of N subscribers.

    Args:
        interval: seconds between two diffs of one topic.
    """

    def __init__(self, interval: float = DEFAULT_DIFF_INTERVAL) -> None:
        self.interval = interval
        self.pending: dict[str, _Pending] = {}
        self.armed = False

    def _add(self, topic: str) -> tuple[_Pending, bool]:
        pending = self.pending.get(topic)
        if pending is None:
            pending = self.pending[topic] = _Pending()
        arm = not self.armed
        self.armed = True
        return pending, arm

    def local(self, topic: str, kind: str, entry: dict[str, Any]) -> bool:
        """A join or leave of one of this worker's clients; True: arm the timer.

        Args:
            topic: the topic
            kind: "join" or "leave"
            entry: the wire entry.
        """
        pending, arm = self._add(topic)
        _merge(pending.local_joins, pending.local_leaves, kind, entry)
        return arm

    def remote(self, topic: str, diff: Any) -> bool:
        """A diff another worker broadcast; True: arm the timer. A malformed one is ignored.

        Args:
            topic: the topic
            diff: the decoded PRESENCE_DIFF.
        """
        if not isinstance(diff, dict):
            return False
        joins, leaves = diff.get("joins"), diff.get("leaves")
        if not isinstance(joins, list) or not isinstance(leaves, list):
            return False
        pending, arm = self._add(topic)
        for kind, entries in (("leave", leaves), ("join", joins)):
            for entry in entries:
                if isinstance(entry, dict) and isinstance(entry.get("clientId"), str):
                    _merge(pending.remote_joins, pending.remote_leaves, kind, entry)
        return arm

    def flush(self) -> tuple[list[Diff], bool]:
        """The diffs of every topic with events, and whether to re-arm the timer (True when
        something was flushed: the next diff must wait a whole interval).
        """
        pending, self.pending = self.pending, {}
        diffs = []
        for topic, events in pending.items():
            # A client id lives on one worker: the local and the remote events never overlap.
            joins = {**events.remote_joins, **events.local_joins}
            leaves = {**events.remote_leaves, **events.local_leaves}
            broadcast = None
            if events.local_joins or events.local_leaves:
                broadcast = diff_message(topic, list(events.local_joins.values()), list(events.local_leaves.values()))
            diffs.append(Diff(topic, diff_message(topic, list(joins.values()), list(leaves.values())), broadcast))
        self.armed = bool(diffs)
        return diffs, self.armed


def diff_message(topic: str, joins: list[dict[str, Any]], leaves: list[dict[str, Any]]) -> dict[str, Any]:
    """The PRESENCE_DIFF of topic (``type`` first, see :data:`DIFF_PREFIX`).

    Args:
        topic: the topic
        joins: wire entries
        leaves: ``{"clientId", "userId"}`` entries.
    """
    return {"type": DIFF_TYPE, "topic": topic, "joins": joins, "leaves": leaves}


class PresenceMetrics:
    """Counters for /metrics: diffs sent to subscribers (one per topic per flush), diffs
    broadcast to other workers, and entries removed because their worker stopped refreshing."""

    __slots__ = ("diffs_sent", "diffs_broadcast", "expired_removed", "refreshes")

    def __init__(self) -> None:
        self.diffs_sent = 0
        self.diffs_broadcast = 0
        self.expired_removed = 0
        self.refreshes = 0

