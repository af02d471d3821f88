"""Issue 19 item 3, quick versions: acknowledged publishes and SDK subscribers on a history
topic against `uws-py serve --workers 2 --broker redis://...` (Redis with an AOF) while one
fault happens; no subscriber may miss or repeat an offset (tests/support/chaos.py says what
lost means). bench/chaos/run.py runs the same with the full numbers."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.chaos import ChaosReport, chaos_config, run_chaos
from tests.support.zero_loss import cluster_processes

DURATION = 8.0
MESSAGES = 800
BOUND = 45.0


def run(fault: str, outage: float = 2.0, **overrides) -> ChaosReport:
    config = chaos_config(fault, duration=DURATION, messages=MESSAGES, settle_timeout=15.0, **overrides)
    with cluster_processes(config) as running:
        async def bounded() -> ChaosReport:
            async with asyncio.timeout(BOUND):
                return await run_chaos(running, config, fault, delay=DURATION / 3, outage=outage)

        report = asyncio.run(bounded())
    print(report.summary())
    assert report.traffic.problems() == [], report.summary()
    assert report.traffic.lost() == 0 and report.traffic.duplicated() == 0, report.summary()
    return report


def test_sigkill_of_a_worker_loses_nothing_and_the_supervisor_restarts_it():
    report = run("kill-worker")
    # The victim held subscribers (the most sockets): they lost their connection and recovered.
    assert sum(r.disconnects for r in report.traffic.subscribers) >= 1, report.summary()
    assert sum(r.recovered for r in report.traffic.subscribers) >= 1, report.summary()


def test_rolling_restart_loses_nothing_every_subscriber_reconnects_and_recovers():
    report = run("rolling-restart")
    for result in report.traffic.subscribers:
        assert result.disconnects >= 1 and result.recovered >= 1, report.summary()


def test_redis_restarted_on_its_aof_loses_nothing():
    report = run("redis-restart")
    # Publishing stood still while Redis was down: publishes were refused and retried.
    assert report.traffic.publishes.refused > 0, report.summary()
    assert report.traffic.top == report.traffic.published + report.traffic.extra_copies


def test_redis_paused_with_client_pause_loses_nothing():
    report = run("redis-pause", outage=1.5)
    assert report.longest_ack_gap() >= 1.0, report.summary()


@pytest.mark.parametrize("outage", [2.5])
def test_redis_frozen_longer_than_the_timeout_stores_no_publish_twice(outage):
    """Regression: the history's Redis client retried a timed-out publish script, which the
    frozen Redis then ran twice (one PUBLISH at two offsets, none of them refused)."""
    report = run("redis-sleep", outage=outage)
    assert report.traffic.publishes.refused + report.traffic.publishes.unanswered > 0, report.summary()


def test_network_cuts_through_the_chaos_proxy_lose_nothing():
    report = run("network-cuts", min_life=0.3, max_life=1.5)
    assert report.traffic.cuts >= 10, report.summary()
