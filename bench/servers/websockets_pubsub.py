"""Python `websockets` pub/sub server: "sub:TOPIC" subscribes, anything else is broadcast to
topic "bench" with websockets' own broadcast().

usage: python websockets_pubsub.py PORT
"""

import asyncio
import sys
from collections import defaultdict

from websockets.asyncio.server import broadcast, serve

topics: dict[str, set] = defaultdict(set)


async def handler(websocket):
    joined = []
    try:
        async for message in websocket:
            if isinstance(message, str) and message.startswith("sub:"):
                topics[message[4:]].add(websocket)
                joined.append(message[4:])
            else:
                broadcast((peer for peer in topics["bench"] if peer is not websocket), message)
    finally:
        for topic in joined:
            topics[topic].discard(websocket)


async def main() -> None:
    port = int(sys.argv[1])
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=16 * 1024 * 1024, ping_interval=None):
        print(f"listening {port}", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main())
