"""Scraping a running server's /metrics into comparable values, for the monitoring tests."""

from __future__ import annotations

from typing import Optional

from prometheus_client.parser import text_string_to_metric_families

from .procutil import http_get

Key = tuple  # (sample name, sorted label pairs)


def scrape(port: int, path: str = "/metrics") -> dict:
    """One scrape on a new connection: {"types": family -> type, "samples": Key -> value}."""
    response = http_get(port, path)
    assert response.status == 200, response
    types, samples = {}, {}
    for family in text_string_to_metric_families(response.body.decode()):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return {"types": types, "samples": samples}


def value(scraped: dict, name: str, **labels: str) -> Optional[float]:
    """One sample's value, or None when the scrape does not have it."""
    return scraped["samples"].get((name, tuple(sorted(labels.items()))))


def counter_samples(scraped: dict) -> dict:
    """The samples of counter and histogram families (those that must never decrease)."""
    cumulative = {name for name, kind in scraped["types"].items() if kind in ("counter", "histogram")}
    out = {}
    for key, sample_value in scraped["samples"].items():
        name = key[0]
        for suffix in ("_total", "_bucket", "_count", "_sum", ""):
            if suffix and name.endswith(suffix) and name[: -len(suffix)] in cumulative:
                out[key] = sample_value
                break
            if not suffix and name in cumulative:
                out[key] = sample_value
    return out


def assert_not_decreasing(before: dict, after: dict) -> None:
    """Every counter sample of ``before`` is in ``after`` with a value at least as large."""
    went_back = {key: (before[key], after.get(key)) for key in before
                 if after.get(key) is None or after[key] < before[key]}
    assert not went_back, f"counters went back (before, after): {went_back}"
