"""OpenTelemetry tracing of the realtime layer (the ``[otel]`` extra), installed only when a
server is built with ``tracing=``: without it this module is never imported and nothing is
done per message.

Spans (messaging semantic conventions, ``messaging.system = "uws_py"``):

- ``upgrade <path>`` (SERVER) for each WebSocket upgrade, continuing the request's
  ``traceparent`` header; it ends when the upgrade is accepted (101) or refused.
- ``process <type>`` (CONSUMER) for each message handled: a child of the message's
  ``traceparent`` field when it has a valid one, else the root of a new trace; linked to the
  connection's upgrade span either way. It covers the synchronous part of the handling (an
  ``async def`` handler's awaits run after it ended).
- ``publish <topic>`` (PRODUCER) for each PUBLISH and ``server.publish``, a child of what is
  current (the ``process PUBLISH`` span). Through the Redis broker its context travels with
  the publication (plain topics; history topics are framed by Redis itself and do not carry
  it), and the delivering process starts ``receive <topic>`` (CONSUMER), a child of the
  publish span and linked to it: one trace across workers.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import orjson

from .._version import __version__

SYSTEM = "uws_py"
TEXT = 1


def _opentelemetry() -> Any:
    try:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        raise RuntimeError("tracing needs OpenTelemetry: pip install 'uws-py[otel]'") from None
    return context, trace, TraceContextTextMapPropagator


class Tracing:
    """The server's tracer and the span context of each open connection.

    Args:
        tracer_provider: an OpenTelemetry ``TracerProvider``; None uses the global one (set it
            up, e.g. with an OTLP exporter, before the server runs).
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        context, trace, propagator = _opentelemetry()
        self._context = context
        self._trace = trace
        self.tracer = trace.get_tracer("uws_py", __version__, tracer_provider=tracer_provider)
        self.propagator = propagator()
        self.kinds = trace.SpanKind
        self.connections: dict[str, Any] = {}  # client id -> the upgrade span's SpanContext

    # -- context in and out -------------------------------------------------------------------

    def extract(self, traceparent: Any) -> Any:
        """The Context a W3C ``traceparent`` value continues, or None when it is not valid."""
        if not isinstance(traceparent, str) or not traceparent:
            return None
        extracted = self.propagator.extract({"traceparent": traceparent})
        if not self._trace.get_current_span(extracted).get_span_context().is_valid:
            return None
        return extracted

    def current_traceparent(self) -> str:
        """The ``traceparent`` of the current span ("" when there is none)."""
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier)
        return carrier.get("traceparent", "")

    def _links(self, *span_contexts: Any) -> list[Any]:
        return [self._trace.Link(sc) for sc in span_contexts if sc is not None and sc.is_valid]

    # -- the route's handlers, wrapped -------------------------------------------------------------

    def upgrade_handler(self, path: str, on_upgrade: Callable[[Any, Any, Any], None]) -> Callable[[Any, Any, Any], None]:
        """``on_upgrade`` inside an ``upgrade <path>`` span, ended by the answer."""
        tracer, server, use_span = self.tracer, self.kinds.SERVER, self._trace.use_span

        def traced(res: Any, req: Any, context: Any) -> None:
            parent = self.extract(req.get_header("traceparent"))
            span = tracer.start_span(f"upgrade {path}", context=parent, kind=server, attributes={
                "http.request.method": "GET", "url.path": path, "client.address": res.get_remote_address(),
            })
            with use_span(span, end_on_exit=False):
                on_upgrade(_TracedResponse(res, span, self), req, context)

        return traced

    def close_handler(self, on_close: Callable[[Any, int, Any], None]) -> Callable[[Any, int, Any], None]:
        """``on_close``, then forgets the connection's span context."""
        connections = self.connections

        def traced(ws: Any, code: int, reason: Any) -> None:
            try:
                on_close(ws, code, reason)
            finally:
                client = ws.get_user_data()
                if client is not None:
                    connections.pop(client.id, None)

        return traced

    def message_handler(self, on_message: Callable[[Any, Any, int], None]) -> Callable[[Any, Any, int], None]:
        """``on_message`` inside a ``process <type>`` span (current while it runs, so that a
        publish it makes is its child)."""
        tracer, consumer = self.tracer, self.kinds.CONSUMER
        root = self._context.Context()
        attach, detach, in_context = self._context.attach, self._context.detach, self._trace.set_span_in_context
        connections, links_to = self.connections, self._links
        loads, decode_error = orjson.loads, orjson.JSONDecodeError

        def traced(ws: Any, data: Any, opcode: int) -> None:
            kind, parent, topic = None, None, None
            if opcode == TEXT:
                try:
                    message = loads(data)
                except decode_error:
                    message = None
                if type(message) is dict:
                    kind = message.get("type") if type(message.get("type")) is str else None
                    if "traceparent" in message:
                        parent = self.extract(message["traceparent"])
                    topic = message.get("topic") if type(message.get("topic")) is str else None
            client = ws.get_user_data()
            attributes = {
                "messaging.system": SYSTEM, "messaging.operation.type": "process",
                "messaging.operation.name": kind or "unknown", "messaging.client.id": client.id,
                "messaging.message.body.size": len(data),
            }
            if topic is not None:
                attributes["messaging.destination.name"] = topic
            span = tracer.start_span(f"process {kind}" if kind else "process", context=parent or root,
                                     kind=consumer, attributes=attributes, links=links_to(connections.get(client.id)),
                                     record_exception=False, set_status_on_exception=False)
            token = attach(in_context(span, root))
            try:
                on_message(ws, data, opcode)
            finally:
                detach(token)
                span.end()

        return traced

    def publisher(self, publish: Callable[..., Any], topic_at: int) -> Callable[..., Any]:
        """``publish`` (PubSub.publish_from or .publish) inside a ``publish <topic>`` span;
        ``topic_at``: the topic's position among the arguments."""
        tracer, producer = self.tracer, self.kinds.PRODUCER

        def traced(*args: Any) -> Any:
            topic = args[topic_at]
            with tracer.start_as_current_span(f"publish {topic}", kind=producer, attributes={
                "messaging.system": SYSTEM, "messaging.operation.type": "publish",
                "messaging.operation.name": "publish", "messaging.destination.name": topic,
            }):
                return publish(*args)

        return traced

    def receiver(self, deliver: Callable[[str, bytes], None]) -> Callable[[str, bytes, bytes], None]:
        """``deliver`` of another process's publish inside a ``receive <topic>`` span, a child
        of (and linked to) that publish's span."""
        tracer, consumer, use_span = self.tracer, self.kinds.CONSUMER, self._trace.use_span
        get_span = self._trace.get_current_span

        def traced(topic: str, payload: bytes, trace: bytes) -> None:
            parent = self.extract(trace.decode("ascii", "replace"))
            links = self._links(get_span(parent).get_span_context()) if parent is not None else []
            span = tracer.start_span(f"receive {topic}", context=parent, kind=consumer, links=links, attributes={
                "messaging.system": SYSTEM, "messaging.operation.type": "receive",
                "messaging.operation.name": "receive", "messaging.destination.name": topic,
                "messaging.message.body.size": len(payload),
            })
            with use_span(span, end_on_exit=True):
                deliver(topic, payload)

        return traced

    def install(self, engine: Any) -> None:
        """Traces the publishes of a realtime Engine: its PubSub, as clients and the server
        reach it, becomes a :class:`TracedPubSub`; its broker a :class:`TracedBroker` when that
        one carries trace context."""
        pubsub = engine.pubsub
        broker = pubsub.broker
        if broker is not None and getattr(broker, "supports_trace_context", False):
            pubsub.broker = TracedBroker(broker, self)
        engine.pubsub = engine.session_context.pubsub = TracedPubSub(pubsub, self)


class TracedPubSub:
    """A PubSub whose publishes run inside ``publish <topic>`` spans; the rest is the PubSub's."""

    _OWN = frozenset({"pubsub", "publish_from", "publish"})

    def __init__(self, pubsub: Any, tracing: Tracing) -> None:
        object.__setattr__(self, "pubsub", pubsub)
        object.__setattr__(self, "publish_from", tracing.publisher(pubsub.publish_from, 1))
        object.__setattr__(self, "publish", tracing.publisher(pubsub.publish, 0))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pubsub, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # topic_hook, relay, history_on...: the PubSub's own state, set through the engine.
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.pubsub, name, value)


class TracedBroker:
    """A broker whose publishes carry the current span's ``traceparent`` and whose traced
    deliveries start a ``receive`` span; everything else goes to the broker itself."""

    def __init__(self, broker: Any, tracing: Tracing) -> None:
        self.broker = broker
        self.tracing = tracing

    def __getattr__(self, name: str) -> Any:
        return getattr(self.broker, name)

    def start(self, deliver: Callable[[str, bytes], None], schedule: Any, **options: Any) -> None:
        """The broker's start, with ``deliver_traced``."""
        self.broker.start(deliver, schedule, deliver_traced=self.tracing.receiver(deliver), **options)

    def publish(self, topic: str, payload: bytes, done: Optional[Callable[[bool], None]] = None) -> None:
        """The broker's publish, with the current span's traceparent."""
        self.broker.publish(topic, payload, done, trace=self.tracing.current_traceparent().encode("ascii"))


class _TracedResponse:
    """The upgrade's response, ending the upgrade span when it is answered (at once, or
    after an ``async def`` authenticate hook) and keeping the span for the connection."""

    __slots__ = ("_res", "_span", "_tracing")

    def __init__(self, res: Any, span: Any, tracing: Tracing) -> None:
        self._res = res
        self._span = span
        self._tracing = tracing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._res, name)

    def upgrade(self, user_data: Any, *args: Any) -> Any:
        span = self._span
        span.set_attribute("http.response.status_code", 101)
        self._tracing.connections[user_data.id] = span.get_span_context()
        span.end()
        return self._res.upgrade(user_data, *args)

    def write_status(self, status: Any) -> "_TracedResponse":
        text = status.decode() if isinstance(status, bytes) else str(status)
        if text[:3].isdigit():
            self._span.set_attribute("http.response.status_code", int(text[:3]))
            if int(text[:3]) >= 400:
                from opentelemetry.trace import Status, StatusCode

                self._span.set_status(Status(StatusCode.ERROR, text))
        self._res.write_status(status)
        return self

    def end(self, *args: Any, **kwargs: Any) -> Any:
        result = self._res.end(*args, **kwargs)
        self._span.end()
        return result
