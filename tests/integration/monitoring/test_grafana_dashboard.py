"""dashboards/uws-py.json against a real Prometheus scraping a live server (2 workers) under
load: the file is an importable Grafana dashboard, and every PromQL expression in it returns
data through Prometheus's HTTP API."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path

from tests.support.monitoring import drain, exercise, scrape, value
from tests.support.monitoring_app import token
from tests.support.procutil import HOST, RealtimeClient, UwsServer, wait_until
from tests.support.prometheus import PrometheusServer

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "dashboards" / "uws-py.json"
SCRAPE_INTERVAL = 1.0
# What Grafana puts for $__rate_interval: four scrape intervals at least.
RATE_INTERVAL = "4s"


def expressions(dashboard: dict) -> list:
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"]))
    return found


def test_dashboard_json_is_importable_with_the_datasource_as_a_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    assert "__inputs" not in dashboard and "id" not in dashboard  # imports as it is, no id clash
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]


def test_every_dashboard_expression_returns_data_from_a_real_prometheus():
    dashboard = json.loads(DASHBOARD.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    with UwsServer("tests.support.monitoring_app:build", "--workers", "2", "--no-access-log",
                   env=env, cwd=str(ROOT)) as server:
        wait_until(lambda: value(scrape(server.port), "uws_workers") == 2, "both workers answering")
        clients = [RealtimeClient(server.port, path="/realtime?token=" + token(f"u{n}")) for n in range(6)]
        stop = threading.Event()
        failures: list = []

        def load() -> None:
            try:
                while not stop.is_set():
                    exercise(server.port, clients)
                    drain(clients)
                    stop.wait(1.2)  # under the rate limit for every client but the flooder
            except BaseException as exc:  # reported by the test below
                failures.append(exc)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        try:
            with PrometheusServer([f"{HOST}:{server.port}"], SCRAPE_INTERVAL) as prometheus:
                wait_until(lambda: prometheus.query('up{job="uws-py"}') and
                           prometheus.query('up{job="uws-py"}')[0]["value"][1] == "1", "the server scraped", 15)
                empty = {}
                deadline = time.monotonic() + 20
                pending = expressions(dashboard)
                while pending and time.monotonic() < deadline:
                    assert not failures, failures
                    still = []
                    for title, expression in pending:
                        result = prometheus.query(expression.replace("$__rate_interval", RATE_INTERVAL))
                        numbers = [float(sample["value"][1]) for sample in result]
                        if not numbers or all(math.isnan(n) for n in numbers):
                            still.append((title, expression))
                            empty[expression] = result
                    pending = still
                    if pending:
                        time.sleep(SCRAPE_INTERVAL)
                assert not pending, f"no data for: {pending}; last results {[empty[e] for _, e in pending]}"
        finally:
            stop.set()
            loader.join(10)
        assert not failures, failures
