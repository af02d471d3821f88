"""The realtime layer, one concern per module, each importing only what stands below it:
protocol (wire format) < routing < session, pubsub < builtins, dispatch, lifecycle, upgrade
< server (options and wiring)."""

from .protocol import ProtocolError
from .server import Engine, Options, RealtimeServer
from .session import Client, SessionContext

__all__ = ["Client", "Engine", "Options", "ProtocolError", "RealtimeServer", "SessionContext"]
