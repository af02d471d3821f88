"""Kept for imports written before the realtime package: see :mod:`uws_py.realtime.session`."""

from .realtime.session import Client, SessionContext

__all__ = ["Client", "SessionContext"]
