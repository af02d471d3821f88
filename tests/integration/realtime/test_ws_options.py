"""RealtimeServer options of issue 12: close_on_backpressure_limit (a slow consumer is closed
with 1008 while the others keep receiving) and subprotocols (the server's preference among the
client's offer, with the browser's ``bearer`` token offer still answered)."""

from __future__ import annotations

import queue
from typing import Optional

import pytest

from tests.support.harness import HOST, WAIT, wait_for
from tests.support.realtime import LiveServer, make_token, realtime_server, recv_json, request
from tests.support.wsclient import TestClient, connect

POLICY_VIOLATION = 1008
BIG = "x" * (32 * 1024)
MAX_ROUNDS = 400


def subscribe(client: TestClient, topic: str = "flood") -> None:
    assert request(client, {"type": "SUBSCRIBE", "topic": topic, "id": "s"})["type"] == "SUBSCRIBED"


def join_slow(live: LiveServer) -> TestClient:
    """A subscriber whose receive buffer is tiny and who never reads after subscribing."""
    client = connect(HOST, live.port, live.server.path, headers=[("Authorization", f"Bearer {make_token('slow')}")],
                     recv_buffer_size=4096)
    live.clients.append(client)
    assert recv_json(client)["type"] == "CONNECTED"
    subscribe(client)
    return client


def flood_round(live: LiveServer, fast: TestClient) -> None:
    """Two 32 KiB MESSAGEs on the topic in one loop iteration; the fast subscriber reads both."""
    server = live.server
    server.app.defer(lambda: (server.publish("flood", BIG), server.publish("flood", BIG)))
    for _ in range(2):
        message = recv_json(fast)
        assert message["type"] == "MESSAGE" and message["data"] == BIG, message


def start(serve, **options) -> tuple[LiveServer, "queue.Queue[tuple[Optional[str], int]]"]:
    server = realtime_server(max_backpressure=256 * 1024, **options)
    disconnects: queue.Queue = queue.Queue()
    server.on_disconnect(lambda client, code: disconnects.put((client.user_id, code)))
    return serve(server), disconnects


def test_close_on_backpressure_limit_closes_a_slow_consumer_with_1008(serve):
    live, disconnects = start(serve)  # the default is on
    slow = join_slow(live)
    fast, _ = live.join("fast")
    subscribe(fast)
    for _ in range(MAX_ROUNDS):
        flood_round(live, fast)
        if not disconnects.empty():
            break
    assert wait_for(disconnects, "the slow consumer's disconnect", WAIT) == ("slow", POLICY_VIOLATION)
    # Everything queued before, then the close frame: the client learns why.
    assert slow.expect_close(timeout=10) == (POLICY_VIOLATION, b"backpressure limit")
    # The other subscriber keeps receiving, and nobody else was closed.
    for _ in range(3):
        flood_round(live, fast)
    assert disconnects.empty()


def test_close_on_backpressure_limit_off_drops_instead(serve):
    live, disconnects = start(serve, close_on_backpressure_limit=False)
    join_slow(live)
    fast, _ = live.join("fast")
    subscribe(fast)
    for _ in range(150):  # 9.6 MiB: far past the slow client's buffers and the 256 KiB limit
        flood_round(live, fast)
    assert disconnects.empty(), disconnects.get()
    stats = {}
    live.server.app.defer(lambda: stats.update(live.server.app.stats()))
    request(fast, {"type": "PING", "id": "sync"})
    assert stats["drops"] > 0


def test_cli_serve_has_close_on_backpressure_limit():
    from uws_py.cli import build_parser, resolve_config

    def resolve(argv: list):
        return resolve_config(build_parser().parse_args(argv), {})

    assert resolve(["serve"]).close_on_backpressure_limit is True
    assert resolve(["serve", "--no-close-on-backpressure-limit"]).close_on_backpressure_limit is False
    config = resolve_config(build_parser().parse_args(["serve"]), {"UWS_PY_CLOSE_ON_BACKPRESSURE_LIMIT": "false"})
    assert config.close_on_backpressure_limit is False


def test_cli_serve_passes_close_on_backpressure_limit_to_the_server():
    from uws_py.cli import build_parser, build_server, resolve_config

    config = resolve_config(build_parser().parse_args(["serve", "--no-close-on-backpressure-limit"]), {})
    server = build_server(config)
    assert server.options.close_on_backpressure_limit is False
    assert build_server(resolve_config(build_parser().parse_args(["serve"]), {})).options.close_on_backpressure_limit


# --- subprotocols ---------------------------------------------------------------------------

def test_subprotocols_select_the_servers_preference(serve):
    live = serve(realtime_server(subprotocols=["realtime.v2", "realtime.v1"]))
    client = live.connect(make_token("alice"), protocols=["realtime.v1", "realtime.v2"])
    assert client.protocol == "realtime.v2"
    assert recv_json(client)["type"] == "CONNECTED"
    other = live.connect(make_token("bob"), protocols=["mqtt"])
    assert other.protocol is None
    assert recv_json(other)["type"] == "CONNECTED"


def test_subprotocols_with_a_bearer_token_offer(serve):
    live = serve(realtime_server(subprotocols=["realtime.v1"]))
    token = make_token("alice")
    # A browser offering its protocol and its token gets its protocol...
    client = live.connect(protocols=["realtime.v1", "bearer", token])
    assert client.protocol == "realtime.v1"
    assert recv_json(client)["userId"] == "alice"
    # ...and one offering only the token still gets "bearer", as without subprotocols.
    browser = live.connect(protocols=["bearer", token])
    assert browser.protocol == "bearer"
    assert recv_json(browser)["userId"] == "alice"


def test_without_subprotocols_the_bearer_offer_is_answered_as_before(serve):
    live = serve(realtime_server())
    client = live.connect(protocols=["bearer", make_token("alice")])
    assert client.protocol == "bearer"
    assert recv_json(client)["userId"] == "alice"


@pytest.mark.parametrize("value", [["not a token"], "chat"])
def test_realtime_subprotocols_reject_bad_values(value):
    with pytest.raises(ValueError, match="subprotocol"):
        realtime_server(subprotocols=value)
