"""HTTP routes on the native core: parameters, query strings, headers, request bodies and a
catch-all 404, next to a WebSocket route on the same port.

    python examples/http_routes.py --port 8000
    curl http://127.0.0.1:8000/hello/ada?greeting=hi
    curl -X POST --data 'some bytes' http://127.0.0.1:8000/echo
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Optional

from uws_py import App, HttpRequest, HttpResponse


def index(res: HttpResponse, req: HttpRequest) -> None:
    res.write_header("Content-Type", "text/plain; charset=utf-8").end("routes: /hello/:name, POST /echo, /info\n")


def hello(res: HttpResponse, req: HttpRequest) -> None:
    # :name is read by name (or by position: req.get_parameter(0)); the query value is decoded.
    name = req.get_parameter("name")
    greeting = req.get_query("greeting") or "hello"
    res.end(f"{greeting} {name}\n")


def info(res: HttpResponse, req: HttpRequest) -> None:
    """The request as JSON: method, URL, query and headers."""
    headers: dict[str, str] = {}
    req.for_each_header(lambda name, value: headers.__setitem__(name, value))
    body = {"method": req.get_method(), "url": req.get_url(), "query": req.get_query(), "headers": headers}
    res.write_header("Content-Type", "application/json").end(json.dumps(body))


def echo_body(res: HttpResponse, req: HttpRequest) -> None:
    """Answers with the request body. The body arrives later, in chunks, through on_data;
    `req` is valid only while this handler runs, so read what you need from it now."""
    chunks: list[bytes] = []
    content_type = req.get_header("content-type") or "application/octet-stream"

    def on_data(chunk: bytes, is_last: bool) -> None:
        chunks.append(bytes(chunk))  # copy: the chunk's memory belongs to the core
        if is_last:
            res.write_header("Content-Type", content_type).end(b"".join(chunks))

    res.on_data(on_data)


def not_found(res: HttpResponse, req: HttpRequest) -> None:
    res.write_status("404 Not Found").end(f"nothing at {req.get_url()}\n")


def build_app() -> App:
    """The routes. The most specific pattern wins, so "/*" only catches what nothing else does."""
    app = App()
    app.get("/", index)
    app.get("/hello/:name", hello)
    app.get("/info", info)
    app.post("/echo", echo_body)
    app.any("/*", not_found)
    app.max_body_size = 64 * 1024  # larger bodies get 413 before they are read
    return app


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="HTTP routes on uws-py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args(argv)
    app = build_app().listen(args.port, host=args.host)
    print(f"listening on http://{args.host}:{app.port}/", flush=True)
    # SIGTERM and Ctrl-C stop listening, close open connections and make run() return.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: app.close())
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
