"""The client SDK's decisions without I/O: backoff, close codes, handshake refusals, offset
de-duplication, token expiry and refresh timing."""

from __future__ import annotations

import base64
import json
import random

import pytest

from uws_py.sdk.policy import (
    Action,
    Backoff,
    OffsetTracker,
    Verdict,
    decide_close,
    decide_handshake,
    refresh_delay,
    token_expiry,
)


# -- Backoff -------------------------------------------------------------------------------


def test_backoff_draws_stay_within_min_and_the_attempts_ceiling_over_1000_draws():
    rng = random.Random(1234)
    backoff = Backoff(0.2, 5.0, random_uniform=rng.uniform)
    for _ in range(1000):
        attempt = backoff.attempts
        ceiling = backoff.ceiling(attempt)
        delay = backoff.next_delay()
        assert 0.2 <= delay <= ceiling, (attempt, delay, ceiling)
        assert ceiling <= 5.0
        if backoff.attempts >= 20:
            backoff.reset()


def test_backoff_ceiling_doubles_then_caps_at_max_delay():
    backoff = Backoff(0.5, 10.0)
    assert [backoff.ceiling(n) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.ceiling(10_000) == 10.0  # no float overflow


def test_backoff_jitter_spreads_the_draws():
    rng = random.Random(99)
    draws = []
    for _ in range(1000):
        backoff = Backoff(0.1, 30.0, random_uniform=rng.uniform)
        backoff.attempts = 5  # ceiling 6.4 s
        draws.append(backoff.next_delay())
    assert len(set(draws)) > 900
    assert min(draws) < 1.0 and max(draws) > 5.5
    mean = sum(draws) / len(draws)
    assert 2.8 < mean < 3.7  # uniform over [0.1, 6.4]: mean 3.25


def test_backoff_grows_with_consecutive_failures_and_reset_starts_over():
    backoff = Backoff(0.2, 20.0, random_uniform=lambda a, b: b)  # always the ceiling
    assert [backoff.next_delay() for _ in range(4)] == [0.4, 0.8, 1.6, 3.2]
    assert backoff.attempts == 4
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == 0.4


def test_backoff_never_waits_less_than_min_delay():
    backoff = Backoff(0.3, 3.0, random_uniform=lambda a, b: a - 1.0)  # strays below its bounds
    assert all(backoff.next_delay() == 0.3 for _ in range(10))


def test_backoff_first_retry_is_jittered_regression():
    # Regression: the first retry was always exactly min_delay (uniform(0, min) clamped up to
    # min), so every client of a restarted worker came back in the same instant.
    rng = random.Random(7)
    firsts = [Backoff(0.5, 20.0, random_uniform=rng.uniform).next_delay() for _ in range(1000)]
    assert all(0.5 <= delay <= 1.0 for delay in firsts)
    assert len(set(firsts)) > 990
    assert min(firsts) < 0.55 and max(firsts) > 0.95
    assert sum(1 for delay in firsts if delay == 0.5) <= 1
    mean = sum(firsts) / len(firsts)
    assert 0.72 < mean < 0.78  # uniform over [0.5, 1.0]


@pytest.mark.parametrize("low,high", [(0, 1.0), (-1, 1.0), (2.0, 1.0)])
def test_backoff_refuses_bad_bounds(low, high):
    with pytest.raises(ValueError, match="min_delay"):
        Backoff(low, high)


# -- close codes ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", [None, 1001, 1005, 1006, 1011, 1012, 1013, 1014])
def test_transient_closes_reconnect(code):
    assert decide_close(code, "", can_refresh=False).action is Action.RECONNECT


def test_token_expired_refreshes_when_it_can_and_stops_when_it_cannot():
    assert decide_close(1008, "token expired", can_refresh=True).action is Action.REFRESH_AND_RECONNECT
    decision = decide_close(1008, "token expired", can_refresh=False)
    assert decision.action is Action.STOP and "get_token" in decision.reason


def test_rate_limit_close_reconnects_after_backoff():
    assert decide_close(1008, "rate limit exceeded", can_refresh=True).action is Action.RECONNECT


def test_backpressure_limit_close_reconnects():
    """Regression: the server's 1008 "backpressure limit" (close_on_backpressure_limit, on by
    default) stopped the client like any other policy violation; a slow reader should come back."""
    assert decide_close(1008, "backpressure limit", can_refresh=False).action is Action.RECONNECT


def test_other_policy_violations_stop():
    decision = decide_close(1008, "origin not allowed", can_refresh=True)
    assert decision.action is Action.STOP and "origin not allowed" in decision.reason
    assert decide_close(1008, "", can_refresh=True).action is Action.STOP


def test_normal_closure_by_the_server_stops():
    assert decide_close(1000, "bye", can_refresh=True).action is Action.STOP


@pytest.mark.parametrize("code", [1002, 1003, 1007, 1009, 1010])
def test_protocol_faults_stop(code):
    assert decide_close(code, "x", can_refresh=True).action is Action.STOP


@pytest.mark.parametrize("code", [4000, 4001, 4403, 4999])
def test_application_codes_are_final(code):
    decision = decide_close(code, "kicked", can_refresh=True)
    assert decision.action is Action.STOP and str(code) in decision.reason


@pytest.mark.parametrize("code", [3000, 3999, 1015, 1099])
def test_other_codes_reconnect(code):
    assert decide_close(code, "", can_refresh=False).action is Action.RECONNECT


# -- handshake refusals --------------------------------------------------------------------


def test_401_refreshes_up_to_the_limit_then_stops():
    assert decide_handshake(401, True, 1).action is Action.REFRESH_AND_RECONNECT
    assert decide_handshake(401, True, 2).action is Action.REFRESH_AND_RECONNECT
    assert decide_handshake(401, True, 3).action is Action.STOP
    assert decide_handshake(401, True, 1, max_auth_failures=1).action is Action.STOP


def test_401_without_get_token_stops():
    assert decide_handshake(401, False, 1).action is Action.STOP


@pytest.mark.parametrize("status", [429, 500, 502, 503, 599])
def test_busy_or_failing_server_reconnects(status):
    assert decide_handshake(status, False, 0).action is Action.RECONNECT


@pytest.mark.parametrize("status", [400, 403, 404, 426])
def test_other_refusals_stop(status):
    decision = decide_handshake(status, True, 0)
    assert decision.action is Action.STOP and str(status) in decision.reason


# -- OffsetTracker -------------------------------------------------------------------------


def test_tracker_delivers_increasing_offsets_and_skips_repeats():
    tracker = OffsetTracker()
    assert not tracker.known
    assert [tracker.accept(o) for o in (1, 2, 2, 1, 3, 5, 4, 5)] == [
        Verdict.DELIVER, Verdict.DELIVER, Verdict.DUPLICATE, Verdict.DUPLICATE,
        Verdict.DELIVER, Verdict.DELIVER, Verdict.DUPLICATE, Verdict.DUPLICATE,
    ]
    assert tracker.offset == 5


def test_tracker_delivers_everything_on_plain_topics():
    tracker = OffsetTracker()
    assert all(tracker.accept(None) is Verdict.DELIVER for _ in range(3))
    assert tracker.offset is None


def test_tracker_from_a_saved_position_and_reset():
    tracker = OffsetTracker("a1b2c3d4", 40)
    assert tracker.known
    assert tracker.accept(40) is Verdict.DUPLICATE
    assert tracker.accept(41) is Verdict.DELIVER
    tracker.reset("ffff0000", 2)  # a new epoch: offsets start again
    assert (tracker.epoch, tracker.offset) == ("ffff0000", 2)
    assert tracker.accept(2) is Verdict.DUPLICATE
    assert tracker.accept(3) is Verdict.DELIVER
    tracker.reset(None, None)
    assert not tracker.known
    assert tracker.accept(1) is Verdict.DELIVER


# -- tokens --------------------------------------------------------------------------------


def _unsigned_token(claims: object) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256'})}.{part(claims)}.c2ln"


def test_token_expiry_reads_exp_without_verifying():
    assert token_expiry(_unsigned_token({"sub": "a", "exp": 1_700_000_000})) == 1_700_000_000.0
    assert token_expiry(_unsigned_token({"exp": 12.5})) == 12.5


@pytest.mark.parametrize("token", [
    "not-a-jwt", "a.b", "a.b.c.d", "a.!!!.c",
    _unsigned_token({"sub": "a"}), _unsigned_token({"exp": "soon"}),
    _unsigned_token({"exp": True}), _unsigned_token([1, 2]),
])
def test_token_expiry_is_none_when_unreadable(token):
    assert token_expiry(token) is None


def test_refresh_delay_uses_the_margin_for_long_tokens():
    assert refresh_delay(1000.0 + 3600, now=1000.0, margin=30.0) == 3570.0


def test_refresh_delay_refreshes_short_tokens_a_third_early():
    assert refresh_delay(103.0, now=100.0, margin=30.0) == pytest.approx(2.0)


def test_refresh_delay_none_and_expired():
    assert refresh_delay(None, now=5.0) is None
    assert refresh_delay(99.0, now=100.0) == 0.0
    assert refresh_delay(100.0, now=100.0) == 0.0
