"""uws_py.realtime.upgrade: the statuses an upgrade is refused with (docs/protocol.md,
"Connecting"), in their order, and the authenticate hook's verdicts, on a fake response."""

from __future__ import annotations

import time

import jwt
import pytest

from uws_py import JWTAuth
from uws_py.auth import AuthError

SECRET = "unit-test-secret-of-at-least-32-bytes!"


def token(sub: str = "alice", ttl: float = 600, secret: str = SECRET, **claims) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time() + ttl), **claims}, secret, algorithm="HS256")


def bearer(value: str) -> dict:
    return {"authorization": f"Bearer {value}"}


def assert_refused(res, status: str, body: str) -> None:
    assert res.upgraded is None, "the upgrade went through"
    assert (res.status, res.body) == (status, body)


def test_origin_outside_allowed_origins_is_403_and_a_missing_origin_passes(harness):
    h = harness(allowed_origins=["https://good.example"])
    assert_refused(h.upgrade(headers={"origin": "https://evil.example"}), "403 Forbidden", "origin not allowed")
    assert h.upgrade(headers={"origin": "https://good.example"}).upgraded is not None
    assert h.upgrade().upgraded is not None
    assert h.engine.metrics.refused_connections == {"403": 1}


def test_connection_over_max_connections_is_503(harness):
    h = harness(max_connections=2)
    first = h.connect(address="10.0.0.1")
    h.connect(address="10.0.0.2")
    assert_refused(h.upgrade(address="10.0.0.3"), "503 Service Unavailable", "too many connections")
    h.close(first)
    assert h.upgrade(address="10.0.0.3").upgraded is not None
    assert h.engine.metrics.refused_connections == {"503": 1}


def test_connection_over_max_connections_per_ip_is_429_for_that_ip_only(harness):
    h = harness(max_connections_per_ip=2)
    h.connect(address="10.0.0.1")
    h.connect(address="10.0.0.1")
    assert_refused(h.upgrade(address="10.0.0.1"), "429 Too Many Requests", "too many connections")
    assert h.upgrade(address="10.0.0.2").upgraded is not None
    assert h.engine.metrics.refused_connections == {"429": 1}


def test_capacity_refusals_say_retry_after_and_other_refusals_do_not(harness):
    h = harness(max_connections_per_ip=1, allowed_origins=["https://good.example"], retry_after=3)
    h.connect(address="10.0.0.1")
    per_ip = h.upgrade(address="10.0.0.1")
    assert per_ip.status == "429 Too Many Requests" and 3 <= int(per_ip.headers["retry-after"]) <= 6
    origin = h.upgrade(address="10.0.0.2", headers={"origin": "https://evil.example"})
    assert origin.status == "403 Forbidden" and "retry-after" not in origin.headers
    full = harness(max_connections=1)
    full.connect(address="10.0.0.1")
    refused = full.upgrade(address="10.0.0.2")
    assert refused.status == "503 Service Unavailable" and 5 <= int(refused.headers["retry-after"]) <= 10


def test_upgrades_beyond_max_upgrades_per_second_get_503_too_many_upgrades(harness):
    h = harness(max_upgrades_per_second=2)
    assert h.upgrade(address="10.0.0.1").upgraded is not None
    assert h.upgrade(address="10.0.0.2").upgraded is not None
    refused = h.upgrade(address="10.0.0.3")
    assert_refused(refused, "503 Service Unavailable", "too many upgrades")
    assert 1 <= int(refused.headers["retry-after"]) <= 3
    assert h.engine.metrics.refused_connections == {"503": 1}


def test_origin_is_checked_before_capacity_and_capacity_before_the_token(harness):
    h = harness(auth=JWTAuth(secret=SECRET), allowed_origins=["https://good.example"], max_connections=1)
    h.connect(headers=bearer(token()))
    assert h.upgrade(headers={"origin": "https://evil.example"}).status == "403 Forbidden"
    assert h.upgrade(headers={"origin": "https://good.example"}).status == "503 Service Unavailable"


@pytest.mark.parametrize(
    "headers, query, body, reason",
    [
        ({}, {}, "no token", "missing"),
        (bearer(token(ttl=-60)), {}, "token expired", "expired"),
        (bearer(token(secret="some-other-secret-of-32-bytes-or-more")), {}, "bad signature", "signature"),
        ({}, {"token": "not.a.jwt"}, None, "invalid"),
    ],
    ids=["missing", "expired", "bad-signature", "garbage-in-query"],
)
def test_missing_or_bad_token_is_401_with_the_reason(harness, headers, query, body, reason):
    h = harness(auth=JWTAuth(secret=SECRET))
    res = h.upgrade(headers=headers, query=query)
    assert res.upgraded is None and res.status == "401 Unauthorized"
    if body is not None:
        assert res.body == body
    else:
        assert res.body.startswith("invalid token")
    assert h.engine.metrics.auth_failures == {reason: 1}
    assert h.engine.metrics.refused_connections == {"401": 1}


def test_token_is_taken_from_the_subprotocol_and_that_protocol_is_answered(harness):
    h = harness(auth=JWTAuth(secret=SECRET))
    res = h.upgrade(headers={"sec-websocket-protocol": f"bearer, {token('carol')}"})
    assert res.upgraded is not None
    client, _key, protocol, _extensions, _context = res.upgraded
    assert protocol == "bearer" and client.user_id == "carol"


def test_valid_token_gives_the_client_its_identity_and_topics(harness):
    h = harness(auth=JWTAuth(secret=SECRET))
    exp = int(time.time() + 600)
    res = h.upgrade(headers=bearer(jwt.encode({"sub": "alice", "exp": exp, "topics": ["chat.*"]}, SECRET, algorithm="HS256")))
    client, key, _, _, context = res.upgraded
    assert (client.user_id, client.token_expires_at, client.topics_allowed) == ("alice", exp, ["chat.*"])
    assert key == "dGhlIHNhbXBsZSBub25jZQ==" and context == "ctx"
    assert client.remote_address == "10.0.0.1"


def test_authenticate_hook_returning_false_is_403(harness):
    h = harness()
    h.engine.upgrader.authenticate = lambda claims, request: False
    assert_refused(h.upgrade(), "403 Forbidden", "not allowed")
    assert h.engine.metrics.auth_failures == {"hook": 1}


def test_authenticate_hook_dict_replaces_the_claims_and_topics(harness):
    h = harness(auth=JWTAuth(secret=SECRET))
    seen = []

    def hook(claims, request):
        seen.append((claims["sub"], request.get_header("authorization") is not None))
        return {"sub": "alice-from-db", "topics": ["only.this"]}

    h.engine.upgrader.authenticate = hook
    ws = h.connect(headers=bearer(token("alice")))
    assert seen == [("alice", True)]
    assert ws.client.claims == {"sub": "alice-from-db", "topics": ["only.this"]}
    assert ws.client.topics_allowed == ["only.this"]
    assert ws.client.user_id == "alice-from-db"


def test_authenticate_hook_returning_anything_else_accepts_unchanged(harness):
    h = harness(auth=JWTAuth(secret=SECRET))
    h.engine.upgrader.authenticate = lambda claims, request: "yes"
    ws = h.connect(headers=bearer(token("alice")))
    assert ws.client.user_id == "alice" and ws.client.claims["sub"] == "alice"


def test_authenticate_hook_raising_auth_error_is_401_with_its_message(harness):
    h = harness()

    def hook(claims, request):
        raise AuthError("revoked", "session revoked")

    h.engine.upgrader.authenticate = hook
    assert_refused(h.upgrade(), "401 Unauthorized", "session revoked")
    assert h.engine.metrics.auth_failures == {"revoked": 1}


def test_authenticate_hook_is_not_asked_when_the_token_is_refused(harness):
    h = harness(auth=JWTAuth(secret=SECRET))
    asked = []
    h.engine.upgrader.authenticate = lambda claims, request: asked.append(claims)
    assert h.upgrade().status == "401 Unauthorized"
    assert asked == []


def test_async_authenticate_hook_without_a_running_loop_is_500(harness):
    h = harness()

    async def hook(claims, request):
        return True

    h.engine.upgrader.authenticate = hook
    assert_refused(h.upgrade(), "500 Internal Server Error", "async authenticate needs server.serve()")
