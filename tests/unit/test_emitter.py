"""The Emitter's frames without Redis: what it would PUBLISH or pass to the history script,
read back with the broker's own parser and the control topic's layout."""

from __future__ import annotations

import orjson
import pytest

from uws_py.broker.redis import parse_frame
from uws_py.emitter import Emitter
from uws_py.realtime.history import HistoryOptions
from uws_py.realtime.history_redis import PUBLISH_LUA


class FakeRedis:
    """What the emitter calls on a redis-py client, recorded."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.scripts: list[tuple[list, list]] = []

    def register_script(self, source: str):
        assert source == PUBLISH_LUA

        def call(keys: list, args: list):
            self.scripts.append((keys, args))
            return [b"e1e2e3e4", len(self.scripts)]

        return call

    def publish(self, channel: str, frame: bytes) -> int:
        self.published.append((channel, frame))
        return 1


def emitter() -> tuple[Emitter, FakeRedis]:
    redis = FakeRedis()
    return Emitter("redis://unused", history=[HistoryOptions("h.*", 10, 2.5), ("log.*", 5, 60.0)], client=redis), redis


def test_a_plain_publish_is_the_brokers_frame_with_an_origin_no_server_has():
    sender, redis = emitter()
    assert sender.publish("news", {"x": 1}) is None
    ((channel, frame),) = redis.published
    origin, position, payload = parse_frame(frame)
    assert channel == "uws:news" and position is None and origin.startswith(b"emitter-")
    assert orjson.loads(payload) == {"type": "MESSAGE", "topic": "news", "data": {"x": 1}, "from": None}


def test_a_history_publish_calls_the_stores_script_with_the_patterns_size_and_ttl():
    sender, redis = emitter()
    assert sender.publish("h.1", "a") == {"epoch": "e1e2e3e4", "offset": 1}
    assert sender.publish("log.7", "b") == {"epoch": "e1e2e3e4", "offset": 2}
    (keys, args), (keys2, args2) = redis.scripts
    assert keys == ["uws:h:{h.1}:s", "uws:h:{h.1}:m"]
    channel, origin, head, tail, size, ttl_ms, position_ttl_ms, epoch = args
    assert (channel, size, ttl_ms, position_ttl_ms) == ("uws:h.1", 10, 2500, 5000)
    assert orjson.loads(head + b"3" + tail) == {"type": "MESSAGE", "topic": "h.1", "data": "a", "from": None,
                                                "offset": 3}
    assert (args2[4], args2[5]) == (5, 60000) and len(epoch) == 8
    assert redis.published == []


def test_user_operations_go_to_the_control_topic():
    sender, redis = emitter()
    sender.send_to_user("alice", "hi")
    sender.disconnect_user("bob", 4000, "bye")
    (channel, to_user), (_, disconnect) = redis.published
    assert channel == "uws:#control"
    head, _, body = parse_frame(to_user)[2].partition(b"\n")
    assert orjson.loads(head) == {"op": "user", "user": "alice"}
    assert orjson.loads(body) == {"type": "MESSAGE", "topic": "#user:alice", "data": "hi", "from": None}
    head, _, body = parse_frame(disconnect)[2].partition(b"\n")
    assert orjson.loads(head) == {"op": "disconnect", "user": "bob", "code": 4000, "reason": "bye"} and body == b""


def test_reserved_topics_and_bad_close_codes_are_refused():
    sender, redis = emitter()
    for topic in ("#control", "#user:alice", ""):
        with pytest.raises(ValueError):
            sender.publish(topic, 1)
    with pytest.raises(ValueError, match="close code"):
        sender.disconnect_user("bob", 1001)
    assert redis.published == []
