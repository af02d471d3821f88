"""The RealtimeServer API made consistent (issue 12): listen/run/serve argument order,
AuthError exported, Client.send's SendStatus, publish_threadsafe, async handlers refused by
run() at startup, handler_metrics=False for async handlers, and trusted proxies."""

from __future__ import annotations

import logging
import queue
import threading
import time

import pytest

import uws_py
from tests.support.harness import HOST, WAIT
from tests.support.realtime import (
    LiveServer, ServingThread, make_token, realtime_server, recv_json, request, scrape,
)
from tests.support.wsclient import connect
from uws_py import RealtimeServer, SendStatus


# -- listen / run / serve ------------------------------------------------------------------------


def test_listen_takes_port_then_host_like_app_listen():
    server = RealtimeServer()
    server.listen(0, HOST)
    assert server.port > 0
    keyword = RealtimeServer().listen(host=HOST, port=0)
    assert keyword.port > 0 and keyword.port != server.port


def test_listen_in_the_old_host_port_order_still_works_with_a_deprecation_warning():
    server = realtime_server()
    with pytest.warns(DeprecationWarning, match=r"listen\(host, port\) is deprecated"):
        server.listen(HOST, 0)
    thread = threading.Thread(target=server.app.run, daemon=True)
    thread.start()
    try:
        client = connect(HOST, server.port, "/realtime", headers=[("Authorization", f"Bearer {make_token()}")])
        assert recv_json(client)["type"] == "CONNECTED"
        client.disconnect()
    finally:
        server.close()
        thread.join(WAIT)
    assert not thread.is_alive()


def test_run_refuses_async_handlers_at_startup():
    server = RealtimeServer()

    @server.on("LOOKUP")
    async def lookup(client, message):
        return {"type": "FOUND"}

    with pytest.raises(RuntimeError, match=r"handler for 'LOOKUP' is async: run the server with `await server.serve\(\)`"):
        server.run(port=0, host=HOST)
    with pytest.raises(RuntimeError):
        server.run_forever()


def test_run_refuses_an_async_authenticate_hook_at_startup():
    server = RealtimeServer()

    @server.authenticate
    async def check(claims, request):
        return True

    with pytest.raises(RuntimeError, match="the authenticate hook is async"):
        server.run(port=0, host=HOST)


# -- exports and return values -------------------------------------------------------------------


def test_auth_error_is_exported_from_uws_py(serve):
    assert uws_py.AuthError is uws_py.auth.AuthError and "AuthError" in uws_py.__all__
    server = realtime_server(auth=None)

    @server.authenticate
    def check(claims, request):
        raise uws_py.AuthError("bad_key", "unknown API key")

    live = serve(server)
    response = live.refused()
    assert response.status == 401 and b"unknown API key" in response.body


def test_client_send_returns_the_send_status(serve):
    server = realtime_server(rate_limit=None)
    statuses: queue.Queue = queue.Queue()
    kept = []

    @server.on("HELLO")
    def hello(client, message):
        kept.append(client)
        statuses.put(client.send({"type": "HI"}))

    live = serve(server)
    client, _ = live.join()
    reply = request(client, {"type": "HELLO"})
    assert reply == {"type": "HI"}
    assert statuses.get(timeout=WAIT) is SendStatus.SUCCESS
    client.close()
    answer: queue.Queue = queue.Queue()
    # After the close the client's sends are dropped, and say so.
    deadline = time.monotonic() + WAIT
    while not kept[0].closed and time.monotonic() < deadline:
        time.sleep(0.01)
    live.server.app.defer(lambda: answer.put(kept[0].send({"type": "LATE"})))
    assert answer.get(timeout=WAIT) is SendStatus.DROPPED


def test_publish_threadsafe_from_a_thread_without_a_broker(serve):
    live = serve(realtime_server(rate_limit=None))
    client, _ = live.join()
    assert request(client, {"type": "SUBSCRIBE", "topic": "news", "id": 1})["type"] == "SUBSCRIBED"
    data = {"items": [1, 2]}
    publisher = threading.Thread(target=lambda: live.server.publish_threadsafe("news", data))
    publisher.start()
    publisher.join(WAIT)
    data["items"].append(3)  # encoded at the call: a later change is not published
    assert recv_json(client) == {"type": "MESSAGE", "topic": "news", "data": {"items": [1, 2]}, "from": None}
    with pytest.raises(TypeError):
        live.server.publish_threadsafe("news", {1, 2})
    with pytest.raises(ValueError):
        live.server.publish_threadsafe("", 1)


# -- handler_metrics -----------------------------------------------------------------------------


def test_handler_metrics_false_does_not_time_async_handlers():
    server = RealtimeServer(rate_limit=None, handler_metrics=False)

    @server.on("SLOW")
    async def slow(client, message):
        return {"type": "DONE"}

    serving = ServingThread(server)
    try:
        client = connect(HOST, serving.port, "/realtime")
        assert recv_json(client)["type"] == "CONNECTED"
        assert request(client, {"type": "SLOW", "id": 1}) == {"type": "DONE", "id": 1}
        client.disconnect()
        samples = scrape(_Scrapable(serving.port))
        assert not any(name.startswith("uws_handler_seconds") for name, _ in samples), samples
    finally:
        serving.stop()


class _Scrapable:
    """What scrape() needs of a LiveServer: http_get on a port."""

    def __init__(self, port: int) -> None:
        self.port = port

    http_get = LiveServer.http_get


# -- trusted proxies -----------------------------------------------------------------------------


def connected_address(live, headers) -> str:
    """The client.remote_address the server gave a connection upgraded with ``headers``."""
    client = live.connect(make_token(), headers=headers)
    recv_json(client)
    reply = request(client, {"type": "WHERE", "id": 1})
    client.disconnect()
    return reply["address"]


def proxy_server(serve, **options):
    server = realtime_server(rate_limit=None, access_log=True, **options)

    @server.on("WHERE")
    def where(client, message):
        return {"type": "HERE", "address": client.remote_address}

    return serve(server)


def test_trusted_proxy_headers_set_the_client_address(serve, caplog):
    live = proxy_server(serve, trusted_proxies=["127.0.0.0/8"], max_connections_per_ip=1)
    with caplog.at_level(logging.INFO, logger="uws_py.access"):
        assert connected_address(live, [("X-Forwarded-For", "203.0.113.7")]) == "203.0.113.7"
    assert any(r.getMessage().startswith('203.0.113.7 "GET /realtime" 101') for r in caplog.records), caplog.text
    assert connected_address(live, [("Forwarded", 'for=198.51.100.2;proto=https, for="[2001:db8::5]:4711"')]) \
        == "2001:db8::5"
    # Without a header the proxy's own address stays.
    assert connected_address(live, []) == "127.0.0.1"
    # The per-IP limit counts the forwarded address: two clients behind the proxy are two IPs...
    first = live.connect(make_token(), headers=[("X-Forwarded-For", "192.0.2.1")])
    second = live.connect(make_token(), headers=[("X-Forwarded-For", "192.0.2.2")])
    recv_json(first), recv_json(second)
    # ...and the same forwarded IP twice is refused.
    assert live.refused(token=make_token(), headers=[("X-Forwarded-For", "192.0.2.1")]).status == 429


def test_spoofed_forwarding_chain_counts_only_the_right_most_untrusted_hop(serve):
    live = proxy_server(serve, trusted_proxies=["127.0.0.1", "10.0.0.0/8"])
    # The client wrote "1.1.1.1, 10.9.9.9" itself; the proxies appended 198.51.100.9 (the client
    # as the outer proxy saw it) and 10.0.0.2 (the outer proxy, as the inner one saw it).
    chain = "1.1.1.1, 10.9.9.9, 198.51.100.9, 10.0.0.2"
    assert connected_address(live, [("X-Forwarded-For", chain)]) == "198.51.100.9"


def test_forwarding_headers_from_an_untrusted_peer_are_ignored(serve):
    live = proxy_server(serve, trusted_proxies=["10.0.0.0/8"])
    assert connected_address(live, [("X-Forwarded-For", "203.0.113.7")]) == "127.0.0.1"
    assert connected_address(live, [("Forwarded", "for=203.0.113.7")]) == "127.0.0.1"
    untrusting = proxy_server(serve)
    assert connected_address(untrusting, [("X-Forwarded-For", "203.0.113.7")]) == "127.0.0.1"


def test_bad_trusted_proxy_entry_is_refused_at_construction():
    with pytest.raises(ValueError, match="'not-an-ip' is not an IP address or CIDR"):
        RealtimeServer(trusted_proxies=["not-an-ip"])
