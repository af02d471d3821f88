"""OpenTelemetry tracing (the [otel] extra) with the SDK's in-memory exporter: two server
processes' worth of RealtimeServers (each with its own tracer provider) sharing a Redis
broker; a PUBLISH handled by one and delivered by the other gives one trace of linked spans.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading

import pytest
import redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.support.procutil import HOST, RealtimeClient, RedisServer, free_port, wait_until
from uws_py import RealtimeServer
from uws_py.broker.redis import RedisBroker

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"


class TracedWorker:
    """A RealtimeServer with tracing into its own in-memory exporter, served on a thread."""

    def __init__(self, redis_url: str) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.server = RealtimeServer(broker=RedisBroker(redis_url), tracing=provider, rate_limit=None)
        self.port = free_port()
        serving = self.server.serve(port=self.port, host=HOST, handle_signals=False)
        self.thread = threading.Thread(target=asyncio.run, args=(serving,), daemon=True)
        self.thread.start()
        wait_until(lambda: _accepts(self.port), f"the server on port {self.port} listening")

    def spans(self, name: str) -> list:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def stop(self) -> None:
        self.server.close()
        self.thread.join(10)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def redis_url():
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.cleanup()


def test_a_publish_on_one_worker_delivered_on_another_is_one_trace_of_linked_spans(redis_url):
    first, second = TracedWorker(redis_url), TracedWorker(redis_url)
    try:
        subscriber = RealtimeClient(second.port)
        subscriber.subscribe("room")
        counter = redis.Redis.from_url(redis_url)
        wait_until(lambda: dict(counter.pubsub_numsub("uws:room")).get(b"uws:room") == 1,
                   "the second worker subscribed to the Redis channel")
        publisher = RealtimeClient(first.port, headers=[("traceparent", TRACEPARENT)])
        publisher.send({"type": "PUBLISH", "topic": "room", "data": 1, "traceparent": TRACEPARENT})
        assert subscriber.expect_message("room") == 1
        publisher.send({"type": "PING", "id": 7})  # no traceparent: a new trace, linked to the connection
        assert publisher.recv()["type"] == "PONG"

        wait_until(lambda: second.spans("receive room") and first.spans("process PING"), "the spans exported")
        (upgrade,) = [s for s in first.spans("upgrade /realtime") if s.attributes.get("http.response.status_code") == 101
                      and s.parent is not None]
        (process,) = first.spans("process PUBLISH")
        (publish,) = first.spans("publish room")
        (receive,) = second.spans("receive room")
        (ping,) = first.spans("process PING")

        assert upgrade.kind == SpanKind.SERVER
        assert format(upgrade.context.trace_id, "032x") == TRACE_ID
        assert format(upgrade.parent.span_id, "016x") == PARENT_SPAN

        assert process.kind == SpanKind.CONSUMER
        assert format(process.context.trace_id, "032x") == TRACE_ID
        assert format(process.parent.span_id, "016x") == PARENT_SPAN  # the message's traceparent
        assert [link.context.span_id for link in process.links] == [upgrade.context.span_id]
        assert process.attributes["messaging.system"] == "uws_py"
        assert process.attributes["messaging.operation.name"] == "PUBLISH"
        assert process.attributes["messaging.destination.name"] == "room"

        assert publish.kind == SpanKind.PRODUCER
        assert publish.parent.span_id == process.context.span_id
        assert publish.attributes["messaging.destination.name"] == "room"

        assert receive.kind == SpanKind.CONSUMER
        assert receive.context.trace_id == publish.context.trace_id  # one trace across workers
        assert receive.parent.span_id == publish.context.span_id
        assert [link.context.span_id for link in receive.links] == [publish.context.span_id]
        assert receive.attributes["messaging.operation.type"] == "receive"

        assert ping.parent is None and ping.context.trace_id != process.context.trace_id
        assert [link.context.span_id for link in ping.links] == [upgrade.context.span_id]
        assert not second.spans("process PUBLISH")
        publisher.close()
        subscriber.close()
    finally:
        first.stop()
        second.stop()


def test_a_refused_upgrade_ends_its_span_with_the_status():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    from tests.support import wsclient
    from uws_py import JWTAuth

    server = RealtimeServer(tracing=provider, auth=JWTAuth(secret="tracing test secret, 32 bytes or more"))
    server.listen(port=0, host=HOST)
    thread = threading.Thread(target=server.app.run, daemon=True)
    thread.start()
    try:
        with pytest.raises(wsclient.HandshakeRefused):
            wsclient.connect(HOST, server.port, "/realtime")
        wait_until(lambda: exporter.get_finished_spans(), "the upgrade span exported")
        (span,) = exporter.get_finished_spans()
        assert span.name == "upgrade /realtime" and span.attributes["http.response.status_code"] == 401
        assert span.status.is_ok is False
    finally:
        server.close()
        thread.join(10)


def test_without_tracing_nothing_of_opentelemetry_is_imported():
    code = ("import sys; from uws_py import RealtimeServer; RealtimeServer(); "
            "assert 'opentelemetry' not in sys.modules, 'opentelemetry imported'; "
            "assert 'uws_py.monitoring.tracing' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_with_tracing_the_topic_hook_and_history_still_apply():
    provider = TracerProvider()
    server = RealtimeServer(tracing=provider)
    server.history("hist.*", size=5, ttl=60)

    @server.authorize_topic
    def only_public(client, topic, action):
        return topic.startswith(("public.", "hist."))

    server.listen(port=0, host=HOST)
    thread = threading.Thread(target=server.app.run, daemon=True)
    thread.start()
    try:
        client = RealtimeClient(server.port)
        refused = client.request({"type": "SUBSCRIBE", "topic": "secret.x"})
        assert refused["type"] == "ERROR", refused
        published = client.request({"type": "PUBLISH", "topic": "hist.a", "data": 1})
        assert published["type"] == "PUBLISHED" and published["offset"] == 1, published
        client.close()
    finally:
        server.close()
        thread.join(10)
