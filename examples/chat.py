"""A broadcast chat: a static HTML page and the realtime protocol, no build step.

    python examples/chat.py --port 8080         # or: PORT=8080 python examples/chat.py

Open http://127.0.0.1:8080/ in two browser tabs and type. The page (examples/static/chat.html)
connects to ws://HOST:PORT/realtime, SUBSCRIBEs to the topic "chat" and PUBLISHes what you
type with "echo": true, so every tab, yours included, shows every line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Optional

from uws_py import Client, HttpRequest, HttpResponse, ProtocolError, RealtimeServer

PAGE = Path(__file__).with_name("static") / "chat.html"
TOPIC = "chat"


def build_server() -> RealtimeServer:
    """A realtime server without auth whose clients may use the topic "chat" only."""
    server = RealtimeServer(path="/realtime")
    page = PAGE.read_bytes()

    def index(res: HttpResponse, req: HttpRequest) -> None:
        res.write_header("Content-Type", "text/html; charset=utf-8").end(page)

    server.app.get("/", index)

    @server.authorize_topic
    def only_chat(client: Client, topic: str, action: str) -> bool:
        # Asked for every SUBSCRIBE and PUBLISH; anything else gets ERROR FORBIDDEN.
        return topic == TOPIC

    @server.on("NICK")
    def nick(client: Client, message: dict[str, Any]) -> dict[str, Any]:
        """An application type: checks a nickname and tells everyone who joined."""
        name = message.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= 32:
            raise ProtocolError("INVALID_MESSAGE", "field 'name' must be 1 to 32 characters")
        server.publish(TOPIC, {"system": f"{name} joined"})
        return {"type": "NICK_OK", "name": name}

    return server


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="broadcast chat with a browser page")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args(argv)
    server = build_server().listen(port=args.port, host=args.host)
    print(f"listening on http://{args.host}:{server.port}/ (WebSocket: /realtime)", flush=True)
    server.run_forever()  # until SIGTERM or Ctrl-C; then every client gets 1001
    return 0


if __name__ == "__main__":
    sys.exit(main())
