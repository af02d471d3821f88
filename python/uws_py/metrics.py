"""Monitoring: Python-side counters kept cheap per message, core counters read at scrape
time, both exposed in Prometheus text format through prometheus-client."""

from __future__ import annotations

import bisect
import logging
import os
import time
from typing import Any, Callable, Iterable, Optional

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .monitoring.figures import figures, format_report, report_fields
from .monitoring.snapshot import take

_bisect_left = bisect.bisect_left
report_logger = logging.getLogger("uws_py.realtime")

# Sync handlers on the inline path time one call in LATENCY_SAMPLE_EVERY; their call counts
# stay exact (uws_handler_calls_total).
LATENCY_SAMPLE_EVERY = 16
LATENCY_SAMPLE_MASK = LATENCY_SAMPLE_EVERY - 1

# Handler latency buckets, seconds.
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LatencyHistogram:
    """Bucket counts and sum; ``observe`` is a bisect and two additions (no lock: loop thread)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def observe(self, seconds: float) -> None:
        self.counts[_bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile q (0 when empty)."""
        count = self.count
        if not count:
            return 0.0
        rank = max(q * count, 1)
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if n and seen >= rank:
                return LATENCY_BUCKETS[index] if index < len(LATENCY_BUCKETS) else float("inf")
        return float("inf")


class Metrics:
    """What the realtime layer counts, plus the core's counters at scrape time."""

    def __init__(self, core_stats: Callable[[], dict[str, int]],
                 broker_stats: Optional[Callable[[], dict[str, int]]] = None) -> None:
        self.core_stats = core_stats
        self.broker_stats = broker_stats
        self.started = time.time()
        self.latency: dict[str, LatencyHistogram] = {}
        self.routes: dict[str, Any] = {}  # type -> Route, for exact call counts
        self.errors: dict[str, int] = {}
        self.auth_failures: dict[str, int] = {}
        self.refused_connections: dict[str, int] = {}
        self.rate_limited = 0
        self.batches_sent = 0
        # Set once the server has a history pattern: the HistoryMetrics counters, and the
        # in-process store's bytes and topics (None with Redis, whose memory is its own).
        self.history_metrics: Any = None
        self.history_memory: Optional[Callable[[], tuple[int, int]]] = None
        # The PresenceService (its ``local`` store and ``counters``); reported once it has a pattern.
        self.presence: Any = None
        # Set by the server API: (method, HTTP status) -> requests answered.
        self.api_requests: Optional[dict[tuple[str, int], int]] = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def histogram(self, kind: str) -> LatencyHistogram:
        """The latency histogram of message type ``kind`` (created on first use)."""
        histogram = self.latency.get(kind)
        if histogram is None:
            histogram = self.latency[kind] = LatencyHistogram()
        return histogram

    def error(self, code: str) -> None:
        """Counts one ERROR reply with ``code``."""
        self.errors[code] = self.errors.get(code, 0) + 1

    def auth_failure(self, reason: str) -> None:
        """Counts one refused token, by ``reason`` (an AuthError reason, "hook", "expired_live")."""
        self.auth_failures[reason] = self.auth_failures.get(reason, 0) + 1

    def refused(self, status: str) -> None:
        """Counts one refused upgrade, by HTTP ``status`` ("403", "429"...)."""
        self.refused_connections[status] = self.refused_connections.get(status, 0) + 1

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)

    def health(self) -> dict[str, Any]:
        """The /health answer: status, uptime, open connections, pid."""
        stats = self.core_stats()
        return {
            "status": "ok",
            "uptime": round(time.time() - self.started, 3),
            "connections": stats["open_connections"],
            "pid": os.getpid(),
        }


class Reporter:
    """The periodic performance line in the log (``report_interval``): the live dashboard's
    figures for this process, as ``key=value`` pairs (logfmt) after ``perf:``, e.g.::

        perf: worker=0 pid=4242 interval_s=10.0 connections=12 messages_in_per_s=250.3 ...

    With ``--log-format json`` the same fields are also in the entry's ``perf`` object.

    Args:
        metrics: the realtime layer's counters.
        interval: seconds between reports.
        set_timeout: the loop's ``set_timeout(seconds, fn) -> id``.
        clear_timeout: the loop's ``clear_timeout(id)``.
        clock: monotonic seconds (injectable for tests).
        worker: this process's worker index (0 without a supervisor).
    """

    def __init__(self, metrics: Metrics, interval: float, set_timeout: Callable[[float, Callable[[], Any]], int],
                 clear_timeout: Callable[[int], None], clock: Callable[[], float] = time.monotonic,
                 worker: int = 0) -> None:
        self.metrics = metrics
        self.interval = interval
        self.set_timeout = set_timeout
        self.clear_timeout = clear_timeout
        self.clock = clock
        self.worker = worker
        self.timer: Optional[int] = None
        self.last: tuple[float, dict[str, Any]] = (clock(), self.figures())

    def figures(self) -> dict[str, Any]:
        """This process's figures now (as the dashboard computes them)."""
        return figures(take(self.metrics.registry))

    def start(self) -> None:
        """Schedules the first report."""
        self.last = (self.clock(), self.figures())
        self.timer = self.set_timeout(self.interval, self.report)

    def stop(self) -> None:
        """Cancels the next report."""
        if self.timer is not None:
            self.clear_timeout(self.timer)
            self.timer = None

    def fields(self) -> dict[str, Any]:
        """The next report's fields (worker, pid, then :func:`report_fields`); moves the
        interval on."""
        now, current = self.clock(), self.figures()
        then, before = self.last
        self.last = (now, current)
        return {"worker": self.worker, "pid": os.getpid(), **report_fields(before, current, now - then)}

    def report(self) -> None:
        """Logs one line and schedules the next."""
        fields = self.fields()
        report_logger.info("perf: %s", format_report(fields), extra={"perf": fields})
        self.timer = self.set_timeout(self.interval, self.report)


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Any]:
        m = self.metrics
        stats = m.core_stats()
        yield GaugeMetricFamily("uws_connections", "Open WebSocket connections", value=stats["open_connections"])
        for name, key, help_text in (
            ("uws_messages_received", "messages_in", "WebSocket messages received"),
            ("uws_messages_sent", "messages_out", "WebSocket messages sent, publish deliveries included"),
            ("uws_bytes_received", "bytes_in", "Bytes received on WebSockets"),
            ("uws_bytes_sent", "bytes_out", "Bytes sent on WebSockets"),
            ("uws_connections_opened", "connections_opened", "WebSocket connections opened"),
            ("uws_connections_closed", "connections_closed", "WebSocket connections closed"),
            ("uws_publishes", "publishes", "Publish calls"),
            ("uws_deliveries", "deliveries", "Messages delivered by publishes"),
            ("uws_dropped", "drops", "Sends and deliveries dropped over max_backpressure"),
            ("uws_backpressure_events", "backpressure_events", "Sends that found the socket backed up"),
            ("uws_protocol_errors", "protocol_errors", "Connections failed for protocol errors"),
            ("uws_http_rejections", "http_rejections", "HTTP requests and upgrades refused"),
            ("uws_idle_timeouts", "idle_timeouts", "Connections closed for idleness"),
            ("uws_header_timeouts", "header_timeouts", "Connections closed without a complete request head in time"),
            ("uws_http_send_timeouts", "http_send_timeouts",
             "HTTP connections closed because the client took no response bytes within the send timeout"),
        ):
            yield CounterMetricFamily(name, help_text, value=stats[key])
        errors = CounterMetricFamily("uws_errors", "ERROR replies by code", labels=["code"])
        for code, count in sorted(m.errors.items()):
            errors.add_metric([code], count)
        yield errors
        auth = CounterMetricFamily("uws_auth_failures", "Refused tokens by reason", labels=["reason"])
        for reason, count in sorted(m.auth_failures.items()):
            auth.add_metric([reason], count)
        yield auth
        refused = CounterMetricFamily("uws_refused_connections", "Upgrades refused by status", labels=["status"])
        for status, count in sorted(m.refused_connections.items()):
            refused.add_metric([status], count)
        yield refused
        yield CounterMetricFamily("uws_rate_limited", "Messages refused by the rate limit", value=m.rate_limited)
        yield CounterMetricFamily("uws_batches_sent", "BATCH frames sent", value=m.batches_sent)
        calls = CounterMetricFamily("uws_handler_calls", "Handler calls by message type", labels=["type"])
        for kind, route in sorted(m.routes.items()):
            calls.add_metric([kind], route.calls)
        yield calls
        latency = HistogramMetricFamily(
            "uws_handler_seconds",
            f"Handler latency by message type (sync handlers: one call in {LATENCY_SAMPLE_EVERY} sampled)",
            labels=["type"],
        )
        for kind, histogram in sorted(m.latency.items()):
            cumulative = 0
            buckets = []
            for bound, n in zip((*LATENCY_BUCKETS, float("inf")), histogram.counts):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            latency.add_metric([kind], buckets, histogram.total)
        yield latency
        history = m.history_metrics
        if history is not None:
            recoveries = CounterMetricFamily("uws_history_recoveries", "SUBSCRIBE recoveries by outcome",
                                             labels=["outcome"])
            for outcome, count in sorted(history.recoveries.items()):
                recoveries.add_metric([outcome], count)
            yield recoveries
            yield CounterMetricFamily("uws_history_publications_recovered", "Publications returned by recoveries",
                                      value=history.publications_recovered)
            yield CounterMetricFamily("uws_history_gaps_detected",
                                      "Breaks of continuity seen in broker deliveries (offset jump, reconnect)",
                                      value=history.gaps_detected)
            yield CounterMetricFamily("uws_history_gaps_filled",
                                      "Offset jumps in broker deliveries filled from the history by the worker",
                                      value=history.gaps_filled)
            yield CounterMetricFamily("uws_history_topics_evicted", "Topics evicted over the history memory cap",
                                      value=history.topics_evicted)
            if m.history_memory is not None:
                memory_bytes, topics = m.history_memory()
                yield GaugeMetricFamily("uws_history_memory_bytes", "Bytes of history kept in this process",
                                        value=memory_bytes)
                yield GaugeMetricFamily("uws_history_topics", "Topics with history state in this process",
                                        value=topics)
        presence = m.presence
        if presence:
            yield GaugeMetricFamily("uws_presence_entries", "Presence entries of this worker's clients",
                                    value=presence.local.size)
            yield GaugeMetricFamily("uws_presence_topics", "Presence topics with clients of this worker",
                                    value=len(presence.local.topics))
            counters = presence.counters
            yield CounterMetricFamily("uws_presence_diffs_sent", "PRESENCE_DIFFs sent to this worker's subscribers "
                                      "(one per topic per flush)", value=counters.diffs_sent)
            yield CounterMetricFamily("uws_presence_diffs_broadcast", "PRESENCE_DIFFs sent to the other workers",
                                      value=counters.diffs_broadcast)
            yield CounterMetricFamily("uws_presence_expired_removed",
                                      "Entries of workers that stopped refreshing, removed by this one",
                                      value=counters.expired_removed)
            yield CounterMetricFamily("uws_presence_refreshes", "Refreshes of this worker's entries in Redis",
                                      value=counters.refreshes)
        if m.api_requests is not None:
            requests = CounterMetricFamily("uws_api_requests", "Server API requests answered, by method and HTTP "
                                           "status (method 'unknown' for a name that is none)",
                                           labels=["method", "status"])
            for (method, status), count in sorted(m.api_requests.items()):
                requests.add_metric([method, str(status)], count)
            yield requests
        if m.broker_stats is not None:
            broker = m.broker_stats()
            yield GaugeMetricFamily("uws_broker_connected", "1 while the broker connection is up", value=broker["connected"])
            for key in ("published", "received", "publish_failures", "reconnects"):
                yield CounterMetricFamily(f"uws_broker_{key}", f"Broker {key.replace('_', ' ')}", value=broker[key])
