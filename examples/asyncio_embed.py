"""uws-py inside an asyncio program: the server is one task among others on the same loop.

    python examples/asyncio_embed.py --port 9002

`await app.serve()` watches the core's epoll descriptor with loop.add_reader and runs its timers
with loop.call_later, so coroutine handlers may await anything (a database, an HTTP call)
without blocking other connections, and the rest of the program shares the loop.

- ws://HOST:PORT/ws: send "sleep 0.5" and the reply comes half a second later (a coroutine
  handler); anything else is echoed at once. Every client also receives a "tick N" each second
  from a plain asyncio task.
- GET /slow: an async HTTP handler answering after an await.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Optional, Union

from uws_py import App, HttpRequest, HttpResponse, OpCode, WebSocket

TICKS = "ticks"


def on_open(ws: WebSocket) -> None:
    ws.subscribe(TICKS)


async def on_message(ws: WebSocket, message: Union[str, bytes], opcode: OpCode) -> None:
    # A coroutine handler: each message becomes a task on the running loop.
    if isinstance(message, str) and message.startswith("sleep "):
        await asyncio.sleep(float(message.split()[1]))
        if ws.is_closed():  # the client may have left while we slept
            return
        ws.send(f"slept {message.split()[1]}")
        return
    ws.send(message, opcode)


async def slow(res: HttpResponse, req: HttpRequest) -> None:
    # Coroutine HTTP handlers get a copy of the request, still readable after an await.
    delay = float(req.get_query("delay") or "0.1")
    await asyncio.sleep(delay)
    res.end(f"answered after {delay} s\n")


async def ticker(app: App, interval: float = 1.0) -> None:
    """Another part of the program: publishes to every client on the same loop."""
    count = 0
    while True:
        await asyncio.sleep(interval)
        count += 1
        app.publish(TICKS, f"tick {count}")


async def amain(host: str, port: int) -> None:
    app = App()
    app.ws("/ws", {"open": on_open, "message": on_message})
    app.get("/slow", slow)
    app.listen(port, host=host)
    print(f"listening on ws://{host}:{app.port}/ws and http://{host}:{app.port}/slow", flush=True)

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, app.close)
    ticks = asyncio.create_task(ticker(app))
    try:
        await app.serve()  # returns after app.close()
    finally:
        ticks.cancel()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="uws-py embedded in asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "9002")))
    args = parser.parse_args(argv)
    asyncio.run(amain(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
