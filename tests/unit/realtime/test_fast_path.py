"""The native message handler (Dispatcher.native_handler, uws_py._core.RealtimeDispatch)
against the Python one (Dispatcher.on_message): the same generated messages, sent to two
engines built alike, must give the same replies, close the same connections and leave the
same counts. No sockets: the fake socket of conftest.py receives what both send."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Callable

import orjson
from hypothesis import HealthCheck, example, given, settings
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
                                   '"toolongtopic"', "1", "null", '["news"]'])
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
    """A frame's bytes with the server's clock and the sender's id (new in each run) masked."""
    data = re.sub(rb'"serverTime":\d+', b'"serverTime":0', data)
    return data.replace(sender.encode(), b"<sender>")


def run_raw(texts: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both paths over the same texts from one connection, a watcher subscribed to WATCHED:
    the exact bytes each was sent and the server published, the sender's topics and the
    error counts."""
    results = []
    for native in (False, True):
        h = build(**PUBSUB_LIMITS)
        watcher = h.connect()
        ws = h.connect()
        for topic in WATCHED:
            watcher.client.subscribe(topic)
        watcher.sent.clear()
        ws.sent.clear()
        handler = h.engine.dispatcher.native_handler() if native else h.engine.dispatcher.on_message
        for text in texts:
            handler(ws, text, TEXT)
        sender = ws.client.id
        results.append({"frames": [masked(data, sender) for data, _ in ws.sent],
                        "watcher": [masked(data, sender) for data, _ in watcher.sent],
                        "published": [(topic, masked(data, sender)) for topic, data, _ in h.loop.published],
                        "topics": sorted(ws.topics), "errors": dict(h.engine.metrics.errors), "ended": ws.ended})
    return results[0], results[1]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(scan_texts(), min_size=1, max_size=6))
@example([f'{{"type":"PING","id":{odd}}}' for odd in
          ("-0", "1.0", "1e2", str(2**60), str(2**53), '"\\u0041"', "null", '"é"', '"\x7f"', "true")]
         + ['{"type":"PING"}', '{"id":1,"type":"PING","id":2}', '{ "type" : "PING" , "id" : 3 }'])
@example([f'{{"type":"{kind}","topic":{topic},"id":{odd}}}' for kind in ("SUBSCRIBE", "UNSUBSCRIBE")
          for topic, odd in (('"news"', "-0"), ('"a/b"', '"x"'), ('"t\\u0031"', "1"), ('"é"', "2"), ('"#user:x"', "3"),
                             ('"toolongtopic"', "4"), ('""', "5"), ('"t1"', "null"), ('"t2"', "1e2"), ('"t3"', "6"))])
@example([f'{{"type":"PUBLISH","topic":"news","data":{data},"id":{odd}{echo}}}'
          for data, odd, echo in (('{"a":[1,2]}', "1", ""), ('{"a": [1,2]}', "2", ',"echo":true'), ("-0", "3", ""),
                                  ("1.5", "null", ',"echo":false'), ('"\\u00e9"', '"x"', ',"echo":1'),
                                  ('{"a":1,"a":2}', "4", ""), ("[true,false,null]", "-0", ""), ('"é"', "5", ',"echo":null'))]
         + ['{"type":"PUBLISH","topic":"a/b","data":{}}', '{"type":"PUBLISH","topic":"t1","id":6}',
            '{"type":"PUBLISH","topic":"#user:x","data":1,"id":7}', '{"data":[{"b":{"c":[]}}],"topic":"news","type":"PUBLISH"}'])
def test_builtins_from_the_scan_give_the_python_paths_bytes(texts):
    python, native = run_raw(texts)
    assert native == python


def test_scan_path_skips_the_decoder_and_falls_back_to_it(monkeypatch):
    """The common PING, SUBSCRIBE, UNSUBSCRIBE and PUBLISH are answered without orjson.loads;
    an id the scanner does not copy (a float), a topic with an escape and data that orjson
    would write otherwise (a space) take the decoding path."""
    from uws_py.realtime import dispatch

    decoded: list[Any] = []

    def counting_loads(data: Any) -> Any:
        decoded.append(data)
        return orjson.loads(data)

    monkeypatch.setattr(dispatch, "_loads", counting_loads)
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
