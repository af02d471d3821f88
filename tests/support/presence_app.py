"""A hub for the user-operation tests: `uws-py serve tests.support.presence_app:make` with the
broker URL in UWS_TEST_BROKER. Its admin.* types call the server's user operations, so a test
client can trigger them on one worker and watch their effect on another."""

from __future__ import annotations

import os
from typing import Any

from uws_py import JWTAuth, RealtimeServer
from uws_py.broker.redis import RedisBroker

SECRET = "presence hub tests: an HS256 key of 32+ bytes"


def make() -> RealtimeServer:
    """The server, with presence on room.* (join/leave) and the admin.* types."""
    server = RealtimeServer(broker=RedisBroker(os.environ["UWS_TEST_BROKER"]), auth=JWTAuth(secret=SECRET),
                            rate_limit=None, access_log=False)
    server.enable_presence("room.*", join_leave=True)

    @server.on("admin.send")
    def send(client: Any, message: dict) -> dict:
        return {"type": "admin.done", "local": server.users.send_to_user(message["user"], message["data"])}

    @server.on("admin.kick")
    def kick(client: Any, message: dict) -> dict:
        return {"type": "admin.done", "local": server.users.disconnect_user(message["user"], 4000, "kicked")}

    @server.on("admin.publish")
    def publish(client: Any, message: dict) -> dict:
        server.publish(message["topic"], message["data"], exclude=message["exclude"])
        return {"type": "admin.done"}

    return server
