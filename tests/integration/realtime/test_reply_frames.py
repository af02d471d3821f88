"""A handler's reply on a real socket, as the native dispatcher writes it: straight into the
loop's cork buffer after a reserved frame header when the socket takes it, through
WebSocket.send otherwise (a reply larger than what is left of the cork buffer, compression,
a closing socket). Whichever way, the frames on the wire must be orjson.dumps({**reply, "id": id})
exactly, in order, with the right header for each length (2 bytes under 126, 4 from 126, 10
from 65536)."""

from __future__ import annotations

from typing import Any

import orjson

from tests.support.realtime import make_token, realtime_server, recv_json, send_json
from tests.support.wsclient import RSV1, Op, TestClient, encode_frame, parse_close_payload
from uws_py import RateLimit

SHARED = {"type": "SHARED", "value": [1, "two"]}
WAIT = 10.0


def reply_server(**options: Any):
    options.setdefault("rate_limit", RateLimit(messages=10_000, per_seconds=1.0))
    server = realtime_server(**options)

    @server.on("SIZED")
    def sized(client, message):
        return {"type": "SIZED", "text": "x" * message["n"]}

    @server.on("OWN_ID")
    def own_id(client, message):
        return {"id": "own", "type": "OWN", "n": message["n"]}

    @server.on("SHARED")
    def shared(client, message):
        return SHARED

    @server.on("ECHO")
    def echo(client, message):
        return message

    @server.on("CLOSE")
    def close(client, message):
        client.close(4000, "asked")
        return {"type": "CLOSING"}

    return server


def join(live, headers: list | None = None) -> TestClient:
    client = live.connect(make_token("alice"), headers=headers or [])
    assert recv_json(client)["type"] == "CONNECTED"
    return client


def frames(client: TestClient, count: int) -> list[tuple[bytes, bool, int]]:
    """The next `count` text frames: (payload, compressed, header length on the wire)."""
    got = []
    for _ in range(count):
        frame, rsv = client.recv_frame_with_rsv(WAIT)
        assert frame.opcode == Op.TEXT and frame.fin, frame
        length = len(frame.payload)
        got.append((frame.payload, bool(rsv & RSV1), 2 if length < 126 else 4 if length < 65536 else 10))
    return got


def expected(reply: dict, request_id: Any) -> bytes:
    return orjson.dumps({**reply, "id": request_id})


def pipelined(client: TestClient, requests: list[dict]) -> None:
    """All the requests in one send, so that the server reads them in one read and their
    replies meet in one cork buffer."""
    client.send_raw(b"".join(encode_frame(Op.TEXT, orjson.dumps(request)) for request in requests))


def test_replies_of_every_header_length_are_orjsons_bytes(serve):
    live = serve(reply_server())
    client = join(live)
    # The reply's JSON is 37 bytes and the text; lengths around 126 (the 2 -> 4 byte header,
    # the payload moved 2 bytes on), the cork buffer's 16 KiB and 65536 (a 10-byte header).
    overhead = len(expected({"type": "SIZED", "text": ""}, 1))
    sizes = [0, 1, 125 - overhead, 126 - overhead, 127 - overhead, 1000, 16 * 1024 - 200, 16 * 1024, 70_000]
    for number, n in enumerate(sizes):
        send_json(client, {"type": "SIZED", "id": number, "n": n})
        [(payload, compressed, _)] = frames(client, 1)
        assert not compressed
        assert payload == expected({"type": "SIZED", "text": "x" * n}, number), n


def test_pipelined_replies_overflowing_the_cork_buffer_arrive_whole_and_in_order(serve):
    live = serve(reply_server())
    client = join(live)
    # 60 replies of ~900 bytes are ~3.3 cork buffers: some are written in place, some do not
    # fit what is left and go through send(), which flushes the cork buffer first.
    requests = [{"type": "SIZED", "id": i, "n": 850 + 7 * i} for i in range(60)]
    requests += [{"type": "SIZED", "id": "big", "n": 20_000}, {"type": "SIZED", "id": "after", "n": 3}]
    pipelined(client, requests)
    got = frames(client, len(requests))
    assert [payload for payload, _, _ in got] == [
        expected({"type": "SIZED", "text": "x" * r["n"]}, r["id"]) for r in requests
    ]


def test_the_id_goes_where_dict_unpacking_puts_it(serve):
    live = serve(reply_server())
    client = join(live)
    pipelined(client, [
        {"type": "OWN_ID", "id": 9, "n": 1},      # the reply's own "id" keeps its place
        {"type": "OWN_ID", "n": 2},               # no id in the request: the reply's stays
        {"type": "OWN_ID", "id": None, "n": 3},   # a null id: likewise
        {"type": "SHARED", "id": [1, {"a": "b"}]},  # a shared dict: the id last, the dict untouched
        {"type": "SHARED"},
        {"type": "ECHO", "id": "e", "x": "\u00e9\n"},  # the message itself: as it came
        {"id": 5, "type": "ECHO"},
    ])
    assert [payload for payload, _, _ in frames(client, 7)] == [
        b'{"id":9,"type":"OWN","n":1}',
        b'{"id":"own","type":"OWN","n":2}',
        b'{"id":"own","type":"OWN","n":3}',
        b'{"type":"SHARED","value":[1,"two"],"id":[1,{"a":"b"}]}',
        b'{"type":"SHARED","value":[1,"two"]}',
        '{"type":"ECHO","id":"e","x":"\u00e9\\n"}'.encode(),
        b'{"id":5,"type":"ECHO"}',
    ]
    assert SHARED == {"type": "SHARED", "value": [1, "two"]}


def test_compressed_replies_keep_their_path_and_plain_clients_get_plain_bytes(serve):
    live = serve(reply_server(compression=True))
    deflating = join(live, headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    plain = join(live)
    for client, compressible in ((deflating, True), (plain, False)):
        pipelined(client, [{"type": "SIZED", "id": 1, "n": 4000}, {"type": "SIZED", "id": 2, "n": 0}])
        big, small = frames(client, 2)
        assert big[1] is compressible and not small[1]
        if compressible:
            assert client._inflate(big[0]) == expected({"type": "SIZED", "text": "x" * 4000}, 1)
            assert len(big[0]) < 200
        else:
            assert big[0] == expected({"type": "SIZED", "text": "x" * 4000}, 1)
        assert small[0] == expected({"type": "SIZED", "text": ""}, 2)


def test_a_reply_after_the_handler_closed_the_socket_is_not_sent(serve):
    live = serve(reply_server())
    client = join(live)
    other = join(live)
    pipelined(client, [{"type": "CLOSE", "id": 1}, {"type": "SIZED", "id": 2, "n": 5}])
    message = client.recv_message(WAIT)
    assert message.opcode == Op.CLOSE, message
    assert parse_close_payload(message.payload)[0] == 4000
    # The server goes on for the others.
    send_json(other, {"type": "SIZED", "id": 3, "n": 2})
    assert frames(other, 1)[0][0] == expected({"type": "SIZED", "text": "xx"}, 3)


def pongs(ids: list[Any]) -> list[dict]:
    return [{"type": "PONG", "serverTime": 0, "id": number} for number in ids]


def test_batches_of_pings_are_written_in_place_or_sent_whole_with_the_dispatchs_time(serve):
    """BATCHes of PINGs answered from the scan: their frames written in the cork buffer while
    they fit and sent through send() when one does not (20 KiB, more than the cork buffer),
    every frame orjson's bytes for Dispatcher.batch's dict, in order; the times (one clock
    read per dispatch) within the wall-clock milliseconds around the exchange."""
    import re
    import time

    live = serve(reply_server())
    client = join(live)
    long_id = "i" * 600
    requests = [{"type": "BATCH", "id": n, "messages": [{"type": "PING", "id": i} for i in range(n % 32 + 1)]}
                for n in range(40)]
    requests.insert(20, {"type": "BATCH", "id": "big", "messages": [{"type": "PING", "id": long_id}] * 32})
    requests.append({"type": "PING", "id": "last"})
    before = time.time_ns() // 1_000_000
    pipelined(client, requests)
    got = frames(client, len(requests))
    after = time.time_ns() // 1_000_000
    payloads = [payload for payload, compressed, _ in got if not compressed]
    times = [int(t) for payload in payloads for t in re.findall(rb'"(?:serverTime|timestamp)":(\d+)', payload)]
    assert len(times) == sum(len(r["messages"]) + 1 for r in requests[:-1]) + 1
    assert all(before <= t <= after for t in times), (before, min(times), max(times), after)
    masked = [re.sub(rb'"(serverTime|timestamp)":\d+', rb'"\1":0', payload) for payload in payloads]
    assert masked[:-1] == [orjson.dumps({"type": "BATCH", "timestamp": 0,
                                         "messages": pongs([item["id"] for item in r["messages"]]), "id": r["id"]})
                           for r in requests[:-1]]
    assert masked[-1] == b'{"type":"PONG","serverTime":0,"id":"last"}'
    assert len(payloads[20]) > 16 * 1024
    # A later dispatch reads the clock again.
    for request in ({"type": "PING", "id": 1}, {"type": "BATCH", "messages": [{"type": "PING"}]}):
        time.sleep(0.02)
        before = time.time_ns() // 1_000_000
        pipelined(client, [request])
        [(payload, _, _)] = frames(client, 1)
        after = time.time_ns() // 1_000_000
        later = [int(t) for t in re.findall(rb'"(?:serverTime|timestamp)":(\d+)', payload)]
        assert later and all(before <= t <= after for t in later), (before, later, after)
