"""The JavaScript client in Chromium when the network misbehaves without closing anything: back
online, it checks at once that its connection still carries frames, instead of trusting a flow
that may have died silently while the network was away (found by the next PING only, 25 s + 10 s
later); and a recovery that cannot return everything missed is reported as a gap."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from uws_py.sdk import ClientOptions, connect

from tests.support.browser import chromium, open_zero_loss_page, page_server
from tests.support.chaos_proxy import ChaosProxy
from tests.support.procutil import HOST
from tests.support.realtime import SECRET, make_token

PAGES = Path(__file__).with_name("pages")


def test_back_online_a_silently_dead_connection_is_replaced_at_once_and_recovers():
    async def scenario() -> None:
        with page_server(PAGES, history=("zl.*",), jwt_secret=SECRET) as server:
            async with ChaosProxy(server.port, min_life=300.0, max_life=300.0) as proxy, chromium() as browser:
                page, errors = await open_zero_loss_page(browser, server.http)
                # The periodic PING is a minute away: only the online event can find the dead flow in time.
                config = {"ws": f"ws://{HOST}:{proxy.port}/realtime", "token": make_token("page", ttl=600),
                          "topic": "zl.online", "subscribers": 1,
                          "options": {"minReconnectDelay": 100, "maxReconnectDelay": 500, "timeout": 3000,
                                      "pingInterval": 60000, "pongTimeout": 1000}}
                await page.evaluate("(config) => window.start(config)", config)
                options = ClientOptions(min_delay=0.05, max_delay=0.5, request_timeout=5.0, ping_interval=None)
                async with connect(server.ws, token=make_token("publisher", ttl=600), options=options) as publisher:
                    offsets = [(await publisher.publish("zl.online", {"n": 0}, ack=True))["offset"]]
                    # The first publication must arrive live, or the recovery returns 20 and not 19.
                    await eventually_page(page, lambda stats: stats["last"] == offsets[0])
                    assert proxy.hang() == 1
                    await browser.set_offline(True)
                    for n in range(1, 20):
                        offsets.append((await publisher.publish("zl.online", {"n": n}, ack=True))["offset"])
                    await browser.set_offline(False)
                    back_online = time.monotonic()
                    deadline = back_online + 8.0
                    while True:
                        [stats] = await page.evaluate("() => window.summary()")
                        if stats["last"] == offsets[-1] or time.monotonic() > deadline:
                            break
                        await asyncio.sleep(0.05)
                    caught_up = time.monotonic() - back_online
                await page.evaluate("() => window.stop()")
        assert not errors, errors
        assert stats["last"] == offsets[-1], f"not caught up {caught_up:.1f} s after going back online: {stats}"
        assert (stats["received"], stats["duplicates"], stats["holes"], stats["gaps"]) == (20, 0, 0, 0), stats
        assert stats["disconnects"] == 1 and stats["recoveries"] == 1 and stats["recoveredMessages"] == 19, stats

    asyncio.run(asyncio.wait_for(scenario(), 60.0))


def test_more_missed_than_the_recovery_limit_is_a_gap_and_delivery_goes_on_from_the_top():
    """The documented failure of a recovery: the page is told (a `gap` event, `recovered: false`)
    and continues with what is published next, without the missed publications."""
    async def scenario() -> None:
        with page_server(PAGES, history=("zl.*",), jwt_secret=SECRET, recover_limit=10) as server:
            async with ChaosProxy(server.port, min_life=300.0, max_life=300.0) as proxy, chromium() as browser:
                page, errors = await open_zero_loss_page(browser, server.http)
                config = {"ws": f"ws://{HOST}:{proxy.port}/realtime", "token": make_token("page", ttl=600),
                          "topic": "zl.gap", "subscribers": 1,
                          "options": {"minReconnectDelay": 100, "maxReconnectDelay": 500, "timeout": 3000,
                                      "pingInterval": 300, "pongTimeout": 500}}
                await page.evaluate("(config) => window.start(config)", config)
                options = ClientOptions(min_delay=0.05, max_delay=0.5, request_timeout=5.0, ping_interval=None)
                async with connect(server.ws, token=make_token("publisher", ttl=600), options=options) as publisher:
                    async def publish(n: int) -> int:
                        return (await publisher.publish("zl.gap", {"n": n}, ack=True))["offset"]

                    before = [await publish(n) for n in range(5)]
                    await eventually_page(page, lambda stats: stats["last"] == before[-1])
                    assert proxy.hang() == 1
                    missed = [await publish(n) for n in range(5, 30)]  # 25 > the limit of 10
                    [stats] = await eventually_page(page, lambda stats: stats["gaps"] == 1)
                    after = [await publish(n) for n in range(30, 35)]
                    [stats] = await eventually_page(page, lambda stats: stats["last"] == after[-1])
                await page.evaluate("() => window.stop()")
        assert not errors, errors
        assert stats["errors"] == [], stats
        assert stats["received"] == len(before) + len(after), stats
        assert (stats["first"], stats["last"], stats["duplicates"]) == (before[0], after[-1], 0), stats
        assert stats["holes"] == 1 and missed[-1] + 1 == after[0], stats  # the one jump: over `missed`
        assert stats["gaps"] == 1 and stats["subscribes"] >= 2, stats

    asyncio.run(asyncio.wait_for(scenario(), 60.0))


async def eventually_page(page, predicate, timeout: float = 10.0) -> list:
    """The page's summary once predicate(first subscriber's stats) holds; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        summary = await page.evaluate("() => window.summary()")
        if predicate(summary[0]):
            return summary
        if time.monotonic() > deadline:
            raise AssertionError(f"the page did not get there in {timeout} s: {summary}")
        await asyncio.sleep(0.05)
