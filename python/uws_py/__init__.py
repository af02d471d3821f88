"""uws-py: a WebSocket server for Python on a native C++ core.

The public API lives here; ``uws_py._core`` is private.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._core import HttpClosedError, HttpRequest, HttpResponse, OpCode, SendStatus, WebSocket, WebSocketClosedError
from .app import App, SSLOptions
from .auth import AuthError, JWTAuth
from .batching import Batching
from .behavior import Behavior, CompressOptions
from .emitter import AsyncEmitter, Emitter
from .ratelimit import RateLimit
from .realtime import Client, ProtocolError, RealtimeServer

from ._version import __version__

if TYPE_CHECKING:
    from .sdk import (
        Action, Backoff, ClientClosed, ClientOptions, ClientState, ClientStats, ConnectionLost, Decision,
        HistoryResult, OffsetTracker, Position, Publication, PublishQueueFull, RealtimeClient, RealtimeClientError,
        ServerError, SubscribedEvent, Subscription, SubscriptionState, SubscriptionStats, Unauthorized, Verdict,
        connect, decide_close, decide_handshake, refresh_delay, token_expiry,
    )

# The client SDK (uws_py.sdk) needs the optional `websockets` package (the [client] extra), so
# its names are imported on first use: `import uws_py` keeps working on a server without it.
# They are left out of __all__ for the same reason (a star import would need websockets).
_SDK_NAMES = frozenset({
    "Action", "Backoff", "ClientClosed", "ClientOptions", "ClientState", "ClientStats", "ConnectionLost",
    "Decision", "HistoryResult", "OffsetTracker", "Position", "PresenceDiff", "PresenceEntry", "PresenceStats",
    "Publication", "PublishQueueFull", "RealtimeClient", "RealtimeClientError", "ServerError", "SubscribedEvent",
    "Subscription", "SubscriptionState", "SubscriptionStats", "Unauthorized", "Verdict", "connect", "decide_close",
    "decide_handshake", "refresh_delay", "token_expiry",
})


def __getattr__(name: str) -> Any:
    """The client SDK's names, imported from uws_py.sdk on first use.

    Args:
        name: the attribute looked up.
    """
    if name in _SDK_NAMES:
        value = getattr(importlib.import_module(".sdk", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SDK_NAMES)

# A library logs, the application decides where it goes (the CLI configures it).
logging.getLogger("uws_py").addHandler(logging.NullHandler())

__all__ = [
    "App",
    "AsyncEmitter",
    "AuthError",
    "Batching",
    "Behavior",
    "Client",
    "Emitter",
    "JWTAuth",
    "ProtocolError",
    "RateLimit",
    "RealtimeServer",
    "CompressOptions",
    "HttpClosedError",
    "HttpRequest",
    "HttpResponse",
    "OpCode",
    "SSLOptions",
    "SendStatus",
    "WebSocket",
    "WebSocketClosedError",
    "__version__",
]
