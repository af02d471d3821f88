"""A client's PUBLISH on a real socket, answered by the native dispatcher (which finds the
topic's subscribers before writing the MESSAGE, and writes none for a topic nobody listens
to unless it is echoed) and by the Python path (Dispatcher.on_message, which always encodes
it): the frames each client gets, the core's publish counters and the Prometheus scrape
must be the same."""

from __future__ import annotations

import re
from typing import Any

from tests.support.realtime import make_token, realtime_server, recv_json, send_json
from uws_py import RateLimit
from uws_py.realtime.dispatch import Dispatcher

PUBLISHES = [
    {"type": "PUBLISH", "topic": "none", "data": 1, "id": 1},
    {"type": "PUBLISH", "topic": "none", "data": {"a": [1]}, "echo": True, "id": 2},
    {"type": "PUBLISH", "topic": "none", "data": "x"},
    {"type": "PUBLISH", "topic": "news", "data": 2, "id": 3},
    {"type": "PUBLISH", "topic": "news", "data": [3], "echo": True, "id": 4},
    {"type": "PUBLISH", "topic": "mine", "data": 4, "id": 5},  # the publisher is its only subscriber
    {"type": "PUBLISH", "topic": "mine", "data": 5, "echo": True},
]
COUNTED = ("publishes", "deliveries", "messages_out", "messages_in")
SCRAPED = re.compile(r"^uws_(publishes|deliveries|messages_sent|messages_received)\S* ", re.M)


def run(serve, monkeypatch, native: bool) -> dict[str, Any]:
    """The PUBLISHES from one client, a second one subscribed to "news", on one path."""
    with monkeypatch.context() as patch:
        if not native:
            patch.setattr(Dispatcher, "native_handler", lambda self: self.on_message)
        live = serve(realtime_server(rate_limit=RateLimit(messages=10_000, per_seconds=1.0)))
    watcher = live.connect(make_token("bob"))
    publisher = live.connect(make_token("alice"))
    sender = recv_json(publisher)["clientId"]
    recv_json(watcher)
    for client, topic in ((watcher, "news"), (publisher, "mine")):
        send_json(client, {"type": "SUBSCRIBE", "topic": topic, "id": 0})
        assert recv_json(client)["type"] == "SUBSCRIBED"
    before = live.server.app.stats()
    for message in PUBLISHES:
        send_json(publisher, message)
    send_json(publisher, {"type": "PING", "id": "end"})  # answered after every PUBLISH before it
    frames = []
    while True:
        frame = recv_json(publisher)
        if frame.get("id") == "end":
            break
        frames.append(frame)
    delivered = [recv_json(watcher) for _ in range(2)]
    after = live.server.app.stats()
    scrape = live.http_get("/metrics").body.decode()
    for frame in frames + delivered:
        if frame.get("from") == sender:
            frame["from"] = "<sender>"
    return {"frames": frames, "delivered": delivered,
            "counts": {name: after[name] - before[name] for name in COUNTED},
            "scraped": sorted(line for line in scrape.splitlines() if SCRAPED.match(line))}


def test_native_publish_counts_and_sends_as_the_python_path(serve, monkeypatch):
    python = run(serve, monkeypatch, native=False)
    native = run(serve, monkeypatch, native=True)
    assert native == python
    # Every PUBLISH counted by the core, those to a topic nobody subscribes to included;
    # deliveries only to the watcher.
    assert native["counts"]["publishes"] == len(PUBLISHES)
    assert native["counts"]["deliveries"] == 2
    assert native["delivered"] == [{"type": "MESSAGE", "topic": "news", "data": 2, "from": "<sender>"},
                                   {"type": "MESSAGE", "topic": "news", "data": [3], "from": "<sender>"}]
    echoed = [frame for frame in native["frames"] if frame["type"] == "MESSAGE"]
    assert [(frame["topic"], frame["data"]) for frame in echoed] == [("none", {"a": [1]}), ("news", [3]), ("mine", 5)]
    assert any(line.startswith("uws_publishes") for line in native["scraped"])
