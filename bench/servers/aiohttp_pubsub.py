"""aiohttp pub/sub server: "sub:TOPIC" subscribes, anything else goes to topic "bench".

usage: python aiohttp_pubsub.py PORT
"""

import asyncio
import sys
from collections import defaultdict

from aiohttp import WSMsgType, web

topics: dict[str, set] = defaultdict(set)


async def handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, max_msg_size=16 * 1024 * 1024)
    await ws.prepare(request)
    joined = []
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT and message.data.startswith("sub:"):
                topics[message.data[4:]].add(ws)
                joined.append(message.data[4:])
            elif message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                for peer in tuple(topics["bench"]):
                    if peer is not ws and not peer.closed:
                        if message.type == WSMsgType.TEXT:
                            await peer.send_str(message.data)
                        else:
                            await peer.send_bytes(message.data)
    finally:
        for topic in joined:
            topics[topic].discard(ws)
    return ws


async def main() -> None:
    port = int(sys.argv[1])
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    print(f"listening {port}", flush=True)
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main())
