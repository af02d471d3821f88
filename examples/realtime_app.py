"""A realtime server to start from: JWT auth, an application message type, pub/sub with a
periodic server broadcast, and /health and /metrics for monitoring.

    JWT_SECRET=... python examples/realtime_app.py --port 8080

Clients connect to ws://HOST:PORT/realtime with a token (Authorization: Bearer, ?token=, or
the subprotocols "bearer, <token>"); see examples/README.md for a session to try.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any, Optional

import jwt

from uws_py import Client, JWTAuth, RealtimeServer

logger = logging.getLogger("realtime_app")

# Only for trying the example on a laptop: anyone who reads this file can sign tokens for it.
DEV_SECRET = "dev-only secret for examples/realtime_app.py; set JWT_SECRET"
TICKS_TOPIC = "ticks"
TICK_SECONDS = 1.0


def require_text(message: dict[str, Any]) -> None:
    """Schema of NATURAL_LANGUAGE: a string ``text`` (anything else gets INVALID_MESSAGE)."""
    if not isinstance(message.get("text"), str):
        raise ValueError("field 'text' must be a string")


def build_server(secret: str) -> RealtimeServer:
    """The server with its handlers, not yet listening."""
    # The default rate limit (100 messages per minute per client) stays on.
    server = RealtimeServer(path="/realtime", auth=JWTAuth(secret=secret), report_interval=60.0)

    @server.on("NATURAL_LANGUAGE", schema=require_text)
    def natural_language(client: Client, message: dict[str, Any]) -> dict[str, Any]:
        # The reply goes back with the request's id; the server adds it.
        return {"type": "NATURAL_LANGUAGE_RESULT", "text": message["text"].upper()}

    @server.on_connect
    def connected(client: Client) -> None:
        logger.info("%s connected as %s", client.id, client.user_id)

    @server.on_disconnect
    def disconnected(client: Client, code: int) -> None:
        logger.info("%s left with %d", client.id, code)

    return server


def start_ticks(server: RealtimeServer, interval: float = TICK_SECONDS) -> None:
    """Publishes {"n", "serverTime"} to the ticks topic every interval seconds. Call it on the
    loop thread (before run() on the thread that will run it, or through app.defer)."""
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        server.publish(TICKS_TOPIC, {"n": count, "serverTime": time.time_ns() // 1_000_000})
        # A loop timer fires once; arming the next one here makes it periodic.
        server.app.set_timeout(interval, tick)

    server.app.set_timeout(interval, tick)


def sample_token(secret: str, user: str = "demo", ttl: float = 3600.0) -> str:
    """A token the server accepts, for trying it out."""
    return jwt.encode({"sub": user, "exp": int(time.time() + ttl)}, secret, algorithm="HS256")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    secret = os.environ.get("JWT_SECRET")
    if not secret:
        logger.warning("JWT_SECRET is not set: using the development secret")
        secret = DEV_SECRET
    server = build_server(secret)
    start_ticks(server)
    server.listen(port=args.port, host=args.host)  # --port 0 picks a free port
    port = server.port
    print(f"listening on ws://{args.host}:{port}/realtime", flush=True)
    print(f"sample token (user 'demo', 1 hour): {sample_token(secret)}", flush=True)
    print(f"health: http://{args.host}:{port}/health  metrics: http://{args.host}:{port}/metrics", flush=True)
    # Runs until SIGINT/SIGTERM, then closes every connection with 1001 after flushing.
    server.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
