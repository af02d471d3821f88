"""The ``uws-py`` command."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any, Optional, Sequence

from . import __version__
from .app import App


def _echo_app() -> App:
    def on_message(ws: Any, message: Any, opcode: Any) -> None:
        ws.send(message, opcode)

    return App().ws("/*", {"message": on_message})


def _serve(args: argparse.Namespace) -> int:
    app = _echo_app()
    try:
        app.listen(args.port, args.host)
    except OSError as error:
        print(f"uws-py: error: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 2
    logging.getLogger("uws_py").info("echo server on ws://%s:%d/", args.host, app.port)
    print(f"uws-py {__version__}: echo server listening on ws://{args.host}:{app.port}/", flush=True)

    def stop(signum: int, frame: Any) -> None:
        app.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    app.run()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``uws-py`` console script."""
    parser = argparse.ArgumentParser(prog="uws-py", description="WebSocket server on a native core")
    parser.add_argument("--version", action="version", version=f"uws-py {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=9001, help="port to bind (default 9001, 0 picks one)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        return _serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
