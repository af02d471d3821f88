"""The user operations without sockets (issue 15): the index, control messages in and out,
reserved topics, close codes, and publish with exclude over fake sockets."""

from __future__ import annotations

import orjson
import pytest

from uws_py.realtime.users import CONTROL_TOPIC, Users, check_close_code, is_reserved, user_topic


class FakeWs:
    def __init__(self, topics=()) -> None:
        self.topics = set(topics)
        self.sent: list = []
        self.published: list = []

    def send(self, data, opcode) -> None:
        self.sent.append(orjson.loads(data))

    def is_subscribed(self, topic) -> bool:
        return topic in self.topics

    def publish(self, topic, payload, opcode) -> bool:
        self.published.append(topic)
        return True


class FakeClient:
    def __init__(self, client_id: str, user_id, topics=()) -> None:
        self.id = client_id
        self.user_id = user_id
        self.ws = FakeWs(topics)
        self.closed = False
        self.closes: list = []

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closes.append((code, reason))


class FakeBroker:
    def __init__(self) -> None:
        self.published: list = []

    def publish(self, topic, payload) -> None:
        self.published.append((topic, payload))


def users_with(*clients, broker=None):
    local_published: list = []
    index = {client.id: client for client in clients}
    users = Users(index, lambda topic, payload, opcode: local_published.append(topic) or True, broker)
    for client in clients:
        users.opened(client)
    return users, local_published


def test_reserved_topics_and_close_codes():
    assert user_topic("alice") == "#user:alice"
    assert is_reserved("#user:alice") and is_reserved(CONTROL_TOPIC)
    assert not is_reserved("#general") and not is_reserved("user:alice")
    for good in (1000, 3000, 4999):
        check_close_code(good)
    for bad in (1001, 1006, 2999, 5000, True, "4000"):
        with pytest.raises(ValueError, match="close code"):
            check_close_code(bad)  # type: ignore[arg-type]


def test_index_follows_connections_and_ignores_anonymous_ones():
    a1, a2, anon = FakeClient("a1", "alice"), FakeClient("a2", "alice"), FakeClient("x", None)
    users, _ = users_with(a1, a2, anon)
    assert [c.id for c in users.connections("alice")] == ["a1", "a2"]
    users.closed(a1, 1000)
    users.closed(anon, 1000)
    users.closed(a2, 1006)
    assert users.connections("alice") == [] and users.by_user == {}


def test_send_and_disconnect_go_local_and_to_the_control_topic():
    broker = FakeBroker()
    a1, bob = FakeClient("a1", "alice"), FakeClient("b1", "bob")
    users, _ = users_with(a1, bob, broker=broker)
    assert users.send_to_user("alice", {"n": 1}) == 1
    assert a1.ws.sent == [{"type": "MESSAGE", "topic": "#user:alice", "data": {"n": 1}, "from": None}]
    assert bob.ws.sent == []
    assert users.disconnect_user("alice", 4000, "bye") == 1
    assert a1.closes == [(4000, "bye")]
    assert [topic for topic, _ in broker.published] == [CONTROL_TOPIC, CONTROL_TOPIC]
    header, _, body = broker.published[0][1].partition(b"\n")
    assert orjson.loads(header) == {"op": "user", "user": "alice"}
    assert orjson.loads(body)["topic"] == "#user:alice"
    assert users.control_sent == 2


def test_a_remote_control_message_is_applied_and_a_bad_one_ignored():
    a1 = FakeClient("a1", "alice")
    users, _ = users_with(a1)
    payload = orjson.dumps({"type": "MESSAGE", "topic": "#user:alice", "data": 2, "from": None})
    assert users.intercept("news", b"anything") is False
    assert users.intercept(CONTROL_TOPIC, b'{"op":"user","user":"alice"}\n' + payload) is True
    assert a1.ws.sent == [orjson.loads(payload)]
    assert users.intercept(CONTROL_TOPIC, b'{"op":"disconnect","user":"alice","code":4001,"reason":"r"}') is True
    assert a1.closes == [(4001, "r")]
    for bad in (b"not json", b'{"op":"disconnect"}', b'{"op":"warp"}', b'[1]'):
        assert users.intercept(CONTROL_TOPIC, bad) is True  # consumed, logged, nothing done
    assert a1.closes == [(4001, "r")] and users.control_received == 6


def test_publish_excluding_uses_the_core_when_it_can():
    subscribed = [FakeClient(f"c{n}", None, topics={"news"}) for n in range(4)]
    outsider = FakeClient("o", None)
    users, local_published = users_with(*subscribed, outsider)
    payload = orjson.dumps({"type": "MESSAGE", "topic": "news", "data": 1, "from": None})

    users.publish_excluding("news", payload, ["o", "elsewhere"])  # none of them subscribed here
    assert local_published == ["news"]

    users.publish_excluding("news", payload, ["c0"])  # one: the core's publish from its socket
    assert subscribed[0].ws.published == ["news"]

    users.publish_excluding("news", payload, ["c0", "c1"])  # several: sent one by one
    assert [len(c.ws.sent) for c in subscribed] == [0, 0, 1, 1]
    assert outsider.ws.sent == []
