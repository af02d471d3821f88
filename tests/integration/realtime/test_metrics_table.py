"""docs/reference/metrics.md lists exactly the metrics a live server exports (issue 12,
defect 4): a server with every optional part (a route, a history pattern, a broker) is
scraped, and the names in the scrape and in the table must be the same set."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.realtime import realtime_server
from uws_py.broker import Broker

TABLE = Path(__file__).resolve().parents[3] / "docs" / "reference" / "metrics.md"


class IdleBroker(Broker):
    """A broker that connects nowhere: only its stats() are read here."""

    def start(self, deliver, schedule, *, deliver_positioned=None, on_connection=None):
        pass

    def subscribe(self, topic, ready=None):
        pass

    def unsubscribe(self, topic):
        pass

    def publish(self, topic, payload, done=None):
        pass

    def stop(self):
        pass

    def stats(self):
        return {"published": 0, "received": 0, "publish_failures": 0, "reconnects": 0, "connected": 0}


def documented_metrics() -> dict[str, str]:
    """name -> type, from the table's rows."""
    rows = re.findall(r"^\| `(uws_[a-z_]+)` \| (counter|gauge|histogram) \|", TABLE.read_text(), re.MULTILINE)
    assert len(rows) > 20, f"the table in {TABLE} was not found"
    return dict(rows)


def exported_metrics(body: str) -> dict[str, str]:
    """name -> type, from the scrape's # TYPE lines (every family has one, samples or not)."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.MULTILINE))


def test_metrics_table_matches_a_live_scrape(serve):
    with_history = realtime_server(api_key="metrics-table-api-key-0123")
    with_history.history("chat.*")

    @with_history.on("ECHO")
    def echo(client, message):
        return {"type": "ECHOED"}

    with_broker = realtime_server(broker=IdleBroker())

    exported: dict[str, str] = {}
    for server in (with_history, with_broker):
        live = serve(server)
        client, _ = live.join()
        client.send_text(b'{"type":"ECHO"}')
        response = live.http_get("/metrics")
        assert response.status == 200
        exported.update(exported_metrics(response.body.decode()))
    documented = documented_metrics()
    assert sorted(set(exported) - set(documented)) == [], "exported but not in docs/reference/metrics.md"
    assert sorted(set(documented) - set(exported)) == [], "in docs/reference/metrics.md but not exported"
    assert exported == documented, "types differ"
