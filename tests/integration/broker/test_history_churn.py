"""Issue 13 test 5, the short variant: 400 publishes/s to a history topic for 6 s while 10 raw
clients keep cutting their TCP connection (0.3-1.5 s connected, 0.05-0.4 s away) and
recovering with ``since``; every client must end with offsets 1..last, each exactly once, and
every recovery must answer ``recovered: true``. Run in one `uws-py serve` process (history in
memory) and across two `uws-py serve --broker` processes sharing a real redis-server (the
subscribers alternate between them, the publisher is on the second).

The full size (2,000/s, 50 clients, 30 s) is bench/recovery_churn.py, with its output in
bench/results/; both run the scenario of tests/support/churn.py.
"""

from __future__ import annotations

import os

import pytest

from tests.support.churn import ChurnParams, churn
from tests.support.procutil import RedisServer, UwsServer, metric_value, wait_until

PARAMS = ChurnParams(rate=400.0, clients=10, duration=6.0, settle=15.0)
SERVE = ("--no-access-log", "--rate-limit", "off", "--history", "chat.*:5000:300")


@pytest.mark.parametrize("mode", ["single", "broker"])
def test_churning_clients_each_end_with_every_offset_exactly_once(mode):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    hubs: list = []
    redis_server = RedisServer().start() if mode == "broker" else None
    try:
        if redis_server is not None:
            hubs = [UwsServer("--broker", redis_server.url, *SERVE, env=env) for _ in range(2)]
            for hub in hubs:
                wait_until(lambda hub=hub: metric_value(hub.port, "uws_broker_connected") == 1,
                           f"broker of pid {hub.pid} connected", timeout=15.0)
        else:
            hubs = [UwsServer(*SERVE, env=env)]
        ports = [hub.port for hub in hubs]
        result = churn(ports, ports[-1], PARAMS, path=hubs[0].path or "/realtime")
    finally:
        for hub in hubs:
            hub.stop()
        if redis_server is not None:
            redis_server.cleanup()

    summary = result.as_dict()
    assert result.published >= PARAMS.rate * PARAMS.duration * 0.9, summary
    assert result.publish_errors == 0 and result.last_offset == result.published, summary
    assert result.recoveries >= PARAMS.clients, summary  # every client did cut and recover
    assert (result.missing, result.duplicates, result.out_of_order) == (0, 0, 0), summary
    assert (result.recovered_false, result.errors) == (0, []), summary
    assert result.clients_at_last_offset == PARAMS.clients, summary
    assert result.delivered + result.recovered == result.published * PARAMS.clients, summary
