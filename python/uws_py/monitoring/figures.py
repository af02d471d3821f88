"""The figures the live dashboard shows and the periodic report logs, computed from one
metric snapshot (one worker's, or the whole server's): one owner for both, so they agree."""

from __future__ import annotations

from typing import Any, Iterable

from .snapshot import Family

# Latency quantiles shown: the upper bound of the histogram bucket holding each one, as
# LatencyHistogram.quantile reports it.
QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def _total(families: dict[str, Family], family: str, sample: str) -> float:
    entry = families.get(family)
    if entry is None:
        return 0.0
    return sum(value for name, _, value in entry["samples"] if name == sample)


def _by_label(families: dict[str, Family], family: str, sample: str, label: str) -> dict[str, float]:
    entry = families.get(family)
    out: dict[str, float] = {}
    if entry is not None:
        for name, labels, value in entry["samples"]:
            if name == sample and label in labels:
                out[labels[label]] = out.get(labels[label], 0.0) + value
    return out


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` of cumulative ``(le, count)``
    buckets (sorted by ``le``; 0 when empty, ``inf`` past the last finite bound)."""
    if not buckets or buckets[-1][1] <= 0:
        return 0.0
    rank = max(q * buckets[-1][1], 1)
    for bound, cumulative in buckets:
        if cumulative >= rank:
            return bound
    return float("inf")


def latency(families: dict[str, Family]) -> dict[str, dict[str, float]]:
    """Per message type: calls timed and p50/p95/p99 in milliseconds; ``"*"`` is every type."""
    entry = families.get("uws_handler_seconds")
    per_type: dict[str, dict[float, float]] = {}
    if entry is not None:
        for name, labels, value in entry["samples"]:
            if name.endswith("_bucket"):
                bound = float(labels["le"])
                for kind in (labels.get("type", ""), "*"):
                    buckets = per_type.setdefault(kind, {})
                    buckets[bound] = buckets.get(bound, 0.0) + value
    out: dict[str, dict[str, float]] = {}
    for kind, buckets in sorted(per_type.items()):
        ordered = sorted(buckets.items())
        row = {"count": ordered[-1][1] if ordered else 0.0}
        for name, q in QUANTILES:
            row[name] = bucket_quantile(ordered, q) * 1000
        out[kind] = row
    if "*" not in out:
        out["*"] = {"count": 0.0, **{name: 0.0 for name, _ in QUANTILES}}
    return out


def figures(families: Iterable[Family]) -> dict[str, Any]:
    """The dashboard's and the report's numbers from a snapshot: totals (counters as they
    are, rates are the caller's: two figures and the seconds between them) and latency."""
    by_name = {family["name"]: family for family in families}
    recoveries = _by_label(by_name, "uws_history_recoveries", "uws_history_recoveries_total", "outcome")
    return {
        "connections": _total(by_name, "uws_connections", "uws_connections"),
        "messages_in": _total(by_name, "uws_messages_received", "uws_messages_received_total"),
        "messages_out": _total(by_name, "uws_messages_sent", "uws_messages_sent_total"),
        "drops": _total(by_name, "uws_dropped", "uws_dropped_total"),
        "backpressure_events": _total(by_name, "uws_backpressure_events", "uws_backpressure_events_total"),
        "rate_limited": _total(by_name, "uws_rate_limited", "uws_rate_limited_total"),
        "auth_failures": _total(by_name, "uws_auth_failures", "uws_auth_failures_total"),
        "refused_connections": _total(by_name, "uws_refused_connections", "uws_refused_connections_total"),
        "errors": _total(by_name, "uws_errors", "uws_errors_total"),
        "recoveries": sum(recoveries.values()),
        "recoveries_by_outcome": recoveries,
        "latency": latency(by_name),
    }


def rate(before: dict[str, Any], after: dict[str, Any], key: str, seconds: float) -> float:
    """Per second of counter ``key`` between two figures (0 for a counter that went back)."""
    return max(after[key] - before[key], 0.0) / max(seconds, 1e-9)


# The report's fields in the order of the line; each is a figure of the dashboard.
REPORT_COUNTERS = ("drops", "backpressure_events", "rate_limited", "auth_failures", "refused_connections",
                   "recoveries", "errors")


def report_fields(before: dict[str, Any], after: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The periodic report's fields: the dashboard's figures of ``after``, with the message
    rates over the ``seconds`` since ``before``.

    Args:
        before: the figures at the previous report (or at start).
        after: the figures now.
        seconds: the time between them.
    """
    every_type = after["latency"]["*"]
    fields: dict[str, Any] = {
        "interval_s": round(seconds, 3),
        "connections": int(after["connections"]),
        "messages_in_per_s": round(rate(before, after, "messages_in", seconds), 1),
        "messages_out_per_s": round(rate(before, after, "messages_out", seconds), 1),
        "messages_in": int(after["messages_in"]),
        "messages_out": int(after["messages_out"]),
    }
    for name, _ in QUANTILES:
        value = every_type[name]
        fields[f"handler_{name}_ms"] = round(value, 3) if value != float("inf") else None
    for key in REPORT_COUNTERS:
        fields[key] = int(after[key])
    return fields


def format_report(fields: dict[str, Any]) -> str:
    """``key=value`` pairs separated by spaces (logfmt); a quantile past the last bucket is
    ``inf``."""
    return " ".join(f"{key}={'inf' if value is None else value}" for key, value in fields.items())
