"""The asyncio client SDK of the realtime protocol: ``async with connect(url, token=...) as client``."""

from .client import ClientOptions, ClientState, ClientStats, HistoryResult, RealtimeClient, connect
from .errors import ClientClosed, ConnectionLost, PublishQueueFull, RealtimeClientError, ServerError, Unauthorized
from .presence import PresenceDiff, PresenceEntry, PresenceStats
from .policy import Action, Backoff, Decision, OffsetTracker, Verdict, decide_close, decide_handshake, refresh_delay, token_expiry
from .subscription import Position, Publication, SubscribedEvent, Subscription, SubscriptionState, SubscriptionStats

__all__ = [
    "Action", "Backoff", "ClientClosed", "ClientOptions", "ClientState", "ClientStats", "ConnectionLost",
    "Decision", "HistoryResult", "OffsetTracker", "Position", "PresenceDiff", "PresenceEntry", "PresenceStats",
    "Publication", "PublishQueueFull", "RealtimeClient", "RealtimeClientError", "ServerError", "SubscribedEvent",
    "Subscription", "SubscriptionState", "SubscriptionStats", "Unauthorized", "Verdict", "connect", "decide_close",
    "decide_handshake", "refresh_delay", "token_expiry",
]
