"""The server the monitoring tests run with `uws-py serve tests.support.monitoring_app:build`:
JWT auth, a tight rate limit, a handler type and history topics, so that a little traffic
(:func:`exercise`) moves every metric the dashboards show."""

from __future__ import annotations

import os
import time
from typing import Any

import jwt

from uws_py import JWTAuth, RateLimit, RealtimeServer

SECRET = "uws-py monitoring tests: a key of 32 bytes or more"
RATE_LIMIT = 40  # messages per second per client


def build() -> RealtimeServer:
    """The server; ``MONITORING_TEST_DASHBOARD_TOKEN`` turns the dashboard on with that token."""
    token = os.environ.get("MONITORING_TEST_DASHBOARD_TOKEN")
    server = RealtimeServer(
        auth=JWTAuth(secret=SECRET),
        rate_limit=RateLimit(messages=RATE_LIMIT, per_seconds=1.0),
        **({"dashboard_token": token} if token else {}),
    )

    @server.on("ECHO")
    def echo(client: Any, message: dict) -> dict:
        return {"type": "ECHOED", "text": message.get("text")}

    server.history("hist.*", size=50, ttl=60)
    return server


def token(user: str = "monitor", secret: str = SECRET) -> str:
    """A valid HS256 token for ``user`` (or one signed with another ``secret``)."""
    return jwt.encode({"sub": user, "exp": time.time() + 600}, secret, algorithm="HS256")
