"""Issue 19 item 2, quick version: 2,000 upgrade attempts within 2 s (2 processes, 127.0.x.y
sources, each attempt with a 10 s deadline) against `uws-py serve --workers 2` with low
connection limits, while 20 established clients keep a PING/PONG stream. No established
connection may drop, every attempt must end (101, or 503/429 with Retry-After: no timeout,
no reset), and no upgraded one may be dropped while held. bench/storm.py runs the same with
20,000 clients and reports the latencies (speed is not asserted here)."""

from __future__ import annotations

from tests.support.storm import StormConfig, run_storm

CLIENTS = 2000
WORKERS = 2
MAX_CONNECTIONS = 300  # per worker
ESTABLISHED = 20


def storm(**overrides) -> dict:
    # The generator is bench/.build/storm, compiled again only when its source is newer (the load
    # generator tests and the scale test build it there too).
    config = StormConfig(clients=CLIENTS, storm_seconds=2.0, processes=2, sources_per_process=3,
                         established=ESTABLISHED, workers=WORKERS, max_connections=MAX_CONNECTIONS,
                         max_connections_per_ip=60, before=1.0, after=1.0)
    for name, value in overrides.items():
        setattr(config, name, value)
    report = run_storm(config)
    print(report["established"], report["storm"]["outcomes"], report["storm"]["retry_after_s"])
    return report


def assert_nothing_dropped_nothing_hung(report: dict) -> None:
    established, attempts = report["established"], report["storm"]
    assert established["clients"] == ESTABLISHED
    assert established["dropped"] == 0 and established["reply_timeouts"] == 0 and established["errors"] == 0, established
    # The stream went on while the storm was on.
    assert established["phases"]["during"]["round_trips"] > 0, established
    assert attempts["resolved"] == attempts["attempts"] == CLIENTS, attempts
    assert set(attempts["outcomes"]) <= {"101", "503", "429"}, attempts["outcomes"]
    assert attempts["refused_without_retry_after"] == {}, attempts
    assert attempts["dropped_after_101"] == 0 and attempts["held"] == attempts["outcomes"].get("101", 0), attempts


def test_storm_over_the_connection_limits_is_refused_with_retry_after_and_drops_nothing():
    report = storm()
    assert_nothing_dropped_nothing_hung(report)
    outcomes = report["storm"]["outcomes"]
    # The workers were full (the established clients hold some of their places): the rest refused.
    assert outcomes.get("101", 0) <= WORKERS * MAX_CONNECTIONS - ESTABLISHED, outcomes
    assert outcomes.get("503", 0) + outcomes.get("429", 0) >= CLIENTS - WORKERS * MAX_CONNECTIONS, outcomes
    low, high = report["storm"]["retry_after_s"]
    assert 5 <= low <= high <= 10, report["storm"]["retry_after_s"]


def test_storm_over_the_upgrade_rate_is_refused_with_a_short_retry_after():
    # 1,000 attempts a second against 2 x 100 upgrades a second, room for all of them.
    report = storm(max_connections=5000, max_connections_per_ip=5000, max_upgrades_per_second=100)
    assert_nothing_dropped_nothing_hung(report)
    outcomes = report["storm"]["outcomes"]
    assert set(outcomes) == {"101", "503"}, outcomes
    # At most a second's burst plus the refill over the time the attempts took, per worker.
    assert outcomes["101"] <= WORKERS * 100 * (1 + report["storm"]["resolve_s"] + 1), report["storm"]
    low, high = report["storm"]["retry_after_s"]
    assert 1 <= low <= high <= 3, report["storm"]["retry_after_s"]
