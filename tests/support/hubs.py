"""Hub processes sharing one broker, and the clients a test opens on them: what the broker
tests start alike (`uws-py serve --broker URL` with each test file's own options)."""

from __future__ import annotations

import os
from typing import Any, Optional

from tests.support.procutil import HOST, RealtimeClient, RedisServer, UwsServer, metric_value, wait_until


class HubGroup:
    """``uws-py serve --broker URL ARGS...`` processes, started on demand, stopped together.

    Args:
        broker_url: the broker every hub shares.
        *args: the options every hub gets.
    """

    def __init__(self, broker_url: str, *args: str) -> None:
        self.args = ("--broker", broker_url, *args)
        # The hubs must not pick up options from the environment the tests run in.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
        self.started: list[UwsServer] = []

    def start(self, count: int, *extra: str) -> list[UwsServer]:
        """Starts ``count`` more hubs (with ``extra`` options) and waits until each one's
        broker connection is up."""
        hubs = [UwsServer(*self.args, *extra, env=self.env) for _ in range(count)]
        self.started.extend(hubs)
        for hub in hubs:
            wait_until(lambda hub=hub: metric_value(hub.port, "uws_broker_connected") == 1,
                       f"broker of pid {hub.pid} connected", timeout=15.0)
        return hubs

    def stop(self) -> None:
        """Stops every hub started (by its PID)."""
        for hub in self.started:
            hub.stop()


class ClientGroup:
    """The realtime clients a test opened, closed together at its end."""

    def __init__(self) -> None:
        self.clients: list[RealtimeClient] = []

    def open(self, port: int, headers: Optional[list[tuple[str, str]]] = None, **options: Any) -> RealtimeClient:
        """A connected client on ``port``."""
        if headers:
            options["headers"] = headers
        client = RealtimeClient(port, **options)
        self.clients.append(client)
        return client

    def close(self) -> None:
        """Closes every client still open (one the server already dropped is fine)."""
        for client in self.clients:
            try:
                client.close()
            except OSError:
                pass


def wait_for_hub_subscriptions(redis_server: RedisServer, hubs_per_topic: dict[str, int]) -> None:
    """Waits until as many hubs as given per topic hold its Redis channel (``uws:<topic>``): a hub
    subscribes the channel after it answered the client's SUBSCRIBED, so a publish from another
    hub right after may miss it."""
    import redis

    channels = {f"uws:{topic}": count for topic, count in hubs_per_topic.items()}

    def subscribed() -> bool:
        with redis.Redis(host=HOST, port=redis_server.port, socket_timeout=2, socket_connect_timeout=2) as client:
            found = {channel.decode(): count for channel, count in client.pubsub_numsub(*channels)}
        return found == channels

    wait_until(subscribed, f"the hubs subscribed in Redis: {channels}")
