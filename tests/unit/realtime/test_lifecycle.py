"""uws_py.realtime.lifecycle: open (CONNECTED, connect hooks), close (timers, disconnect hooks)
and the live expiry of a token, driven by the fake loop's timers."""

from __future__ import annotations

import time

import jwt

from uws_py import JWTAuth

SECRET = "unit-test-secret-of-at-least-32-bytes!"


def bearer(sub: str, ttl: float) -> dict:
    value = jwt.encode({"sub": sub, "exp": int(time.time() + ttl)}, SECRET, algorithm="HS256")
    return {"authorization": f"Bearer {value}"}


def test_connected_names_the_client_user_and_types(harness):
    h = harness(auth=JWTAuth(secret=SECRET))

    @h.on("ORDER")
    def order(client, message):
        return None

    ws = h.connect(headers=bearer("alice", 600))
    (connected,) = ws.frames()
    assert connected["type"] == "CONNECTED"
    assert connected["clientId"] == ws.client.id
    assert connected["userId"] == "alice"
    assert abs(connected["serverTime"] - time.time() * 1000) < 5000
    types = connected["capabilities"]["types"]
    assert {"SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", "PING", "AUTH", "BATCH", "ORDER"} <= set(types)
    assert h.engine.clients == {ws.client.id: ws.client}


def test_connect_and_disconnect_hooks_see_the_client_and_the_code(harness):
    h = harness()
    events = []
    h.engine.lifecycle.connect_hooks.append(lambda client: events.append(("connect", client.id)))
    h.engine.lifecycle.disconnect_hooks.append(lambda client, code: events.append(("disconnect", client.id, code)))
    ws = h.connect()
    client_id = ws.client.id
    assert events == [("connect", client_id)]
    h.close(ws, 4001)
    assert events == [("connect", client_id), ("disconnect", client_id, 4001)]
    assert h.engine.clients == {}
    assert ws.client.closed and ws.client.ws is None


def test_a_raising_connect_hook_is_logged_and_the_connection_goes_on(harness, caplog):
    h = harness()

    def broken(client):
        raise RuntimeError("hook broke on purpose")

    later = []
    h.engine.lifecycle.connect_hooks.extend([broken, later.append])
    ws = h.connect()
    assert later == [ws.client]
    assert any("exception in" in record.getMessage() for record in caplog.records)
    assert ws.frames()[0]["type"] == "CONNECTED"
    assert h.send(ws, {"type": "PING", "id": 1})[0]["type"] == "PONG"


def test_expired_token_sends_unauthorized_then_closes_with_1008(harness):
    h = harness(auth=JWTAuth(secret=SECRET))
    ws = h.connect(headers=bearer("alice", 30))
    ws.frames()
    ((delay, _),) = h.loop.timers.values()
    assert 25 < delay <= 30
    h.loop.fire()
    assert ws.frames() == [{"type": "ERROR", "code": "UNAUTHORIZED", "message": "token expired"}]
    assert ws.ended == [(1008, "token expired")]
    assert h.engine.metrics.errors["UNAUTHORIZED"] == 1


def test_refreshed_token_is_not_closed_at_the_old_expiry(harness):
    h = harness(auth=JWTAuth(secret=SECRET))
    ws = h.connect(headers=bearer("alice", 30))
    ws.frames()
    fresh = jwt.encode({"sub": "alice", "exp": int(time.time() + 3600)}, SECRET, algorithm="HS256")
    assert h.send(ws, {"type": "AUTH", "token": fresh})[0]["type"] == "AUTHENTICATED"
    ((delay, _),) = h.loop.timers.values()
    assert delay > 3000


def test_close_cancels_the_expiry_timer(harness):
    h = harness(auth=JWTAuth(secret=SECRET))
    ws = h.connect(headers=bearer("alice", 30))
    assert len(h.loop.timers) == 1
    h.close(ws)
    assert h.loop.timers == {}


def test_expiry_after_the_client_left_sends_nothing(harness):
    h = harness(auth=JWTAuth(secret=SECRET))
    ws = h.connect(headers=bearer("alice", 30))
    ws.frames()
    (expire,) = [fn for _, fn in h.loop.timers.values()]
    h.close(ws)
    expire()
    assert ws.sent == [] and ws.ended == []


def test_no_auth_means_no_expiry_timer(harness):
    h = harness()
    h.connect()
    assert h.loop.timers == {}
