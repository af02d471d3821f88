"""The checker of the zero-loss test (tests/support/zero_loss.py) finds each kind of failure,
so that test can fail: a missing, a repeated, a reordered offset, loss inside a reported gap."""

from __future__ import annotations

from tests.support.zero_loss import PublishRecord, SubscriberResult, ZeroLossConfig, ZeroLossReport


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


def chaos_report(offsets: list[int], numbers: list[int], top: int, refused: int = 0, unanswered: int = 0) -> ZeroLossReport:
    acked = {o: n for o, n in zip(offsets, numbers)}
    records = PublishRecord(acked=acked, refused=refused, unanswered=unanswered)
    subscriber = SubscriberResult(offsets=offsets, numbers=numbers)
    return ZeroLossReport(ZeroLossConfig(messages=3), 3, 1.0, 0, [subscriber], records, top)


def test_a_payload_stored_twice_is_no_problem_when_a_retry_explains_it():
    # Message 1 was unanswered, retried and stored again: offsets 2 and 3 hold it.
    report = chaos_report([1, 2, 3, 4], [0, 1, 1, 2], top=4, unanswered=1)
    assert report.extra_copies == 1 and report.problems() == []
    assert report.lost() == 0 and report.duplicated() == 0


def test_a_payload_stored_twice_without_a_retry_is_a_problem():
    (problem,) = chaos_report([1, 2, 3, 4], [0, 1, 1, 2], top=4).problems()
    assert problem == "1 payloads stored twice but only 0 publishes retried"


def test_lost_counts_acknowledged_offsets_a_subscriber_missed_and_duplicated_repeats():
    report = chaos_report([1, 2, 3], [0, 1, 2], top=3)
    report.subscribers[0].offsets = [1, 1, 3]
    assert report.lost() == 1 and report.duplicated() == 1
