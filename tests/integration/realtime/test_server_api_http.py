"""The server API over real HTTP in one process: under run() (LiveServer) and under serve()
(ServingThread), its 4xx answers, and a publish reaching a WebSocket subscriber."""

from __future__ import annotations

import pytest

from tests.support.api_client import api_call, api_result
from tests.support.procutil import run_uws_py
from tests.support.realtime import ServingThread, make_token, metric, realtime_server, recv_json, request, scrape
from uws_py import RealtimeServer

KEY = "integration-api-key-0123456789"


def test_the_api_is_off_by_default(serve):
    live = serve(realtime_server())
    status, _ = api_call(live.port, "info", {}, KEY)
    assert status == 404


def test_under_run_every_refusal_has_its_status_and_code(serve):
    live = serve(realtime_server(api_key=KEY))
    cases = [
        (dict(method="info", params={}, key=None), 401, "UNAUTHORIZED"),
        (dict(method="info", params={}, key="x" * len(KEY)), 401, "UNAUTHORIZED"),
        (dict(method="info", key=KEY, http_method="GET"), 405, "METHOD_NOT_ALLOWED"),
        (dict(method="info", params={}, key=KEY, http_method="PUT"), 405, "METHOD_NOT_ALLOWED"),
        (dict(method="no_such", params={}, key=KEY), 404, "NOT_FOUND"),
        (dict(method="info/extra", params={}, key=KEY), 404, "NOT_FOUND"),
        (dict(method="publish", raw=b'{"topic": "a", "data": ', key=KEY), 400, "BAD_REQUEST"),
        (dict(method="publish", raw=b"[]", key=KEY), 400, "BAD_REQUEST"),
        (dict(method="publish", raw=b'{"topic": "a", "data": "' + b"x" * 70_000 + b'"}', key=KEY), 413,
         "PAYLOAD_TOO_LARGE"),
    ]
    for call, status, code in cases:
        got_status, answer = api_call(live.port, **call)
        assert (got_status, answer["error"]["code"]) == (status, code), (call.get("method"), answer)
    assert api_result(live.port, "publish", {"topic": "a", "data": 1}, KEY) == {}
    samples = scrape(live)
    assert metric(samples, "uws_api_requests_total", method="publish", status="200") == 1
    assert metric(samples, "uws_api_requests_total", method="publish", status="400") == 2
    assert metric(samples, "uws_api_requests_total", method="info", status="401") == 2
    assert metric(samples, "uws_api_requests_total", method="unknown", status="404") == 2


def test_under_run_a_publish_reaches_a_subscriber_and_a_retry_with_its_key_publishes_once(serve):
    server = realtime_server(api_key=KEY)
    server.history("h.*")
    live = serve(server)
    client = live.connect(make_token("alice"))
    recv_json(client)
    assert request(client, {"type": "SUBSCRIBE", "topic": "h.1", "id": 1})["type"] == "SUBSCRIBED"
    first = api_result(live.port, "publish", {"topic": "h.1", "data": "x", "idempotency_key": "once"}, KEY)
    assert api_result(live.port, "publish", {"topic": "h.1", "data": "x", "idempotency_key": "once"}, KEY) == first
    message = recv_json(client)
    assert (message["data"], message["offset"]) == ("x", first["offset"])
    assert request(client, {"type": "PING", "id": 2})["type"] == "PONG"  # and no second MESSAGE before it
    assert api_result(live.port, "disconnect", {"user": "alice", "code": 4000}, KEY) == {}


def test_under_serve_the_api_answers_without_blocking_the_loop():
    server = RealtimeServer(api_key=KEY, rate_limit=None)
    server.enable_presence("room.*")
    served = ServingThread(server)
    try:
        assert api_result(served.port, "presence_stats", {"topic": "room.1"}, KEY) == {"numClients": 0, "numUsers": 0}
        (worker,) = api_result(served.port, "info", {}, KEY)["workers"]
        assert worker["connections"] == 0
        assert api_result(served.port, "batch", {"commands": [{"method": "channels"}]}, KEY) == \
            {"replies": [{"result": {"channels": {}}}]}
    finally:
        served.stop()


def test_a_short_api_key_is_refused_at_construction_and_by_the_cli():
    with pytest.raises(ValueError, match="api_key"):
        RealtimeServer(api_key="short")
    with pytest.raises(ValueError, match="api_path"):
        RealtimeServer(api_key=KEY, api_path="api")
    done = run_uws_py("serve", "--api-key", "short", "--port", "0")
    assert done.returncode != 0 and "--api-key" in done.stderr
