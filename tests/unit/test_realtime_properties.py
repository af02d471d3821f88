"""Property tests (hypothesis) for the realtime layer's message handling: whatever a client
sends — garbage bytes, wrong types, huge numbers, deep nesting, hostile tokens — no exception
escapes, and every reply is a JSON object with a type. No sockets: a stand-in WebSocket
records what the server sends."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uws_py import JWTAuth, RateLimit, RealtimeServer
from uws_py.auth import AuthError
from uws_py.client import Client
from uws_py.protocol import ProtocolError, decode

SECRET = "property-test-secret-property-test-secret"
TEXT, BINARY = 1, 2


class FakeWebSocket:
    """Records sends and subscriptions; what the server's handlers may call on a socket."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.sent: list[bytes] = []
        self.topics: set[str] = set()
        self.ended: list[tuple[int, str]] = []

    def get_user_data(self) -> Client:
        return self.client

    def send(self, data: Any, opcode: Any = None, compress: bool = False) -> int:
        self.sent.append(bytes(data) if not isinstance(data, str) else data.encode())
        return 0

    def is_subscribed(self, topic: str) -> bool:
        return topic in self.topics

    def get_topics(self) -> list[str]:
        return sorted(self.topics)

    def subscribe(self, topic: str) -> bool:
        fresh = topic not in self.topics
        self.topics.add(topic)
        return fresh

    def unsubscribe(self, topic: str) -> bool:
        present = topic in self.topics
        self.topics.discard(topic)
        return present

    def publish(self, topic: str, message: Any, opcode: Any = None, compress: bool = False) -> bool:
        return True

    def end(self, code: int = 1000, reason: str = "") -> None:
        self.ended.append((code, reason))


def make_server() -> RealtimeServer:
    server = RealtimeServer(auth=JWTAuth(secret=SECRET), rate_limit=RateLimit(messages=10**9, per_seconds=1))

    @server.on("ECHO")
    def echo(client: Client, message: dict) -> dict:
        return {"type": "ECHOED", "value": message.get("value")}

    @server.on("STRICT", schema=lambda m: None if isinstance(m.get("n"), int) else (_ for _ in ()).throw(ValueError("field 'n' must be an int")))
    def strict(client: Client, message: dict) -> dict:
        return {"type": "OK", "n": message["n"] + 1}

    @server.on("BOOM")
    def boom(client: Client, message: dict) -> None:
        raise RuntimeError("handler failure")

    return server


SERVER = make_server()


def fresh_socket() -> FakeWebSocket:
    client = Client(SERVER.session_context, "c1", {"sub": "alice"}, None, "127.0.0.1")
    ws = FakeWebSocket(client)
    client.ws = ws  # type: ignore[assignment]
    client.user_id = "alice"
    return ws


def replies(ws: FakeWebSocket) -> list[dict]:
    out = []
    for raw in ws.sent:
        message = orjson.loads(raw)
        assert isinstance(message, dict) and isinstance(message.get("type"), str), message
        out.append(message)
    return out


# Integers within what the decoder keeps exact (orjson, like JavaScript, reads a JSON integer
# outside -2**63 .. 2**64-1 as the nearest float: docs/protocol.md says so for `id`).
json_scalars = st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**64 - 1) \
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
types = st.sampled_from(["ECHO", "STRICT", "BOOM", "SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", "BATCH", "PING", "AUTH", "NOPE", ""]) | st.text(max_size=10)
messages = st.fixed_dictionaries(
    {"type": types},
    optional={
        "id": json_scalars,
        "topic": json_values,
        "data": json_values,
        "token": json_values,
        "n": json_values,
        "value": json_values,
        "echo": json_values,
        "messages": st.lists(st.dictionaries(st.sampled_from(["type", "id", "topic", "data"]), json_values, max_size=3), max_size=4)
        | json_values,
    },
)

quick = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@quick
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_decode_raises_only_protocol_errors(data):
    try:
        message = decode(data)
    except ProtocolError:
        return
    assert isinstance(message, dict) and isinstance(message["type"], str) and message["type"]


@quick
@given(messages)
def test_any_message_gets_well_formed_replies_and_no_exception(message):
    ws = fresh_socket()
    SERVER._on_message(ws, json.dumps(message), TEXT)
    for reply in replies(ws):
        if reply["type"] == "ERROR":
            assert reply["code"] in ("INVALID_MESSAGE", "UNKNOWN_TYPE", "UNAUTHORIZED", "FORBIDDEN", "INTERNAL", "PAYLOAD_TOO_LARGE")
        if "id" in message and message["id"] is not None and reply["type"] != "MESSAGE":
            assert reply.get("id") == message["id"]


@quick
@given(st.binary(max_size=300))
def test_garbage_text_and_binary_never_escape(data):
    ws = fresh_socket()
    SERVER._on_message(ws, data.decode("utf-8", "replace"), TEXT)
    SERVER._on_message(ws, data, BINARY)
    assert all(r["type"] == "ERROR" for r in replies(ws))


@pytest.mark.parametrize("depth", [10, 1000, 100_000])
def test_deep_nesting_is_refused_cleanly(depth):
    """Too deep to parse: INVALID_MESSAGE; parsed but too deep to encode back (orjson
    stops at 255 levels): INTERNAL for that request, and the connection goes on."""
    ws = fresh_socket()
    SERVER._on_message(ws, '{"type":"ECHO","id":1,"value":' + "[" * depth + "]" * depth + "}", TEXT)
    SERVER._on_message(ws, '{"type":"PING","id":2}', TEXT)
    first, second = replies(ws)
    assert first["type"] == "ECHOED" or first["code"] in ("INVALID_MESSAGE", "INTERNAL", "PAYLOAD_TOO_LARGE")
    assert second["type"] == "PONG" and second["id"] == 2


@pytest.mark.parametrize("number", ["1" * 5000, "1e999", "-0", "123456789012345678901234567890"])
def test_huge_numbers_are_answered(number):
    ws = fresh_socket()
    SERVER._on_message(ws, '{"type":"ECHO","id":1,"value":' + number + "}", TEXT)
    (reply,) = replies(ws)
    assert reply["type"] in ("ECHOED", "ERROR")


@quick
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_garbage_tokens_raise_only_auth_errors(token):
    auth = JWTAuth(secret=SECRET)
    with pytest.raises(AuthError):
        auth.verify(token)


@quick
@given(st.dictionaries(st.sampled_from(["sub", "exp", "nbf", "aud", "iss", "iat", "topics"]), json_values, max_size=6))
def test_signed_tokens_with_any_claims_verify_or_raise_auth_error(claims):
    auth = JWTAuth(secret=SECRET, audience="app", issuer="me")
    try:
        token = jwt.encode(claims, SECRET, algorithm="HS256")
    except (TypeError, ValueError):
        return  # pyjwt cannot even encode these claims
    try:
        verified = auth.verify(token)
    except AuthError:
        return
    assert verified["exp"] > time.time() - 1
    auth.topics_allowed(verified)


@quick
@given(st.lists(messages, min_size=1, max_size=5))
def test_batches_of_anything_are_answered_in_one_frame_or_not_at_all(items):
    ws = fresh_socket()
    SERVER._on_message(ws, json.dumps({"type": "BATCH", "id": 7, "messages": items}), TEXT)
    own = [r for r in replies(ws) if r["type"] != "MESSAGE"]
    assert len(own) == 1, own
    assert own[0].get("id") == 7
