"""RealtimeServer(max_lifetime=...): the App.ws option of the same name, in whole minutes,
reaches the realtime route; bad values are refused when the server is made. At the end of
the lifetime the connection is closed with the documented 1001 "max lifetime reached" and a
log line, and the SDK reconnects and recovers a history topic with nothing lost."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

import pytest

from uws_py import RealtimeServer
from uws_py.sdk import ClientOptions, ClientState, ConnectionLost, Publication, connect

from tests.support.harness import HOST
from tests.support.realtime import make_token, realtime_server, request

SDK_OPTIONS = ClientOptions(min_delay=0.05, max_delay=0.2, open_timeout=3.0, request_timeout=3.0, ping_interval=None)


def mounted_behavior(server: RealtimeServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The behavior the server registers its realtime route with."""
    routes: dict[str, dict[str, Any]] = {}
    original = server.app.ws

    def record(pattern: str, behavior: dict[str, Any]) -> Any:
        routes[pattern] = behavior
        return original(pattern, behavior)

    monkeypatch.setattr(server.app, "ws", record)
    server._mount()
    return routes[server.path]


def test_max_lifetime_reaches_the_realtime_route(monkeypatch: pytest.MonkeyPatch) -> None:
    server = RealtimeServer(rate_limit=None, max_lifetime=30)
    assert server.options.max_lifetime == 30
    assert mounted_behavior(server, monkeypatch)["max_lifetime"] == 30


def test_max_lifetime_defaults_to_off(monkeypatch: pytest.MonkeyPatch) -> None:
    server = RealtimeServer(rate_limit=None)
    assert mounted_behavior(server, monkeypatch)["max_lifetime"] == 0


@pytest.mark.parametrize("value", [-1, 1.5, True, "5", 1_000_001])
def test_max_lifetime_refuses_bad_values(value: Any) -> None:
    with pytest.raises(ValueError, match="max_lifetime"):
        RealtimeServer(rate_limit=None, max_lifetime=value)


# -- the close itself, and the SDK coming back ----------------------------------------------
# max_lifetime is in whole minutes; App._seconds_per_lifetime_minute (60) is lowered so that
# "2 minutes" lasts 2 s. The core's timers tick once a second: the close comes 2..3 s in.

LIFETIME = 2


def short_lived_server(**options: Any) -> RealtimeServer:
    options.setdefault("rate_limit", None)
    server = realtime_server(max_lifetime=LIFETIME, **options)
    server.app._seconds_per_lifetime_minute = 1
    return server


def test_the_lifetime_ends_with_1001_max_lifetime_reached_and_a_log_line(serve, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    live = serve(short_lived_server())
    opened = time.monotonic()
    client, _ = live.join("alice")
    other, _ = live.join("bob")
    # Traffic does not extend a lifetime (an idle timeout it would).
    while time.monotonic() - opened < LIFETIME - 0.5:
        assert request(client, {"type": "PING", "id": 1})["type"] == "PONG"
        time.sleep(0.2)
    assert client.expect_close(timeout=LIFETIME + 4.0) == (1001, b"max lifetime reached")
    lived = time.monotonic() - opened
    assert LIFETIME - 0.1 <= lived <= LIFETIME + 3.0, f"closed after {lived:.2f} s"  # a loaded machine delays the tick
    assert other.expect_close(timeout=2.0) == (1001, b"max lifetime reached")
    assert any("max_lifetime reached" in record.getMessage() for record in caplog.records), \
        [record.getMessage() for record in caplog.records]
    # The server goes on: a new connection is welcome (and gets a lifetime of its own).
    fresh, _ = live.join("carol")
    assert request(fresh, {"type": "PING", "id": 2})["type"] == "PONG"


def test_the_sdk_reconnects_after_its_lifetime_and_recovers_what_was_published_meanwhile(serve) -> None:
    """Publications go out every 20 ms for two lifetimes; each time the subscriber's
    connection ends, 20 more are published while it is away. It must come back by itself
    (the close is 1001, which the SDK treats as transient) and end with every offset once,
    in order, some of them recovered."""
    server = short_lived_server()
    server.history("h.*", size=1000, ttl=300.0)
    live = serve(server)
    url = f"ws://{HOST}:{live.port}{server.path}"
    total = 0

    def publish(count: int) -> None:
        nonlocal total
        for _ in range(count):
            server.publish_threadsafe("h.life", total)
            total += 1

    async def scenario() -> tuple[list[int], list[int], list[tuple[Any, Any]], Any, Any]:
        offsets: list[int] = []
        data: list[int] = []
        closes: list[tuple[Any, Any]] = []

        def on_state(state: ClientState, error: Optional[BaseException]) -> None:
            if state is ClientState.DISCONNECTED and isinstance(error, ConnectionLost):
                closes.append((error.close_code, error.close_reason))
                publish(20)  # while the subscriber is away

        def on_message(publication: Publication) -> None:
            assert publication.offset is not None
            offsets.append(publication.offset)
            data.append(publication.data)

        async with connect(url, token=make_token("alice", ttl=120), options=SDK_OPTIONS, on_state=on_state) as client:
            subscription = await client.subscribe("h.life", on_message)
            deadline = time.monotonic() + 3 * LIFETIME + 6
            while len(closes) < 2:
                assert time.monotonic() < deadline, f"closes so far: {closes}"
                publish(1)
                await asyncio.sleep(0.02)
            publish(1)
            async with asyncio.timeout(10):
                while len(data) < total:
                    await asyncio.sleep(0.02)
            return offsets, data, closes, subscription.stats, client.stats

    async def bounded() -> Any:
        async with asyncio.timeout(40):
            return await scenario()

    offsets, data, closes, stats, client_stats = asyncio.run(bounded())
    print(f"published {total}, subscription {stats}, client {client_stats}")
    assert closes[:2] == [(1001, "max lifetime reached")] * 2
    assert client_stats.connects >= 3
    assert data == list(range(total))
    assert offsets == list(range(1, total + 1))
    assert stats.recoveries >= 2 and stats.recovered_publications >= 40, stats
    assert stats.gaps == 0
