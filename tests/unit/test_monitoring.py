"""uws_py.monitoring: snapshot merge rules, retiring a dead worker, gathering from files, and
the figures shared by the dashboard and the report."""

from __future__ import annotations

import math
import os

from prometheus_client.parser import text_string_to_metric_families

from uws_py.metrics import Metrics
from uws_py.monitoring import cluster, figures
from uws_py.monitoring import snapshot as snap
from uws_py.monitoring.topics import TopicSubscribers


def worker_families(messages: float, connections: float, broker_up: float = 1.0) -> list:
    return [
        snap.gauge("uws_connections", "c", [({}, connections)]),
        snap.counter("uws_messages_received", "m", [({}, messages)]),
        snap.counter("uws_errors", "e", [({"code": "X"}, 1)]),
        snap.gauge("uws_broker_connected", "b", [({}, broker_up)]),
    ]


def test_merge_sums_samples_by_name_and_labels_and_takes_the_least_broker_gauge() -> None:
    merged = snap.merge([worker_families(5, 2), worker_families(7, 3, broker_up=0.0)])
    assert snap.sample_value(merged, "uws_messages_received_total") == 12
    assert snap.sample_value(merged, "uws_connections") == 5
    assert snap.sample_value(merged, "uws_errors_total", code="X") == 2
    assert snap.sample_value(merged, "uws_broker_connected") == 0


def test_cumulative_keeps_only_counters() -> None:
    names = {f["name"] for f in snap.cumulative(worker_families(1, 1))}
    assert names == {"uws_messages_received", "uws_errors"}


def test_per_worker_labels_the_chosen_families() -> None:
    families = snap.per_worker({0: worker_families(5, 2), 1: worker_families(7, 3)})
    by_name = {f["name"]: f for f in families}
    assert by_name["uws_worker_connections"]["samples"] == [
        ["uws_worker_connections", {"worker": "0"}, 2.0], ["uws_worker_connections", {"worker": "1"}, 3.0]]
    assert by_name["uws_worker_messages_received"]["samples"][1] == [
        "uws_worker_messages_received_total", {"worker": "1"}, 7.0]
    assert "uws_worker_messages_sent" not in by_name  # no source family, no empty family


def test_render_round_trips_through_the_prometheus_parser() -> None:
    core = {"messages_in": 3, "messages_out": 4, "bytes_in": 0, "bytes_out": 0, "connections_opened": 1, "connections_closed": 0,
            "publishes": 0, "deliveries": 0, "drops": 0, "backpressure_events": 0, "protocol_errors": 0,
            "http_rejections": 0, "idle_timeouts": 0, "header_timeouts": 0, "http_send_timeouts": 0, "open_connections": 1}
    metrics = Metrics(lambda: core)
    metrics.histogram("CHAT").observe(0.0003)
    taken = snap.take(metrics.registry)
    text = snap.render(taken + snap.per_worker({0: taken})).decode()
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert parsed["uws_messages_received"].samples[0].value == 3
    assert parsed["uws_handler_seconds"].type == "histogram"
    assert parsed["uws_worker_connections"].samples[0].labels == {"worker": "0"}
    assert not any(s.name.endswith("_created") for f in parsed.values() for s in f.samples)


def write_worker(directory: str, pid: int, index: int, messages: float, connections: float) -> None:
    cluster.write_json(os.path.join(directory, f"{pid}.json"),
                       {"pid": pid, "index": index, "seq": 1, "families": worker_families(messages, connections)})


def test_gather_uses_dead_workers_counters_but_not_their_gauges(tmp_path) -> None:
    directory = str(tmp_path)
    write_worker(directory, 999001, 1, messages=10, connections=4)  # no socket: not answering
    own = {"pid": os.getpid(), "index": 0, "families": worker_families(5, 2), "topics": {"a": 2}}
    view = cluster.gather(directory, own, timeout=0.2)
    assert snap.sample_value(view.families, "uws_messages_received_total") == 15
    assert snap.sample_value(view.families, "uws_connections") == 2
    assert [t["pid"] for t in view.live] == [os.getpid()]
    assert view.topics == {"a": 2}


def test_retire_moves_counters_into_retired_and_counts_the_restart(tmp_path) -> None:
    directory = str(tmp_path)
    write_worker(directory, 999001, 1, messages=10, connections=4)
    cluster.retire(directory, 999001, 1)
    assert not os.path.exists(os.path.join(directory, "999001.json"))
    write_worker(directory, 999002, 1, messages=3, connections=1)
    cluster.retire(directory, 999002, 1)
    own = {"pid": os.getpid(), "index": 0, "families": worker_families(5, 2)}
    view = cluster.gather(directory, own, timeout=0.2)
    assert snap.sample_value(view.families, "uws_messages_received_total") == 18
    assert view.restarts == {1: 2}
    exposed = view.exposition()
    assert snap.sample_value(exposed, "uws_worker_restarts_total", worker="1") == 2
    assert snap.sample_value(exposed, "uws_worker_messages_received_total", worker="1") == 13
    assert snap.sample_value(exposed, "uws_worker_connections", worker="1") == 0  # dead: no gauge
    assert snap.sample_value(exposed, "uws_workers") == 1


def test_retire_without_a_snapshot_still_counts_the_restart(tmp_path) -> None:
    cluster.retire(str(tmp_path), 999003, 2)
    assert cluster.read_json(os.path.join(str(tmp_path), cluster.RETIRED))["workers"]["2"]["restarts"] == 1


def test_topic_subscribers_follow_subscription_events() -> None:
    topics = TopicSubscribers()
    topics.on_subscription(None, "a", 1, 0)
    topics.on_subscription(None, "b", 1, 0)
    topics.on_subscription(None, "b", 2, 1)
    topics.on_subscription(None, "a", 0, 1)
    assert topics.top() == {"b": 2}


def test_bucket_quantile_is_the_upper_bound_of_the_holding_bucket() -> None:
    buckets = [(0.001, 90.0), (0.01, 99.0), (math.inf, 100.0)]
    assert figures.bucket_quantile(buckets, 0.5) == 0.001
    assert figures.bucket_quantile(buckets, 0.95) == 0.01
    assert figures.bucket_quantile(buckets, 0.999) == math.inf
    assert figures.bucket_quantile([], 0.5) == 0.0


def test_figures_read_the_totals_and_latency_by_type() -> None:
    core = {"messages_in": 30, "messages_out": 40, "bytes_in": 0, "bytes_out": 0, "connections_opened": 3, "connections_closed": 0,
            "publishes": 0, "deliveries": 0, "drops": 2, "backpressure_events": 5, "protocol_errors": 0,
            "http_rejections": 0, "idle_timeouts": 0, "header_timeouts": 0, "http_send_timeouts": 0, "open_connections": 3}
    metrics = Metrics(lambda: core)
    metrics.rate_limited = 4
    metrics.auth_failure("expired")
    metrics.auth_failure("bad_signature")
    for _ in range(10):
        metrics.histogram("CHAT").observe(0.0003)
    got = figures.figures(snap.take(metrics.registry))
    assert (got["connections"], got["messages_in"], got["messages_out"]) == (3, 30, 40)
    assert (got["drops"], got["backpressure_events"], got["rate_limited"], got["auth_failures"]) == (2, 5, 4, 2)
    assert got["latency"]["CHAT"] == {"count": 10, "p50": 0.5, "p95": 0.5, "p99": 0.5}
    assert got["latency"]["*"]["count"] == 10
    before = dict(got, messages_in=10)
    assert figures.rate(before, got, "messages_in", 2.0) == 10.0


def test_dashboard_token_must_be_long_enough_and_is_compared_as_a_bearer() -> None:
    import pytest

    from uws_py.monitoring.dashboard import Dashboard

    with pytest.raises(ValueError, match="16 characters"):
        Dashboard("short", lambda respond: None, lambda *a: None)
    board = Dashboard("0123456789abcdef-token", lambda respond: None, lambda *a: None)
    assert board.authorized("Bearer 0123456789abcdef-token")
    assert board.authorized("bearer 0123456789abcdef-token")
    assert not board.authorized("Bearer 0123456789abcdef-tokeN")
    assert not board.authorized("Basic 0123456789abcdef-token")
    assert not board.authorized("")


def test_dashboard_data_has_totals_workers_topics_and_json_safe_latency() -> None:
    import json

    from uws_py.monitoring.dashboard import data

    slow = {"name": "uws_handler_seconds", "help": "h", "type": "histogram", "samples": [
        ["uws_handler_seconds_bucket", {"type": "SLOW", "le": "2.5"}, 0.0],
        ["uws_handler_seconds_bucket", {"type": "SLOW", "le": "+Inf"}, 3.0]]}
    view = cluster.ClusterView(
        families=snap.merge([worker_families(5, 2), worker_families(7, 3), [slow]]),
        workers={0: worker_families(5, 2), 1: worker_families(7, 3)},
        live=[{"pid": 11, "index": 0}], restarts={1: 1}, topics={"b": 1, "a": 4, "c": 4})
    shown = data(view, 100.0)
    json.dumps(shown, allow_nan=False)
    assert shown["totals"]["connections"] == 5 and shown["totals"]["messages_in"] == 12
    assert shown["latency"]["SLOW"]["p99"] is None  # past the last bucket
    assert shown["topics"] == [("a", 4), ("c", 4), ("b", 1)]
    assert shown["workers"] == [
        {"worker": "0", "pid": 11, "live": True, "connections": 2, "messages_in": 5, "messages_out": 0,
         "restarts": 0},
        {"worker": "1", "pid": None, "live": False, "connections": 3, "messages_in": 7, "messages_out": 0,
         "restarts": 1}]


def test_dashboard_assets_ship_in_the_package_and_load_nothing_from_elsewhere() -> None:
    from uws_py.monitoring.dashboard import ASSETS, asset

    for name, _ in ASSETS.values():
        text = asset(name).decode()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name


def test_the_report_carries_the_dashboards_figures() -> None:
    from uws_py.metrics import Reporter
    from uws_py.monitoring.dashboard import data

    core = {"messages_in": 30, "messages_out": 40, "bytes_in": 0, "bytes_out": 0, "connections_opened": 3, "connections_closed": 0,
            "publishes": 0, "deliveries": 0, "drops": 2, "backpressure_events": 5, "protocol_errors": 0,
            "http_rejections": 0, "idle_timeouts": 0, "header_timeouts": 0, "http_send_timeouts": 0, "open_connections": 3}
    metrics = Metrics(lambda: core)
    now = [100.0]
    reporter = Reporter(metrics, 10, lambda s, f: 1, lambda t: None, clock=lambda: now[0], worker=2)
    reporter.start()
    core["messages_in"] += 50
    metrics.rate_limited = 4
    metrics.refused("401")
    metrics.auth_failure("bad_signature")
    metrics.error("INVALID_MESSAGE")
    metrics.histogram("CHAT").observe(0.0003)
    now[0] += 10
    fields = reporter.fields()
    shown = data(cluster.single({"pid": os.getpid(), "index": 0, "families": snap.take(metrics.registry)}), 0.0)
    totals = shown["totals"]
    assert fields["worker"] == 2 and fields["pid"] == os.getpid()
    assert fields["messages_in_per_s"] == 5.0 and fields["messages_in"] == totals["messages_in"] == 80
    for key in ("connections", "messages_out", "drops", "backpressure_events", "rate_limited", "auth_failures",
                "refused_connections", "recoveries", "errors"):
        assert fields[key] == totals[key], key
    assert fields["handler_p50_ms"] == shown["latency"]["*"]["p50"] == 0.5
    assert figures.format_report(fields).startswith("worker=2 pid=")
