"""Kept for imports written before the realtime package: see :mod:`uws_py.realtime.routing`."""

from .realtime.routing import Handler, Route, Router

__all__ = ["Handler", "Route", "Router"]
