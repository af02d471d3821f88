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


def exercise(port: int, clients: list, rounds: int = 1) -> None:
    """Traffic that moves every dashboard metric of monitoring_app: handler calls, publishes
    (plain and history), a recovery, an ERROR, rate-limit refusals, a refused token.

    Args:
        port: the server's port.
        clients: open RealtimeClients (authenticated); the first floods past the rate limit.
        rounds: how many times.
    """
    from . import wsclient
    from .monitoring_app import RATE_LIMIT, token
    from .procutil import HOST

    for round_number in range(rounds):
        for number, client in enumerate(clients[1:], 1):
            assert client.request({"type": "ECHO", "text": f"r{round_number}"})["type"] == "ECHOED"
            client.publish(f"plain.{number % 3}", {"n": round_number})
            published = client.request({"type": "PUBLISH", "topic": f"hist.{number}", "data": round_number})
            assert published["type"] == "PUBLISHED", published
            recovered = client.request({"type": "SUBSCRIBE", "topic": f"hist.{number}", "recover": True,
                                        "since": {"epoch": published["epoch"], "offset": 0}})
            assert recovered["type"] == "SUBSCRIBED", recovered
            client.unsubscribe(f"hist.{number}")
            assert client.request({"type": "NO_SUCH_TYPE"})["type"] == "ERROR"
        flooder = clients[0]
        for _ in range(RATE_LIMIT + 5):
            flooder.send({"type": "PING"})
        try:
            wsclient.connect(HOST, port, "/realtime?token=" + token(secret="not the server's secret, 32 bytes"))
        except wsclient.HandshakeRefused:
            pass
        else:
            raise AssertionError("a token with a wrong signature was accepted")


def drain(clients: list) -> None:
    """Reads whatever the clients were sent, so that their sockets never back up."""
    import contextlib

    for client in clients:
        with contextlib.suppress(TimeoutError):
            while True:
                client.ws.recv_message(0.001)
