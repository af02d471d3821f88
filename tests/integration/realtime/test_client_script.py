"""The JavaScript client served by RealtimeServer at {path}/client.js: the source file's bytes
with a JavaScript Content-Type, revalidation by ETag (304), and the option that turns it off."""

from __future__ import annotations

from pathlib import Path

from tests.support.realtime import HOST, realtime_server
from tests.support.wsclient import raw_http

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "clients" / "js" / "src" / "index.js"


def get(port: int, path: str, *headers: str):
    extra = "".join(f"{header}\r\n" for header in headers)
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{extra}Connection: close\r\n\r\n"
    return raw_http(HOST, port, request.encode("ascii"))


def test_the_client_is_served_at_realtime_client_js_with_its_headers(serve):
    live = serve(realtime_server())
    response = get(live.port, "/realtime/client.js")
    assert response.status == 200, response
    assert response.body == SOURCE.read_bytes()
    assert response.headers.get("content-type") == "text/javascript; charset=utf-8"
    assert response.headers.get("cache-control") == "no-cache"
    assert response.headers.get("access-control-allow-origin") == "*"
    assert response.headers.get("x-content-type-options") == "nosniff"
    etag = response.headers.get("etag")
    assert etag and etag.startswith('"') and etag.endswith('"'), etag


def test_a_request_naming_the_etag_gets_304_without_a_body(serve):
    live = serve(realtime_server())
    etag = get(live.port, "/realtime/client.js").headers["etag"]
    again = get(live.port, "/realtime/client.js", f"If-None-Match: W/{etag}, \"other\"")
    assert again.status == 304, again
    assert again.body == b""
    assert again.headers.get("etag") == etag
    stale = get(live.port, "/realtime/client.js", 'If-None-Match: "not-this-one"')
    assert stale.status == 200 and stale.body == SOURCE.read_bytes()


def test_the_client_follows_the_endpoint_path(serve):
    live = serve(realtime_server(path="/ws/"))
    assert live.server.client_script_path == "/ws/client.js"
    assert get(live.port, "/ws/client.js").status == 200
    assert get(live.port, "/realtime/client.js").status == 404


def test_client_script_false_leaves_the_url_free(serve):
    server = realtime_server(client_script=False)

    def own(res, req):
        res.end("mine")

    server.app.get("/realtime/client.js", own)
    live = serve(server)
    response = get(live.port, "/realtime/client.js")
    assert (response.status, response.body) == (200, b"mine")
