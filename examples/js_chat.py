"""A browser chat on the JavaScript client: one page of under 40 lines, no build step.

    python examples/js_chat.py --port 8080         # or: PORT=8080 python examples/js_chat.py

Open http://127.0.0.1:8080/?name=ada and http://127.0.0.1:8080/?name=bob in two tabs and type.
The page (examples/static/js_chat.html) imports the client from /realtime/client.js, which the
server serves itself; the topic "chat.lobby" keeps a history, so a tab whose connection dropped
gets the lines it missed when it reconnects (docs/tutorial/js-chat.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from uws_py import Client, HttpRequest, HttpResponse, RealtimeServer

PAGE = Path(__file__).with_name("static") / "js_chat.html"


def build_server() -> RealtimeServer:
    """A realtime server without auth: the page at /, the client at /realtime/client.js,
    and the topics chat.* (the last 100 lines, for 10 minutes) for everyone."""
    server = RealtimeServer(path="/realtime")
    server.history("chat.*", size=100, ttl=600)
    page = PAGE.read_bytes()

    def index(res: HttpResponse, req: HttpRequest) -> None:
        res.write_header("Content-Type", "text/html; charset=utf-8").end(page)

    server.app.get("/", index)

    @server.authorize_topic
    def only_chat(client: Client, topic: str, action: str) -> bool:
        return topic.startswith("chat.")

    return server


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="browser chat on the JavaScript client")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args(argv)
    server = build_server().listen(args.host, args.port)
    print(f"listening on http://{args.host}:{server.port}/ (client: {server.client_script_path})", flush=True)
    server.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
