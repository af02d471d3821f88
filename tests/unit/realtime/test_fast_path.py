"""The native message handler (Dispatcher.native_handler, uws_py._core.RealtimeDispatch)
against the Python one (Dispatcher.on_message): the same generated messages, sent to two
engines built alike, must give the same replies, close the same connections and leave the
same counts. No sockets: the fake socket of conftest.py receives what both send."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uws_py import Batching, RateLimit
from uws_py.ratelimit import TokenBucket
from uws_py.realtime.protocol import INVALID_MESSAGE, ProtocolError

from .conftest import TEXT, FakeSocket, Harness

BINARY = 2
MAX_PAYLOAD = 300
# Values that differ between two runs however equal the paths are: clocks and client ids.
VOLATILE = frozenset({"serverTime", "timestamp", "from", "clientId"})


class ManualClock:
    """A token bucket's clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def build(**options: Any) -> Harness:
    """An engine with a handler for every shape of answer the inline path distinguishes."""
    h = Harness(max_payload_length=MAX_PAYLOAD, **options)
    routes: dict[str, Callable[..., Any]] = {
        "ECHO": lambda client, message: message,
        "REPLY": lambda client, message: {"type": "REPLIED", "value": message.get("value")},
        "NONE": lambda client, message: None,
        "LIST": lambda client, message: [message.get("value")],
        "REFUSE": lambda client, message: (_ for _ in ()).throw(ProtocolError(INVALID_MESSAGE, "refused by handler")),
        "BOOM": lambda client, message: 1 // 0,
        "UNENCODABLE": lambda client, message: {"type": "BAD", "value": {1, 2}},
        "SET_ID": lambda client, message: message.update(id="changed") or {"type": "SET"},
        "CLOSE": lambda client, message: client.close(4000, "asked") or {"type": "CLOSING"},
    }
    for kind, handler in routes.items():
        h.engine.add_route(kind, handler)
    h.engine.add_route("STRICT", lambda client, message: {"type": "OK"},
                       schema=lambda m: None if isinstance(m.get("n"), int) else (_ for _ in ()).throw(ValueError("n")))
    return h


def normalized(value: Any, mask_retry_after: bool) -> Any:
    if isinstance(value, dict):
        return {key: "<volatile>" if key in VOLATILE or (mask_retry_after and key == "retryAfter")
                else normalized(item, mask_retry_after) for key, item in value.items()}
    if isinstance(value, list):
        return [normalized(item, mask_retry_after) for item in value]
    return value


def outcome(h: Harness, ws: FakeSocket, mask_retry_after: bool) -> dict[str, Any]:
    frames = [normalized(orjson.loads(data), mask_retry_after) for data, _ in ws.sent]
    routes = {kind: (route.calls, route.histogram.count if route.histogram is not None else None)
              for kind, route in h.engine.router.routes.items()}
    metrics = h.engine.metrics
    return {"frames": frames, "ended": ws.ended, "topics": sorted(ws.topics), "routes": routes,
            "errors": dict(metrics.errors), "rate_limited": metrics.rate_limited}


def run_both(messages: list[tuple[Any, int]], clock: bool, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Python path and native path over the same messages; their outcomes."""
    results = []
    for native in (False, True):
        h = build(**options)
        ws = h.connect()
        ws.sent.clear()  # CONNECTED carries a fresh client id and time
        if clock and ws.client.bucket is not None:
            ws.client.bucket = TokenBucket(h.engine.options.rate_limit, clock=ManualClock())
        handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
        for data, opcode in messages:
            handler(ws, data, opcode)
        h.loop.fire()  # what a batcher still holds
        results.append(outcome(h, ws, mask_retry_after=not clock))
    return results[0], results[1]


scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=12)
values = st.recursive(scalars, lambda children: st.lists(children, max_size=3)
                      | st.dictionaries(st.text(max_size=6), children, max_size=3), max_leaves=12)
kinds = st.sampled_from(["ECHO", "REPLY", "NONE", "LIST", "REFUSE", "BOOM", "UNENCODABLE", "SET_ID", "CLOSE", "STRICT",
                         "PING", "SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", "BATCH", "AUTH", "NOPE", ""]) | st.text(max_size=6)
objects = st.fixed_dictionaries(
    {"type": kinds | values},
    optional={"id": scalars, "value": values, "n": values, "topic": st.sampled_from(["news", "a/b", ""]) | values,
              "data": values, "messages": st.lists(st.fixed_dictionaries({"type": kinds}, optional={"id": scalars}),
                                                   max_size=3) | values},
)


def as_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)  # any int, Infinity too: the server must refuse what it cannot read


frames = (
    objects.map(lambda m: (as_text(m), TEXT))
    | st.text(max_size=40).map(lambda t: (t, TEXT))  # mostly not JSON
    | values.map(lambda v: (as_text(v), TEXT))
    | st.integers(MAX_PAYLOAD - 20, MAX_PAYLOAD + 20).map(lambda n: ('{"type":"ECHO","pad":"' + "é" * (n // 2) + '"}', TEXT))
    | st.binary(max_size=20).map(lambda b: (b, BINARY))
)
runs = st.lists(frames, min_size=1, max_size=12)
property_settings = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@property_settings
@given(runs)
def test_native_and_python_paths_answer_alike(messages):
    logging.disable(logging.CRITICAL)  # the BOOM handler's tracebacks, twice per example
    try:
        python, native = run_both(messages, clock=False, rate_limit=RateLimit(messages=1000, per_seconds=1))
    finally:
        logging.disable(logging.NOTSET)
    assert native == python


@property_settings
@given(runs, st.integers(1, 6))
def test_native_and_python_paths_refuse_alike_at_the_rate_limit(messages, allowance):
    python, native = run_both(messages, clock=True, rate_limit=RateLimit(messages=allowance, per_seconds=60,
                                                                        close_after=1))
    assert native == python


@property_settings
@given(runs)
def test_native_and_python_paths_agree_with_batching(messages):
    python, native = run_both(messages, clock=False, batching=Batching(max_size=3, max_wait_ms=5))
    assert native == python


def test_native_take_leaves_the_bucket_as_take_does():
    """The native path refills and takes a monotonic-clock bucket in C; the bucket then holds
    what TokenBucket.take would have left (up to the refill between the two reads)."""
    h = build(rate_limit=RateLimit(messages=3, per_seconds=3600))
    ws = h.connect()
    ws.sent.clear()
    native = h.engine.dispatcher.native_handler()
    for _ in range(4):
        native(ws, '{"type":"REPLY","id":1}', TEXT)
    bucket = ws.client.bucket
    assert [orjson.loads(data)["type"] for data, _ in ws.sent] == ["REPLIED", "REPLIED", "REPLIED", "ERROR"]
    assert 0 <= bucket.tokens < 0.01 and bucket.refused == 1


def test_binary_and_str_with_lone_surrogates_go_the_python_way():
    h = build()
    ws = h.connect()
    ws.sent.clear()
    native = h.engine.dispatcher.native_handler()
    native(ws, b"\x00\x01", BINARY)
    native(ws, '{"type":"ECHO","value":"\ud800"}', TEXT)
    replies = [orjson.loads(data) for data, _ in ws.sent]
    assert replies[0] == {"type": "ERROR", "code": "INVALID_MESSAGE", "message": "binary messages are not accepted"}
    assert replies[1]["type"] == "ERROR" and replies[1]["code"] == "INVALID_MESSAGE"


def test_ping_is_answered_natively_and_a_replaced_ping_is_honoured():
    h = build()
    ws = h.connect()
    ws.sent.clear()
    before = time.time_ns() // 1_000_000
    h.engine.dispatcher.native_handler()(ws, '{"type":"PING","id":5}', TEXT)
    (pong,) = [orjson.loads(data) for data, _ in ws.sent]
    assert pong["type"] == "PONG" and pong["id"] == 5 and before <= pong["serverTime"] <= time.time_ns() // 1_000_000
    ws.sent.clear()
    h.engine.dispatcher.builtins["PING"] = lambda client, message, out: {"type": "PONG", "custom": True}
    h.engine.dispatcher.native_handler()(ws, '{"type":"PING","id":6}', TEXT)
    assert [orjson.loads(data) for data, _ in ws.sent] == [{"type": "PONG", "custom": True, "id": 6}]
