"""How topics are named on each broker (no network): NATS subjects, Redis Cluster hash tags
and channels, and the broker URLs."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, strategies as st
from redis.crc import key_slot

from uws_py.broker import from_url
from uws_py.broker.nats import NatsBroker, subject_token, topic_of_token
from uws_py.broker.redis_cluster import RedisClusterBroker, cluster_channel, hash_tag, parse_cluster_url
from uws_py.realtime.history import HistoryPolicy
from uws_py.realtime.history_redis import RedisHistory

# A NATS subject: non-empty tokens of printable characters without whitespace, split by dots.
VALID_SUBJECT = re.compile(r"^[^\s.*>]+(\.[^\s.*>]+)*$")


@pytest.mark.parametrize("topic, subject", [
    ("chat.room-1", "uws.chat.room-1"),
    ("a..b", "uws.a.~.b"),
    (".edge.", "uws.~.edge.~"),
    ("two words", "uws.two~20words"),
    ("*", "uws.~2A"),
    (">", "uws.~3E"),
    ("news.*.>", "uws.news.~2A.~3E"),
    ("café", "uws.caf~C3~A9"),
    ("~", "uws.~7E"),
    ("", "uws.~"),
])
def test_nats_subjects_escape_reserved_characters(topic, subject):
    assert NatsBroker.channel_of(topic) == subject
    assert VALID_SUBJECT.match(subject), subject
    assert topic_of_token(subject_token(topic)) == topic


@given(st.text(min_size=1, max_size=40))
def test_nats_subject_round_trips_and_is_always_valid(topic):
    token = subject_token(topic)
    assert topic_of_token(token) == topic
    assert VALID_SUBJECT.match("uws." + token), token


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_two_topics_never_share_a_subject(first, second):
    if first != second:
        assert subject_token(first) != subject_token(second)


@pytest.mark.parametrize("topic", ["chat.1", "x{y}", "}", "{", "{}", "a}b{c", "é{"])
def test_cluster_channel_and_history_keys_share_one_slot(topic):
    stream, meta = RedisHistory("redis+cluster://127.0.0.1:7000", HistoryPolicy(), cluster=True).keys(topic)
    channel = cluster_channel("uws:", topic)
    slots = {key_slot(name.encode("utf-8", "surrogateescape")) for name in (stream, meta, channel)}
    assert len(slots) == 1, (stream, meta, channel)


def test_cluster_channel_reads_back_as_its_topic():
    broker = RedisClusterBroker("redis+cluster://127.0.0.1:7000")
    for topic in ("chat.1", "x{y}", "}", "a}b{c", "uws:{x}"):
        assert broker.topic_of(broker.channel(topic).encode()) == topic
    assert broker.channel("chat.1") == "uws:{chat.1}"
    assert hash_tag("chat.1") == "chat.1" and hash_tag("x{y}") != "x{y}"


def test_history_keys_of_plain_topics_keep_their_names():
    assert RedisHistory("redis://127.0.0.1", HistoryPolicy()).keys("chat.1") == ("uws:h:{chat.1}:s", "uws:h:{chat.1}:m")


def test_cluster_urls():
    assert parse_cluster_url("redis+cluster://127.0.0.1:7000,127.0.0.1:7001") == {
        "nodes": [("127.0.0.1", 7000), ("127.0.0.1", 7001)], "ssl": False, "username": None, "password": None}
    assert parse_cluster_url("rediss+cluster://user:p%40ss@[::1]:7000") == {
        "nodes": [("::1", 7000)], "ssl": True, "username": "user", "password": "p@ss"}
    assert parse_cluster_url("redis+cluster://cache")["nodes"] == [("cache", 6379)]
    for bad in ("redis://127.0.0.1:7000", "redis+cluster://:7000", "redis+cluster://h:port", "redis+cluster://h:70000"):
        with pytest.raises(ValueError):
            parse_cluster_url(bad)


def test_from_url_picks_the_broker():
    assert type(from_url("redis+cluster://127.0.0.1:7000")).__name__ == "RedisClusterBroker"
    assert type(from_url("redis://127.0.0.1:6379/0")).__name__ == "RedisBroker"
    nats = from_url("nats://127.0.0.1:4222", history_store="redis://127.0.0.1:6379/0")
    assert type(nats).__name__ == "NatsBroker" and type(nats.history_broker).__name__ == "RedisBroker"
    with pytest.raises(ValueError, match="history-store"):
        from_url("redis://127.0.0.1:6379/0", history_store="redis://127.0.0.1:6380/0")
    with pytest.raises(ValueError, match="scheme"):
        from_url("kafka://127.0.0.1:9092")
