"""RealtimeServer: the realtime protocol (docs/protocol.md) on top of App, with JWT auth,
routing by type, batching, rate limiting, monitoring and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
import uuid
from typing import Any, Awaitable, Callable, Optional, Sequence, Union

import orjson
from orjson import JSONDecodeError

from . import protocol
from ._core import OpCode
from .app import App, CompressOptions, SSLOptions
from .auth import AuthError, JWTAuth, topic_matches
from .broker import Broker
from .batching import Batcher, Batching
from ._asyncio import CapturedRequest
from .client import Client
from .metrics import Metrics
from .protocol import FORBIDDEN, INTERNAL, INVALID_MESSAGE, PAYLOAD_TOO_LARGE, RATE_LIMITED, UNAUTHORIZED, UNKNOWN_TYPE, ProtocolError
from .ratelimit import ConnectionLimiter, RateLimit, TokenBucket
from .routing import Router

logger = logging.getLogger("uws_py.realtime")
access_logger = logging.getLogger("uws_py.access")

from .metrics import LATENCY_SAMPLE_MASK

_BINARY = int(OpCode.BINARY)
_TEXT = int(OpCode.TEXT)
_dumps = orjson.dumps
_loads = orjson.loads
_perf_counter = time.perf_counter

# Returned by a built-in that already sent its own reply.
_REPLIED = object()

BUILTIN_TYPES = frozenset({"SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", "BATCH", "PING", "AUTH"})
TopicHook = Callable[[Client, str, str], bool]

_DEFAULT_RATE_LIMIT = RateLimit()


class RealtimeServer:
    """The realtime server; every option has a documented default.

    - ``path``: where clients connect (``/realtime``).
    - ``auth``: a :class:`JWTAuth`, or None for no authentication.
    - ``rate_limit``: a :class:`RateLimit` per client (100 messages per 60 s), or None.
    - ``batching``: a :class:`Batching`, or None (default: every message leaves at once).
    - ``max_payload_length``: larger messages get PAYLOAD_TOO_LARGE; twice that closes with
      1009 before it is buffered. ``idle_timeout``, ``max_backpressure``: as in ``App.ws``.
    - ``compression``: permessage-deflate with the shared compressor (no per-socket memory).
    - ``allowed_origins``: Origin values allowed to connect (others get 403); None allows all.
      Requests without Origin (non-browser clients) are not refused for it.
    - ``max_connections`` (503 beyond) and ``max_connections_per_ip`` (429 beyond).
    - ``report_interval``: seconds between performance reports in the log; None is off.
    - ``broker``: a :class:`uws_py.broker.Broker` (e.g. RedisBroker) carrying publishes to
      and from other server processes; None keeps pub/sub within this process.
    - ``handler_metrics``: per-type handler call counts and latency histograms (inline sync
      handlers: one call in 16 is timed); the other metrics cost nothing per message.
    - ``access_log``: log each upgrade and HTTP request (path only: a token in the query
      string never reaches the log).
    """

    def __init__(
        self,
        path: str = "/realtime",
        auth: Optional[JWTAuth] = None,
        rate_limit: Optional[RateLimit] = _DEFAULT_RATE_LIMIT,
        batching: Optional[Batching] = None,
        max_payload_length: int = 100 * 1024,
        idle_timeout: int = 120,
        max_backpressure: int = 1024 * 1024,
        compression: bool = True,
        allowed_origins: Optional[Sequence[str]] = None,
        max_connections: Optional[int] = None,
        max_connections_per_ip: Optional[int] = None,
        ssl: Optional[SSLOptions] = None,
        report_interval: Optional[float] = None,
        health_path: str = "/health",
        metrics_path: str = "/metrics",
        access_log: bool = False,
        broker: Optional["Broker"] = None,
        handler_metrics: bool = True,
    ) -> None:
        self.path = path
        self.auth = auth
        self.rate_limit = rate_limit
        self.batching = batching
        self.max_payload_length = max_payload_length
        self.allowed_origins = frozenset(allowed_origins) if allowed_origins is not None else None
        self.report_interval = report_interval
        self.access_log = access_log
        self.compression = compression
        self.broker = broker
        self.handler_metrics = handler_metrics
        self.router = Router(reserved=BUILTIN_TYPES)
        self._routes = self.router.routes
        self.clients: dict[str, Client] = {}
        self.limiter = ConnectionLimiter(max_connections, max_connections_per_ip)
        self._binary_handler: Optional[Callable[[Client, bytes], Any]] = None
        self._on_connect: list[Callable[[Client], Any]] = []
        self._on_disconnect: list[Callable[[Client, int], Any]] = []
        self._topic_hook: Optional[TopicHook] = None
        self._authenticate: Optional[Callable[..., Any]] = None
        self._builtins = {
            "SUBSCRIBE": self._subscribe,
            "UNSUBSCRIBE": self._unsubscribe,
            "PUBLISH": self._publish,
            "BATCH": self._batch,
            "PING": self._ping,
            "AUTH": self._auth,
        }
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._report_timer: Optional[int] = None
        self._last_report: tuple[float, int] = (time.monotonic(), 0)
        self.app = App(ssl=ssl)
        self.metrics = Metrics(self.app.stats, broker.stats if broker is not None else None)
        self.app.ws(
            path,
            {
                "upgrade": self._on_upgrade,
                "open": self._on_open,
                "message": self._on_message,
                "close": self._on_close,
                "subscription": self._on_subscription,
                # The hard limit: twice the soft one, answered politely below it.
                "max_payload_length": max_payload_length * 2,
                "idle_timeout": idle_timeout,
                "max_backpressure": max_backpressure,
                "compression": (CompressOptions.SHARED_COMPRESSOR | CompressOptions.SHARED_DECOMPRESSOR)
                if compression
                else CompressOptions.DISABLED,
            },
        )
        self.app.get(health_path, self._health)
        self.app.get(metrics_path, self._metrics)

    # -- registration -------------------------------------------------------------------

    def on(self, kind: str, schema: Any = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: ``handler(client, message)`` for messages of this type. Its return value
        (a dict) is the reply, sent with the request's ``id``. Sync handlers are cheaper;
        ``async def`` handlers need :meth:`serve`. ``schema``: a msgspec Struct type or a
        callable that raises ValueError naming the bad field."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            route = self.router.add(kind, handler, schema)
            if self.handler_metrics:
                route.histogram = self.metrics.histogram(kind)
            self.metrics.routes[kind] = route
            return handler

        return register

    def on_binary(self, handler: Callable[[Client, bytes], Any]) -> Callable[[Client, bytes], Any]:
        """Decorator: binary messages go to ``handler(client, data)`` (else INVALID_MESSAGE)."""
        self._binary_handler = handler
        return handler

    def on_connect(self, handler: Callable[[Client], Any]) -> Callable[[Client], Any]:
        """Decorator: runs after CONNECTED was sent."""
        self._on_connect.append(handler)
        return handler

    def on_disconnect(self, handler: Callable[[Client, int], Any]) -> Callable[[Client, int], Any]:
        """Decorator: ``handler(client, close_code)``."""
        self._on_disconnect.append(handler)
        return handler

    def authenticate(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: ``hook(claims, request)`` runs at each upgrade after the token (if any)
        was verified; ``request`` is a captured copy of the HTTP request. It returns False to
        refuse (403), a dict to use as the client's claims, or anything else to accept; raising
        AuthError refuses with 401. An ``async def`` hook (a user lookup, a JWKS fetch) is
        awaited without blocking the loop; it needs :meth:`serve`."""
        self._authenticate = hook
        return hook

    def authorize_topic(self, hook: TopicHook) -> TopicHook:
        """Decorator: ``hook(client, topic, action) -> bool`` ("subscribe" or "publish"),
        asked after the token's topic claim allowed the topic."""
        self._topic_hook = hook
        return hook

    # -- running --------------------------------------------------------------------------

    def listen(self, host: str = "127.0.0.1", port: int = 8080) -> "RealtimeServer":
        self.app.listen(port, host)
        return self

    @property
    def port(self) -> int:
        return self.app.port

    def run(self, host: str = "127.0.0.1", port: int = 8080) -> None:
        """Listens and runs until SIGTERM/SIGINT or :meth:`close`; shuts down gracefully."""
        self.listen(host, port)
        self.run_forever()

    def run_forever(self) -> None:
        """Runs an already listening server until SIGTERM/SIGINT or :meth:`close`."""
        self._start_broker()
        self._start_reporting()
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: self.close())
        try:
            self.app.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._stop_broker()

    async def serve(self, host: str = "127.0.0.1", port: int = 8080, handle_signals: bool = True) -> None:
        """As :meth:`run`, inside the running asyncio loop (async handlers allowed)."""
        self.listen(host, port)
        self._loop = asyncio.get_running_loop()
        self._start_broker()
        self._start_reporting()
        installed = []
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                try:
                    self._loop.add_signal_handler(signum, self.close)
                    installed.append(signum)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        try:
            await self.app.serve()
        finally:
            for signum in installed:
                self._loop.remove_signal_handler(signum)
            self._loop = None
            self._stop_broker()

    def close(self, code: int = 1001, reason: str = "server shutting down", timeout: float = 5.0) -> None:
        """Graceful shutdown: flushes every batch, ends every connection, stops the loop."""

        def shut_down() -> None:
            for client in list(self.clients.values()):
                client.flush()
            if self._report_timer is not None:
                self.app.clear_timeout(self._report_timer)
                self._report_timer = None
            self.app.close(code, reason, timeout)

        self.app.defer(shut_down)

    def publish(self, topic: str, data: Any) -> bool:
        """A server-originated MESSAGE (``from`` is null) to every subscriber, in every
        process when there is a broker. Loop thread."""
        payload = protocol.encode({"type": "MESSAGE", "topic": topic, "data": data, "from": None})
        if self.broker is not None:
            self.broker.publish(topic, payload)
        return self.app.publish(topic, payload, OpCode.TEXT)

    def _start_broker(self) -> None:
        if self.broker is not None:
            self.broker.start(self._deliver_remote, self.app.defer)

    def _stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.stop()

    def _deliver_remote(self, topic: str, payload: bytes) -> None:
        self.app.publish(topic, payload, OpCode.TEXT)

    def _on_subscription(self, ws: Any, topic: str, count: int, before: int) -> None:
        broker = self.broker
        if broker is None:
            return
        if before == 0 and count > 0:
            broker.subscribe(topic)
        elif count == 0 and before > 0:
            broker.unsubscribe(topic)

    def publish_from(self, client: Client, topic: str, data: Any, echo: bool) -> None:
        message = {"type": "MESSAGE", "topic": topic, "data": data, "from": client.id}
        payload = protocol.encode(message)
        if client.ws is not None:
            client.ws.publish(topic, payload, OpCode.TEXT)
        if self.broker is not None:
            self.broker.publish(topic, payload)
        if echo:
            client.send(message)

    def check_topic(self, client: Client, topic: Any, action: str) -> None:
        """Raises ProtocolError unless client may act on topic."""
        if not isinstance(topic, str) or not topic:
            raise ProtocolError(INVALID_MESSAGE, "field 'topic' must be a non-empty string")
        if not topic_matches(client.topics_allowed, topic):
            raise ProtocolError(FORBIDDEN, f"not allowed to {action} {topic!r}")
        if self._topic_hook is not None and not self._topic_hook(client, topic, action):
            raise ProtocolError(FORBIDDEN, f"not allowed to {action} {topic!r}")

    # -- HTTP -----------------------------------------------------------------------------

    def _access(self, address: str, method: str, path: str, status: str) -> None:
        if self.access_log:
            access_logger.info('%s "%s %s" %s', address, method, path, status)

    def _health(self, res: Any, req: Any) -> None:
        self._access(res.get_remote_address(), "GET", req.get_url(), "200")
        res.write_header("Content-Type", "application/json").end(protocol.encode(self.metrics.health()))

    def _metrics(self, res: Any, req: Any) -> None:
        self._access(res.get_remote_address(), "GET", req.get_url(), "200")
        res.write_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8").end(self.metrics.render())

    # -- connection lifecycle ---------------------------------------------------------------

    def _refuse(self, res: Any, status: str, message: str) -> None:
        self.metrics.refused(status[:3])
        self._access(res.get_remote_address(), "GET", self.path, status[:3])
        logger.info("refused upgrade from %s: %s (%s)", res.get_remote_address(), status, message)
        res.write_status(status).end(message)

    def _on_upgrade(self, res: Any, req: Any, context: Any) -> None:
        address = res.get_remote_address()
        origin = req.get_header("origin")
        # Browsers always send Origin (cross-site WebSocket hijacking comes from them); a
        # client without one is not a browser and is let through, as Centrifugo does.
        if self.allowed_origins is not None and origin is not None and origin not in self.allowed_origins:
            self._refuse(res, "403 Forbidden", "origin not allowed")
            return
        refusal = self.limiter.check(address)
        if refusal is not None:
            self._refuse(res, refusal, "too many connections")
            return
        key = req.get_header("sec-websocket-key")
        protocols = req.get_header("sec-websocket-protocol")
        extensions = req.get_header("sec-websocket-extensions")
        claims: dict[str, Any] = {}
        topics = None
        selected = None
        if self.auth is not None:
            token, selected = self.auth.token_from_request(
                req.get_header("authorization"), req.get_query(self.auth.query_parameter), protocols
            )
            try:
                claims = self.auth.verify(token)
            except AuthError as exc:
                self.metrics.auth_failure(exc.reason)
                # The token itself is never logged: it may sit in the URL.
                self._refuse(res, "401 Unauthorized", exc.message)
                return
            topics = self.auth.topics_allowed(claims)
        protocol_answer = selected if selected is not None else (protocols or "")
        hook = self._authenticate
        if hook is None:
            self._accept(res, context, address, claims, topics, key, protocol_answer, extensions or "")
            return
        # The application's own check (a user lookup, a JWKS fetch...): the socket is accepted
        # only when it says yes, and the loop goes on serving others while it thinks.
        request = CapturedRequest(req._snapshot())
        if not asyncio.iscoroutinefunction(hook):
            try:
                verdict = hook(claims, request)
            except AuthError as exc:
                self.metrics.auth_failure(exc.reason)
                self._refuse(res, "401 Unauthorized", exc.message)
                return
            self._conclude(res, context, address, verdict, claims, topics, key, protocol_answer, extensions or "")
            return
        if self._loop is None:
            self._refuse(res, "500 Internal Server Error", "async authenticate needs server.serve()")
            return
        res.on_aborted(lambda: None)  # makes a late answer a harmless no-op
        self._start_task(self._authenticate_later(hook, res, context, address, claims, topics, key,
                                                  protocol_answer, extensions or "", request))

    async def _authenticate_later(self, hook: Any, res: Any, context: Any, address: str, claims: dict[str, Any],
                                  topics: Any, key: str, protocol_answer: str, extensions: str, request: Any) -> None:
        try:
            verdict = await hook(claims, request)
        except AuthError as exc:
            self.metrics.auth_failure(exc.reason)
            if not res.aborted:
                self._refuse(res, "401 Unauthorized", exc.message)
            return
        except Exception:
            logger.exception("exception in authenticate hook")
            if not res.aborted:
                self._refuse(res, "500 Internal Server Error", "authentication failed")
            return
        if res.aborted:
            return  # the client left while we were checking
        self._conclude(res, context, address, verdict, claims, topics, key, protocol_answer, extensions)

    def _conclude(self, res: Any, context: Any, address: str, verdict: Any, claims: dict[str, Any],
                  topics: Any, key: str, protocol_answer: str, extensions: str) -> None:
        """Applies an authenticate hook's verdict: False refuses (403), a dict replaces the
        claims, anything else accepts."""
        if verdict is False:
            self.metrics.auth_failure("hook")
            self._refuse(res, "403 Forbidden", "not allowed")
            return
        if isinstance(verdict, dict):
            claims = verdict
            if self.auth is not None:
                topics = self.auth.topics_allowed(claims)
        self._accept(res, context, address, claims, topics, key, protocol_answer, extensions)

    def _accept(self, res: Any, context: Any, address: str, claims: dict[str, Any], topics: Any,
                key: str, protocol_answer: str, extensions: str) -> None:
        client = Client(self, uuid.uuid4().hex[:16], claims, topics, address)
        if self.auth is not None:
            user = claims.get(self.auth.user_id_claim)
            client.user_id = None if user is None else str(user)
            exp = claims.get("exp")
            client.token_expires_at = float(exp) if isinstance(exp, (int, float)) else None
        elif "sub" in claims:
            client.user_id = str(claims["sub"])
        self._access(address, "GET", self.path, "101")
        res.upgrade(client, key, protocol_answer, extensions, context)

    def _on_open(self, ws: Any) -> None:
        client: Client = ws.get_user_data()
        client.ws = ws
        self.clients[client.id] = client
        self.limiter.opened(client.remote_address)
        if self.rate_limit is not None:
            client.bucket = TokenBucket(self.rate_limit)
        if self.batching is not None:
            client.batcher = Batcher(self.batching, protocol.now_ms)
        self._schedule_expiry(client)
        client.send(
            {
                "type": "CONNECTED",
                "clientId": client.id,
                "userId": client.user_id,
                "serverTime": protocol.now_ms(),
                "capabilities": {
                    "batching": self.batching is not None,
                    "compression": self.compression,
                    "maxPayloadLength": self.max_payload_length,
                    "rateLimit": None
                    if self.rate_limit is None
                    else {"messages": self.rate_limit.messages, "perSeconds": self.rate_limit.per_seconds},
                    "types": sorted(BUILTIN_TYPES) + self.router.types(),
                },
            },
            priority=True,
        )
        for hook in self._on_connect:
            self._run_hook(hook, client)

    def _on_close(self, ws: Any, code: int, reason: bytes) -> None:
        client: Client = ws.get_user_data()
        client.closed = True
        self.clients.pop(client.id, None)
        self.limiter.closed(client.remote_address)
        for timer in (client.batch_timer, client.expiry_timer):
            if timer is not None:
                self.app.clear_timeout(timer)
        client.batch_timer = client.expiry_timer = None
        for hook in self._on_disconnect:
            self._run_hook(hook, client, code)
        client.ws = None

    def _run_hook(self, hook: Callable[..., Any], *args: Any) -> None:
        try:
            result = hook(*args)
            if asyncio.iscoroutine(result):
                self._start_task(result)
        except Exception:
            logger.exception("exception in %s", getattr(hook, "__qualname__", hook))

    def _schedule_expiry(self, client: Client) -> None:
        if client.expiry_timer is not None:
            self.app.clear_timeout(client.expiry_timer)
            client.expiry_timer = None
        if client.token_expires_at is None or self.auth is None:
            return
        delay = client.token_expires_at + self.auth.leeway - time.time()
        client.expiry_timer = self.app.set_timeout(max(0.0, delay), lambda: self._expire(client))

    def _expire(self, client: Client) -> None:
        client.expiry_timer = None
        if client.closed:
            return
        self.metrics.auth_failure("expired_live")
        self.metrics.error(UNAUTHORIZED)
        client.send(protocol.error(UNAUTHORIZED, "token expired"), priority=True)
        client.close(1008, "token expired")

    # -- messages -------------------------------------------------------------------------

    def _on_message(self, ws: Any, data: Union[str, bytes], opcode: int) -> None:
        client: Client = ws.get_user_data()
        bucket = client.bucket
        if bucket is not None and not bucket.take():
            self._rate_limited(client, bucket)
            return
        if len(data) > self.max_payload_length or (
            # Text arrives decoded: measure bytes only when characters could hide them.
            isinstance(data, str) and len(data) * 4 > self.max_payload_length
            and len(data.encode("utf-8", "surrogatepass")) > self.max_payload_length
        ):
            self._send_error(client, None, ProtocolError(PAYLOAD_TOO_LARGE, f"message over {self.max_payload_length} bytes"))
            return
        if opcode == _BINARY:
            self._binary(client, data)  # type: ignore[arg-type]
            return
        try:
            message = _loads(data)
        except JSONDecodeError as exc:
            self._send_error(client, None, ProtocolError(INVALID_MESSAGE, f"not JSON: {exc}"))
            return
        if type(message) is not dict or type(message.get("type")) is not str or not message["type"]:
            try:
                protocol.decode(data)  # the same checks, with the precise error
            except ProtocolError as exc:
                request_id = message.get("id") if type(message) is dict else None
                self._send_error(client, request_id, exc)
                return
        route = self._routes.get(message["type"])
        if route is not None and route.fast:
            # The common case inline: a plain function, no schema, its dict reply sent at once.
            calls = route.calls = route.calls + 1
            try:
                if calls & LATENCY_SAMPLE_MASK or route.histogram is None:
                    reply = route.handler(client, message)
                else:
                    # One call in LATENCY_SAMPLE_EVERY is timed: clocks for every message
                    # would cost more than the 5% monitoring may take.
                    started = _perf_counter()
                    reply = route.handler(client, message)
                    route.histogram.observe(_perf_counter() - started)
            except Exception:
                self._dispatch(client, message, None, failed_route=route)
                return
            if type(reply) is dict and client.batcher is None:
                request_id = message.get("id")
                if request_id is not None:
                    reply = {**reply, "id": request_id}
                try:
                    ws.send(_dumps(reply), _TEXT)
                except TypeError:
                    client.send(reply)  # the slow path answers INTERNAL for an unencodable reply
                return
            self._reply(client, message.get("id"), reply, None)
            return
        self._dispatch(client, message, None)

    def _rate_limited(self, client: Client, bucket: TokenBucket) -> None:
        self.metrics.rate_limited += 1
        limit = self.rate_limit
        assert limit is not None
        if bucket.refused > limit.close_after * limit.messages:
            logger.warning("closing %s (%s): kept sending past its rate limit", client.id, client.remote_address)
            client.close(1008, "rate limit exceeded")
            return
        retry_ms = int(bucket.retry_after() * 1000) + 1
        self._send_error(client, None, ProtocolError(RATE_LIMITED, "rate limit exceeded", retryAfter=retry_ms))

    def _binary(self, client: Client, data: bytes) -> None:
        handler = self._binary_handler
        if handler is None:
            self._send_error(client, None, ProtocolError(INVALID_MESSAGE, "binary messages are not accepted"))
            return
        try:
            result = handler(client, data)
            if asyncio.iscoroutine(result):
                self._start_task(result)
        except Exception:
            logger.exception("exception in binary handler")
            self._send_error(client, None, ProtocolError(INTERNAL, "internal error"))

    def _dispatch(self, client: Client, message: dict[str, Any], out: Optional[list[Any]],
                  failed_route: Any = None) -> None:
        """Handles one message; replies go to out when collecting a BATCH, else are sent.
        failed_route: the inline path's handler raised; answer its exception, now current."""
        kind = message["type"]
        request_id = message.get("id")
        if failed_route is not None:
            exc = sys.exc_info()[1]
            if isinstance(exc, ProtocolError):
                self._send_error(client, request_id, exc, out)
            else:
                logger.exception("exception in handler for %r", kind)
                self._send_error(client, request_id, ProtocolError(INTERNAL, "internal error"), out)
            return
        try:
            builtin = self._builtins.get(kind)
            if builtin is not None:
                reply = builtin(client, message, out)
            else:
                route = self.router.get(kind)
                if route is None:
                    raise ProtocolError(UNKNOWN_TYPE, f"no handler for type {kind!r}")
                argument = message if route.schema is None else route.validate(message)
                if route.is_async:
                    self._start_task(self._run_async(route, client, argument, request_id))
                    return
                route.calls += 1
                started = _perf_counter()
                reply = route.handler(client, argument)
                if route.histogram is not None:
                    route.histogram.observe(_perf_counter() - started)
        except ProtocolError as exc:
            self._send_error(client, request_id, exc, out)
            return
        except Exception:
            logger.exception("exception in handler for %r", kind)
            self._send_error(client, request_id, ProtocolError(INTERNAL, "internal error"), out)
            return
        self._reply(client, request_id, reply, out)

    async def _run_async(self, route: Any, client: Client, argument: Any, request_id: Any) -> None:
        route.calls += 1
        started = time.perf_counter()
        try:
            reply = await route.handler(client, argument)
        except ProtocolError as exc:
            self._send_error(client, request_id, exc)
            return
        except Exception:
            logger.exception("exception in handler for %r", route.kind)
            self._send_error(client, request_id, ProtocolError(INTERNAL, "internal error"))
            return
        finally:
            self.metrics.histogram(route.kind).observe(time.perf_counter() - started)
        self._reply(client, request_id, reply, None)

    def _start_task(self, coroutine: Awaitable[Any]) -> None:
        loop = self._loop
        if loop is None:
            if asyncio.iscoroutine(coroutine):
                coroutine.close()
            raise RuntimeError("async handlers need `await server.serve()`")
        loop.create_task(coroutine)  # type: ignore[arg-type]

    def _reply(self, client: Client, request_id: Any, reply: Any, out: Optional[list[Any]]) -> None:
        if reply is _REPLIED:
            return
        if reply is None:
            if request_id is None:
                return
            reply = {"type": "ACK"}
        if not isinstance(reply, dict):
            reply = {"type": "RESULT", "data": reply}
        if request_id is not None:
            reply = {**reply, "id": request_id}
        if out is not None:
            out.append(reply)
        else:
            client.send(reply)

    def _send_error(self, client: Client, request_id: Any, exc: ProtocolError, out: Optional[list[Any]] = None) -> None:
        self.metrics.error(exc.code)
        reply = protocol.error(exc.code, exc.message, request_id, **exc.extra)
        if out is not None:
            out.append(reply)
        else:
            client.send(reply)

    # -- built-in types ---------------------------------------------------------------------

    def _subscribe(self, client: Client, message: dict[str, Any], out: Optional[list[Any]]) -> dict[str, Any]:
        topic = message.get("topic")
        client.subscribe(topic)  # type: ignore[arg-type]
        return {"type": "SUBSCRIBED", "topic": topic}

    def _unsubscribe(self, client: Client, message: dict[str, Any], out: Optional[list[Any]]) -> dict[str, Any]:
        topic = message.get("topic")
        if not isinstance(topic, str) or not topic:
            raise ProtocolError(INVALID_MESSAGE, "field 'topic' must be a non-empty string")
        client.unsubscribe(topic)
        return {"type": "UNSUBSCRIBED", "topic": topic}

    def _publish(self, client: Client, message: dict[str, Any], out: Optional[list[Any]]) -> Optional[dict[str, Any]]:
        if "data" not in message:
            raise ProtocolError(INVALID_MESSAGE, "field 'data' is required")
        client.publish(message.get("topic"), message["data"], bool(message.get("echo", False)))  # type: ignore[arg-type]
        return {"type": "PUBLISHED", "topic": message["topic"]} if "id" in message else None

    def _ping(self, client: Client, message: dict[str, Any], out: Optional[list[Any]]) -> dict[str, Any]:
        return {"type": "PONG", "serverTime": protocol.now_ms()}

    def _auth(self, client: Client, message: dict[str, Any], out: Optional[list[Any]]) -> dict[str, Any]:
        if self.auth is None:
            raise ProtocolError(INVALID_MESSAGE, "this server does not use tokens")
        token = message.get("token")
        if not isinstance(token, str):
            raise ProtocolError(INVALID_MESSAGE, "field 'token' must be a string")
        try:
            claims = self.auth.verify(token)
        except AuthError as exc:
            self.metrics.auth_failure(exc.reason)
            raise ProtocolError(UNAUTHORIZED, exc.message) from None
        user = claims.get(self.auth.user_id_claim)
        if client.user_id is not None and (user is None or str(user) != client.user_id):
            raise ProtocolError(FORBIDDEN, "a refreshed token must be for the same user")
        client.claims = claims
        client.topics_allowed = self.auth.topics_allowed(claims)
        exp = claims.get("exp")
        client.token_expires_at = float(exp) if isinstance(exp, (int, float)) else None
        self._schedule_expiry(client)
        return {"type": "AUTHENTICATED", "expiresAt": client.token_expires_at}

    def _batch(self, client: Client, message: dict[str, Any], out: Optional[list[Any]]) -> object:
        if out is not None:
            raise ProtocolError(INVALID_MESSAGE, "a BATCH cannot contain a BATCH")
        messages = message.get("messages")
        if not isinstance(messages, list):
            raise ProtocolError(INVALID_MESSAGE, "field 'messages' must be a list")
        replies: list[Any] = []
        for item in messages:
            if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                self._send_error(client, None, ProtocolError(INVALID_MESSAGE, "each batched message is an object with a type"), replies)
                continue
            self._dispatch(client, item, replies)
        if replies:
            reply = {"type": "BATCH", "timestamp": protocol.now_ms(), "messages": replies}
            if "id" in message:
                reply["id"] = message["id"]
            client.send(reply)
        elif "id" in message:
            client.send({"type": "ACK", "id": message["id"]})
        return _REPLIED

    # -- reporting ----------------------------------------------------------------------------

    def _start_reporting(self) -> None:
        if self.report_interval:
            self._last_report = (time.monotonic(), self.app.stats()["messages_in"])
            self._report_timer = self.app.set_timeout(self.report_interval, self._report)

    def _report(self) -> None:
        stats = self.app.stats()
        now = time.monotonic()
        then, messages_before = self._last_report
        elapsed = max(now - then, 1e-9)
        rate = (stats["messages_in"] - messages_before) / elapsed
        merged = _merge_histograms(self.metrics.latency.values())
        errors = sum(self.metrics.errors.values())
        logger.info(
            "perf: %.0f msg/s in, handler p50/p95/p99 %.3f/%.3f/%.3f ms, %d connections, %d errors, "
            "%d backpressure events, %d drops, pid %d",
            rate,
            merged.quantile(0.50) * 1000,
            merged.quantile(0.95) * 1000,
            merged.quantile(0.99) * 1000,
            stats["open_connections"],
            errors,
            stats["backpressure_events"],
            stats["drops"],
            os.getpid(),
        )
        self._last_report = (now, stats["messages_in"])
        self._report_timer = self.app.set_timeout(self.report_interval or 60.0, self._report)


def _merge_histograms(histograms: Any) -> Any:
    from .metrics import LatencyHistogram

    merged = LatencyHistogram()
    for histogram in histograms:
        merged.counts = [a + b for a, b in zip(merged.counts, histogram.counts)]
        merged.total += histogram.total
    return merged
