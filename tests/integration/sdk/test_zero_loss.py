"""Issue 14 test (a), the zero-loss test: 5 SDK subscribers reach two `uws-py serve --broker
redis://... --history` processes through chaos proxies that cut every connection after
0.2-2 s, for 60 s, while 20,000 messages are published on a history topic; each subscriber
must get every message exactly once, in offset order. The scenario is in
tests/support/zero_loss.py (bench/sdk_zero_loss.py runs it with other parameters)."""

from __future__ import annotations

import asyncio

from tests.support.zero_loss import ZeroLossConfig, cluster, run_zero_loss

# Publishing is paced over 60 s, then the subscribers get 20 s to catch up (tests/support/zero_loss.py).
# A bound for a hung run, not the expected time: at a load of 3-8 on 2 cores the acknowledged
# publishes fall behind their pace, and 120 s left too little room for that.
BOUND = 300.0


def test_five_subscribers_behind_chaos_proxies_get_all_20000_messages_once_in_offset_order():
    config = ZeroLossConfig()
    with cluster(config) as ports:
        async def bounded():
            async with asyncio.timeout(BOUND):
                return await run_zero_loss(ports, config)

        report = asyncio.run(bounded())
    print(report.summary())
    assert report.problems() == [], report.summary()
    # The chaos really happened: cuts every ~1.1 s per connection, and recoveries followed.
    assert report.cuts >= config.subscribers * 20, report.summary()
    for result in report.subscribers:
        assert result.disconnects >= 10 and result.recovered >= 10, report.summary()
        assert result.recovered_publications > 0, report.summary()
