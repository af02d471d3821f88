"""A RealtimeServer for the browser tests, run as its own process:

    python tests/support/page_server.py PORT PAGES_DIR [--history PATTERN] [--jwt-secret S]
        [--recover-limit N]

It serves ``PAGES_DIR/<name>.html`` at ``/pages/<name>.html`` (and, with a secret, fresh tokens
at ``/token?sub=NAME&ttl=SECONDS``) next to the realtime endpoint and
the JavaScript client at ``/realtime/client.js`` (the server's own route), with no rate limit,
and prints ``listening on PORT`` once it accepts connections. It imports only uws_py, so it runs
as a script without the tests package on the path.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import jwt

from uws_py import HttpRequest, HttpResponse, JWTAuth, RealtimeServer

PAGE_NAME = re.compile(r"^[a-z0-9_-]+\.html$")


def build(pages: Path, history: list[str], secret: str | None, recover_limit: int = 1000) -> RealtimeServer:
    """The server: pages from ``pages``, history on each pattern, JWT auth when ``secret``,
    at most ``recover_limit`` publications per recovery."""
    server = RealtimeServer(auth=JWTAuth(secret=secret) if secret else None, rate_limit=None,
                            history_recover_limit=recover_limit)
    for pattern in history:
        server.history(pattern, size=5000, ttl=600.0)

    def page(res: HttpResponse, req: HttpRequest) -> None:
        name = req.get_parameter("name") or ""
        path = pages / name
        if not PAGE_NAME.match(name) or not path.is_file():
            res.write_status("404 Not Found").end(f"no page {name!r}\n")
            return
        res.write_header("Content-Type", "text/html; charset=utf-8").write_header("Cache-Control", "no-store")
        res.end(path.read_bytes())

    server.app.get("/pages/:name", page)

    def token(res: HttpResponse, req: HttpRequest) -> None:
        # A test token issuer: /token?sub=NAME&ttl=SECONDS (only with --jwt-secret).
        try:
            ttl = float(req.get_query("ttl") or "600")
        except ValueError:
            res.write_status("400 Bad Request").end("ttl must be a number\n")
            return
        claims = {"sub": req.get_query("sub") or "page", "exp": time.time() + ttl}
        res.write_header("Cache-Control", "no-store").end(jwt.encode(claims, secret, algorithm="HS256"))

    if secret:
        server.app.get("/token", token)
    return server


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("pages", type=Path)
    parser.add_argument("--history", action="append", default=[])
    parser.add_argument("--jwt-secret", default=None)
    parser.add_argument("--recover-limit", type=int, default=1000)
    args = parser.parse_args(argv)
    server = build(args.pages, args.history, args.jwt_secret, args.recover_limit).listen(port=args.port, host="127.0.0.1")
    print(f"listening on {server.port}", flush=True)
    server.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
