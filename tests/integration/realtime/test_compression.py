"""Realtime compression on the wire (issue 12, defect 1): with compression on, what the server
sends (replies, MESSAGE fan-out, BATCH frames) leaves deflated (RSV1) at or above
compression_threshold, shorter messages plain; a client that did not negotiate
permessage-deflate gets everything plain."""

from __future__ import annotations

import orjson

from tests.support.realtime import make_token, realtime_server, send_json
from tests.support.wsclient import RSV1, Op, TestClient
from uws_py import Batching

DEFLATE = [("Sec-WebSocket-Extensions", "permessage-deflate")]
# JSON that deflates well: what a chat or a ticker sends.
BIG = {"rows": [{"symbol": f"SYM{i % 7}", "price": 100 + i % 13, "side": "buy"} for i in range(40)]}


def join(live, deflate: bool = True, sub: str = "alice") -> TestClient:
    client = live.connect(make_token(sub), headers=DEFLATE if deflate else [])
    assert client.deflate_negotiated is deflate
    connected, _ = recv_wire(client)
    assert connected["type"] == "CONNECTED"
    return client


def recv_wire(client: TestClient) -> tuple[dict, tuple[bool, int]]:
    """The next text message and how it travelled: (compressed?, payload bytes on the wire)."""
    frame, rsv = client.recv_frame_with_rsv()
    assert frame.opcode == Op.TEXT and frame.fin, frame
    payload = client._inflate(frame.payload) if rsv & RSV1 else frame.payload
    return orjson.loads(payload), (bool(rsv & RSV1), len(frame.payload))


def echo_server(**options):
    server = realtime_server(**options)

    @server.on("ECHO")
    def echo(client, message):
        return {"type": "ECHOED", "data": message["data"]}

    return server


def test_realtime_server_compresses_large_replies_and_leaves_small_ones_plain(serve):
    live = serve(echo_server())
    client = join(live)
    send_json(client, {"type": "ECHO", "id": 1, "data": BIG})
    reply, (compressed, wire_size) = recv_wire(client)
    assert reply == {"type": "ECHOED", "data": BIG, "id": 1}
    plain_size = len(orjson.dumps(reply))
    assert compressed, "a large reply left uncompressed"
    assert wire_size < plain_size / 2, (wire_size, plain_size)

    send_json(client, {"type": "PING", "id": 2})
    pong, (compressed, wire_size) = recv_wire(client)
    assert pong["type"] == "PONG"
    assert not compressed and wire_size == len(orjson.dumps(pong))


def test_realtime_server_compresses_message_fan_out_once_for_every_subscriber(serve):
    live = serve(realtime_server())
    subscribers = [join(live, sub=f"user{i}") for i in range(3)]
    for i, client in enumerate(subscribers):
        send_json(client, {"type": "SUBSCRIBE", "topic": "ticks", "id": i})
        assert recv_wire(client)[0]["type"] == "SUBSCRIBED"
    plain = join(live, deflate=False, sub="plain")
    send_json(plain, {"type": "SUBSCRIBE", "topic": "ticks", "id": 9})
    assert recv_wire(plain)[0]["type"] == "SUBSCRIBED"

    publisher = join(live, sub="publisher")
    send_json(publisher, {"type": "PUBLISH", "topic": "ticks", "data": BIG})
    for client in subscribers:
        message, (compressed, wire_size) = recv_wire(client)
        assert message["type"] == "MESSAGE" and message["data"] == BIG
        assert compressed and wire_size < len(orjson.dumps(message)) / 2, wire_size
    message, (compressed, wire_size) = recv_wire(plain)
    assert message["data"] == BIG and not compressed

    live.server.app.defer(lambda: live.server.publish("ticks", {"small": 1}))
    live.server.app.defer(lambda: live.server.publish("ticks", BIG))
    for client in subscribers:
        message, (compressed, _) = recv_wire(client)
        assert message == {"type": "MESSAGE", "topic": "ticks", "data": {"small": 1}, "from": None}
        assert not compressed, "a small MESSAGE was compressed"
        message, (compressed, _) = recv_wire(client)
        assert message["data"] == BIG and compressed, "a server publish left uncompressed"


def test_realtime_server_compresses_batch_frames(serve):
    live = serve(echo_server(batching=Batching(max_size=8, max_wait_ms=5)))
    client = join(live)
    send_json(client, {"type": "BATCH", "id": "b", "messages": [{"type": "ECHO", "data": BIG} for _ in range(3)]})
    batch, (compressed, wire_size) = recv_wire(client)
    assert batch["type"] == "BATCH" and len(batch["messages"]) == 3
    assert compressed and wire_size < len(orjson.dumps(batch)) / 4, wire_size


def test_compression_threshold_is_an_option(serve):
    live = serve(echo_server(compression_threshold=10_000))
    client = join(live)
    send_json(client, {"type": "ECHO", "id": 1, "data": BIG})
    reply, (compressed, _) = recv_wire(client)
    assert reply["data"] == BIG and not compressed, "a reply under the threshold was compressed"


def test_compression_off_sends_everything_plain(serve):
    live = serve(echo_server(compression=False))
    client = live.connect(make_token("alice"), headers=DEFLATE)
    assert not client.deflate_negotiated
    connected, _ = recv_wire(client)
    assert connected["capabilities"]["compression"] is False
    send_json(client, {"type": "ECHO", "id": 1, "data": BIG})
    reply, (compressed, _) = recv_wire(client)
    assert reply["data"] == BIG and not compressed
