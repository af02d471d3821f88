"""A client of the realtime protocol with the asyncio SDK: it subscribes to a history topic,
publishes a few lines, and reconnects, recovers what it missed and refreshes its token by itself.

    uws-py serve --jwt-secret "$JWT_SECRET" --port 8080 --history 'chat.*:100:300'
    python examples/sdk_client.py ws://127.0.0.1:8080/realtime   # needs uws-py[client]

Tokens come from get_token (here signed locally with JWT_SECRET, as your auth service would),
each valid for a minute: the client renews it over the live connection before it expires.

Stop the hub and start it again while this runs to watch the client come back. The hub keeps
its history in memory, so a restart starts a new epoch: the resubscribe answers
recovered=False (a gap) and the example reloads the newest lines with HISTORY. With
`--broker redis://...` (history in Redis) the same restart recovers every missed line.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import jwt

from uws_py.sdk import ClientState, Publication, RealtimeClient, SubscribedEvent, connect

SECRET = os.environ.get("JWT_SECRET", "development secret, never deploy this one!")
TOPIC = "chat.lobby"


async def get_token() -> str:
    """A fresh token for the user "demo" (in a real application: ask your auth service)."""
    now = int(time.time())
    return jwt.encode({"sub": "demo", "iat": now, "exp": now + 60}, SECRET, algorithm="HS256")


def on_state(state: ClientState, error: BaseException | None) -> None:
    print(f"[{state.value}]" + (f" {error}" if error else ""))


def on_message(publication: Publication) -> None:
    how = " (recovered)" if publication.recovered else ""
    print(f"{publication.topic} #{publication.offset}: {publication.data!r} from {publication.sender}{how}")


async def reload_latest(client: RealtimeClient, topic: str) -> None:
    """After a gap: what was missed is gone from the server, so show the newest lines again
    (a real application reloads its state from its own source of truth here)."""
    page = await client.history(topic, limit=5, reverse=True)
    print(f"reloaded {len(page.publications)} newest lines of {topic} (position {page.position.offset})")
    for publication in reversed(page.publications):
        print(f"  #{publication.offset}: {publication.data!r}")


def on_subscribed_for(client: RealtimeClient):
    def on_subscribed(event: SubscribedEvent) -> None:
        position = f"epoch {event.position.epoch} offset {event.position.offset}" if event.position else "no position"
        if not event.resubscribe:
            print(f"subscribed to {event.topic} at {position}")
        elif event.recovered:
            print(f"resubscribed to {event.topic}: recovered {event.recovered_count} missed, now at {position}")
        elif event.gap:
            since = f"offset {event.since.offset} of epoch {event.since.epoch}" if event.since else "?"
            print(f"resubscribed to {event.topic}: gap, what came after {since} is lost; now at {position}")
            # A callback must not await a reply (the client reads it after the callback): a task.
            asyncio.get_running_loop().create_task(reload_latest(client, event.topic))
        else:
            print(f"resubscribed to {event.topic} at {position}")

    return on_subscribed


async def main(url: str) -> None:
    async with connect(url, get_token=get_token, on_state=on_state) as client:
        await client.subscribe(TOPIC, on_message, on_subscribed=on_subscribed_for(client))
        print(f"connected as {client.client_id}; ping {await client.ping() * 1000:.1f} ms")
        for n in range(1, 1000):
            await client.publish(TOPIC, {"text": f"line {n}"}, echo=True)
            await asyncio.sleep(2)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/realtime"))
    except KeyboardInterrupt:
        pass
