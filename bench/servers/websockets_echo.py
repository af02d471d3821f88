"""Python `websockets` (asyncio implementation) echo server.

usage: python websockets_echo.py PORT [--deflate]
"""

import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(websocket):
    async for message in websocket:
        await websocket.send(message)


async def main() -> None:
    port = int(sys.argv[1])
    compression = "deflate" if "--deflate" in sys.argv[2:] else None
    async with serve(echo, "127.0.0.1", port, compression=compression, max_size=16 * 1024 * 1024, ping_interval=None):
        print(f"listening {port}", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main())
