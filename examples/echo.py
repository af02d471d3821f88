"""The smallest uws-py server: every WebSocket message comes back to its sender.

    python examples/echo.py --port 9001        # or: PORT=9001 python examples/echo.py

Then connect to ws://127.0.0.1:9001/ with any WebSocket client.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Optional, Union

from uws_py import App, CompressOptions, OpCode, WebSocket


def on_open(ws: WebSocket) -> None:
    print(f"{ws.get_remote_address()} connected", flush=True)


def on_message(ws: WebSocket, message: Union[str, bytes], opcode: OpCode) -> None:
    # The opcode of the message is passed back, so text comes back as text and binary as binary.
    ws.send(message, opcode)


def on_close(ws: WebSocket, code: int, reason: bytes) -> None:
    print(f"a client left with {code}", flush=True)


def build_app() -> App:
    """The echo route on /*, with permessage-deflate using the loop's shared zlib streams."""
    app = App()
    app.ws(
        "/*",
        {
            "open": on_open,
            "message": on_message,
            "close": on_close,
            "idle_timeout": 60,
            "compression": CompressOptions.SHARED_COMPRESSOR | CompressOptions.SHARED_DECOMPRESSOR,
        },
    )
    return app


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="WebSocket echo server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "9001")))
    args = parser.parse_args(argv)
    app = build_app().listen(args.port, host=args.host)
    print(f"listening on ws://{args.host}:{app.port}/", flush=True)
    # SIGTERM and Ctrl-C close every connection with 1001 and make run() return.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: app.close())
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
