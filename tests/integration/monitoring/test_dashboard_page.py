"""The live dashboard page in headless Chromium (Debian's, driven by Playwright) against a
server of 2 workers under load: it loads nothing from anywhere but the server, its numbers
change every second, and once the load stops they equal what /metrics says.

The screenshot goes to the test's temporary directory; with UWS_PY_DOCS_SCREENSHOT=1 the test
also lets the load run 40 s more and replaces docs/howto/img/dashboard.png with the page under
load (how the picture in the monitoring how-to is made).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.support.monitoring import drain, exercise, scrape, value
from tests.support.monitoring_app import token
from tests.support.procutil import HOST, RealtimeClient, UwsServer, http_get, wait_until

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DASHBOARD_TOKEN = "monitoring-test-dashboard-token-0123"
CLIENTS = 6

# The page's element id -> the /metrics sample it shows (summed over labels).
SHOWN = {
    "connections": "uws_connections",
    "messages-in": "uws_messages_received_total",
    "messages-out": "uws_messages_sent_total",
    "drops": "uws_dropped_total",
    "backpressure-events": "uws_backpressure_events_total",
    "rate-limited": "uws_rate_limited_total",
    "auth-failures": "uws_auth_failures_total",
    "refused-connections": "uws_refused_connections_total",
    "recoveries": "uws_history_recoveries_total",
    "errors": "uws_errors_total",
}


def metrics_totals(port: int) -> dict:
    scraped = scrape(port)
    totals = {}
    for element, sample in SHOWN.items():
        totals[element] = sum(v for (name, _), v in scraped["samples"].items() if name == sample)
    return totals


def page_totals(page) -> dict:
    return {element: float(page.get_attribute(f"#{element}", "data-value") or "nan") for element in SHOWN}


def test_dashboard_page_updates_and_matches_metrics(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    env["MONITORING_TEST_DASHBOARD_TOKEN"] = DASHBOARD_TOKEN
    with UwsServer("tests.support.monitoring_app:build", "--workers", "2", "--no-access-log",
                   env=env, cwd=str(ROOT)) as server:
        wait_until(lambda: value(scrape(server.port), "uws_workers") == 2, "both workers answering")
        assert http_get(server.port, "/dashboard/data").status == 401
        clients = [RealtimeClient(server.port, path="/realtime?token=" + token(f"u{n}")) for n in range(CLIENTS)]
        for number, client in enumerate(clients):
            for topic in range(number + 1):  # topic t has CLIENTS - t subscribers
                client.subscribe(f"room.{topic}")
        stop = threading.Event()
        failures: list = []

        def load() -> None:
            try:
                while not stop.is_set():
                    exercise(server.port, clients)
                    drain(clients)
                    stop.wait(1.2)
            except BaseException as exc:
                failures.append(exc)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        origin = f"http://{HOST}:{server.port}"
        requested: list = []
        try:
            with sync_playwright() as playwright:
                context = playwright.chromium.launch_persistent_context(
                    str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
                    args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 1100})
                try:
                    page = context.new_page()
                    page.on("request", lambda request: requested.append(request.url))
                    page.goto(f"{origin}/dashboard?token={DASHBOARD_TOKEN}")
                    page.wait_for_selector("#board:not([hidden])", timeout=10_000)
                    assert "token=" not in page.url  # taken out of the address bar

                    # Under load: the totals move from one update to the next.
                    seen = []
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline and len({s["messages-in"] for s in seen}) < 3:
                        page.wait_for_timeout(1000)
                        seen.append(page_totals(page))
                    assert len({s["messages-in"] for s in seen}) >= 3, seen
                    assert seen[-1]["rate-limited"] > 0 and seen[-1]["recoveries"] > 0, seen[-1]
                    assert float(page.inner_text("#messages-in-rate").replace(",", "")) > 0
                    assert page.locator("#latency tbody tr", has_text="ECHO").count() == 1
                    assert page.inner_text("#topics tbody tr:first-child").split() == ["room.0", str(CLIENTS)]
                    assert page.locator("#workers tbody tr").count() == 2
                    assert not failures, failures
                    if os.environ.get("UWS_PY_DOCS_SCREENSHOT") == "1":
                        page.wait_for_timeout(40_000)  # charts with some history, for the docs
                        page.screenshot(path=str(ROOT / "docs" / "howto" / "img" / "dashboard.png"), full_page=True)

                    # Load stopped: the page settles on exactly what /metrics says.
                    stop.set()
                    loader.join(10)
                    assert not failures, failures
                    expected = wait_until(lambda: (lambda a, b: a if a == b else None)(
                        metrics_totals(server.port), metrics_totals(server.port)), "the counters settled")

                    def matches():
                        shown = page_totals(page)
                        return shown if shown == expected else None

                    try:
                        wait_until(matches, "the page showing the /metrics totals", timeout=5)
                    except AssertionError:
                        raise AssertionError(f"page {page_totals(page)} != /metrics {expected}") from None
                    assert expected["connections"] == CLIENTS
                    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
                finally:
                    context.close()
        finally:
            stop.set()
            loader.join(10)
        foreign = [url for url in requested if not url.startswith(origin + "/")]
        assert not foreign, f"the page loaded from elsewhere: {foreign}"
        assert any(url.endswith("/dashboard/dashboard.js") for url in requested)


def test_the_hub_serves_the_dashboard_with_dashboard_token_only():
    import json

    from tests.support import wsclient

    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    with UwsServer("--no-access-log", env=env) as server:
        assert http_get(server.port, "/dashboard").status == 404
    env["UWS_PY_DASHBOARD_TOKEN"] = DASHBOARD_TOKEN
    with UwsServer("--no-access-log", "--dashboard-path", "/ops/live", env=env) as server:
        page = http_get(server.port, "/ops/live")
        assert page.status == 200 and b'src="/ops/live/dashboard.js"' in page.body
        assert http_get(server.port, "/ops/live/dashboard.css").status == 200
        refused = http_get(server.port, "/ops/live/data")
        assert refused.status == 401
        RealtimeClient(server.port).close()
        request = (f"GET /ops/live/data HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {DASHBOARD_TOKEN}\r\n"
                   "Connection: close\r\n\r\n").encode()
        answer = wsclient.raw_http(HOST, server.port, request, 5.0)
        assert answer.status == 200, answer
        shown = json.loads(answer.body)
        assert shown["totals"]["connections"] in (0, 1) and shown["workers"][0]["worker"] == "0"
