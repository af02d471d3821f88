"""A client of the realtime protocol with the asyncio SDK: it subscribes to a topic, publishes
a few lines, and reconnects, resubscribes and refreshes its token by itself.

    uws-py serve --jwt-secret "$JWT_SECRET" --port 8080          # a hub to talk to
    python examples/sdk_client.py ws://127.0.0.1:8080/realtime   # needs uws-py[client]

Tokens come from get_token (here signed locally with JWT_SECRET, as your auth service would),
each valid for a minute: the client renews it over the live connection before it expires.
Stop the hub and start it again while this runs to watch the client come back.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import jwt

from uws_py.sdk import ClientState, Publication, SubscribedEvent, connect

SECRET = os.environ.get("JWT_SECRET", "development secret, never deploy this one!")


async def get_token() -> str:
    """A fresh token for the user "demo" (in a real application: ask your auth service)."""
    now = int(time.time())
    return jwt.encode({"sub": "demo", "iat": now, "exp": now + 60}, SECRET, algorithm="HS256")


def on_state(state: ClientState, error: BaseException | None) -> None:
    print(f"[{state.value}]" + (f" {error}" if error else ""))


def on_message(publication: Publication) -> None:
    print(f"{publication.topic}: {publication.data!r} from {publication.sender}")


def on_subscribed(event: SubscribedEvent) -> None:
    print(f"subscribed to {event.topic}" + (" again" if event.resubscribe else ""))


async def main(url: str) -> None:
    async with connect(url, get_token=get_token, on_state=on_state) as client:
        await client.subscribe("chat", on_message, on_subscribed=on_subscribed)
        print(f"connected as {client.client_id}; ping {await client.ping() * 1000:.1f} ms")
        for n in range(1, 1000):
            await client.publish("chat", {"text": f"line {n}"}, echo=True)
            await asyncio.sleep(2)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/realtime"))
    except KeyboardInterrupt:
        pass
