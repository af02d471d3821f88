"""Running the realtime server: rate limiting, batching, payload limits, /health and /metrics,
graceful shutdown, connection hooks, and the example application in examples/."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import queue
import time
from pathlib import Path

import orjson

from tests.support.realtime import (
    WAIT,
    assert_next_is_pong,
    make_token,
    metric,
    realtime_server,
    recv_json,
    request,
    scrape,
    send_json,
)
from uws_py import Batching, RateLimit
from tests.support.wsclient import Op, encode_frame, parse_close_payload

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "realtime_app.py"


def ping_frames(ids) -> bytes:
    """PING requests as frames to send in one write, so the server reads them together."""
    return b"".join(encode_frame(Op.TEXT, orjson.dumps({"type": "PING", "id": i})) for i in ids)


def message_of_size(size: int, filler: str = "x") -> bytes:
    """A PING with id "big", padded with filler (any UTF-8 width) to exactly size bytes of JSON."""
    bare = len(orjson.dumps({"type": "PING", "id": "big", "pad": ""}))
    width = len(filler.encode("utf-8"))
    pad = filler * ((size - bare) // width) + "x" * ((size - bare) % width)
    encoded = orjson.dumps({"type": "PING", "id": "big", "pad": pad})
    assert len(encoded) == size
    return encoded


# -- rate limiting ------------------------------------------------------------------------------


def test_rate_limit_refuses_the_sixth_message_with_retry_after(serve):
    live = serve(realtime_server(rate_limit=RateLimit(messages=5, per_seconds=60)))
    noisy, connected = live.join("noisy")
    quiet, _ = live.join("quiet")
    assert connected["capabilities"]["rateLimit"] == {"messages": 5, "perSeconds": 60}
    for i in range(5):
        assert request(noisy, {"type": "PING", "id": i})["type"] == "PONG"
    refused = request(noisy, {"type": "PING", "id": 5})
    assert (refused["type"], refused["code"]) == ("ERROR", "RATE_LIMITED"), refused
    # One message per 12 s comes back; the wait for it is at most that.
    assert 0 < refused["retryAfter"] <= 12_001, refused
    assert request(quiet, {"type": "PING", "id": "q"})["type"] == "PONG", "another client was limited too"


def test_rate_limit_refills_over_real_time_between_reads(serve):
    """The native path reads the bucket's clock once per batch of the loop's events: tokens
    still come back between two reads (a clock stuck at an old batch would give one PONG in
    the second read), and a refusal in the middle of a read leaves the rest of it refused."""
    live = serve(realtime_server(rate_limit=RateLimit(messages=4, per_seconds=2)))  # 2 tokens/s, 4 at most
    client, _ = live.join()
    client.send_raw(ping_frames(range(6)))  # one write: read together
    first = [recv_json(client) for _ in range(6)]
    assert [r["type"] for r in first] == ["PONG"] * 4 + ["ERROR"] * 2, first
    time.sleep(1.1)  # at least 2.2 tokens back
    client.send_raw(ping_frames([10, 11]))
    second = [recv_json(client) for _ in range(2)]
    assert [r["type"] for r in second] == ["PONG", "PONG"], second
    client.send_raw(ping_frames([20, 21, 22]))  # 0.2 tokens or so left (more on a slow machine, never 3)
    third = [recv_json(client) for _ in range(3)]
    assert [r["type"] for r in third][1:] == ["ERROR", "ERROR"], third
    # A client never refused (so no Python take() read the clock for it in between).
    steady, _ = live.join("steady")
    steady.send_raw(ping_frames([30, 31, 32]))
    assert [recv_json(steady)["type"] for _ in range(3)] == ["PONG"] * 3
    time.sleep(1.1)  # 1 token left, at least 2.2 back
    steady.send_raw(ping_frames([40, 41, 42]))
    assert [recv_json(steady)["type"] for _ in range(3)] == ["PONG"] * 3


def test_client_that_keeps_sending_past_the_limit_is_closed_with_1008(serve):
    live = serve(realtime_server(rate_limit=RateLimit(messages=5, per_seconds=60, close_after=1.0)))
    noisy, _ = live.join("noisy")
    quiet, _ = live.join("quiet")
    replies = []
    close_code = close_reason = None
    for i in range(30):
        send_json(noisy, {"type": "PING", "id": i})
        message = noisy.recv_message(WAIT)
        if message.opcode == Op.CLOSE:
            close_code, close_reason = parse_close_payload(message.payload)
            break
        replies.append(orjson.loads(message.payload))
    assert (close_code, close_reason) == (1008, b"rate limit exceeded"), f"not closed as expected; replies: {replies}"
    assert [r["type"] for r in replies[:5]] == ["PONG"] * 5
    # close_after=1.0: refused more than 1.0 x 5 times -> the 6th refusal closes.
    assert [r.get("code") for r in replies[5:]] == ["RATE_LIMITED"] * 5, replies
    assert request(quiet, {"type": "PING", "id": "q"})["type"] == "PONG", "another client was affected"
    assert metric(scrape(live), "uws_rate_limited_total") == 6


# -- batching -----------------------------------------------------------------------------------


def test_batching_sends_max_size_replies_in_one_frame(serve):
    live = serve(realtime_server(batching=Batching(max_size=3, max_wait_ms=100)))
    client, connected = live.join()
    assert connected["capabilities"]["batching"] is True
    client.send_raw(ping_frames([1, 2, 3]))
    frame = recv_json(client)
    assert frame["type"] == "BATCH", f"expected one BATCH frame, got {frame}"
    assert [(m["type"], m["id"]) for m in frame["messages"]] == [("PONG", 1), ("PONG", 2), ("PONG", 3)]
    assert abs(frame["timestamp"] - time.time() * 1000) < 2000
    assert_next_is_pong(client, "the three replies in that one frame")
    assert metric(scrape(live), "uws_batches_sent_total") == 1


def test_batching_sends_a_lone_reply_unwrapped_after_max_wait(serve):
    live = serve(realtime_server(batching=Batching(max_size=3, max_wait_ms=100)))
    client, _ = live.join()
    started = time.monotonic()
    reply = request(client, {"type": "PING", "id": "solo"})
    elapsed = time.monotonic() - started
    assert (reply["type"], reply["id"]) == ("PONG", "solo"), reply
    assert 0.09 <= elapsed <= 0.5, f"lone reply after {elapsed * 1000:.0f} ms, expected ~100 ms"


# -- payload limits -----------------------------------------------------------------------------


def test_payload_over_limit_is_refused_politely_up_to_twice_the_limit(serve):
    live = serve(realtime_server(max_payload_length=1024))
    client, _ = live.join()
    client.send_text(message_of_size(1024))
    assert recv_json(client)["type"] == "PONG", "a message of exactly max_payload_length is accepted"
    for size in (1025, 2048):
        client.send_text(message_of_size(size))
        reply = recv_json(client)
        assert (reply["type"], reply["code"]) == ("ERROR", "PAYLOAD_TOO_LARGE"), (size, reply)
        assert "1024" in reply["message"] and "id" not in reply
    assert_next_is_pong(client, "the connection to stay open below twice the limit")


def test_payload_limit_counts_bytes_not_characters(serve):
    live = serve(realtime_server(max_payload_length=1024))
    client, _ = live.join()
    client.send_text(message_of_size(1024, filler="€"))
    assert recv_json(client)["type"] == "PONG"
    # 1025 bytes but only about 360 characters.
    client.send_text(message_of_size(1025, filler="€"))
    reply = recv_json(client)
    assert (reply["type"], reply.get("code")) == ("ERROR", "PAYLOAD_TOO_LARGE"), reply


def test_payload_over_twice_the_limit_closes_with_1009(serve):
    live = serve(realtime_server(max_payload_length=1024))
    client, _ = live.join()
    client.send_text(message_of_size(2049))
    assert client.expect_close() == (1009, b"message over max_payload_length")



# -- monitoring ---------------------------------------------------------------------------------


def test_health_reports_status_connections_and_pid(serve):
    live = serve(realtime_server())
    live.join("a")
    live.join("b")
    response = live.http_get("/health")
    assert response.status == 200, response
    assert response.headers.get("content-type") == "application/json"
    health = json.loads(response.body)
    assert health["status"] == "ok"
    assert health["connections"] == 2
    assert health["pid"] == os.getpid()
    assert health["uptime"] >= 0


def test_handler_latency_samples_one_call_in_sixteen(serve):
    server = realtime_server(rate_limit=None)

    @server.on("WORK")
    def work(client, message):
        time.sleep(0.002)
        return {"type": "DONE"}

    live = serve(server)
    client, _ = live.join()
    for number in range(32):
        request(client, {"type": "WORK", "id": number})
    after = scrape(live)
    assert metric(after, "uws_handler_calls_total", type="WORK") == 32
    assert metric(after, "uws_handler_seconds_count", type="WORK") == 2
    assert metric(after, "uws_handler_seconds_sum", type="WORK") >= 0.004
    assert metric(after, "uws_handler_seconds_bucket", type="WORK", le="0.001") == 0


def test_metrics_counters_move(serve):
    server = realtime_server(rate_limit=RateLimit(messages=5, per_seconds=60))

    @server.on("ECHO")
    def echo(client, message):
        return {"type": "ECHOED"}

    live = serve(server)
    before = scrape(live)
    client, _ = live.join()
    request(client, {"type": "ECHO", "id": 1})
    request(client, {"type": "ECHO", "id": 2})
    assert request(client, {"type": "NOPE", "id": 3})["code"] == "UNKNOWN_TYPE"
    request(client, {"type": "PING"})
    request(client, {"type": "PING"})
    assert request(client, {"type": "PING"})["code"] == "RATE_LIMITED"
    assert live.refused(token=make_token(secret="x" * 40)).status == 401

    response = live.http_get("/metrics")
    assert response.headers.get("content-type", "").startswith("text/plain; version=0.0.4")
    after = scrape(live)

    def moved(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert moved("uws_messages_received_total") == 6
    assert moved("uws_messages_sent_total") >= 6  # CONNECTED and the replies
    assert moved("uws_connections_opened_total") == 1
    assert metric(after, "uws_connections") == 1
    assert moved("uws_errors_total", code="UNKNOWN_TYPE") == 1
    assert moved("uws_errors_total", code="RATE_LIMITED") == 1
    assert moved("uws_rate_limited_total") == 1
    assert moved("uws_auth_failures_total", reason="signature") == 1
    assert moved("uws_refused_connections_total", status="401") == 1
    assert metric(after, "uws_handler_calls_total", type="ECHO") == 2
    # Sync handlers time one call in 16: two calls give no sample yet.
    assert metric(after, "uws_handler_seconds_count", type="ECHO") == 0


# -- shutdown and hooks -------------------------------------------------------------------------


def test_close_flushes_batched_replies_then_closes_with_1001(serve):
    server = realtime_server(batching=Batching(max_size=10, max_wait_ms=10_000))
    handled: queue.Queue = queue.Queue()
    disconnects: queue.Queue = queue.Queue()

    @server.on("NOTE")
    def note(client, message):
        handled.put(message["id"])
        return {"type": "NOTED"}

    server.on_disconnect(lambda client, code: disconnects.put(code))
    live = serve(server)
    busy, _ = live.join("busy")
    idle, _ = live.join("idle")
    busy.send_raw(b"".join(encode_frame(Op.TEXT, orjson.dumps({"type": "NOTE", "id": i})) for i in (1, 2)))
    assert [handled.get(timeout=WAIT), handled.get(timeout=WAIT)] == [1, 2]

    started = time.monotonic()
    server.close()
    flushed = recv_json(busy)
    assert flushed["type"] == "BATCH" and [m["id"] for m in flushed["messages"]] == [1, 2], flushed
    assert time.monotonic() - started < 2.0, "queued replies waited for max_wait instead of the close"
    for client in (busy, idle):
        code, reason = client.expect_close()
        assert (code, reason) == (1001, b"server shutting down")
        client.send_close(1001)
    live.thread.join(WAIT)
    assert not live.thread.is_alive(), "run() did not return after close()"
    assert sorted([disconnects.get(timeout=WAIT), disconnects.get(timeout=WAIT)]) == [1001, 1001]


def test_connect_and_disconnect_hooks_see_the_client(serve):
    server = realtime_server()
    events: queue.Queue = queue.Queue()
    server.on_connect(lambda client: events.put(("connect", client.id, client.user_id, client.claims.get("sub"))))
    server.on_disconnect(lambda client, code: events.put(("disconnect", client.id, client.user_id, code)))
    live = serve(server)

    client, connected = live.join("alice")
    assert events.get(timeout=WAIT) == ("connect", connected["clientId"], "alice", "alice")
    client.close(4000, "bye")
    assert events.get(timeout=WAIT) == ("disconnect", connected["clientId"], "alice", 4000)
    health = json.loads(live.http_get("/health").body)
    assert health["connections"] == 0


def test_raising_connect_hook_leaves_the_connection_usable(serve):
    server = realtime_server()
    server.on_connect(lambda client: 1 / 0)
    live = serve(server)
    client, _ = live.join()
    assert_next_is_pong(client, "the connection to work after a failing on_connect hook")


# -- the example --------------------------------------------------------------------------------


def load_example():
    spec = importlib.util.spec_from_file_location("realtime_app_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_app_answers_natural_language_and_broadcasts_ticks(serve):
    example = load_example()
    secret = "the example under test, with a long enough secret"
    server = example.build_server(secret)
    live = serve(server)
    server.app.defer(lambda: example.start_ticks(server, interval=0.2))

    client = live.connect(example.sample_token(secret, user="tester"))
    assert recv_json(client)["userId"] == "tester"
    assert request(client, {"type": "NATURAL_LANGUAGE", "text": "hello, world", "id": 7}) == {
        "type": "NATURAL_LANGUAGE_RESULT", "text": "HELLO, WORLD", "id": 7,
    }
    refused = request(client, {"type": "NATURAL_LANGUAGE", "text": 5, "id": 8})
    assert (refused["code"], refused["id"]) == ("INVALID_MESSAGE", 8), refused

    assert request(client, {"type": "SUBSCRIBE", "topic": "ticks"})["type"] == "SUBSCRIBED"
    tick = recv_json(client, timeout=2.0)
    assert (tick["type"], tick["topic"], tick["from"]) == ("MESSAGE", "ticks", None), tick
    assert tick["data"]["n"] >= 1


def test_periodic_performance_report_is_logged(serve, caplog):
    caplog.set_level(logging.INFO, logger="uws_py")
    server = realtime_server(report_interval=0.2)
    live = serve(server)
    server.app.defer(server._start_reporting)  # run() starts it; the fixture runs the bare loop
    client, _ = live.join()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("perf:" in r.getMessage() for r in caplog.records):
        time.sleep(0.05)
    reports = [r.getMessage() for r in caplog.records if "perf:" in r.getMessage()]
    assert reports, "no performance report within 5 s"
    fields = dict(pair.split("=", 1) for pair in reports[0].split("perf: ", 1)[1].split())
    assert {"worker", "pid", "connections", "messages_in_per_s", "messages_out_per_s", "handler_p99_ms", "drops",
            "rate_limited", "auth_failures", "recoveries", "errors"} <= set(fields), fields
    assert int(fields["connections"]) == 1
