"""uws_py.ratelimit: RateLimit, TokenBucket (with a fake clock) and ConnectionLimiter."""

from __future__ import annotations

import pytest

from uws_py.ratelimit import ConnectionLimiter, RateLimit, Refusal, TokenBucket


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def take_all(bucket: TokenBucket) -> int:
    taken = 0
    while bucket.take():
        taken += 1
        assert taken < 10_000
    return taken


def test_rate_limit_defaults() -> None:
    limit = RateLimit()
    assert (limit.messages, limit.per_seconds, limit.burst, limit.close_after) == (100, 60.0, None, 2.0)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"messages": 0}, "positive"),
        ({"messages": -1}, "positive"),
        ({"per_seconds": 0}, "positive"),
        ({"per_seconds": -1.0}, "positive"),
        ({"burst": 0}, "burst"),
        ({"burst": -3}, "burst"),
        ({"close_after": 0}, "close_after"),
        ({"close_after": -1}, "close_after"),
    ],
)
def test_rate_limit_validation(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        RateLimit(**kwargs)


def test_burst_defaults_to_messages() -> None:
    bucket = TokenBucket(RateLimit(messages=5, per_seconds=1), FakeClock())
    assert take_all(bucket) == 5


def test_burst_allows_more_at_once() -> None:
    bucket = TokenBucket(RateLimit(messages=5, per_seconds=1, burst=20), FakeClock())
    assert take_all(bucket) == 20


def test_burst_smaller_than_messages() -> None:
    bucket = TokenBucket(RateLimit(messages=100, per_seconds=10, burst=3), FakeClock())
    assert take_all(bucket) == 3


def test_refill_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(messages=10, per_seconds=2), clock)  # 5 tokens per second
    take_all(bucket)
    clock.advance(0.1)
    assert not bucket.take()  # half a token
    clock.advance(0.1)
    assert bucket.take()
    assert not bucket.take()
    clock.advance(1.0)
    assert take_all(bucket) == 5


def test_refill_stops_at_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(messages=4, per_seconds=1), clock)
    take_all(bucket)
    clock.advance(3600)
    assert take_all(bucket) == 4


def test_steady_rate_is_allowed_forever() -> None:
    clock = FakeClock()
    # 8 per second: the steps are exact in binary floating point.
    bucket = TokenBucket(RateLimit(messages=8, per_seconds=1), clock)
    take_all(bucket)
    for _ in range(1000):
        clock.advance(0.125)
        assert bucket.take()
    assert bucket.refused == 1


def test_retry_after() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(messages=4, per_seconds=2), clock)  # 2 tokens per second
    assert bucket.retry_after() == 0.0
    take_all(bucket)
    assert bucket.retry_after() == pytest.approx(0.5)
    clock.advance(0.2)
    assert not bucket.take()
    assert bucket.retry_after() == pytest.approx(0.3)
    clock.advance(bucket.retry_after())
    assert bucket.take()


def test_refused_counts_refusals_only() -> None:
    bucket = TokenBucket(RateLimit(messages=3, per_seconds=60), FakeClock())
    take_all(bucket)
    assert bucket.refused == 1
    for _ in range(4):
        assert not bucket.take()
    assert bucket.refused == 5


def test_refused_window_resets_after_per_seconds() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(messages=2, per_seconds=10), clock)
    take_all(bucket)
    bucket.take()
    assert bucket.refused == 2
    clock.advance(9.9)
    take_all(bucket)
    assert bucket.refused == 3  # same window
    clock.advance(0.2)  # 10.1 s after the window started
    take_all(bucket)
    assert bucket.refused == 1
    assert bucket.window_start == clock.now


def test_refusals_in_one_window_can_reach_the_close_threshold() -> None:
    limit = RateLimit(messages=5, per_seconds=10, close_after=2.0)
    clock = FakeClock()
    bucket = TokenBucket(limit, clock)
    take_all(bucket)
    while bucket.refused <= limit.close_after * limit.messages:
        assert not bucket.take()
    assert bucket.refused == 11


def test_default_clock_is_monotonic() -> None:
    bucket = TokenBucket(RateLimit(messages=2, per_seconds=3600))
    assert bucket.take() and bucket.take() and not bucket.take()


def test_connection_limiter_unlimited() -> None:
    limiter = ConnectionLimiter(None, None)
    for _ in range(1000):
        assert limiter.check("10.0.0.1") is None
        limiter.opened("10.0.0.1")
    assert limiter.total == 1000


def test_connection_limiter_total_gives_503() -> None:
    limiter = ConnectionLimiter(2, None)
    limiter.opened("10.0.0.1")
    assert limiter.check("10.0.0.2") is None
    limiter.opened("10.0.0.2")
    assert limiter.check("10.0.0.3") == "503 Service Unavailable"
    limiter.closed("10.0.0.1")
    assert limiter.check("10.0.0.3") is None


def test_connection_limiter_per_ip_gives_429() -> None:
    limiter = ConnectionLimiter(None, 2)
    limiter.opened("10.0.0.1")
    limiter.opened("10.0.0.1")
    assert limiter.check("10.0.0.1") == "429 Too Many Requests"
    assert limiter.check("10.0.0.2") is None
    limiter.closed("10.0.0.1")
    assert limiter.check("10.0.0.1") is None


def test_connection_limiter_total_is_checked_before_per_ip() -> None:
    limiter = ConnectionLimiter(1, 1)
    limiter.opened("10.0.0.1")
    assert limiter.check("10.0.0.1") == "503 Service Unavailable"


def test_connection_limiter_release_forgets_idle_addresses() -> None:
    limiter = ConnectionLimiter(10, 5)
    limiter.opened("10.0.0.1")
    limiter.opened("10.0.0.1")
    limiter.opened("::1")
    assert (limiter.total, limiter.per_ip) == (3, {"10.0.0.1": 2, "::1": 1})
    limiter.closed("10.0.0.1")
    assert limiter.per_ip == {"10.0.0.1": 1, "::1": 1}
    limiter.closed("10.0.0.1")
    limiter.closed("::1")
    assert (limiter.total, limiter.per_ip) == (0, {})


def test_take_many_is_all_or_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(messages=10, per_seconds=10), clock)
    assert bucket.take(6)
    assert not bucket.take(5), "5 tokens taken from 4"
    assert bucket.refused == 1
    assert bucket.retry_after(5) == pytest.approx(1.0)
    assert bucket.take(4)
    assert bucket.retry_after(50) == pytest.approx(10.0), "more than the capacity waits for a full bucket"


# -- Retry-After and the upgrade rate (issue 19, connection storm) ---------------------------


def test_refusals_carry_a_retry_after_spread_over_base_to_twice_base() -> None:
    low = ConnectionLimiter(1, None, retry_after=4, jitter=lambda: 0.0)
    high = ConnectionLimiter(None, 1, retry_after=4, jitter=lambda: 0.999)
    low.opened("10.0.0.1")
    high.opened("10.0.0.1")
    assert low.admit("10.0.0.2") == Refusal("503 Service Unavailable", 4, "too many connections")
    assert high.admit("10.0.0.1") == Refusal("429 Too Many Requests", 8, "too many connections")
    assert high.admit("10.0.0.2") is None


def test_upgrade_rate_refuses_beyond_one_seconds_burst_and_refills() -> None:
    clock = FakeClock()
    limiter = ConnectionLimiter(None, None, max_upgrades_per_second=3, clock=clock, jitter=lambda: 0.0)
    assert [limiter.admit("10.0.0.1") for _ in range(3)] == [None, None, None]
    refusal = limiter.admit("10.0.0.2")
    assert refusal == Refusal("503 Service Unavailable", 1, "too many upgrades")
    clock.advance(0.34)  # one token back (3 per second)
    assert limiter.admit("10.0.0.2") is None
    assert limiter.admit("10.0.0.2") is not None


def test_upgrade_rate_is_taken_only_by_upgrades_that_pass_the_counts() -> None:
    clock = FakeClock()
    limiter = ConnectionLimiter(1, None, max_upgrades_per_second=1, clock=clock)
    limiter.opened("10.0.0.1")
    for _ in range(5):
        assert limiter.check("10.0.0.2") == "503 Service Unavailable"
    limiter.closed("10.0.0.1")
    assert limiter.check("10.0.0.2") is None  # the bucket's one token was still there


@pytest.mark.parametrize("keywords", [{"max_connections": 0}, {"max_per_ip": -1}, {"max_upgrades_per_second": 0},
                                      {"retry_after": 0}, {"max_connections": True}])
def test_connection_limiter_refuses_nonsense_limits(keywords) -> None:
    arguments = {"max_connections": None, "max_per_ip": None, **keywords}
    with pytest.raises(ValueError):
        ConnectionLimiter(**arguments)
