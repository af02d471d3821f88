"""The checker of the zero-loss test (tests/support/zero_loss.py) finds each kind of failure,
so that test can fail: a missing, a repeated, a reordered offset, loss inside a reported gap."""

from __future__ import annotations

from tests.support.zero_loss import SubscriberResult, ZeroLossConfig, ZeroLossReport


def report(*results: SubscriberResult, published: int = 5) -> ZeroLossReport:
    return ZeroLossReport(ZeroLossConfig(messages=published), published, 1.0, 3, list(results))


def result(offsets: list[int], gaps: list[tuple[int, int]] = ()) -> SubscriberResult:  # type: ignore[assignment]
    return SubscriberResult(offsets=offsets, numbers=[o - 1 for o in offsets], gap_ranges=list(gaps))


def test_every_offset_once_in_order_is_no_problem():
    assert report(result([1, 2, 3, 4, 5]), result([1, 2, 3, 4, 5])).problems() == []


def test_missing_twice_and_out_of_order_are_problems():
    (missing,) = report(result([1, 2, 4, 5])).problems()
    assert "1 missing without a reported gap (first [3])" in missing
    (twice,) = report(result([1, 2, 3, 3, 4, 5])).problems()
    assert "1 twice (first [3])" in twice
    (reordered,) = report(result([1, 3, 2, 4, 5])).problems()
    assert "out of order" in reordered


def test_loss_inside_a_reported_gap_is_told_apart_from_silent_loss():
    problems = report(result([1, 4, 5], gaps=[(1, 3)])).problems()
    assert problems == ["subscriber 0: 2 lost in 1 reported gap(s)"]
    both = report(result([1, 5], gaps=[(1, 3)])).problems()
    assert len(both) == 2 and "1 missing without a reported gap (first [4])" in both[1]


def test_wrong_payloads_with_right_offsets_are_a_problem():
    bad = SubscriberResult(offsets=[1, 2, 3], numbers=[0, 0, 2])
    assert report(bad, published=3).problems() == ["subscriber 0: the payloads are not each of 0..2 once"]


def test_the_summary_names_the_numbers_the_issue_asks_for():
    text = report(result([1, 2, 3, 4, 5])).summary()
    for word in ("5 messages", "disconnects", "recovered", "recovered=false", "max catch-up"):
        assert word in text
