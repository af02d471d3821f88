"""uws-py: a WebSocket server for Python on a native C++ core.

The public API lives here; ``uws_py._core`` is private.
"""

from __future__ import annotations

import logging

from ._core import HttpRequest, HttpResponse, OpCode, SendStatus, WebSocket, WebSocketClosedError
from .app import App, CompressOptions, SSLOptions
from .auth import JWTAuth
from .batching import Batching
from .behavior import Behavior
from .ratelimit import RateLimit
from .realtime import Client, ProtocolError, RealtimeServer

from ._version import __version__

# A library logs, the application decides where it goes (the CLI configures it).
logging.getLogger("uws_py").addHandler(logging.NullHandler())

__all__ = [
    "App",
    "Batching",
    "Behavior",
    "Client",
    "JWTAuth",
    "ProtocolError",
    "RateLimit",
    "RealtimeServer",
    "CompressOptions",
    "HttpRequest",
    "HttpResponse",
    "OpCode",
    "SSLOptions",
    "SendStatus",
    "WebSocket",
    "WebSocketClosedError",
    "__version__",
]
