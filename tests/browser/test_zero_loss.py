"""The JavaScript client in headless Chromium, through a proxy that cuts every connection after
0.2-2 s: subscribers in the page receive every message a Python publisher (not behind the proxy)
publishes on a history topic, each exactly once and in offset order. The page is served by our
server and imports the client from /realtime/client.js."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from uws_py.sdk import ClientOptions, connect

from tests.support.browser import chromium, open_zero_loss_page, page_server
from tests.support.chaos_proxy import ChaosProxy
from tests.support.procutil import HOST
from tests.support.realtime import SECRET, make_token

PAGES = Path(__file__).with_name("pages")
TOPIC = "zl.browser"
MESSAGES = 4000
SUBSCRIBERS = 3
PUBLISH_SECONDS = 20.0  # the publisher spreads the messages over this long
SETTLE_SECONDS = 30.0  # then every subscriber must have caught up within this long
# A bound for a hung run, not the expected time (publishing 20 s, settling up to 30 s): at a load of
# 3-8 on 2 cores the acknowledged publishes fall behind their pace.
TEST_BOUND = 300.0
TOKEN_TTL = 4
JS_OPTIONS = {"minReconnectDelay": 100, "maxReconnectDelay": 1000, "timeout": 3000}


async def publish_all(publisher: Any) -> list[int]:
    """Publishes MESSAGES messages {"n": i} with ack, paced over PUBLISH_SECONDS; returns their offsets."""
    offsets: list[int] = []
    started = time.monotonic()
    for n in range(MESSAGES):
        reply = await publisher.publish(TOPIC, {"n": n}, ack=True)
        assert reply is not None
        offsets.append(reply["offset"])
        ahead = started + PUBLISH_SECONDS * (n + 1) / MESSAGES - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
    return offsets


def test_browser_subscribers_behind_a_chaos_proxy_lose_nothing():
    async def scenario() -> None:
        with page_server(PAGES, history=("zl.*",), jwt_secret=SECRET) as server:
            async with ChaosProxy(server.port, min_life=0.2, max_life=2.0, seed=14) as proxy, chromium() as browser:
                page, errors = await open_zero_loss_page(browser, server.http)
                # Tokens of TOKEN_TTL seconds from the page server: renewed through AUTH on live
                # connections and fetched again on reconnects, all while the proxy cuts.
                config = {"ws": f"ws://{HOST}:{proxy.port}/realtime", "tokenUrl": f"/token?sub=page&ttl={TOKEN_TTL}",
                          "topic": TOPIC, "subscribers": SUBSCRIBERS, "options": JS_OPTIONS}
                positions = await page.evaluate("(config) => window.start(config)", config)
                assert len(positions) == SUBSCRIBERS

                options = ClientOptions(min_delay=0.05, max_delay=0.5, request_timeout=5.0, ping_interval=None)
                async with connect(server.ws, token=make_token("publisher", ttl=600), options=options) as publisher:
                    started = time.monotonic()
                    offsets = await publish_all(publisher)
                    published_in = time.monotonic() - started
                assert offsets == list(range(offsets[0], offsets[0] + MESSAGES)), "the publisher's offsets are contiguous"
                first, last = offsets[0], offsets[-1]
                assert all(position["offset"] == first - 1 for position in positions), positions

                deadline = time.monotonic() + SETTLE_SECONDS
                while True:
                    summary = await page.evaluate("() => window.summary()")
                    if all(stats["last"] == last for stats in summary) or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.25)
                cuts = proxy.cuts
                await page.evaluate("() => window.stop()")

        disconnects = sum(stats["disconnects"] for stats in summary)
        print(f"\nbrowser zero loss: {MESSAGES} messages in {published_in:.1f} s to {SUBSCRIBERS} subscribers; "
              f"{cuts} proxy cuts, {disconnects} disconnects seen by the page; per subscriber "
              + "; ".join(f"#{s['index']}: {s['received']} received, {s['disconnects']} disconnects, "
                          f"{s['recoveries']} recoveries, {s['recoveredMessages']} recovered messages, "
                          f"max catch-up {s['maxCatchUpMs']:.0f} ms, {s['tokensFetched']} tokens, "
                          f"{s['tokenRefreshes']} AUTH refreshes" for s in summary))
        assert not errors, errors
        for stats in summary:
            who = f"subscriber {stats['index']}: {stats}"
            assert stats["errors"] == [], who
            assert (stats["first"], stats["last"]) == (first, last), who
            assert stats["received"] == MESSAGES, who
            assert (stats["duplicates"], stats["holes"], stats["badData"], stats["gaps"]) == (0, 0, 0, 0), who
            # The chaos really happened, and the subscriber came back through recovery each time.
            assert stats["disconnects"] >= 5, who
            # (a cut between CONNECTED and SUBSCRIBED is a disconnect without its own recovery)
            assert stats["recoveries"] >= stats["disconnects"] // 2, who
            assert stats["recoveredMessages"] > 0, who
            assert stats["tokensFetched"] >= PUBLISH_SECONDS / TOKEN_TTL, who
        assert cuts >= SUBSCRIBERS * 5

    asyncio.run(asyncio.wait_for(scenario(), TEST_BOUND))


def test_a_hung_connection_is_found_by_the_ping_and_the_page_recovers_what_it_missed():
    """The proxy stops forwarding without ending the flow (a NAT that forgot it): only the
    client's application PING notices; it reconnects and recovers the messages of the silence."""
    count = 300

    async def scenario() -> None:
        with page_server(PAGES, history=("zl.*",), jwt_secret=SECRET) as server:
            async with ChaosProxy(server.port, min_life=300.0, max_life=300.0) as proxy, chromium() as browser:
                page, errors = await open_zero_loss_page(browser, server.http)
                config = {"ws": f"ws://{HOST}:{proxy.port}/realtime", "token": make_token("page", ttl=600),
                          "topic": "zl.hang", "subscribers": 1,
                          "options": {**JS_OPTIONS, "pingInterval": 500, "pongTimeout": 700}}
                await page.evaluate("(config) => window.start(config)", config)
                options = ClientOptions(min_delay=0.05, max_delay=0.5, request_timeout=5.0, ping_interval=None)
                async with connect(server.ws, token=make_token("publisher", ttl=600), options=options) as publisher:
                    offsets = []
                    for n in range(count):
                        if n == count // 3:
                            assert proxy.hang() == 1
                        reply = await publisher.publish("zl.hang", {"n": n}, ack=True)
                        offsets.append(reply["offset"])
                        await asyncio.sleep(0.01)
                deadline = time.monotonic() + 15.0
                while True:
                    [stats] = await page.evaluate("() => window.summary()")
                    if stats["last"] == offsets[-1] or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                await page.evaluate("() => window.stop()")
        assert not errors, errors
        assert (stats["first"], stats["last"], stats["received"]) == (offsets[0], offsets[-1], count), stats
        assert (stats["duplicates"], stats["holes"], stats["badData"], stats["gaps"]) == (0, 0, 0, 0), stats
        # At least the hung flow; a PONG slower than 700 ms on a loaded machine may add another.
        assert stats["disconnects"] >= 1 and stats["recoveries"] >= 1 and stats["recoveredMessages"] > 0, stats

    asyncio.run(asyncio.wait_for(scenario(), 60.0))
