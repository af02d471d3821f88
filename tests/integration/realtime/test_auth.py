"""Who may connect to the realtime server and what they may do: JWT checks at the upgrade (and
where the token may be), allowed origins, connection limits, live token expiry and refresh,
topic permissions, and keeping tokens out of the log."""

from __future__ import annotations

import json
import logging
import threading
import time

import jwt
import pytest

from tests.support.realtime import (
    HOST,
    OTHER_SECRET,
    SECRET,
    WAIT,
    assert_next_is_pong,
    make_token,
    metric,
    realtime_server,
    recv_json,
    request,
    scrape,
)
from uws_py import JWTAuth
from tests.support.wsclient import HandshakeRefused, connect

AUDIENCE = "uws-tests"
ISSUER = "https://issuer.uws-tests.invalid"


def strict_server(**options):
    """A server that also checks audience and issuer."""
    return realtime_server(auth=JWTAuth(secret=SECRET, audience=AUDIENCE, issuer=ISSUER), **options)


def valid(**overrides):
    claims = {"aud": AUDIENCE, "iss": ISSUER}
    claims.update(overrides)
    return make_token(**claims)


def unsigned_token():
    return jwt.encode({"sub": "alice", "exp": time.time() + 60, "aud": AUDIENCE, "iss": ISSUER}, None, algorithm="none")


REFUSED_TOKENS = [
    ("missing", lambda: None, "missing"),
    ("bad-signature", lambda: valid(secret=OTHER_SECRET), "signature"),
    ("expired", lambda: valid(ttl=-30), "expired"),
    ("not-yet-valid", lambda: valid(nbf=int(time.time()) + 60), "not_yet_valid"),
    ("wrong-audience", lambda: valid(aud="someone-else"), "audience"),
    ("wrong-issuer", lambda: valid(iss="https://evil.invalid"), "issuer"),
    ("alg-none", unsigned_token, "algorithm"),
    ("no-exp", lambda: valid(ttl=None), "missing_claim"),
    ("garbage", lambda: "not-a-token", "invalid"),
]


@pytest.mark.parametrize("make, reason", [(m, r) for _, m, r in REFUSED_TOKENS], ids=[i for i, _, _ in REFUSED_TOKENS])
def test_upgrade_with_unacceptable_token_is_401_and_counted(serve, make, reason):
    live = serve(strict_server())
    response = live.refused(token=make())
    assert response.status == 401, response
    samples = scrape(live)
    assert metric(samples, "uws_auth_failures_total", reason=reason) == 1, {
        k: v for k, v in samples.items() if k[0] == "uws_auth_failures_total"
    }
    assert metric(samples, "uws_refused_connections_total", status="401") == 1
    assert metric(samples, "uws_connections_opened_total") == 0


def test_upgrade_with_valid_token_passes_audience_and_issuer_checks(serve):
    live = serve(strict_server())
    client = live.connect(valid(sub="alice"))
    assert recv_json(client)["userId"] == "alice"


@pytest.mark.parametrize("where", ["authorization", "query", "subprotocol"])
def test_token_is_accepted_from_each_place(serve, where):
    live = serve(realtime_server())
    token = make_token("alice")
    if where == "authorization":
        client = live.connect(token)
    elif where == "query":
        client = live.connect(path=f"/realtime?token={token}")
    else:
        client = live.connect(protocols=["bearer", token])
    assert recv_json(client)["userId"] == "alice"
    expected_protocol = "bearer" if where == "subprotocol" else None
    assert client.protocol == expected_protocol, client.response.headers


def test_bad_token_in_query_or_subprotocol_is_refused(serve):
    live = serve(realtime_server())
    forged = make_token("alice", secret=OTHER_SECRET)
    assert live.refused(path=f"/realtime?token={forged}").status == 401
    assert live.refused(protocols=["bearer", forged]).status == 401


def test_origin_outside_allowed_origins_is_403(serve):
    live = serve(realtime_server(allowed_origins=["https://app.example"]))
    token = make_token("alice")
    refused = live.refused(token=token, headers=[("Origin", "https://evil.example")])
    assert refused.status == 403, refused
    client = live.connect(token, headers=[("Origin", "https://app.example")])
    assert recv_json(client)["type"] == "CONNECTED"
    assert metric(scrape(live), "uws_refused_connections_total", status="403") == 1


def test_missing_origin_is_not_refused(serve):
    """Non-browser clients send no Origin; only a present, unlisted Origin is refused."""
    live = serve(realtime_server(allowed_origins=["https://app.example"]))
    client = live.connect(make_token("alice"))
    client.close()


def test_refusals_are_checked_origin_then_capacity_then_token(serve):
    live = serve(realtime_server(allowed_origins=["https://app.example"], max_connections=1))
    good_origin = [("Origin", "https://app.example")]
    forged = make_token("alice", secret=OTHER_SECRET)
    assert live.refused(token=forged, headers=good_origin).status == 401
    assert live.refused(token=make_token("alice"), headers=[("Origin", "https://evil.example")]).status == 403
    live.connect(make_token("alice"), headers=good_origin)
    assert live.refused(token=forged, headers=[("Origin", "https://evil.example")]).status == 403
    assert live.refused(token=forged, headers=good_origin).status == 503


def connect_when_admitted(live, token, timeout=WAIT):
    """Connects, retrying while the server still counts a connection that just closed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return live.connect(token)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_third_connection_from_one_ip_is_429(serve):
    live = serve(realtime_server(max_connections_per_ip=2))
    first, _ = live.join("a")
    live.join("b")
    refused = live.refused(token=make_token("c"))
    assert refused.status == 429, refused
    assert 5 <= int(refused.headers["retry-after"]) <= 10, refused.headers
    first.close()
    assert recv_json(connect_when_admitted(live, make_token("c")))["type"] == "CONNECTED"


def test_connection_over_max_connections_is_503(serve):
    live = serve(realtime_server(max_connections=1))
    first, _ = live.join("a")
    refused = live.refused(token=make_token("b"))
    assert refused.status == 503, refused
    assert 5 <= int(refused.headers["retry-after"]) <= 10, refused.headers
    first.close()
    assert recv_json(connect_when_admitted(live, make_token("b")))["type"] == "CONNECTED"


def test_token_expiry_closes_with_1008_unless_refreshed(serve):
    live = serve(realtime_server())
    exp = time.time() + 2.0
    expiring = live.connect(make_token("alice", ttl=None, exp=exp))
    refreshing = live.connect(make_token("bob", ttl=None, exp=exp))
    assert recv_json(expiring)["type"] == "CONNECTED"
    assert recv_json(refreshing)["type"] == "CONNECTED"
    renewed = request(refreshing, {"type": "AUTH", "token": make_token("bob", ttl=60), "id": "r"})
    assert (renewed["type"], renewed["id"]) == ("AUTHENTICATED", "r"), renewed
    assert renewed["expiresAt"] > exp + 30

    error = recv_json(expiring, timeout=4.0)
    arrived = time.time()
    assert (error["type"], error["code"]) == ("ERROR", "UNAUTHORIZED"), error
    assert arrived >= exp - 0.05, f"expiry enforced {exp - arrived:.3f} s early"
    assert expiring.expect_close(timeout=4.0) == (1008, b"token expired")
    assert time.time() - exp < 4.0

    time.sleep(max(0.0, exp + 0.5 - time.time()))
    assert_next_is_pong(refreshing, "a refreshed client to stay connected past the first exp")
    assert metric(scrape(live), "uws_auth_failures_total", reason="expired_live") == 1


def test_auth_for_another_user_is_forbidden_and_keeps_identity(serve):
    server = realtime_server()
    users: list = []

    @server.on("WHOAMI")
    def whoami(client, message):
        users.append(client.user_id)
        return {"type": "YOU", "userId": client.user_id, "sub": client.claims.get("sub")}

    live = serve(server)
    client, _ = live.join("alice")
    reply = request(client, {"type": "AUTH", "token": make_token("mallory"), "id": 1})
    assert (reply["type"], reply["code"], reply["id"]) == ("ERROR", "FORBIDDEN", 1), reply
    assert request(client, {"type": "WHOAMI", "id": 2}) == {"type": "YOU", "userId": "alice", "sub": "alice", "id": 2}


# -- topic permissions --------------------------------------------------------------------------


def test_topics_claim_limits_subscribe_and_publish(serve):
    live = serve(realtime_server())
    client, _ = live.join("alice", topics=["chat.*"])
    assert request(client, {"type": "SUBSCRIBE", "topic": "chat.room", "id": 1})["type"] == "SUBSCRIBED"
    assert request(client, {"type": "PUBLISH", "topic": "chat.room", "data": 1, "id": 2}) == {
        "type": "PUBLISHED", "topic": "chat.room", "id": 2,
    }
    for kind in ("SUBSCRIBE", "PUBLISH"):
        reply = request(client, {"type": kind, "topic": "news", "data": 1, "id": kind})
        assert (reply["type"], reply["code"], reply["id"]) == ("ERROR", "FORBIDDEN", kind), reply


def test_forbidden_publish_reaches_no_subscriber(serve):
    live = serve(realtime_server())
    reader, _ = live.join("reader")
    request(reader, {"type": "SUBSCRIBE", "topic": "news"})
    writer, _ = live.join("writer", topics=["chat.*"])
    assert request(writer, {"type": "PUBLISH", "topic": "news", "data": "x", "id": 1})["code"] == "FORBIDDEN"
    assert_next_is_pong(reader, "no MESSAGE from a forbidden publish")


def test_authorize_topic_hook_can_refuse(serve):
    server = realtime_server()
    asked: list = []

    @server.authorize_topic
    def only_admins_in_private(client, topic, action):
        asked.append((client.user_id, topic, action))
        return not topic.startswith("private.") or client.user_id == "admin"

    live = serve(server)
    user, _ = live.join("alice")
    admin, _ = live.join("admin")
    for kind, action in (("SUBSCRIBE", "subscribe"), ("PUBLISH", "publish")):
        refused = request(user, {"type": kind, "topic": "private.ops", "data": 0, "id": 1})
        assert (refused["type"], refused["code"]) == ("ERROR", "FORBIDDEN"), refused
        allowed = request(admin, {"type": kind, "topic": "private.ops", "data": 0, "id": 1})
        assert allowed["type"] in ("SUBSCRIBED", "PUBLISHED"), allowed
        assert ("alice", "private.ops", action) in asked and ("admin", "private.ops", action) in asked


def test_authorize_topic_hook_is_not_asked_when_token_forbids(serve):
    server = realtime_server()
    asked: list = []
    server.authorize_topic(lambda client, topic, action: asked.append(topic) or True)
    live = serve(server)
    client, _ = live.join("alice", topics=["chat.*"])
    assert request(client, {"type": "SUBSCRIBE", "topic": "news", "id": 1})["code"] == "FORBIDDEN"
    assert request(client, {"type": "SUBSCRIBE", "topic": "chat.x", "id": 2})["type"] == "SUBSCRIBED"
    assert asked == ["chat.x"]


def test_token_in_url_never_reaches_the_log(serve, caplog):
    caplog.set_level(logging.DEBUG, logger="uws_py")
    live = serve(realtime_server(allowed_origins=["https://app.example"], access_log=True))
    origin = [("Origin", "https://app.example")]
    tokens = {
        "forged": make_token("alice", secret=OTHER_SECRET),
        "expired": make_token("alice", ttl=-30),
        "wrong-origin": make_token("alice"),
        "accepted": make_token("alice"),
        "plain-get": make_token("alice"),
        "health": make_token("alice"),
    }
    assert live.refused(path=f"/realtime?token={tokens['forged']}", headers=origin).status == 401
    assert live.refused(path=f"/realtime?token={tokens['expired']}", headers=origin).status == 401
    assert live.refused(
        path=f"/realtime?token={tokens['wrong-origin']}", headers=[("Origin", "https://evil.example")]
    ).status == 403
    client = live.connect(path=f"/realtime?token={tokens['accepted']}", headers=origin)
    assert recv_json(client)["type"] == "CONNECTED"
    assert live.http_get(f"/realtime?token={tokens['plain-get']}").status == 426
    assert live.http_get(f"/health?token={tokens['health']}").status == 200
    client.close()
    live.stop()

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "refused" in logged, f"expected the refusals to be logged at all; log was:\n{logged}"
    assert '"GET /health" 200' in logged, f"expected an access log line; log was:\n{logged}"
    for name, token in tokens.items():
        signature = token.rsplit(".", 1)[1]
        assert signature not in logged and signature not in caplog.text, f"the {name} token was logged"


# -- the authenticate hook ------------------------------------------------------------------------


def test_sync_authenticate_hook_refuses_accepts_and_replaces_claims(serve):
    server = realtime_server()
    seen = []

    @server.authenticate
    def check(claims, request):
        seen.append((claims.get("sub"), request.get_header("x-tenant")))
        if claims.get("sub") == "mallory":
            return False
        return {**claims, "topics": ["tenant.*"]}

    live = serve(server)
    assert live.refused(token=make_token("mallory")).status == 403
    client = live.connect(make_token("alice"), headers=[("X-Tenant", "acme")])
    assert recv_json(client)["type"] == "CONNECTED"
    client.send_text(json.dumps({"type": "SUBSCRIBE", "topic": "other", "id": 1}))
    assert recv_json(client)["code"] == "FORBIDDEN", "the hook's claims replaced the token's topics"
    assert ("alice", "acme") in seen


def test_async_authenticate_hook_is_awaited_without_blocking_the_loop():
    import asyncio

    server = realtime_server()
    started = threading.Event()

    @server.authenticate
    async def lookup(claims, request):
        await asyncio.sleep(0.3)  # a slow user service
        return claims.get("sub") != "mallory"

    @server.on("PING_ME")
    def ping_me(client, message):
        return {"type": "PONGED"}

    def run() -> None:
        async def main() -> None:
            task = asyncio.create_task(server.serve(port=0, host=HOST, handle_signals=False))
            while server.app._port is None:
                await asyncio.sleep(0.01)
            started.set()
            await task

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        fast = connect(HOST, server.port, server.path, headers=[("Authorization", f"Bearer {make_token('alice')}")])
        assert recv_json(fast)["type"] == "CONNECTED"
        # While a second upgrade waits on the hook, the first client is still served.
        results = {}

        def slow_upgrade(name: str) -> None:
            try:
                client = connect(HOST, server.port, server.path, headers=[("Authorization", f"Bearer {make_token(name)}")])
                results[name] = recv_json(client)["type"]
                client.close()
            except HandshakeRefused as refusal:
                results[name] = refusal.response.status

        waiting = [threading.Thread(target=slow_upgrade, args=(n,)) for n in ("bob", "mallory")]
        for t in waiting:
            t.start()
        time.sleep(0.05)
        began = time.monotonic()
        fast.send_text(json.dumps({"type": "PING_ME", "id": 1}))
        assert recv_json(fast)["type"] == "PONGED"
        assert time.monotonic() - began < 0.2, "the loop waited for the hook"
        for t in waiting:
            t.join(5)
        assert results == {"bob": "CONNECTED", "mallory": 403}
        fast.close()
    finally:
        server.close(timeout=1)
        thread.join(10)
    assert not thread.is_alive()


# -- the AUTH message -------------------------------------------------------------------------


def test_auth_refreshes_token_and_refuses_bad_or_foreign_ones(serve):
    live = serve(realtime_server())
    client, _ = live.join("alice", ttl=30)
    exp = time.time() + 600
    fresh = make_token("alice", ttl=None, exp=exp)
    assert request(client, {"type": "AUTH", "token": fresh, "id": 1}) == {
        "type": "AUTHENTICATED", "expiresAt": exp, "id": 1,
    }

    forged = request(client, {"type": "AUTH", "token": make_token("alice", secret=OTHER_SECRET), "id": 2})
    assert (forged["type"], forged["code"], forged["id"]) == ("ERROR", "UNAUTHORIZED", 2), forged

    foreign = request(client, {"type": "AUTH", "token": make_token("mallory"), "id": 3})
    assert (foreign["type"], foreign["code"], foreign["id"]) == ("ERROR", "FORBIDDEN", 3), foreign

    missing = request(client, {"type": "AUTH", "id": 4})
    assert (missing["type"], missing["code"]) == ("ERROR", "INVALID_MESSAGE"), missing
    assert_next_is_pong(client, "the connection to stay open after refused AUTHs")
