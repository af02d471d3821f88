"""uws_py.realtime.builtins: SUBSCRIBE, UNSUBSCRIBE, PUBLISH, PING and AUTH on fake sockets,
checked against docs/protocol.md."""

from __future__ import annotations

import time

import jwt
import orjson

from uws_py import JWTAuth

SECRET = "unit-test-secret-of-at-least-32-bytes!"
OTHER_SECRET = "another-secret-nobody-here-trusts-x"


def token(sub: str, ttl: float = 600, secret: str = SECRET, **claims) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time() + ttl), **claims}, secret, algorithm="HS256")


def bearer(value: str) -> dict:
    return {"authorization": f"Bearer {value}"}


def connected(h, **kwargs):
    ws = h.connect(**kwargs)
    assert ws.frames()[0]["type"] == "CONNECTED"
    return ws


def test_subscribe_and_unsubscribe_confirm_with_the_id_and_change_delivery(harness):
    h = harness()
    ws = connected(h)
    assert h.send(ws, {"type": "SUBSCRIBE", "topic": "chat", "id": 1}) == [{"type": "SUBSCRIBED", "topic": "chat", "id": 1}]
    assert ws.topics == {"chat"}
    assert h.send(ws, {"type": "SUBSCRIBE", "topic": "chat", "id": 2}) == [{"type": "SUBSCRIBED", "topic": "chat", "id": 2}]
    assert h.send(ws, {"type": "UNSUBSCRIBE", "topic": "chat", "id": 3}) == [{"type": "UNSUBSCRIBED", "topic": "chat", "id": 3}]
    assert ws.topics == set()
    assert h.send(ws, {"type": "UNSUBSCRIBE", "topic": "never", "id": 4}) == [{"type": "UNSUBSCRIBED", "topic": "never", "id": 4}]


def test_subscribe_and_unsubscribe_need_a_non_empty_topic(harness):
    h = harness()
    ws = connected(h)
    for kind in ("SUBSCRIBE", "UNSUBSCRIBE"):
        for topic in (None, "", 5):
            message = {"type": kind, "id": 9} if topic is None else {"type": kind, "topic": topic, "id": 9}
            assert h.send(ws, message) == [
                {"type": "ERROR", "code": "INVALID_MESSAGE", "message": "field 'topic' must be a non-empty string", "id": 9}
            ]
    assert ws.topics == set()


def test_publish_reaches_other_subscribers_with_from_and_echoes_only_on_request(harness):
    h = harness()
    publisher, other = connected(h), connected(h)
    h.send(other, {"type": "SUBSCRIBE", "topic": "chat"})
    h.send(publisher, {"type": "SUBSCRIBE", "topic": "chat"})
    sender_id = publisher.client.id

    assert h.send(publisher, {"type": "PUBLISH", "topic": "chat", "data": {"text": "hi"}}) == []
    assert other.frames() == [{"type": "MESSAGE", "topic": "chat", "data": {"text": "hi"}, "from": sender_id}]

    assert h.send(publisher, {"type": "PUBLISH", "topic": "chat", "data": None, "echo": True, "id": "p"}) == [
        {"type": "MESSAGE", "topic": "chat", "data": None, "from": sender_id},
        {"type": "PUBLISHED", "topic": "chat", "id": "p"},
    ]
    assert other.frames() == [{"type": "MESSAGE", "topic": "chat", "data": None, "from": sender_id}]


def test_publish_needs_data_and_a_topic(harness):
    h = harness()
    ws, other = connected(h), connected(h)
    h.send(other, {"type": "SUBSCRIBE", "topic": "chat"})
    assert h.send(ws, {"type": "PUBLISH", "topic": "chat", "id": 1}) == [
        {"type": "ERROR", "code": "INVALID_MESSAGE", "message": "field 'data' is required", "id": 1}
    ]
    (reply,) = h.send(ws, {"type": "PUBLISH", "data": 1, "id": 2})
    assert (reply["type"], reply["code"], reply["id"]) == ("ERROR", "INVALID_MESSAGE", 2)
    assert other.frames() == []


def test_topics_claim_forbids_subscribe_and_publish_outside_its_patterns(harness):
    h = harness(auth=JWTAuth(secret=SECRET))
    ws = connected(h, headers=bearer(token("alice", topics=["chat.*"])))
    listener = connected(h, headers=bearer(token("bob")))
    h.send(listener, {"type": "SUBSCRIBE", "topic": "admin.log"})

    assert h.send(ws, {"type": "SUBSCRIBE", "topic": "chat.lobby", "id": 1}) == [
        {"type": "SUBSCRIBED", "topic": "chat.lobby", "id": 1}
    ]
    assert h.send(ws, {"type": "SUBSCRIBE", "topic": "admin.log", "id": 2}) == [
        {"type": "ERROR", "code": "FORBIDDEN", "message": "not allowed to subscribe 'admin.log'", "id": 2}
    ]
    assert h.send(ws, {"type": "PUBLISH", "topic": "admin.log", "data": "x", "id": 3}) == [
        {"type": "ERROR", "code": "FORBIDDEN", "message": "not allowed to publish 'admin.log'", "id": 3}
    ]
    assert ws.topics == {"chat.lobby"}
    assert listener.frames() == []
    assert h.engine.metrics.errors["FORBIDDEN"] == 2


def test_authorize_topic_hook_refuses_and_is_asked_with_client_topic_and_action(harness):
    h = harness()
    asked = []

    def authorize(client, topic, action):
        asked.append((client.id, topic, action))
        return not topic.startswith("private.")

    h.engine.pubsub.topic_hook = authorize
    ws = connected(h)
    assert h.send(ws, {"type": "SUBSCRIBE", "topic": "private.x", "id": 1}) == [
        {"type": "ERROR", "code": "FORBIDDEN", "message": "not allowed to subscribe 'private.x'", "id": 1}
    ]
    assert h.send(ws, {"type": "PUBLISH", "topic": "private.x", "data": 1, "id": 2}) == [
        {"type": "ERROR", "code": "FORBIDDEN", "message": "not allowed to publish 'private.x'", "id": 2}
    ]
    assert h.send(ws, {"type": "SUBSCRIBE", "topic": "public", "id": 3}) == [{"type": "SUBSCRIBED", "topic": "public", "id": 3}]
    assert asked == [(ws.client.id, "private.x", "subscribe"), (ws.client.id, "private.x", "publish"),
                     (ws.client.id, "public", "subscribe")]
    assert ws.topics == {"public"}


def test_ping_gets_pong_with_the_server_time_and_the_id(harness):
    h = harness()
    ws = connected(h)
    before = time.time() * 1000
    (reply,) = h.send(ws, {"type": "PING", "id": 4})
    after = time.time() * 1000
    assert set(reply) == {"type", "serverTime", "id"}
    assert (reply["type"], reply["id"]) == ("PONG", 4)
    assert before - 1 <= reply["serverTime"] <= after + 1
    assert [r["type"] for r in h.send(ws, {"type": "PING"})] == ["PONG"]


def test_auth_refresh_replaces_claims_and_expiry_and_rearms_the_timer(harness):
    h = harness(auth=JWTAuth(secret=SECRET))
    ws = connected(h, headers=bearer(token("alice", ttl=30, topics=["a"])))
    (first_timer,) = h.loop.timers
    exp = int(time.time() + 900)
    fresh = jwt.encode({"sub": "alice", "exp": exp, "topics": ["b"]}, SECRET, algorithm="HS256")
    assert h.send(ws, {"type": "AUTH", "token": fresh, "id": 5}) == [{"type": "AUTHENTICATED", "expiresAt": exp, "id": 5}]
    assert ws.client.token_expires_at == exp
    assert ws.client.claims["topics"] == ["b"]
    assert first_timer not in h.loop.timers and len(h.loop.timers) == 1
    ((delay, _),) = h.loop.timers.values()
    assert 800 < delay <= 900
    (refused,) = h.send(ws, {"type": "SUBSCRIBE", "topic": "a", "id": 6})
    assert refused["code"] == "FORBIDDEN"


def test_auth_for_another_user_is_forbidden_and_keeps_the_identity(harness):
    h = harness(auth=JWTAuth(secret=SECRET))
    ws = connected(h, headers=bearer(token("alice")))
    claims = ws.client.claims
    assert h.send(ws, {"type": "AUTH", "token": token("mallory"), "id": 1}) == [
        {"type": "ERROR", "code": "FORBIDDEN", "message": "a refreshed token must be for the same user", "id": 1}
    ]
    assert ws.client.user_id == "alice" and ws.client.claims is claims
    assert ws.ended == []


def test_auth_with_a_bad_token_is_unauthorized_and_the_connection_stays(harness):
    h = harness(auth=JWTAuth(secret=SECRET))
    ws = connected(h, headers=bearer(token("alice")))
    for request_id, bad in enumerate([token("alice", secret=OTHER_SECRET), token("alice", ttl=-60), "not.a.jwt"]):
        (reply,) = h.send(ws, {"type": "AUTH", "token": bad, "id": request_id})
        assert (reply["type"], reply["code"], reply["id"]) == ("ERROR", "UNAUTHORIZED", request_id), reply
        assert reply["message"]
    assert h.send(ws, {"type": "AUTH", "token": 42, "id": "n"}) == [
        {"type": "ERROR", "code": "INVALID_MESSAGE", "message": "field 'token' must be a string", "id": "n"}
    ]
    assert ws.ended == []
    assert h.engine.metrics.errors["UNAUTHORIZED"] == 3
    assert h.send(ws, {"type": "PING", "id": "alive"})[0]["type"] == "PONG"


def test_auth_without_auth_configured_is_invalid(harness):
    h = harness()
    ws = connected(h)
    assert h.send(ws, {"type": "AUTH", "token": token("alice"), "id": 1}) == [
        {"type": "ERROR", "code": "INVALID_MESSAGE", "message": "this server does not use tokens", "id": 1}
    ]
    assert ws.client.claims == {}


def test_builtin_replies_are_text_frames_of_json(harness):
    h = harness()
    ws = connected(h)
    h.engine.dispatcher.on_message(ws, orjson.dumps({"type": "PING", "id": 1}).decode(), 1)
    ((data, opcode),) = ws.sent
    assert opcode == 1 and orjson.loads(data)["type"] == "PONG"
