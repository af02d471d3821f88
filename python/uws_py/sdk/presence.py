"""Presence as the client SDK sees it: who is in a topic (PRESENCE_RESULT), how many
(PRESENCE_STATS_RESULT), and who joined or left (PRESENCE_DIFF), read from the server's
messages into typed values. No I/O here: the client sends the requests and hands the replies in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional


@dataclass(frozen=True)
class PresenceEntry:
    """One client present in a topic. client_id: its connection's ``clientId``; user_id: its
    user (None when anonymous); info: its token's ``info`` claim (None without one, and always
    None in a leave, which carries no info)."""

    client_id: str
    user_id: Optional[str]
    info: Any = None


@dataclass(frozen=True)
class PresenceStats:
    """How many are present in a topic: clients (connections) and distinct non-null users."""

    topic: str
    num_clients: int
    num_users: int


@dataclass(frozen=True)
class PresenceDiff:
    """What changed in a topic with ``join_leave`` presence since the previous diff: the
    server coalesces joins and leaves into one PRESENCE_DIFF per interval. timestamp: the
    server's time (Unix ms) of the flush that sent it."""

    topic: str
    timestamp: int
    joins: list[PresenceEntry]
    leaves: list[PresenceEntry]


def parse_entry(raw: Any) -> Optional[PresenceEntry]:
    """A PresenceEntry from one ``{"clientId", "userId", "info"}`` object, or None when it has
    no string clientId (a malformed entry is skipped, not fatal)."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("clientId"), str):
        return None
    user_id = raw.get("userId")
    return PresenceEntry(raw["clientId"], user_id if isinstance(user_id, str) else None, raw.get("info"))


def parse_entries(raw: Any) -> list[PresenceEntry]:
    """The well-formed entries of a list (anything else: none)."""
    if not isinstance(raw, list):
        return []
    return [entry for entry in map(parse_entry, raw) if entry is not None]


def parse_stats(topic: str, reply: Mapping[str, Any]) -> PresenceStats:
    """A PRESENCE_STATS_RESULT reply as PresenceStats (missing counts read as 0)."""
    clients, users = reply.get("numClients"), reply.get("numUsers")
    return PresenceStats(topic, clients if isinstance(clients, int) else 0, users if isinstance(users, int) else 0)


def parse_diff(message: Mapping[str, Any]) -> PresenceDiff:
    """A PRESENCE_DIFF message as a PresenceDiff."""
    timestamp = message.get("timestamp")
    return PresenceDiff(str(message.get("topic")), timestamp if isinstance(timestamp, int) else 0,
                        parse_entries(message.get("joins")), parse_entries(message.get("leaves")))
