"""Kept for imports written before the realtime package: see :mod:`uws_py.realtime.server`."""

from .realtime.server import Engine, Options, RealtimeServer

__all__ = ["Engine", "Options", "RealtimeServer"]
