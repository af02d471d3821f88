"""aiohttp echo server.

usage: python aiohttp_echo.py PORT [--deflate]
"""

import asyncio
import sys

from aiohttp import WSMsgType, web


def make_handler(deflate: bool):
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=deflate, max_msg_size=16 * 1024 * 1024, autoping=True)
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    return echo


async def main() -> None:
    port = int(sys.argv[1])
    app = web.Application()
    app.router.add_get("/", make_handler("--deflate" in sys.argv[2:]))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    print(f"listening {port}", flush=True)
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main())
