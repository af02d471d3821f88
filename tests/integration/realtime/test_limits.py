"""Per-connection bounds (issue 12, defect 3): every BATCH item costs a rate-limit token, a
BATCH holds at most max_batch_items, a connection at most max_subscriptions topics of at most
max_topic_length characters. Past each: ERROR, nothing of that request runs, the connection
goes on."""

from __future__ import annotations

import queue

from tests.support.realtime import assert_next_is_pong, recv_json, realtime_server, request, send_json
from uws_py import RateLimit


def subscriptions(live) -> dict[str, int]:
    """client id -> topics it is subscribed to, read on the server's loop thread."""
    answer: queue.Queue = queue.Queue()
    live.server.app.defer(lambda: answer.put({c.id: len(c.ws.get_topics()) for c in live.server.clients.values()}))
    return answer.get(timeout=5)


def subscribe_batch(topics) -> dict:
    return {"type": "BATCH", "id": "batch", "messages": [{"type": "SUBSCRIBE", "topic": t} for t in topics]}


def test_every_batch_item_costs_a_rate_limit_token(serve):
    live = serve(realtime_server(rate_limit=RateLimit(messages=10, per_seconds=3600)))
    client, _ = live.join()
    reply = request(client, {"type": "BATCH", "id": 1, "messages": [{"type": "PING", "id": i} for i in range(6)]})
    assert reply["type"] == "BATCH" and len(reply["messages"]) == 6
    # 4 tokens left: a BATCH of 5 is refused whole, none of its items runs.
    refused = request(client, subscribe_batch([f"t{i}" for i in range(5)]))
    assert refused["type"] == "ERROR" and refused["code"] == "RATE_LIMITED", refused
    assert refused["id"] == "batch" and refused["retryAfter"] > 0
    assert "needs 5 tokens" in refused["message"]
    assert subscriptions(live) == {next(iter(live.server.clients)): 0}
    # The connection goes on: the 4 tokens left are still there.
    reply = request(client, subscribe_batch(["a", "b", "c"]))
    assert [m["type"] for m in reply["messages"]] == ["SUBSCRIBED"] * 3


def test_batch_over_max_batch_items_is_refused_whole(serve):
    live = serve(realtime_server(rate_limit=None, max_batch_items=10))
    client, connected = live.join()
    assert connected["capabilities"]["maxBatchItems"] == 10
    refused = request(client, subscribe_batch([f"t{i}" for i in range(11)]))
    assert refused == {"type": "ERROR", "code": "LIMIT_EXCEEDED", "id": "batch", "limit": "maxBatchItems", "max": 10,
                       "message": "a BATCH holds at most 10 messages, this one 11"}
    assert list(subscriptions(live).values()) == [0]
    reply = request(client, subscribe_batch([f"t{i}" for i in range(10)]))
    assert len(reply["messages"]) == 10
    assert list(subscriptions(live).values()) == [10]


def test_subscriptions_past_max_subscriptions_are_refused(serve):
    live = serve(realtime_server(rate_limit=None, max_subscriptions=3))
    client, connected = live.join()
    assert connected["capabilities"]["maxSubscriptions"] == 3
    for topic in ("a", "b", "c"):
        assert request(client, {"type": "SUBSCRIBE", "topic": topic, "id": topic})["type"] == "SUBSCRIBED"
    refused = request(client, {"type": "SUBSCRIBE", "topic": "d", "id": "d"})
    assert refused == {"type": "ERROR", "code": "LIMIT_EXCEEDED", "id": "d", "limit": "maxSubscriptions", "max": 3,
                       "message": "at most 3 subscriptions per connection"}
    # Subscribing again to a topic it has is not a new subscription; leaving one makes room.
    assert request(client, {"type": "SUBSCRIBE", "topic": "a", "id": 1})["type"] == "SUBSCRIBED"
    assert request(client, {"type": "UNSUBSCRIBE", "topic": "a", "id": 2})["type"] == "UNSUBSCRIBED"
    assert request(client, {"type": "SUBSCRIBE", "topic": "d", "id": 3})["type"] == "SUBSCRIBED"
    assert list(subscriptions(live).values()) == [3]
    assert_next_is_pong(client)


def test_topic_over_max_topic_length_is_refused(serve):
    live = serve(realtime_server(rate_limit=None, max_topic_length=8))
    client, connected = live.join()
    assert connected["capabilities"]["maxTopicLength"] == 8
    for kind in ("SUBSCRIBE", "PUBLISH"):
        refused = request(client, {"type": kind, "topic": "x" * 9, "data": 1, "id": kind})
        assert refused["code"] == "LIMIT_EXCEEDED" and refused["limit"] == "maxTopicLength", refused
        assert refused["max"] == 8 and refused["id"] == kind
    assert request(client, {"type": "SUBSCRIBE", "topic": "x" * 8, "id": 1})["type"] == "SUBSCRIBED"
    assert list(subscriptions(live).values()) == [1]


def test_subscribe_batches_cannot_exhaust_memory(serve):
    """The issue's reproduction, scaled down: clients sending BATCHes of 1,000 SUBSCRIBEs to
    distinct topics against the default limits end up with at most max_subscriptions each."""
    live = serve(realtime_server())
    clients = [live.join(f"user{n}")[0] for n in range(3)]
    for n, client in enumerate(clients):
        for batch in range(3):
            send_json(client, subscribe_batch([f"c{n}.b{batch}.t{i}" for i in range(1000)]))
            refused = recv_json(client)
            assert refused["code"] == "LIMIT_EXCEEDED" and refused["limit"] == "maxBatchItems", refused
    assert sorted(subscriptions(live).values()) == [0, 0, 0]
    # Within the item limit: of the 100 tokens per 60 s, the refused frames took 3; the 97
    # left pay for one BATCH of 90, not for a second.
    for n, client in enumerate(clients):
        replies = []
        for batch in range(3):
            replies.append(request(client, subscribe_batch([f"c{n}.b{batch}.t{i}" for i in range(90)])))
        assert replies[0]["type"] == "BATCH" and len(replies[0]["messages"]) == 90
        assert [r["code"] for r in replies[1:]] == ["RATE_LIMITED", "RATE_LIMITED"]
    counts = subscriptions(live)
    assert all(count <= 128 for count in counts.values()), counts
    assert sum(counts.values()) == 270


def test_subscription_limit_holds_without_a_rate_limit(serve):
    live = serve(realtime_server(rate_limit=None))
    client, _ = live.join()
    codes: dict[str, int] = {}
    for batch in range(3):
        reply = request(client, subscribe_batch([f"b{batch}.t{i}" for i in range(100)]))
        for item in reply["messages"]:
            key = item.get("code", item["type"])
            codes[key] = codes.get(key, 0) + 1
    assert codes == {"SUBSCRIBED": 128, "LIMIT_EXCEEDED": 172}
    assert list(subscriptions(live).values()) == [128]
