"""uws_py.metrics: LatencyHistogram, and Metrics rendered as Prometheus text with a fake core."""

from __future__ import annotations

import math
import os
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from uws_py.metrics import LATENCY_BUCKETS, LatencyHistogram, Metrics

CORE_COUNTERS = {
    "uws_messages_received": "messages_in",
    "uws_messages_sent": "messages_out",
    "uws_bytes_received": "bytes_in",
    "uws_bytes_sent": "bytes_out",
    "uws_connections_opened": "connections_opened",
    "uws_connections_closed": "connections_closed",
    "uws_publishes": "publishes",
    "uws_deliveries": "deliveries",
    "uws_dropped": "drops",
    "uws_backpressure_events": "backpressure_events",
    "uws_protocol_errors": "protocol_errors",
    "uws_http_rejections": "http_rejections",
    "uws_idle_timeouts": "idle_timeouts",
    "uws_header_timeouts": "header_timeouts",
    "uws_http_send_timeouts": "http_send_timeouts",
}


def fake_core_stats() -> dict[str, int]:
    stats = {key: 100 + index for index, key in enumerate(CORE_COUNTERS.values())}
    stats["open_connections"] = 7
    return stats


def parse(metrics: Metrics) -> dict[str, Any]:
    text = metrics.render()
    assert isinstance(text, bytes)
    return {family.name: family for family in text_string_to_metric_families(text.decode())}


def samples(family: Any) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}


# -- LatencyHistogram ---------------------------------------------------------------------


def test_empty_histogram_quantile_is_zero() -> None:
    histogram = LatencyHistogram()
    assert (histogram.quantile(0.5), histogram.quantile(0.99), histogram.count) == (0.0, 0.0, 0)


def test_quantiles_are_bucket_upper_bounds() -> None:
    histogram = LatencyHistogram()
    for _ in range(90):
        histogram.observe(0.0003)  # (0.00025, 0.0005]
    for _ in range(9):
        histogram.observe(0.02)  # (0.01, 0.025]
    histogram.observe(0.7)  # (0.5, 1.0]
    assert histogram.count == 100
    assert histogram.total == pytest.approx(90 * 0.0003 + 9 * 0.02 + 0.7)
    assert histogram.quantile(0.5) == 0.0005
    assert histogram.quantile(0.9) == 0.0005
    assert histogram.quantile(0.95) == 0.025
    assert histogram.quantile(0.99) == 0.025
    assert histogram.quantile(1.0) == 1.0


def test_bucket_bounds_are_inclusive() -> None:
    histogram = LatencyHistogram()
    histogram.observe(LATENCY_BUCKETS[3])
    assert histogram.counts[3] == 1
    assert histogram.quantile(0.5) == LATENCY_BUCKETS[3]


def test_observations_past_the_last_bucket_are_infinite() -> None:
    histogram = LatencyHistogram()
    histogram.observe(30.0)
    assert histogram.counts[-1] == 1
    assert math.isinf(histogram.quantile(0.5))


def test_quantile_zero_is_the_bucket_of_the_smallest_observation() -> None:
    histogram = LatencyHistogram()
    histogram.observe(0.3)  # (0.25, 0.5]
    histogram.observe(0.4)
    assert histogram.quantile(0.0) == 0.5


def test_quantiles_are_monotonic() -> None:
    histogram = LatencyHistogram()
    for index in range(1000):
        histogram.observe((index % 97) / 1000.0)
    quantiles = [histogram.quantile(q / 100) for q in range(1, 101)]
    assert quantiles == sorted(quantiles)


# -- Metrics ------------------------------------------------------------------------------


def test_render_is_valid_prometheus_text_with_core_counters() -> None:
    families = parse(Metrics(fake_core_stats))
    stats = fake_core_stats()
    assert families["uws_connections"].type == "gauge"
    assert samples(families["uws_connections"]) == {("uws_connections", ()): 7.0}
    for name, key in CORE_COUNTERS.items():
        assert families[name].type == "counter"
        assert samples(families[name]) == {(name + "_total", ()): float(stats[key])}


def test_render_reads_the_core_at_scrape_time() -> None:
    stats = fake_core_stats()
    metrics = Metrics(lambda: stats)
    stats["open_connections"] = 1
    assert parse(metrics)["uws_connections"].samples[0].value == 1.0
    stats["open_connections"] = 2
    assert parse(metrics)["uws_connections"].samples[0].value == 2.0


def test_render_with_no_python_side_activity() -> None:
    families = parse(Metrics(fake_core_stats))
    for name in ("uws_errors", "uws_auth_failures", "uws_refused_connections"):
        assert families[name].samples == []
    assert samples(families["uws_rate_limited"]) == {("uws_rate_limited_total", ()): 0.0}
    assert samples(families["uws_batches_sent"]) == {("uws_batches_sent_total", ()): 0.0}
    assert families["uws_handler_seconds"].samples == []


def test_render_python_side_counters() -> None:
    metrics = Metrics(fake_core_stats)
    for code in ("INVALID_MESSAGE", "INVALID_MESSAGE", "RATE_LIMITED"):
        metrics.error(code)
    metrics.auth_failure("expired")
    metrics.auth_failure("signature")
    metrics.auth_failure("expired")
    metrics.refused("503")
    metrics.refused("429")
    metrics.refused("429")
    metrics.rate_limited = 4
    metrics.batches_sent = 9
    families = parse(metrics)
    assert samples(families["uws_errors"]) == {
        ("uws_errors_total", (("code", "INVALID_MESSAGE"),)): 2.0,
        ("uws_errors_total", (("code", "RATE_LIMITED"),)): 1.0,
    }
    assert samples(families["uws_auth_failures"]) == {
        ("uws_auth_failures_total", (("reason", "expired"),)): 2.0,
        ("uws_auth_failures_total", (("reason", "signature"),)): 1.0,
    }
    assert samples(families["uws_refused_connections"]) == {
        ("uws_refused_connections_total", (("status", "429"),)): 2.0,
        ("uws_refused_connections_total", (("status", "503"),)): 1.0,
    }
    assert samples(families["uws_rate_limited"]) == {("uws_rate_limited_total", ()): 4.0}
    assert samples(families["uws_batches_sent"]) == {("uws_batches_sent_total", ()): 9.0}


def test_render_handler_histograms() -> None:
    metrics = Metrics(fake_core_stats)
    assert metrics.histogram("chat") is metrics.histogram("chat")
    for seconds in (0.00004, 0.0003, 0.0003, 0.2, 9.0):
        metrics.histogram("chat").observe(seconds)
    metrics.histogram("ping").observe(0.001)
    family = parse(metrics)["uws_handler_seconds"]
    assert family.type == "histogram"
    chat = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket") and s.labels["type"] == "chat"}
    assert len(chat) == len(LATENCY_BUCKETS) + 1
    assert float(min(chat, key=float)) == LATENCY_BUCKETS[0]
    assert chat[min(chat, key=float)] == 1.0
    assert chat["+Inf"] == 5.0
    values = [chat[le] for le in sorted(chat, key=float)]
    assert values == sorted(values)  # cumulative
    by_name = samples(family)
    assert by_name[("uws_handler_seconds_count", (("type", "chat"),))] == 5.0
    assert by_name[("uws_handler_seconds_sum", (("type", "chat"),))] == pytest.approx(0.00004 + 0.0006 + 0.2 + 9.0)
    assert by_name[("uws_handler_seconds_count", (("type", "ping"),))] == 1.0


def test_render_escapes_label_values() -> None:
    metrics = Metrics(fake_core_stats)
    metrics.histogram('odd "type"\\with\nnewline').observe(0.001)
    family = parse(metrics)["uws_handler_seconds"]
    assert {s.labels["type"] for s in family.samples} == {'odd "type"\\with\nnewline'}


def test_two_metrics_objects_do_not_share_a_registry() -> None:
    first, second = Metrics(fake_core_stats), Metrics(fake_core_stats)
    first.error("INTERNAL")
    assert parse(second)["uws_errors"].samples == []


def test_health() -> None:
    stats = fake_core_stats()
    metrics = Metrics(lambda: stats)
    health = metrics.health()
    assert set(health) == {"status", "uptime", "connections", "pid"}
    assert health["status"] == "ok"
    assert health["connections"] == 7
    assert health["pid"] == os.getpid()
    assert 0.0 <= health["uptime"] < 60.0
    metrics.started = time.time() - 12.5
    assert metrics.health()["uptime"] == pytest.approx(12.5, abs=0.1)
