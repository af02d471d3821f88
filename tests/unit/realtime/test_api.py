"""The server API without sockets: key check, body parsing, dispatch of every method over an
engine on a fake loop, idempotency keys in memory, and the HTTP handler over fake responses."""

from __future__ import annotations

from typing import Any, Callable, Optional

import orjson
import pytest

from uws_py.realtime.api import MAX_BODY_SIZE, ApiError, ServerApi, check_api_key, check_key, parse_body
from uws_py.realtime.api_idempotency import PENDING, Idempotent, MemoryIdempotency
from uws_py.realtime.history import HistoryOptions
from uws_py.realtime.presence import PresenceOptions

KEY = "unit-test-api-key-0123"


def test_check_key_takes_only_the_apikey_scheme_with_the_exact_key():
    expected = KEY.encode()
    assert check_key(expected, f"apikey {KEY}")
    assert check_key(expected, f"ApiKey {KEY}")
    for header in (None, "", KEY, f"Bearer {KEY}", f"apikey {KEY}x", f"apikey {KEY[:-1]}", "apikey ", "apikey"):
        assert not check_key(expected, header), header


def test_check_api_key_refuses_short_or_padded_keys():
    check_api_key(KEY)
    for bad in (None, "short", " " + KEY, 12345678901234567):
        with pytest.raises(ValueError, match="api_key"):
            check_api_key(bad)


def test_parse_body_takes_a_json_object_or_nothing():
    assert parse_body(b"") == {} and parse_body(b"  ") == {}
    assert parse_body(b'{"topic": "a"}') == {"topic": "a"}
    for body in (b"{bad", b"[1, 2]", b'"text"', b"\xff"):
        with pytest.raises(ApiError) as refused:
            parse_body(body)
        assert (refused.value.status, refused.value.code) == (400, "BAD_REQUEST")


class Api:
    """A ServerApi over the engine of the unit-test harness; call() returns the answer."""

    def __init__(self, harness_factory: Callable[..., Any], **options: Any) -> None:
        self.harness = harness_factory(**options)
        self.engine = self.harness.engine
        self.topics: dict[str, int] = {}
        self.api = ServerApi(self.engine, KEY, self.harness.loop.set_timeout, lambda: self.topics)

    def call(self, method: str, params: Any) -> Any:
        answers: list[Any] = []
        self.api.call(method, params, answers.append)
        assert len(answers) == 1, answers
        return answers[0]

    def ok(self, method: str, params: Any) -> dict:
        answer = self.call(method, params)
        assert not isinstance(answer, ApiError), answer.to_wire()
        return answer

    def refused(self, method: str, params: Any) -> tuple[int, str]:
        answer = self.call(method, params)
        assert isinstance(answer, ApiError), answer
        return answer.status, answer.code


@pytest.fixture
def api(harness):
    return lambda **options: Api(harness, **options)


def test_unknown_method_and_bad_params(api):
    server = api()
    assert server.refused("nope", {}) == (404, "NOT_FOUND")
    assert server.refused("publish", [1]) == (400, "BAD_REQUEST")
    assert server.refused("publish", {"topic": "a"}) == (400, "BAD_REQUEST")  # no data
    assert server.refused("publish", {"topic": "", "data": 1}) == (400, "BAD_REQUEST")
    assert server.refused("publish", {"topic": "#control", "data": 1}) == (400, "BAD_REQUEST")
    assert server.refused("publish", {"topic": "#user:alice", "data": 1}) == (400, "BAD_REQUEST")
    assert server.refused("publish", {"topic": "a", "data": 1, "idempotency_key": ""}) == (400, "BAD_REQUEST")
    assert server.refused("broadcast", {"topics": [], "data": 1}) == (400, "BAD_REQUEST")
    assert server.refused("broadcast", {"topics": ["a", 3], "data": 1}) == (400, "BAD_REQUEST")
    assert server.refused("disconnect", {}) == (400, "BAD_REQUEST")
    assert server.refused("disconnect", {"user": "u", "code": 1001}) == (400, "BAD_REQUEST")
    assert server.refused("subscribe", {"user": "u"}) == (400, "BAD_REQUEST")
    assert server.refused("history", {"topic": "plain"}) == (400, "NO_HISTORY")
    assert server.refused("presence", {"topic": "plain"}) == (400, "NO_PRESENCE")
    assert server.refused("presence_stats", {}) == (400, "BAD_REQUEST")
    assert server.refused("channels", {"pattern": 5}) == (400, "BAD_REQUEST")
    assert server.refused("batch", {"commands": []}) == (400, "BAD_REQUEST")


def test_publish_reaches_local_subscribers_and_a_history_topic_answers_its_position(api):
    server = api()
    server.engine.add_history(HistoryOptions("h.*", 10, 60.0))
    ws = server.harness.connect()
    ws.frames()
    server.harness.send(ws, {"type": "SUBSCRIBE", "topic": "news"})
    assert server.ok("publish", {"topic": "news", "data": {"x": 1}}) == {}
    assert ws.frames() == [{"type": "MESSAGE", "topic": "news", "data": {"x": 1}, "from": None}]
    first = server.ok("publish", {"topic": "h.1", "data": "a"})
    assert first["offset"] == 1 and isinstance(first["epoch"], str)
    assert server.ok("publish", {"topic": "h.1", "data": "b"})["offset"] == 2
    page = server.ok("history", {"topic": "h.1", "limit": 1, "reverse": True})
    assert (page["offset"], [p["data"] for p in page["publications"]]) == (2, ["b"])
    assert server.refused("history", {"topic": "h.1", "since": {"epoch": "other", "offset": 1}})[0] == 400
    assert server.refused("history", {"topic": "h.1", "limit": -1}) == (400, "BAD_REQUEST")


def test_an_idempotency_key_publishes_once_and_answers_the_first_result(api):
    server = api()
    server.engine.add_history(HistoryOptions("h.*", 10, 60.0))
    first = server.ok("publish", {"topic": "h.1", "data": "a", "idempotency_key": "k"})
    assert server.ok("publish", {"topic": "h.1", "data": "a", "idempotency_key": "k"}) == first
    assert server.engine.history.read("h.1").position.offset == 1
    # The key is per method: a broadcast with the same key is another request.
    result = server.ok("broadcast", {"topics": ["h.1", "plain"], "data": "b", "idempotency_key": "k"})
    assert result == {"responses": [{"topic": "h.1", "epoch": first["epoch"], "offset": 2}, {"topic": "plain"}]}
    assert server.ok("broadcast", {"topics": ["h.1", "plain"], "data": "b", "idempotency_key": "k"}) == result
    assert server.engine.history.read("h.1").position.offset == 2


def test_memory_idempotency_expires_keys_after_the_ttl_and_forgets_failures():
    now = [0.0]
    store = MemoryIdempotency(ttl=10.0, clock=lambda: now[0], max_keys=2)
    states: list = []
    store.claim("a", states.append)
    store.claim("a", states.append)
    store.save("a", {"offset": 1})
    store.claim("a", states.append)
    assert states == [None, PENDING, {"offset": 1}]
    now[0] = 10.5
    store.claim("a", states.append)
    assert states[-1] is None  # expired: claimed anew
    store.release("a")
    store.claim("a", states.append)
    assert states[-1] is None
    store.claim("b", states.append)
    store.claim("c", states.append)  # past max_keys: the oldest ("a") is forgotten
    assert list(store.keys) == ["b", "c"]


def test_an_attempt_in_flight_makes_a_retry_wait_then_answer_in_progress():
    timers: list = []
    runner = Idempotent(MemoryIdempotency(), lambda seconds, fn: timers.append(fn), attempts=3)
    finish_first: list = []
    answers: list = []
    runner.run("k", finish_first.append, answers.append, lambda: ApiError(409, "IN_PROGRESS", "x"), lambda e: e)
    runner.run("k", lambda done: pytest.fail("published twice"), answers.append,
               lambda: ApiError(409, "IN_PROGRESS", "x"), lambda e: e)
    timers.pop()()  # the retry looks again: still held
    finish_first[0]({"offset": 7})
    timers.pop()()  # and again: the first attempt's result
    assert answers == [{"offset": 7}, {"offset": 7}]
    runner.run("j", lambda done: None, answers.append, lambda: ApiError(409, "IN_PROGRESS", "x"), lambda e: e)
    runner.run("j", lambda done: None, answers.append, lambda: ApiError(409, "IN_PROGRESS", "x"), lambda e: e)
    for _ in range(2):
        timers.pop()()
    assert answers[-1].code == "IN_PROGRESS"


def alices_connection(server):
    """A harness connection of the user "alice", its CONNECTED frame read."""
    ws = server.harness.connect()
    client = ws.get_user_data()
    client.user_id = "alice"
    server.engine.users.opened(client)
    ws.frames()
    return ws


def test_disconnect_subscribe_and_unsubscribe_act_on_the_users_connections(api):
    server = api(auth=None)
    ws = alices_connection(server)
    assert server.ok("subscribe", {"user": "alice", "topic": "news"}) == {}
    assert ws.frames() == [{"type": "SUBSCRIBED", "topic": "news"}] and ws.is_subscribed("news")
    assert server.ok("subscribe", {"user": "alice", "topic": "news"}) == {}
    assert ws.frames() == []  # already subscribed: no second push
    assert server.ok("unsubscribe", {"user": "alice", "topic": "news"}) == {}
    assert ws.frames() == [{"type": "UNSUBSCRIBED", "topic": "news", "reason": "server"}]
    assert not ws.is_subscribed("news")
    assert server.ok("disconnect", {"user": "alice", "code": 4000, "reason": "bye"}) == {}
    assert ws.ended == [(4000, "bye")]
    assert server.ok("disconnect", {"user": "nobody"}) == {}


def test_server_side_subscribe_does_not_ask_authorize_topic(api):
    # As Centrifugo's server API: the backend that calls it has decided already, so the hook
    # (which denies everything here) is not asked, and the client is subscribed.
    server = api(auth=None)
    asked: list[tuple[str, str]] = []
    server.engine.pubsub.topic_hook = lambda client, topic, action: bool(asked.append((topic, action)))
    ws = alices_connection(server)
    assert server.ok("subscribe", {"user": "alice", "topic": "secret"}) == {}
    assert ws.frames() == [{"type": "SUBSCRIBED", "topic": "secret"}] and ws.is_subscribed("secret")
    assert asked == []
    assert server.refused("subscribe", {"user": "alice", "topic": "#control"}) == (400, "BAD_REQUEST")


def test_presence_info_channels_and_batch(api):
    server = api()
    server.engine.add_presence(PresenceOptions("room.*"))
    assert server.ok("presence", {"topic": "room.1"}) == {"clients": []}
    assert server.ok("presence_stats", {"topic": "room.1"}) == {"numClients": 0, "numUsers": 0}
    server.topics.update({"a.1": 3, "b.1": 1, "#user:x": 1})
    assert server.ok("channels", {}) == {"channels": {"a.1": 3, "b.1": 1}}
    assert server.ok("channels", {"pattern": "a.*"}) == {"channels": {"a.1": 3}}
    (worker,) = server.ok("info", {})["workers"]
    assert set(worker) == {"worker", "pid", "connections", "topics", "uptime", "version"}
    assert (worker["connections"], worker["topics"]) == (0, 2)
    replies = server.ok("batch", {"commands": [
        {"method": "publish", "params": {"topic": "a.1", "data": 1}},
        {"method": "batch", "params": {"commands": []}},
        {"method": "presence", "params": {"topic": "nope"}},
        {"params": {}},
    ]})["replies"]
    assert replies[0] == {"result": {}}
    assert [r["error"]["code"] for r in replies[1:]] == ["BAD_REQUEST", "NO_PRESENCE", "BAD_REQUEST"]


def test_a_failing_method_answers_500_and_the_api_goes_on(api, caplog):
    server = api()
    server.api.methods["info"] = lambda params, done: 1 / 0
    assert server.refused("info", {}) == (500, "INTERNAL")
    assert server.ok("channels", {}) == {"channels": {}}


class FakeRequest:
    def __init__(self, method: str, name: Optional[str], headers: dict[str, str]) -> None:
        self.method, self.name, self.headers = method, name, headers

    def get_header(self, name: str) -> Optional[str]:
        return self.headers.get(name)

    def get_method(self) -> str:
        return self.method

    def get_parameter(self, index: int) -> Optional[str]:
        return self.name


class FakeResponse:
    def __init__(self) -> None:
        self.status: Optional[str] = None
        self.headers: dict[str, str] = {}
        self.body: Any = None
        self.closed = False
        self.on_data_callback: Any = None
        self.on_aborted_callback: Any = None

    def on_aborted(self, fn: Any) -> "FakeResponse":
        self.on_aborted_callback = fn
        return self

    def on_data(self, fn: Any) -> "FakeResponse":
        self.on_data_callback = fn
        return self

    def cork(self, fn: Any) -> Any:
        return fn()

    def write_status(self, status: str) -> "FakeResponse":
        self.status = status
        return self

    def write_header(self, name: str, value: str) -> "FakeResponse":
        self.headers[name] = value
        return self

    def end(self, body: bytes = b"", close_connection: bool = False) -> "FakeResponse":
        assert self.body is None, "ended twice"
        self.body, self.closed = orjson.loads(body), close_connection
        return self


def handle(server: Api, name: Optional[str], body: Optional[list[bytes]] = None, method: str = "post",
           key: Optional[str] = KEY, length: Optional[int] = None) -> FakeResponse:
    headers = {} if key is None else {"authorization": f"apikey {key}"}
    if length is not None:
        headers["content-length"] = str(length)
    res = FakeResponse()
    server.api.handle(res, FakeRequest(method, name, headers))
    for index, chunk in enumerate(body or []):
        res.on_data_callback(chunk, index == len(body) - 1)
    return res


def test_the_http_handler_checks_key_method_name_and_size_before_reading(api):
    server = api()
    assert handle(server, "info", key=None).status == "401 Unauthorized"
    refused = handle(server, "info", method="get")
    assert refused.status == "405 Method Not Allowed" and refused.headers["Allow"] == "POST"
    assert handle(server, "nope").status == "404 Not Found"
    assert handle(server, None).status == "404 Not Found"
    too_long = handle(server, "publish", length=MAX_BODY_SIZE + 1)
    assert too_long.status == "413 Payload Too Large" and too_long.on_data_callback is None
    # A body past the limit without Content-Length (chunked): refused while it arrives.
    chunked = handle(server, "publish", [b"x" * MAX_BODY_SIZE, b"x", b"x"])
    assert chunked.status == "413 Payload Too Large" and chunked.closed
    assert handle(server, "publish", [b"{bad"]).body["error"]["code"] == "BAD_REQUEST"
    answered = handle(server, "publish", [b'{"topic": "a",', b' "data": 1}'])
    assert (answered.status, answered.body) == ("200 OK", {"result": {}})


def test_a_client_that_left_gets_no_answer(api):
    server = api()
    res = FakeResponse()
    server.api.handle(res, FakeRequest("post", "info", {"authorization": f"apikey {KEY}"}))
    res.on_aborted_callback()
    res.on_data_callback(b"{}", True)
    assert res.status is None and res.body is None


class ControlUsers:
    """Users' control topic as the Gatherer uses it: ops, and control() recording what was sent."""

    def __init__(self) -> None:
        self.ops: dict[str, Any] = {}
        self.sent: list[tuple[dict, bytes]] = []

    def control(self, header: dict, body: bytes = b"") -> None:
        self.sent.append((header, body))


class RunBroker:
    """A Redis broker's run(): jobs are kept for the test to answer."""

    prefix = "uws:"

    def __init__(self) -> None:
        self.jobs: list[Any] = []

    def run(self, job: Any, done: Any) -> None:
        self.jobs.append(done)


def test_a_gathering_ends_when_every_worker_counted_by_numsub_answered():
    from uws_py.realtime.api_gather import Gatherer

    timers: list = []
    asking, answering = ControlUsers(), ControlUsers()
    broker = RunBroker()
    gathered: list = []
    asker = Gatherer(asking, broker, "w1", lambda q: {"worker": "w1"}, lambda s, fn: timers.append(fn),
                     redis_client=lambda: None)
    Gatherer(answering, RunBroker(), "w2", lambda q: {"worker": "w2", "q": q}, lambda s, fn: None)
    asker.gather("info", gathered.append)
    (ask, _), = asking.sent
    assert ask["op"] == "api.ask" and ask["what"] == "info"
    answering.ops["api.ask"](ask, b"")  # the other worker answers, addressed to w1
    (answer, body), = answering.sent
    asking.ops["api.answer"]({**answer, "to": "someone else"}, body)  # not for this worker: ignored
    asking.ops["api.answer"](answer, body)
    assert gathered == []  # how many workers there are is not known yet
    broker.jobs.pop()(2)  # NUMSUB: 2 workers follow the control channel
    assert gathered == [[{"worker": "w1"}, {"worker": "w2", "q": "info"}]]
    timers.pop()()  # the timeout after the end changes nothing
    asking.ops["api.answer"](answer, body)
    assert len(gathered) == 1


def test_a_gathering_answers_with_what_it_has_at_the_timeout():
    from uws_py.realtime.api_gather import Gatherer

    timers: list = []
    users = ControlUsers()
    broker = RunBroker()
    gathered: list = []
    Gatherer(users, broker, "w1", lambda q: {"worker": "w1"}, lambda s, fn: timers.append(fn),
             redis_client=lambda: None).gather("channels", gathered.append)
    broker.jobs.pop()(3)  # three workers, none of the others answers
    timers.pop()()
    assert gathered == [[{"worker": "w1"}]]
