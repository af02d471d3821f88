"""The native message handler (Dispatcher.native_handler, uws_py._core.RealtimeDispatch)
against the Python one (Dispatcher.on_message): the same generated messages, sent to two
engines built alike, must give the same replies, close the same connections and leave the
same counts. No sockets: the fake socket of conftest.py receives what both send."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Callable, Optional

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from uws_py import Batching, RateLimit
from uws_py.ratelimit import TokenBucket
from uws_py.realtime.protocol import INVALID_MESSAGE, ProtocolError
from uws_py.realtime.routing import Route

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


def test_native_batch_takes_its_items_tokens_as_take_does():
    """A BATCH's items take their tokens in C from a monotonic-clock bucket, on the scan path
    and on the decoding path (an id the scanner does not copy); a BATCH the bucket cannot pay
    for in full is refused whole by TokenBucket.take itself."""
    h = build(rate_limit=RateLimit(messages=9, per_seconds=3600))
    ws = h.connect()
    ws.sent.clear()
    native = h.engine.dispatcher.native_handler()
    pings = ",".join(['{"type":"PING","id":1}'] * 4)
    native(ws, '{"type":"BATCH","id":1,"messages":[%s]}' % pings, TEXT)  # scan path: 4 tokens
    native(ws, '{"type":"BATCH","id":2.5,"messages":[%s]}' % pings, TEXT)  # decoding path: 4 tokens
    native(ws, '{"type":"BATCH","id":3,"messages":[%s]}' % pings, TEXT)  # 1 left: refused
    bucket = ws.client.bucket
    replies = [orjson.loads(data) for data, _ in ws.sent]
    assert [(r["type"], r["id"], len(r.get("messages", []))) for r in replies] == [
        ("BATCH", 1, 4), ("BATCH", 2.5, 4), ("ERROR", 3, 0)]
    assert replies[2]["code"] == "RATE_LIMITED"
    assert 0 <= bucket.tokens < 0.01 and bucket.refused == 1


def test_native_take_changes_no_float_anyone_else_holds():
    """The C path updates the bucket's floats in place only while the bucket alone holds
    them: a value read from the bucket stays what it was."""
    h = build(rate_limit=RateLimit(messages=3, per_seconds=3600))
    ws = h.connect()
    native = h.engine.dispatcher.native_handler()
    native(ws, '{"type":"REPLY"}', TEXT)
    native(ws, '{"type":"REPLY"}', TEXT)  # the bucket's floats are its own now
    held_tokens, held_updated = ws.client.bucket.tokens, ws.client.bucket.updated
    tokens_text, updated_text = repr(held_tokens), repr(held_updated)
    native(ws, '{"type":"REPLY"}', TEXT)
    assert (repr(held_tokens), repr(held_updated)) == (tokens_text, updated_text)
    assert ws.client.bucket.tokens < held_tokens - 0.99 and ws.client.bucket.updated > held_updated


def test_retry_after_at_the_boundary_is_the_buckets_on_both_paths():
    """A monotonic-clock bucket (taken in C on the native path): the last token is given, the
    next request refused with RATE_LIMITED whose retryAfter is the bucket's own wait, on both
    paths, and the counts agree."""
    for native in (False, True):
        h = build(rate_limit=RateLimit(messages=2, per_seconds=3600))
        ws = h.connect()
        ws.sent.clear()
        handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
        for number in range(3):
            handler(ws, f'{{"type":"REPLY","id":{number}}}', TEXT)
        bucket = ws.client.bucket
        replies = [orjson.loads(data) for data, _ in ws.sent]
        assert [reply["type"] for reply in replies] == ["REPLIED", "REPLIED", "ERROR"], native
        assert replies[2]["code"] == "RATE_LIMITED" and replies[2]["retryAfter"] == int(bucket.retry_after() * 1000) + 1
        assert 1_799_000 < replies[2]["retryAfter"] <= 1_800_001 and bucket.refused == 1
        assert h.engine.router.get("REPLY").calls == 2 and h.engine.metrics.rate_limited == 1


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


@pytest.mark.parametrize("kind", ["PING", "SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", "BATCH"])
def test_a_route_added_for_a_builtin_later_replaces_it_on_the_same_handler(kind):
    """The native handler remembers that no built-in had a route while the routes dict is
    unchanged: another route added, then one for the built-in, then that one removed, must
    each be seen at the next message."""
    h = build()
    ws = h.connect()
    handler = h.engine.dispatcher.native_handler()
    texts = {"PING": '{"type":"PING","id":1}', "SUBSCRIBE": '{"type":"SUBSCRIBE","topic":"t","id":1}',
             "UNSUBSCRIBE": '{"type":"UNSUBSCRIBE","topic":"t","id":1}',
             "PUBLISH": '{"type":"PUBLISH","topic":"t","data":1,"id":1}',
             "BATCH": '{"type":"BATCH","id":1,"messages":[{"type":"PING"}]}'}
    for text in texts.values():
        handler(ws, text, TEXT)
    ws.sent.clear()
    h.engine.add_route("OTHER", lambda client, message: {"type": "OTHER"})
    handler(ws, texts[kind], TEXT)
    builtin = [orjson.loads(data)["type"] for data, _ in ws.sent]
    assert builtin and builtin != ["ROUTED"]
    ws.sent.clear()
    # add_route refuses a built-in's name; a route in the dict (as the Python path would
    # honour it) is what the C path checks.
    h.engine.router.routes[kind] = Route(kind, lambda client, message: {"type": "ROUTED"}, None)
    handler(ws, texts[kind], TEXT)
    assert [orjson.loads(data) for data, _ in ws.sent] == [{"type": "ROUTED", "id": 1}]
    ws.sent.clear()
    del h.engine.router.routes[kind]
    handler(ws, texts[kind], TEXT)
    assert [orjson.loads(data)["type"] for data, _ in ws.sent] == builtin


# ---- PUBLISH / SUBSCRIBE / UNSUBSCRIBE: the C path's plain case against the Python built-ins ----
# A sender and a watcher; what both receive (the watcher: the fan-out), what they are
# subscribed to and the error counts must match. Small limits, so that the refusals happen.
PUBSUB_LIMITS = {"max_subscriptions": 3, "max_topic_length": 8, "max_batch_items": 5}
WATCHED = ("news", "a/b", "t1")
topics = st.sampled_from(["news", "a/b", "t1", "t2", "t3", "t4", "", "#user:x", "#user:", "#control", "#controls",
                          "é/ü", "abcdefgh", "abcdefghi"]) | values
pubsub_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE"]), "topic": topics},
    optional={"id": scalars, "data": values, "echo": st.booleans() | values, "recover": values, "since": values},
) | st.fixed_dictionaries(
    {"type": st.sampled_from(["PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE"])},
    optional={"id": scalars, "data": values, "echo": values},
)
# A BATCH of them (and of PINGs, other types, non-objects, a BATCH inside), maybe over the
# items limit (the property test's engine allows 5).
pubsub_batches = st.fixed_dictionaries(
    {"type": st.just("BATCH"),
     "messages": st.lists(pubsub_messages | st.fixed_dictionaries({"type": st.sampled_from(["PING", "ECHO", "BATCH"])},
                                                                  optional={"id": scalars}) | values, max_size=6)},
    optional={"id": scalars},
)
# Mostly pub/sub requests (three in four), the other frames of this file between them.
pubsub_runs = st.lists(st.one_of(*[pubsub_messages.map(lambda m: (as_text(m), TEXT))] * 2,
                                 pubsub_batches.map(lambda m: (as_text(m), TEXT)), frames),
                       min_size=1, max_size=14)


def pubsub_setup(name: str) -> dict[str, Any]:
    """Options for one of the engines the pub/sub property test runs on."""
    if name == "batching":
        return {"batching": Batching(max_size=3, max_wait_ms=5)}
    return {}


def arm(h: Harness, name: str) -> None:
    """What a setup sets on the engine after it is built (each sends the C path to Python;
    "claims" is set on the sender in run_pubsub)."""
    if name == "hook":
        h.engine.pubsub.topic_hook = lambda client, topic, action: topic != "t2"
    elif name == "history":
        from uws_py.realtime.history import HistoryOptions
        h.engine.add_history(HistoryOptions(pattern="t*"))


def run_pubsub(messages: list[tuple[Any, int]], setup: str, rate: int = 1000) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both paths over the same messages from a sender, a watcher subscribed to WATCHED; their
    outcomes, the watcher's frames and the server's publishes included."""
    results = []
    for native in (False, True):
        h = build(rate_limit=RateLimit(messages=rate, per_seconds=60, close_after=3), **PUBSUB_LIMITS,
                  **pubsub_setup(setup))
        arm(h, setup)
        watcher = h.connect()
        sender = h.connect()
        if setup == "claims":
            sender.client.topics_allowed = ["news", "t*"]
        for topic in WATCHED:
            watcher.client.subscribe(topic)
        watcher.sent.clear()
        sender.sent.clear()
        if sender.client.bucket is not None:
            sender.client.bucket = TokenBucket(h.engine.options.rate_limit, clock=ManualClock())
        handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
        for data, opcode in messages:
            handler(sender, data, opcode)
        h.loop.fire()
        ids = {sender.client.id: "<sender>", watcher.client.id: "<watcher>"}
        outcome_ = outcome(h, sender, mask_retry_after=True)
        outcome_["watcher"] = [normalized_from(orjson.loads(data), ids) for data, _ in watcher.sent]
        outcome_["frames"] = [normalized_from(orjson.loads(data), ids) for data, _ in sender.sent]
        outcome_["watcher_topics"] = sorted(watcher.topics)
        outcome_["published"] = [(topic, normalized_from(orjson.loads(payload), ids)) for topic, payload, _ in h.loop.published]
        results.append(outcome_)
    return results[0], results[1]


def normalized_from(value: Any, ids: dict[str, str]) -> Any:
    """A frame with the clocks masked and the client ids named by role (both runs make new ids,
    and each server its own history epoch)."""
    if isinstance(value, dict):
        return {key: ids.get(item, item) if key == "from" and isinstance(item, str)
                else "<volatile>" if key in ("serverTime", "timestamp", "clientId", "retryAfter", "epoch")
                else normalized_from(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [normalized_from(item, ids) for item in value]
    return value


@property_settings
@given(pubsub_runs)
def test_native_and_python_pubsub_answer_and_fan_out_alike(messages):
    logging.disable(logging.CRITICAL)
    try:
        python, native = run_pubsub(messages, "plain")
    finally:
        logging.disable(logging.NOTSET)
    assert native == python


@property_settings
@given(pubsub_runs, st.integers(1, 12))
def test_native_and_python_pubsub_refuse_alike_at_the_rate_limit(messages, allowance):
    """A BATCH takes one token per item: refused whole (RATE_LIMITED naming the tokens it
    needs) or closed with 1008 alike."""
    python, native = run_pubsub(messages, "plain", rate=allowance)
    assert native == python


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pubsub_runs, st.sampled_from(["hook", "batching", "history", "claims"]))
def test_native_and_python_pubsub_agree_where_the_c_path_defers(messages, setup):
    """A topic hook, batching, a history pattern or topic claims: the C path hands the
    request to Python, which must then answer as on its own."""
    logging.disable(logging.CRITICAL)
    try:
        python, native = run_pubsub(messages, setup)
    finally:
        logging.disable(logging.NOTSET)
    assert native == python


def test_native_pubsub_cases_one_by_one():
    """Each pub/sub case once, in the plain setup: the C path answers the valid ones and the
    Python path the refusals, with the same frames; the expected frames are spelled out so
    that a C path that went wrong the same way as a changed Python path is still caught."""
    cases = [
        ('{"type":"SUBSCRIBE","topic":"t1","id":1}', [{"type": "SUBSCRIBED", "topic": "t1", "id": 1}], []),
        ('{"type":"SUBSCRIBE","topic":"t1"}', [{"type": "SUBSCRIBED", "topic": "t1"}], []),
        ('{"type":"PUBLISH","topic":"news","data":[1],"id":"p"}', [{"type": "PUBLISHED", "topic": "news", "id": "p"}],
         [{"type": "MESSAGE", "topic": "news", "data": [1], "from": "<sender>"}]),
        ('{"type":"PUBLISH","topic":"news","data":2,"echo":true}',
         [{"type": "MESSAGE", "topic": "news", "data": 2, "from": "<sender>"}],
         [{"type": "MESSAGE", "topic": "news", "data": 2, "from": "<sender>"}]),
        ('{"type":"PUBLISH","topic":"news","data":3,"id":null}', [{"type": "PUBLISHED", "topic": "news"}],
         [{"type": "MESSAGE", "topic": "news", "data": 3, "from": "<sender>"}]),
        ('{"type":"PUBLISH","topic":"news","id":4}',
         [{"type": "ERROR", "code": "INVALID_MESSAGE", "message": "field 'data' is required", "id": 4}], []),
        ('{"type":"PUBLISH","topic":"#user:u","data":1,"id":5}',
         [{"type": "ERROR", "code": "FORBIDDEN", "message": "topic '#user:u' is reserved for the server", "id": 5}], []),
        ('{"type":"SUBSCRIBE","topic":"#control","id":6}',
         [{"type": "ERROR", "code": "FORBIDDEN", "message": "topic '#control' is reserved for the server", "id": 6}], []),
        ('{"type":"SUBSCRIBE","topic":"abcdefghi","id":7}',
         [{"type": "ERROR", "code": "LIMIT_EXCEEDED", "message": "a topic has at most 8 characters, this one 9", "id": 7,
           "limit": "maxTopicLength", "max": 8}], []),
        ('{"type":"UNSUBSCRIBE","topic":"t1","id":8}', [{"type": "UNSUBSCRIBED", "topic": "t1", "id": 8}], []),
        ('{"type":"UNSUBSCRIBE","topic":"","id":9}',
         [{"type": "ERROR", "code": "INVALID_MESSAGE", "message": "field 'topic' must be a non-empty string", "id": 9}], []),
        ('{"type":"UNSUBSCRIBE","topic":"#control"}', [{"type": "UNSUBSCRIBED", "topic": "#control"}], []),
    ]
    for native in (False, True):
        h = build(**PUBSUB_LIMITS)
        watcher, sender = h.connect(), h.connect()
        watcher.client.subscribe("news")
        ids = {sender.client.id: "<sender>"}
        handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
        for data, expected, watched in cases:
            watcher.sent.clear()
            sender.sent.clear()
            handler(sender, data, TEXT)
            assert [normalized_from(orjson.loads(d), ids) for d, _ in sender.sent] == expected, (native, data)
            assert [normalized_from(orjson.loads(d), ids) for d, _ in watcher.sent] == watched, (native, data)
        assert sender.topics == set()


def test_native_subscribe_refuses_past_max_subscriptions_as_python_does():
    for native in (False, True):
        h = build(**PUBSUB_LIMITS)
        ws = h.connect()
        ws.sent.clear()
        handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
        for topic in ("t1", "t2", "t3", "t1", "t4"):
            handler(ws, orjson.dumps({"type": "SUBSCRIBE", "topic": topic}).decode(), TEXT)
        replies = [orjson.loads(data) for data, _ in ws.sent]
        assert replies[:4] == [{"type": "SUBSCRIBED", "topic": topic} for topic in ("t1", "t2", "t3", "t1")]
        assert replies[4] == {"type": "ERROR", "code": "LIMIT_EXCEEDED", "message": "at most 3 subscriptions per connection",
                              "limit": "maxSubscriptions", "max": 3}
        assert ws.topics == {"t1", "t2", "t3"} and h.engine.metrics.errors["LIMIT_EXCEEDED"] == 1


def test_native_batch_of_builtins_answers_in_one_frame():
    """A BATCH of built-ins, done in C: one BATCH frame with the replies in order (ids kept),
    the echo sent at once before it, the fan-out to the watcher, an ACK for an empty one."""
    batch = {"type": "BATCH", "id": "b", "messages": [
        {"type": "SUBSCRIBE", "topic": "t1", "id": 1},
        {"type": "PUBLISH", "topic": "news", "data": "x", "echo": True, "id": 2},
        {"type": "PING"},
        {"type": "UNSUBSCRIBE", "topic": "t1"},
        {"type": "SUBSCRIBE", "topic": "#control", "id": 3},
        {"type": "BATCH", "messages": []},
        7,
    ]}
    expected = [
        {"type": "MESSAGE", "topic": "news", "data": "x", "from": "<sender>"},
        {"type": "BATCH", "timestamp": "<volatile>", "id": "b", "messages": [
            {"type": "SUBSCRIBED", "topic": "t1", "id": 1},
            {"type": "PUBLISHED", "topic": "news", "id": 2},
            {"type": "PONG", "serverTime": "<volatile>"},
            {"type": "UNSUBSCRIBED", "topic": "t1"},
            {"type": "ERROR", "code": "FORBIDDEN", "message": "topic '#control' is reserved for the server", "id": 3},
            {"type": "ERROR", "code": "INVALID_MESSAGE", "message": "a BATCH cannot contain a BATCH"},
            {"type": "ERROR", "code": "INVALID_MESSAGE", "message": "each batched message is an object with a type"},
        ]},
        {"type": "ACK", "id": "e"},
    ]
    for native in (False, True):
        h = build(**{**PUBSUB_LIMITS, "max_batch_items": 10})
        watcher, sender = h.connect(), h.connect()
        watcher.client.subscribe("news")
        watcher.sent.clear()
        sender.sent.clear()
        handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
        handler(sender, orjson.dumps(batch).decode(), TEXT)
        handler(sender, '{"type":"BATCH","id":"e","messages":[]}', TEXT)
        ids = {sender.client.id: "<sender>"}
        frames_ = [normalized_from(orjson.loads(data), ids) for data, _ in sender.sent]
        assert frames_ == expected, native
        assert [normalized_from(orjson.loads(data), ids) for data, _ in watcher.sent] == [expected[0]]
        assert sender.topics == set()


# ---- Built-ins answered from the scan (cpp/src/RealtimeScan.cpp), without decoding ------------
# The native path writes PONG, SUBSCRIBED and UNSUBSCRIBED itself when the scanner knows the
# text: its bytes must be the ones orjson.dumps gives on the Python path, not only equal JSON.

def scan_texts() -> st.SearchStrategy[str]:
    """PING / SUBSCRIBE / UNSUBSCRIBE texts written by hand: any spacing and key order, extra
    fields with nested values, escapes and unicode, a key twice, and odd ids."""
    from .test_scan import spaces, values as nested
    kinds = st.sampled_from(['"PING"', '"SUBSCRIBE"', '"UNSUBSCRIBE"', '"PUBLISH"', '"PUBLISH"', '"P\\u0049NG"',
                             '"PING "', '"ECHO"'])
    odd_ids = st.sampled_from(["1", "0", "-0", "1.0", "1e2", "-7", str(2**53), str(2**53 + 1), str(-2**53), str(2**60),
                               str(2**64), '"abc"', '""', '"\\u0041"', '"é"', '"x\\"y"', '"a/b"', "null", "true", "false",
                               "[1]", '{"a":1}', "1.5e3"])
    topic_texts = st.sampled_from(['"news"', '"a/b"', '"t1"', '"t\\u0032"', '"é"', '""', '"#user:x"', '"#control"',
                                   '"toolongtopic"', "1", "null", '["news"]', '"éééééééé"', '"ééééééééé"',
                                   '"😀😀😀😀😀😀😀😀"', '"😀😀😀😀😀😀😀😀😀"', '"#user:"', '"#controls"', '"#contro"',
                                   '"abcdefgh"', '"abcdefghi"', '"é/ü"'])
    nested_texts = nested.map(lambda v: json.dumps(v, ensure_ascii=False)) | nested.map(json.dumps)
    member = st.one_of(st.tuples(st.just('"id"'), odd_ids), st.tuples(st.just('"topic"'), topic_texts),
                       st.tuples(st.sampled_from(['"data"', '"data"', '"extra"', '"é"', '"x\\u0041"']), nested_texts),
                       st.tuples(st.just('"echo"'), st.sampled_from(["true", "false", "null", "1", "0", '""', "[]"])),
                       st.tuples(st.just('"type"'), kinds))

    @st.composite
    def texts(draw: st.DrawFn) -> str:
        members = [('"type"', draw(kinds))] + draw(st.lists(member, max_size=4))
        members = draw(st.permutations(members))
        parts = [draw(spaces) + key + draw(spaces) + ":" + draw(spaces) + value + draw(spaces) for key, value in members]
        return draw(spaces) + "{" + ",".join(parts) + "}" + draw(spaces)

    return texts()


def masked(data: bytes, sender: str) -> bytes:
    """A frame's bytes with the server's clocks and the sender's id (new in each run) masked."""
    data = re.sub(rb'"(serverTime|timestamp)":\d+', rb'"\1":0', data)
    data = re.sub(rb'"retryAfter":\d+', b'"retryAfter":0', data)
    data = re.sub(rb'"epoch":"[0-9a-f]+"', b'"epoch":"<epoch>"', data)  # a history's, new in each engine
    return data.replace(sender.encode(), b"<sender>")


def run_raw(texts: list[str], rate: int = 0, change: Optional[Callable[[Harness, FakeSocket], None]] = None,
            after: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both paths over the same texts from one connection, a watcher subscribed to WATCHED:
    the exact bytes each was sent and the server published, the sender's topics and the
    error counts. With `rate`, a rate limit of that many messages (a clock that stands still).
    `change(harness, sender)`, when given, is made after the first `after` texts."""
    results = []
    for native in (False, True):
        limit = {"rate_limit": RateLimit(messages=rate, per_seconds=60, close_after=3)} if rate else {}
        h = build(**PUBSUB_LIMITS, **limit)
        watcher = h.connect()
        ws = h.connect()
        if rate:
            ws.client.bucket = TokenBucket(h.engine.options.rate_limit, clock=ManualClock())
        for topic in WATCHED:
            watcher.client.subscribe(topic)
        watcher.sent.clear()
        ws.sent.clear()
        handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
        sender = ws.client.id  # a change may give it another one: the first is masked
        for number, text in enumerate(texts):
            if change is not None and number == after:
                change(h, ws)
            handler(ws, text, TEXT)
        results.append({"frames": [masked(data, sender) for data, _ in ws.sent],
                        "watcher": [masked(data, sender) for data, _ in watcher.sent],
                        "published": [(topic, masked(data, sender)) for topic, data, _ in h.loop.published],
                        "fanned_out": [(topic, masked(data, sender), compress) for topic, data, compress in ws.published],
                        "topics": sorted(ws.topics), "errors": dict(h.engine.metrics.errors), "ended": ws.ended,
                        "rate_limited": h.engine.metrics.rate_limited})
    return results[0], results[1]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(scan_texts(), min_size=1, max_size=6))
@example([f'{{"type":"PING","id":{odd}}}' for odd in
          ("-0", "1.0", "1e2", str(2**60), str(2**53), '"\\u0041"', "null", '"é"', '"\x7f"', "true")]
         + ['{"type":"PING"}', '{"id":1,"type":"PING","id":2}', '{ "type" : "PING" , "id" : 3 }'])
@example([f'{{"type":"{kind}","topic":{topic},"id":{odd}}}' for kind in ("SUBSCRIBE", "UNSUBSCRIBE")
          for topic, odd in (('"news"', "-0"), ('"a/b"', '"x"'), ('"t\\u0031"', "1"), ('"é"', "2"), ('"#user:x"', "3"),
                             ('"toolongtopic"', "4"), ('""', "5"), ('"t1"', "null"), ('"t2"', "1e2"), ('"t3"', "6"),
                             ('"éééééééé"', "7"), ('"😀😀😀😀😀😀😀😀"', "8"), ('"ééééééééé"', "9"), ('"#user:"', "10"),
                             ('"#controls"', "11"))])
@example([f'{{"type":"PUBLISH","topic":"news","data":{data},"id":{odd}{echo}}}'
          for data, odd, echo in (('{"a":[1,2]}', "1", ""), ('{"a": [1,2]}', "2", ',"echo":true'), ("-0", "3", ""),
                                  ("1.5", "null", ',"echo":false'), ('"\\u00e9"', '"x"', ',"echo":1'),
                                  ('{"a":1,"a":2}', "4", ""), ("[true,false,null]", "-0", ""), ('"é"', "5", ',"echo":null'))]
         + ['{"type":"PUBLISH","topic":"a/b","data":{}}', '{"type":"PUBLISH","topic":"t1","id":6}',
            '{"type":"PUBLISH","topic":"#user:x","data":1,"id":7}', '{"data":[{"b":{"c":[]}}],"topic":"news","type":"PUBLISH"}'])
def test_builtins_from_the_scan_give_the_python_paths_bytes(texts):
    python, native = run_raw(texts)
    assert native == python


# BATCH texts written by hand: items of every kind the scan answers (with their odd spacing,
# ids and topics), and items it must leave to Python (other types, a BATCH inside, non-objects,
# ids it does not copy, refusals), maybe more than max_batch_items (5); odd "messages" too.
BATCH_IDS = ["1", "-0", "1.5", '"b"', '"\\u0062"', "null", "true", "[1]", str(2**60)]
batch_item_texts = st.sampled_from(['{"type":"BATCH","messages":[]}', '{"type":"BATCH"}', "7", "[]", '"PING"',
                                    '{"type":"ECHO","id":1}', '{"type":"NOPE"}', '{"id":1}', '{"type":"PING","id":1.5}',
                                    '{"type":"SUBSCRIBE","topic":"#control","id":3}',
                                    '{"type":"SUBSCRIBE","topic":"t4","id":4}', '{"type":"PUBLISH","topic":"news","data":1}',
                                    '{"type":"PUBLISH","topic":"news","data":1,"echo":true,"id":5}'])


@st.composite
def batch_texts(draw: st.DrawFn) -> str:
    from .test_scan import spaces
    items = draw(st.lists(scan_texts() | batch_item_texts | batch_item_texts, max_size=7))
    messages = draw(st.sampled_from(["[]", "{}", '"x"', "null"]) | st.just(
        "[" + ",".join(draw(spaces) + item + draw(spaces) for item in items) + "]"))
    members = [('"type"', '"BATCH"')]
    if draw(st.integers(0, 9)):
        members.append(('"messages"', messages))
    if draw(st.booleans()):
        members.append(('"id"', draw(st.sampled_from(BATCH_IDS))))
    if not draw(st.integers(0, 9)):
        members.append(('"extra"', "[1, 2]"))
    members = draw(st.permutations(members))
    return "{" + ",".join(draw(spaces) + key + draw(spaces) + ":" + value for key, value in members) + "}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(batch_texts() | scan_texts(), min_size=1, max_size=5), st.sampled_from([0, 0, 3, 6, 12]))
@example(['{"type":"BATCH","id":1,"messages":[{"type":"PING","id":1},{"type":"SUBSCRIBE","topic":"t1","id":2},'
          '{"type":"PUBLISH","topic":"news","data":{"a":[1]},"echo":true,"id":3},{"type":"UNSUBSCRIBE","topic":"t1"},'
          '{"type":"PING"}]}'], 0)
@example(['{"type":"BATCH","id":2,"messages":[{"type":"PING","id":1},{"type":"SUBSCRIBE","topic":"#control","id":2},'
          '{"type":"PING","id":3}]}', '{"type":"BATCH","messages":[{"type":"PING"},{"type":"BATCH","messages":[]}]}'], 0)
@example(['{"type":"BATCH","messages":[]}', '{"type":"BATCH","id":null,"messages":[]}',
          '{"type":"BATCH","messages":[{"type":"PUBLISH","topic":"news","data":1}]}',
          '{"type":"BATCH","id":"p","messages":[{"type":"PUBLISH","topic":"news","data":1}]}'], 0)
@example(['{"type":"BATCH","id":3,"messages":[{"type":"PING","id":1},{"type":"PING","id":2},{"type":"PING","id":3}]}',
          '{"type":"BATCH","id":4,"messages":[{"type":"PING","id":1},{"type":"PING","id":2}]}',
          '{"type":"BATCH","messages":[{"type":"PING","id":1},{"type":"PING","id":2}]}'], 3)
@example(['{"type":"BATCH","messages":[' + ",".join(['{"type":"SUBSCRIBE","topic":"t%d"}' % n for n in range(1, 5)])
          + "]}", '{"type":"BATCH","messages":[' + ",".join(['{"type":"PING"}'] * 6) + "]}"], 0)
def test_a_batch_from_the_scan_gives_the_python_paths_bytes(texts, rate):
    """Mixed items, refusals inside (the rest done by Python), a BATCH inside, an empty list,
    no reply when no item makes one (an ACK with an id), over max_batch_items, and a rate limit
    that refuses the BATCH for its items' tokens (or closes the connection)."""
    logging.disable(logging.CRITICAL)
    try:
        python, native = run_raw(texts, rate)
    finally:
        logging.disable(logging.NOTSET)
    assert native == python


def test_a_long_batch_from_the_scan_gives_the_python_paths_bytes():
    """32 items (the most the scan takes) with long ids, a reply past the stack buffer, and 33
    (the decoding path): the same bytes on both paths."""
    texts = ['{"type":"BATCH","id":"%s","messages":[%s]}' % ("b" * 90, ",".join(
        '{"type":"PING","id":"%s"}' % (str(n) * 100) for n in range(count))) for count in (32, 33)]
    sent = []
    for native in (False, True):
        h = Harness(max_payload_length=100_000, max_batch_items=40)
        ws = h.connect()
        ws.sent.clear()
        handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
        for text in texts:
            handler(ws, text, TEXT)
        sent.append([masked(data, ws.client.id) for data, _ in ws.sent])
    assert sent[0] == sent[1]
    assert [len(orjson.loads(data)["messages"]) for data in sent[1]] == [32, 33]
    assert len(sent[1][0]) > 3000


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The texts given to orjson.loads by the dispatcher (the decoding path), in order."""
    from uws_py.realtime import dispatch

    texts: list[Any] = []

    def counting_loads(data: Any) -> Any:
        texts.append(data)
        return orjson.loads(data)

    monkeypatch.setattr(dispatch, "_loads", counting_loads)
    return texts


def test_a_batch_of_builtins_is_answered_from_the_scan(decoded):
    """A BATCH of PINGs, SUBSCRIBEs, UNSUBSCRIBEs and PUBLISHes that the scanner knows is
    answered without orjson.loads, its reply bytes spelled out; an item for Python (a reserved
    topic) makes the rest of it, only, take the decoding path."""
    h = build(**PUBSUB_LIMITS)
    watcher, ws = h.connect(), h.connect()
    watcher.client.subscribe("news")
    watcher.sent.clear()
    ws.sent.clear()
    handler = h.engine.dispatcher.native_handler()
    handler(ws, '{"type":"BATCH","id":9,"messages":[{"type":"PING","id":1},{"type":"SUBSCRIBE","topic":"t1","id":"s"},'
                '{"type":"PUBLISH","topic":"news","data":[1],"echo":true,"id":2},{"type":"PUBLISH","topic":"news","data":3},'
                '{"type":"UNSUBSCRIBE","topic":"t2"}]}', TEXT)
    handler(ws, '{"type":"BATCH","messages":[{"type":"PUBLISH","topic":"news","data":4}]}', TEXT)
    handler(ws, '{"type":"BATCH","id":"a","messages":[]}', TEXT)
    assert decoded == []
    assert [masked(data, ws.client.id) for data, _ in ws.sent] == [
        b'{"type":"MESSAGE","topic":"news","data":[1],"from":"<sender>"}',
        b'{"type":"BATCH","timestamp":0,"messages":[{"type":"PONG","serverTime":0,"id":1},'
        b'{"type":"SUBSCRIBED","topic":"t1","id":"s"},{"type":"PUBLISHED","topic":"news","id":2},'
        b'{"type":"UNSUBSCRIBED","topic":"t2"}],"id":9}',
        b'{"type":"ACK","id":"a"}']
    assert [masked(data, ws.client.id) for data, _ in watcher.sent] == [
        b'{"type":"MESSAGE","topic":"news","data":[1],"from":"<sender>"}',
        b'{"type":"MESSAGE","topic":"news","data":3,"from":"<sender>"}',
        b'{"type":"MESSAGE","topic":"news","data":4,"from":"<sender>"}']
    ws.sent.clear()
    handler(ws, '{"type":"BATCH","messages":[{"type":"PING","id":1},{"type":"SUBSCRIBE","topic":"#control","id":2},'
                '{"type":"SUBSCRIBE","topic":"t3","id":3}]}', TEXT)
    assert len(decoded) == 2  # the BATCH and the replies before the refused item
    assert [masked(data, ws.client.id) for data, _ in ws.sent] == [
        b'{"type":"BATCH","timestamp":0,"messages":[{"type":"PONG","serverTime":0,"id":1},'
        b'{"type":"ERROR","code":"FORBIDDEN","message":"topic \'#control\' is reserved for the server","id":2},'
        b'{"type":"SUBSCRIBED","topic":"t3","id":3}]}']
    assert ws.topics == {"t1", "t3"}


def set_later(name: str) -> Callable[[Harness, FakeSocket], None]:
    """A change made between messages that the scan path must see at once (it keeps no copy
    of the pub/sub state): each one changes what the Python path answers."""
    def change(h: Harness, ws: FakeSocket) -> None:
        pubsub = h.engine.pubsub
        if name == "hook":
            pubsub.topic_hook = lambda client, topic, action: topic != "t1"
        elif name == "reserved":
            pubsub.reserved = lambda topic: topic.startswith("a/")
        elif name == "reserved-off":
            pubsub.reserved = None
        elif name == "max_topic_length":
            pubsub.max_topic_length = 2
        elif name == "max_subscriptions":
            pubsub.max_subscriptions = 1
        elif name == "claims":
            ws.client.topics_allowed = ["news"]
        elif name == "compress":
            pubsub.compress = not pubsub.compress
        elif name == "client_id":
            ws.client.id = 'c"2\\\né'  # one the MESSAGE's "from" escapes
        elif name == "history":
            from uws_py.realtime.history import HistoryOptions
            h.engine.add_history(HistoryOptions(pattern="t*"))
        else:
            raise AssertionError(name)
    return change


LATER_TEXTS = [f'{{"type":"{kind}","topic":"{topic}","id":{number}}}'
               for number, (kind, topic) in enumerate(
                   [("SUBSCRIBE", "news"), ("SUBSCRIBE", "t1"), ("SUBSCRIBE", "news"), ("UNSUBSCRIBE", "t2"),
                    ("UNSUBSCRIBE", "t1"), ("SUBSCRIBE", "a/b"), ("SUBSCRIBE", "#user:x"), ("SUBSCRIBE", "t1"),
                    ("SUBSCRIBE", "news"), ("UNSUBSCRIBE", "news"), ("SUBSCRIBE", "é/ü"), ("UNSUBSCRIBE", "zz")])]
LATER_TEXTS += ['{"type":"PUBLISH","topic":"t1","data":1,"id":90}', '{"type":"PUBLISH","topic":"a/b","data":2,"id":91}',
                '{"type":"PUBLISH","topic":"#user:x","data":3,"id":92}', '{"type":"PUBLISH","topic":"news","data":4}']


@pytest.mark.parametrize("name", ["hook", "reserved", "reserved-off", "max_topic_length", "max_subscriptions",
                                  "claims", "history", "compress", "client_id"])
@pytest.mark.parametrize("after", [0, 2, 5])
def test_scan_path_sees_pubsub_state_set_later(name, after):
    """Hooks, limits and claims set after messages were answered natively change the next
    answers exactly as on the Python path (subscribed twice, unsubscribed when not
    subscribed, reserved and non-ASCII topics included)."""
    python, native = run_raw(LATER_TEXTS, change=set_later(name), after=after)
    assert native == python
    unchanged, _ = run_raw(LATER_TEXTS)
    assert python != unchanged, "the change made no difference: the test would not see it ignored"


def test_scan_path_skips_the_decoder_and_falls_back_to_it(decoded):
    """The common PING, SUBSCRIBE, UNSUBSCRIBE and PUBLISH are answered without orjson.loads;
    an id the scanner does not copy (a float), a topic with an escape and data that orjson
    would write otherwise (a space) take the decoding path."""
    h = build(**PUBSUB_LIMITS)
    ws = h.connect()
    ws.sent.clear()
    handler = h.engine.dispatcher.native_handler()
    handler(ws, '{"type":"PING","id":7}', TEXT)
    handler(ws, '{"type":"SUBSCRIBE","topic":"news","id":"s"}', TEXT)
    handler(ws, '{"type":"UNSUBSCRIBE","topic":"news"}', TEXT)
    handler(ws, '{"type":"PUBLISH","topic":"t2","data":{"n":[1,"x"]},"echo":true}', TEXT)
    assert decoded == []
    handler(ws, '{"type":"PING","id":7.0}', TEXT)
    handler(ws, '{"type":"SUBSCRIBE","topic":"t\\u0031"}', TEXT)
    handler(ws, '{"type":"PUBLISH","topic":"t2","data":{"n": 1},"id":8}', TEXT)
    assert len(decoded) == 3
    frames = [masked(data, ws.client.id) for data, _ in ws.sent]
    assert frames == [b'{"type":"PONG","serverTime":0,"id":7}', b'{"type":"SUBSCRIBED","topic":"news","id":"s"}',
                      b'{"type":"UNSUBSCRIBED","topic":"news"}',
                      b'{"type":"MESSAGE","topic":"t2","data":{"n":[1,"x"]},"from":"<sender>"}',
                      b'{"type":"PONG","serverTime":0,"id":7.0}', b'{"type":"SUBSCRIBED","topic":"t1"}',
                      b'{"type":"PUBLISHED","topic":"t2","id":8}']
    assert ws.topics == {"t1"}


def test_scan_path_checks_topics_on_their_bytes(decoded):
    """The topic checks are made on the scanned UTF-8 (no str made): a non-ASCII topic within
    max_topic_length characters (more bytes than that) is answered without the decoder; one
    character over, a reserved topic and a prefix-only match take the decoding path (whose
    answer the property tests compare)."""
    h = build(**PUBSUB_LIMITS)
    ws = h.connect()
    ws.sent.clear()
    handler = h.engine.dispatcher.native_handler()
    within = ["éééééééé", "😀😀😀😀😀😀😀😀", "é/ü", "#contro", "#Control", "#user"]
    for topic in within:
        handler(ws, f'{{"type":"SUBSCRIBE","topic":"{topic}","id":1}}', TEXT)
        handler(ws, f'{{"type":"PUBLISH","topic":"{topic}","data":1,"id":2}}', TEXT)
        handler(ws, f'{{"type":"UNSUBSCRIBE","topic":"{topic}","id":3}}', TEXT)
    assert decoded == []
    assert [orjson.loads(data)["topic"] for data, _ in ws.sent] == [topic for topic in within for _ in range(3)]
    for topic in ["ééééééééé", "😀😀😀😀😀😀😀😀😀", "#user:", "#user:x", "#control"]:
        handler(ws, f'{{"type":"SUBSCRIBE","topic":"{topic}","id":1}}', TEXT)
        handler(ws, f'{{"type":"PUBLISH","topic":"{topic}","data":1,"id":2}}', TEXT)
    assert len(decoded) == 10
    assert ws.topics == set()


# ---- a handler's reply: the bytes, not only the values -------------------------------------
# The C path writes the JSON of plain replies itself (and sets the id in a reply nobody else
# holds instead of copying it): its frames must be orjson.dumps's bytes exactly, for every
# value, including those it hands to orjson (floats, tuples, big ints, surrogates, subclasses,
# deep nesting, unencodable values).


class Text(str):
    """A str subclass: orjson encodes it; the C encoder leaves it to orjson."""


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"d": value}
    return value


reply_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)  # surrogates included
escaped_text = st.text(st.sampled_from('\x00\x01\b\t\n\f\r\x1f "\\/\x7fé€😀\u2028a'), max_size=20)
# Values the C encoder writes itself (what replies are made of) ...
plain_scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.sampled_from([2**63 - 1, -2**63])
                 | escaped_text | st.text(max_size=12))
plain_values = st.recursive(plain_scalars, lambda children: st.lists(children, max_size=4)
                            | st.dictionaries(escaped_text | st.sampled_from(["id", "type"]), children, max_size=4),
                            max_leaves=14)
# ... and those it leaves to orjson, alone or inside plain ones.
other_scalars = (st.integers(-2**65, 2**65) | st.sampled_from([2**63, 2**64 - 1, 2**64, -2**63 - 1]) | st.floats()
                 | reply_text | reply_text.map(Text) | st.integers(25, 60).map(nested) | st.just({1, 2}))
mixed_values = st.recursive(plain_scalars | other_scalars, lambda children: st.lists(children, max_size=4)
                            | st.lists(children, max_size=2).map(tuple)
                            | st.dictionaries(reply_text | st.sampled_from(["id", "type"]), children, max_size=4)
                            | st.dictionaries(st.integers(0, 3), children, min_size=1, max_size=2), max_leaves=14)
reply_values = plain_values | plain_values | mixed_values
SHARED_REPLY = {"type": "SHARED", "value": [1, "two"]}


def reply_engine(holder: dict[str, Any]) -> Harness:
    h = build()
    h.engine.add_route("VALUE", lambda client, message: {"type": "V", "value": holder["value"]})
    h.engine.add_route("RAW", lambda client, message: holder["value"])  # a dict of its own, or not a dict
    h.engine.add_route("SHARED", lambda client, message: SHARED_REPLY)
    h.engine.add_route("OWN_ID", lambda client, message: {"id": "own", "type": "OWN", "value": holder["value"]})
    return h


def reply_bytes(value: Any, requests: list[str], native: bool) -> list[tuple[bytes, int]]:
    holder = {"value": value}
    h = reply_engine(holder)
    ws = h.connect()
    ws.sent.clear()
    handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
    logging.disable(logging.CRITICAL)  # the unencodable replies' tracebacks
    try:
        for request in requests:
            handler(ws, request, TEXT)
    finally:
        logging.disable(logging.NOTSET)
    return [(data, opcode) for data, opcode in ws.sent if b'"serverTime"' not in data]


reply_requests = st.lists(st.sampled_from(['{"type":"VALUE"}', '{"type":"VALUE","id":7}', '{"type":"RAW","id":"r"}',
                                           '{"type":"RAW"}', '{"type":"SHARED","id":1}', '{"type":"SHARED"}',
                                           '{"type":"OWN_ID","id":2}', '{"type":"OWN_ID"}', '{"type":"ECHO","id":[1]}',
                                           # ids the C writer leaves to orjson (the reply then
                                           # goes there whole, with the id in a copy)
                                           '{"type":"VALUE","id":1.5}', '{"type":"OWN_ID","id":18446744073709551616}',
                                           '{"type":"SHARED","id":{"n":1e3}}', '{"type":"VALUE","id":null}']),
                          min_size=1, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply_values, reply_requests)
def test_native_replies_are_orjson_bytes(value, requests):
    assert reply_bytes(value, requests, native=True) == reply_bytes(value, requests, native=False)
    assert SHARED_REPLY == {"type": "SHARED", "value": [1, "two"]}  # the id went into a copy


def test_native_reply_bytes_cases():
    """A few replies spelled out (escapes, 64-bit bounds, non-ASCII, an id placed where the
    reply had its own), so that both paths going wrong alike is caught too."""
    cases = [
        ("VALUE", '"a\\"b\\\\c\\n\\t\\b\\f\\r\\u0001\\u001f\x7f/é😀"',
         {"type": "V", "value": 'a"b\\c\n\t\b\f\r\x01\x1f\x7f/é😀'}),
        ("VALUE", "[9223372036854775807,-9223372036854775808,18446744073709551615,true,false,null,{}]",
         {"type": "V", "value": [2**63 - 1, -2**63, 2**64 - 1, True, False, None, {}]}),
    ]
    for kind, encoded, expected in cases:
        for native in (False, True):
            holder = {"value": expected["value"]}
            h = reply_engine(holder)
            ws = h.connect()
            ws.sent.clear()
            handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
            handler(ws, f'{{"type":"{kind}","id":3}}', TEXT)
            assert ws.sent == [(f'{{"type":"V","value":{encoded},"id":3}}'.encode(), TEXT)], native
    for native in (False, True):
        h = reply_engine({"value": 1})
        ws = h.connect()
        ws.sent.clear()
        handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
        handler(ws, '{"type":"OWN_ID","id":9}', TEXT)
        handler(ws, '{"type":"SHARED","id":9}', TEXT)
        assert ws.sent == [(b'{"id":9,"type":"OWN","value":1}', TEXT), (b'{"type":"SHARED","value":[1,"two"],"id":9}', TEXT)]
        assert SHARED_REPLY == {"type": "SHARED", "value": [1, "two"]}


# ---- a request's JSON: read in C when plain, by orjson otherwise ---------------------------
# Generated texts, well formed in every layout and then broken in small ways, sent as ECHO
# requests to both paths: the echoed bytes (or the INVALID_MESSAGE error orjson words) must
# be the same, so the C reader neither reads a text orjson refuses nor reads one differently
# (types, key order, duplicate keys, numbers, escapes, non-ASCII).
json_scalars = (st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.sampled_from([0, -1, 10**18 - 1, -10**18 + 1, 10**18])
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10) | escaped_text)
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=5) | st.sampled_from(["type", "id", "a"]), children, max_size=4),
                           max_leaves=16)


# Values written as such: numbers and words at the edges of the grammar, most of them refused.
odd_tokens = st.sampled_from(["01", "-0", "-01", "00", "0", "-", "1.", ".5", "1e5", "1E+2", "-0.0", "+1", "0x1", "1_0",
                              "123456789012345678", "-123456789012345678", "1234567890123456789", "Infinity", "NaN",
                              "tru", "nul", "falsey", "[1,]", "{,}", "[01]", '{"a":01}', '"\\x"', '"\\u12"',
                              '"\\ud800"', '"a\tb"', "[[[]]]", "{}", "[]", '{"":""}', "[1 2]", '{"a" 1}', "truefalse"])


@st.composite
def request_texts(draw: Any) -> str:
    fields = draw(st.lists(st.tuples(st.sampled_from(["v", "id", "a", "type", "é", ""]), json_values), max_size=4))
    space = draw(st.sampled_from(["", " ", "\n", "\t", " \r\n "]))
    parts = [f'"type"{space}:{space}"ECHO"']
    for key, value in fields:  # a repeated key (or "type" again) is kept as written: the last one wins
        written = (json.dumps(value, ensure_ascii=draw(st.booleans()), separators=(',', ':') if not space else (', ', ': '))
                   if draw(st.integers(0, 3)) else draw(odd_tokens))
        parts.append(f"{json.dumps(key, ensure_ascii=draw(st.booleans()))}{space}:{space}{written}")
    text = space + "{" + space + ("," + space).join(parts) + space + "}" + space
    if draw(st.booleans()):  # one small change: an insertion or a deletion somewhere
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()) and at < len(text):
            text = text[:at] + text[at + 1:]
        else:
            text = text[:at] + draw(st.sampled_from([",", "}", "]", "[", "{", '"', "\\", "-", "0", "1", " ", "\x01", "e", ".",
                                                     ":", "é", "t", "n"])) + text[at:]
    return text


def echo_bytes(texts: list[str], native: bool) -> list[tuple[bytes, int]]:
    h = build()
    ws = h.connect()
    ws.sent.clear()
    handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
    for text in texts:
        handler(ws, text, TEXT)
    return ws.sent


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(request_texts(), min_size=1, max_size=4))
def test_native_reader_reads_as_orjson(texts):
    logging.disable(logging.CRITICAL)
    try:
        assert echo_bytes(texts, native=True) == echo_bytes(texts, native=False)
    finally:
        logging.disable(logging.NOTSET)


def test_native_reader_cases():
    """Texts at the edges of what the C reader takes, with the expected echo spelled out (an
    error: orjson's INVALID_MESSAGE, from either path)."""
    cases = {
        '{"type":"ECHO","n":-123456789012345678}': b'{"type":"ECHO","n":-123456789012345678}',
        '{"type":"ECHO","n":1234567890123456789}': b'{"type":"ECHO","n":1234567890123456789}',
        '{"type":"ECHO","n":-0}': b'{"type":"ECHO","n":0}',
        '{"type":"ECHO","n":1.5e3}': b'{"type":"ECHO","n":1500.0}',
        '{"type":"ECHO","a":1,"a":[true,false,null],"b":{}}': b'{"type":"ECHO","a":[true,false,null],"b":{}}',
        ' {\n"type" : "ECHO" ,\t"s":"\\u00e9\\n"} ': '{"type":"ECHO","s":"é\\n"}'.encode(),
        '{"type":"ECHO","s":"é😀"}': '{"type":"ECHO","s":"é😀"}'.encode(),
    }
    for native in (False, True):
        assert [data for data, _ in echo_bytes(list(cases), native)] == list(cases.values()), native
    refused = ['{"type":"ECHO","n":01}', '{"type":"ECHO","n":1.}', '{"type":"ECHO","a":[1,]}', '{"type":"ECHO",}',
               '{"type":"ECHO","s":"a\x01"}', '{"type":"ECHO"} x', '{"type":"ECHO","t":tru}', '{"type":"ECHO","n":-}']
    for native in (False, True):
        replies = [orjson.loads(data) for data, _ in echo_bytes(refused, native)]
        assert [(reply["type"], reply["code"]) for reply in replies] == [("ERROR", "INVALID_MESSAGE")] * len(refused), native


def test_route_call_counter_is_exact_and_read_only() -> None:
    """Route.calls is a C counter: add() returns the new total, the property cannot be set."""
    from uws_py._core import Counter
    from uws_py.realtime.routing import Route

    counter = Counter(5)
    assert counter.add() == 6 and counter.add(10) == 16 and counter.value == 16
    assert repr(counter) == "Counter(16)"
    try:
        counter.add(-1)
    except OverflowError:
        pass
    else:
        raise AssertionError("a negative step was accepted")
    assert counter.value == 16
    route = Route("X", lambda client, message: None)
    assert route.calls == 0
    assert route.count_call() == 1 and route.count_call() == 2 and route.calls == 2
    try:
        route.calls = 7  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("Route.calls was writable")
    assert route.calls == 2


def test_native_route_lookup_follows_changes_to_the_routes() -> None:
    """The native path keeps its last route lookup while the routes dict is unchanged: a
    route replaced, removed, added back or added for another type between two messages of one
    type is honoured at once, on both paths alike."""
    answers = []
    for native in (False, True):
        h = build()
        ws = h.connect()
        ws.sent.clear()
        handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
        routes = h.engine.router.routes

        def send(number: int) -> None:
            handler(ws, f'{{"type":"ECHO","id":{number},"v":"x"}}', TEXT)

        send(1)
        send(2)
        first = routes.pop("ECHO")
        h.engine.add_route("ECHO", lambda client, message: {"type": "SECOND", "n": message["id"]})
        send(3)
        second = routes.pop("ECHO")
        send(4)
        h.engine.add_route("OTHER", lambda client, message: {"type": "OTHER"})
        send(5)
        routes["ECHO"] = first
        send(6)
        routes["ECHO"] = second  # a value replaced in place, between two messages of one type
        send(7)
        handler(ws, '{"type":"OTHER","id":8}', TEXT)
        answers.append([orjson.loads(data) for data, _ in ws.sent])
    assert answers[0] == answers[1]
    kinds = [(reply["type"], reply.get("id")) for reply in answers[1]]
    assert kinds == [("ECHO", 1), ("ECHO", 2), ("SECOND", 3), ("ERROR", 4), ("ERROR", 5), ("ECHO", 6),
                     ("SECOND", 7), ("OTHER", 8)], kinds


def test_native_reader_hands_over_the_last_type() -> None:
    """The C reader gives the dispatcher the top-level "type" it read (the last one when the
    key repeats); a "type" inside a nested object is not it."""
    texts = ['{"type":"NOPE","type":"ECHO","id":1}', '{"type":"ECHO","type":"NOPE","id":2}',
             '{"v":{"type":"ECHO"},"id":3}', '{"v":{"type":"NOPE"},"type":"ECHO","id":4}']
    for native in (False, True):
        replies = [orjson.loads(data) for data, _ in echo_bytes(texts, native)]
        assert [(reply["type"], reply.get("id")) for reply in replies] == [
            ("ECHO", 1), ("ERROR", 2), ("ERROR", 3), ("ECHO", 4)], (native, replies)


# ---- BATCH from the scan: its sizes and limits, and the clock of its replies ----
def batch_of_pings(count: int, request_id: Optional[str] = None) -> str:
    """{"type":"BATCH"[,"id":ID],"messages":[count PINGs with ids 0..count-1]}"""
    items = ",".join('{"type":"PING","id":%d}' % number for number in range(count))
    return '{"type":"BATCH",%s"messages":[%s]}' % ("" if request_id is None else f'"id":{request_id},', items)


def test_batches_of_every_size_to_the_limit_and_one_past_it(decoded):
    """BATCHes of 0 to max_batch_items (5) PINGs, with an id and without, are answered from
    the scan (no orjson.loads) with the Python path's bytes: nothing or an ACK for none, one
    BATCH frame of as many PONGs else; one more item is refused with LIMIT_EXCEEDED."""
    texts = [batch_of_pings(count, request_id) for count in range(7) for request_id in (None, '"b"')]
    python, native = run_raw(texts)
    assert native == python
    decoded.clear()
    h = build(**PUBSUB_LIMITS)
    ws = h.connect()
    ws.sent.clear()
    handler = h.engine.dispatcher.native_handler()
    for text in texts:
        handler(ws, text, TEXT)
    assert decoded == texts[-2:]  # only the two over the limit took the decoding path
    replies = [orjson.loads(data) for data, _ in ws.sent]
    assert replies[0] == {"type": "ACK", "id": "b"}
    for count, (plain, with_id) in enumerate(zip(replies[1:10:2], replies[2:11:2]), start=1):
        for reply in (plain, with_id):
            assert reply["type"] == "BATCH" and [pong["id"] for pong in reply["messages"]] == list(range(count))
            assert {pong["type"] for pong in reply["messages"]} == {"PONG"}
        assert "id" not in plain and with_id["id"] == "b"
    over = replies[11:]
    assert [(r["type"], r["code"], r.get("id")) for r in over] == [("ERROR", "LIMIT_EXCEEDED", None),
                                                                     ("ERROR", "LIMIT_EXCEEDED", "b")]
    assert over[0]["message"] == "a BATCH holds at most 5 messages, this one 6"


def test_max_batch_items_set_between_messages_is_seen_by_both_paths(decoded):
    """Dispatcher.max_batch_items lowered, then raised, between messages: the native handler
    (which keeps it in C) refuses and answers as the Python path does from the next message on,
    on the scan path and on the decoding path (an id the scan does not copy)."""
    texts = [batch_of_pings(3, "1"), batch_of_pings(3, "1.5"),
             batch_of_pings(3, "2"), batch_of_pings(3, "2.5"), batch_of_pings(2, "3"),
             batch_of_pings(7, "4"), batch_of_pings(7, "4.5")]

    def limits(h: Harness, ws: FakeSocket) -> None:
        h.engine.dispatcher.max_batch_items = 2

    python, native = run_raw(texts, change=limits, after=2)
    assert native == python
    h = build(**PUBSUB_LIMITS)
    ws = h.connect()
    ws.sent.clear()
    dispatcher = h.engine.dispatcher
    handler = dispatcher.native_handler()
    assert handler.max_batch_items == 5
    for number, text in enumerate(texts):
        if number == 2:
            dispatcher.max_batch_items = 2
        if number == 5:
            dispatcher.max_batch_items = 8
        handler(ws, text, TEXT)
    assert handler.max_batch_items == dispatcher.max_batch_items == 8
    replies = [orjson.loads(data) for data, _ in ws.sent]
    assert [(r["type"], r.get("code"), r["id"], len(r.get("messages", ()))) for r in replies] == [
        ("BATCH", None, 1, 3), ("BATCH", None, 1.5, 3), ("ERROR", "LIMIT_EXCEEDED", 2, 0),
        ("ERROR", "LIMIT_EXCEEDED", 2.5, 0), ("BATCH", None, 3, 2), ("BATCH", None, 4, 7), ("BATCH", None, 4.5, 7)]
    assert replies[2]["message"] == "a BATCH holds at most 2 messages, this one 3"
    with pytest.raises(TypeError):
        dispatcher.max_batch_items = 2.5  # type: ignore[assignment]
    assert handler.max_batch_items == 8


def test_a_batch_over_the_rate_limit_midway_is_refused_whole_as_python_does():
    """A bucket with tokens for part of a BATCH (5 a minute, a clock that stands still): the
    whole BATCH is refused (none of its items done) with the Python path's RATE_LIMITED text
    and retryAfter, byte for byte, while the frame's own token is taken; then the frame's own
    token is refused too."""
    texts = [batch_of_pings(2, "1"), '{"type":"BATCH","id":2,"messages":[{"type":"SUBSCRIBE","topic":"t1"},'
             '{"type":"PING"},{"type":"PING"},{"type":"PING"}]}', batch_of_pings(4, "3"), batch_of_pings(4, "4"),
             batch_of_pings(4, "5")]
    sent = []
    for native in (False, True):
        h = build(**PUBSUB_LIMITS, rate_limit=RateLimit(messages=5, per_seconds=60, close_after=3))
        ws = h.connect()
        ws.client.bucket = TokenBucket(h.engine.options.rate_limit, clock=ManualClock())
        ws.sent.clear()
        handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
        for text in texts:
            handler(ws, text, TEXT)
        sent.append(([re.sub(rb'"(serverTime|timestamp)":\d+', rb'"\1":0', data) for data, _ in ws.sent],
                     ws.ended, sorted(ws.topics), h.engine.metrics.rate_limited))
    assert sent[0] == sent[1]
    frames, _, subscribed, refused = sent[1]
    refusal = b'{"type":"ERROR","code":"RATE_LIMITED","message":"rate limit exceeded: this BATCH needs 4 tokens",'
    assert frames == [
        b'{"type":"BATCH","timestamp":0,"messages":[{"type":"PONG","serverTime":0,"id":0},'
        b'{"type":"PONG","serverTime":0,"id":1}],"id":1}',
        refusal + b'"id":2,"retryAfter":24001}', refusal + b'"id":3,"retryAfter":36001}',
        refusal + b'"id":4,"retryAfter":48001}',
        b'{"type":"ERROR","code":"RATE_LIMITED","message":"rate limit exceeded","retryAfter":12001}']
    assert subscribed == [] and refused == 4


def test_pong_times_are_wall_clock_milliseconds_of_the_call():
    """serverTime of a PONG (from the scan, alone or in a BATCH, and decoded) and a BATCH's
    timestamp lie within the wall-clock milliseconds before and after the call."""
    h = build()
    ws = h.connect()
    handler = h.engine.dispatcher.native_handler()
    for text in ('{"type":"PING","id":1}', '{"type":"PING","id":1.5}', batch_of_pings(4, "2"),
                 '{"type":"BATCH","id":2.5,"messages":[{"type":"PING","id":1.5},{"type":"PING"}]}'):
        ws.sent.clear()
        before = time.time_ns() // 1_000_000
        handler(ws, text, TEXT)
        after = time.time_ns() // 1_000_000
        (reply,) = [orjson.loads(data) for data, _ in ws.sent]
        times = [reply["timestamp"]] + [pong["serverTime"] for pong in reply["messages"]] if reply["type"] == "BATCH" \
            else [reply["serverTime"]]
        assert len(times) in (1, 3, 5) and all(before <= t <= after for t in times), (text, before, times, after)


def test_a_batch_timestamp_is_taken_before_its_items_on_the_python_path(monkeypatch: pytest.MonkeyPatch):
    """Dispatcher.batch reads the BATCH's time before its items run, so that it is never later
    than their PONGs' serverTime (the native path gives both the dispatch's time): with a clock
    that ticks at every read, the timestamp is the first reading."""
    from uws_py.realtime import builtins, dispatch

    ticks = iter(range(1000, 2000))
    monkeypatch.setattr(dispatch, "now_ms", lambda: next(ticks))
    monkeypatch.setattr(builtins, "now_ms", lambda: next(ticks))
    h = build()
    ws = h.connect()
    ws.sent.clear()
    h.engine.dispatcher.on_message(ws, batch_of_pings(3, "1"), TEXT)
    (reply,) = [orjson.loads(data) for data, _ in ws.sent]
    assert reply["timestamp"] == 1000
    assert [pong["serverTime"] for pong in reply["messages"]] == [1001, 1002, 1003]


def test_a_route_named_after_a_builtin_is_honoured_at_once_on_the_scan_path() -> None:
    """The scan path keeps which built-ins are stock while the routes dict is unchanged: a
    route in the routes dict under PING or BATCH (add_route refuses those names; the dict is
    the Router's own) set, replaced or removed between messages takes over (or gives back) at
    once, as on the Python path."""
    answers = []
    for native in (False, True):
        h = build()
        ws = h.connect()
        ws.sent.clear()
        handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
        routes = h.engine.router.routes

        def send() -> None:
            handler(ws, '{"type":"PING","id":1}', TEXT)
            handler(ws, batch_of_pings(2, "2"), TEXT)

        send()
        routes["PING"] = routes["REPLY"]
        send()
        routes["PING"] = routes["ECHO"]  # replaced in place
        send()
        del routes["PING"]
        send()
        routes["BATCH"] = routes["REPLY"]
        send()
        del routes["BATCH"]
        send()
        answers.append([re.sub(rb'"(serverTime|timestamp)":\d+', rb'"\1":0', data) for data, _ in ws.sent])
    assert answers[0] == answers[1]
    replies = [orjson.loads(data) for data in answers[1]]
    kinds = [(reply["type"], [item["type"] for item in reply.get("messages", ())]) for reply in replies]
    # A BATCH's items are the built-ins whatever the routes say (Dispatcher.batch_item).
    assert kinds == [("PONG", []), ("BATCH", ["PONG", "PONG"]), ("REPLIED", []), ("BATCH", ["PONG", "PONG"]),
                     ("PING", []), ("BATCH", ["PONG", "PONG"]), ("PONG", []), ("BATCH", ["PONG", "PONG"]),
                     ("PONG", []), ("REPLIED", []), ("PONG", []), ("BATCH", ["PONG", "PONG"])], kinds
