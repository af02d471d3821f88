"""RealtimeServer: the realtime protocol (docs/protocol.md) on an App. Options, decorators,
run/serve/close, and the wiring of the parts; the logic lives in the modules it wires."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from .._asyncio import CoroutineRunner
from ..app import App, CompressOptions, SSLOptions
from ..auth import JWTAuth
from ..batching import Batching
from ..broker import Broker
from ..metrics import Metrics, Reporter
from ..ratelimit import ConnectionLimiter, RateLimit
from .builtins import Builtins
from .client_script import ClientScript
from .dispatch import Dispatcher
from .history import DEFAULT_RECOVER_LIMIT, HistoryMetrics, HistoryOptions, HistoryPolicy, MemoryHistory
from .lifecycle import Lifecycle, TokenExpiry
from .protocol import BUILTIN_TYPES, encode
from .pubsub import PubSub, TopicHook
from .routing import Router
from .session import Client, SessionContext
from .upgrade import AccessLog, Upgrader

_DEFAULT_RATE_LIMIT = RateLimit()


@dataclass(frozen=True)
class Options:
    """Every RealtimeServer option with its default; see :class:`RealtimeServer`."""

    path: str = "/realtime"
    auth: Optional[JWTAuth] = None
    rate_limit: Optional[RateLimit] = _DEFAULT_RATE_LIMIT
    batching: Optional[Batching] = None
    max_payload_length: int = 100 * 1024
    idle_timeout: int = 120
    max_backpressure: int = 1024 * 1024
    compression: bool = True
    allowed_origins: Optional[Sequence[str]] = None
    max_connections: Optional[int] = None
    max_connections_per_ip: Optional[int] = None
    ssl: Optional[SSLOptions] = None
    report_interval: Optional[float] = None
    health_path: str = "/health"
    metrics_path: str = "/metrics"
    access_log: bool = False
    broker: Optional[Broker] = None
    handler_metrics: bool = True
    history_recover_limit: int = DEFAULT_RECOVER_LIMIT
    client_script: bool = True

# Seconds between sweeps of expired history; a publication may outlive its ttl by this much.
HISTORY_SWEEP_INTERVAL = 5.0


class Engine:
    """The realtime parts wired together over a loop, without the native App: what the
    route's handlers are and what they share. Unit tests build one over a fake loop.

    Args:
        options: the server's options.
        loop: has ``publish(topic, payload, opcode)``, ``set_timeout(seconds, fn)``,
            ``clear_timeout(id)`` and ``stats()`` (an :class:`App`, or a stand-in).
    """

    def __init__(self, options: Options, loop: Any) -> None:
        self.options = options
        self.runner = CoroutineRunner()
        self.router = Router(reserved=BUILTIN_TYPES)
        self.metrics = Metrics(loop.stats, options.broker.stats if options.broker is not None else None)
        self.clients: dict[str, Client] = {}
        self.limiter = ConnectionLimiter(options.max_connections, options.max_connections_per_ip)
        self.access_log = AccessLog(options.access_log)
        self.history_policy = HistoryPolicy()
        self.history_metrics = HistoryMetrics()
        self.history = MemoryHistory(self.history_policy, metrics=self.history_metrics)
        self.pubsub = PubSub(loop.publish, options.broker, self.history_policy, self.history)
        self._loop = loop
        self._sweep_timer: Optional[int] = None
        self.session_context = SessionContext(self.pubsub, loop.set_timeout, self.metrics)
        auth = options.auth
        self.expiry = TokenExpiry(auth.leeway if auth is not None else None, loop.set_timeout,
                                  loop.clear_timeout, self.metrics)
        rate_limit = options.rate_limit
        self.lifecycle = Lifecycle(
            self.clients, self.limiter, self.expiry, loop.clear_timeout, self.runner, rate_limit, options.batching,
            {
                "batching": options.batching is not None,
                "compression": options.compression,
                "maxPayloadLength": options.max_payload_length,
                "rateLimit": None if rate_limit is None
                else {"messages": rate_limit.messages, "perSeconds": rate_limit.per_seconds},
            },
            self.router.types,
        )
        self.builtins = Builtins(auth, self.metrics, self.expiry.schedule, self.pubsub,
                                 options.history_recover_limit)
        self.dispatcher = Dispatcher(self.router, self.builtins.table(), self.metrics, self.runner,
                                     rate_limit, options.max_payload_length)
        self.upgrader = Upgrader(
            options.path, auth,
            frozenset(options.allowed_origins) if options.allowed_origins is not None else None,
            self.limiter, self.metrics, self.access_log, self.runner, self.session_context,
        )

    def add_route(self, kind: str, handler: Callable[..., Any], schema: Any = None) -> None:
        """Registers ``handler(client, message)`` for type ``kind``, with its metrics.

        Args:
            kind: the message type.
            handler: the handler.
            schema: see :meth:`uws_py.realtime.routing.Router.add`.
        """
        route = self.router.add(kind, handler, schema)
        if self.options.handler_metrics:
            route.histogram = self.metrics.histogram(kind)
        self.metrics.routes[kind] = route

    def add_history(self, options: HistoryOptions) -> None:
        """Topics matching ``options.pattern`` keep a history; the first registration arms
        the sweep of expired publications.

        Args:
            options: the pattern with its size and ttl.
        """
        broker = self.options.broker
        if broker is not None and self.pubsub.relay is None:
            # A NATS broker keeps history topics on the Redis broker beside it.
            broker = getattr(broker, "history_broker", broker)
            if not hasattr(broker, "run"):
                raise ValueError("history with a broker needs Redis (its store): a Redis broker, or a NATS "
                                 "broker with a Redis history broker (--history-store)")
            from .history import DeliveryTracker
            from .history_redis import RedisHistory
            from .relay import HistoryRelay

            store = RedisHistory.for_broker(broker, self.history_policy, self.history_metrics)
            self.pubsub.relay = HistoryRelay(broker, store, DeliveryTracker(self.history_metrics),
                                             self._loop.publish, self.metrics, self.options.history_recover_limit)
        self.history_policy.add(options)
        self.pubsub.history_on = True
        self.metrics.history_metrics = self.history_metrics
        if self.pubsub.relay is None:
            history = self.history
            self.metrics.history_memory = lambda: (history.memory_bytes, history.topics)
        if self._sweep_timer is None:
            self._sweep_timer = self._loop.set_timeout(HISTORY_SWEEP_INTERVAL, self._sweep)

    def _sweep(self) -> None:
        self.history.sweep()
        self._sweep_timer = self._loop.set_timeout(HISTORY_SWEEP_INTERVAL, self._sweep)


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
    - ``ssl``: :class:`SSLOptions` for ``wss://``.
    - ``report_interval``: seconds between performance reports in the log; None is off.
    - ``health_path``, ``metrics_path``: the JSON health check and the Prometheus scrape.
    - ``broker``: a :class:`uws_py.broker.Broker` (e.g. RedisBroker) carrying publishes to
      and from other server processes; None keeps pub/sub within this process.
    - ``handler_metrics``: per-type handler call counts and latency histograms (inline sync
      handlers: one call in 16 is timed); the other metrics cost nothing per message.
    - ``access_log``: log each upgrade and HTTP request (path only: a token in the query
      string never reaches the log).
    - ``history_recover_limit``: the most publications one SUBSCRIBE recovery returns (more
      missed -> ``recovered: false``), and the cap of a HISTORY ``limit`` (1000).
    - ``client_script``: serve the JavaScript client at ``{path}/client.js``
      (``/realtime/client.js``), so a page can import it with no build step; False leaves
      that URL to you.
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
        broker: Optional[Broker] = None,
        handler_metrics: bool = True,
        history_recover_limit: int = DEFAULT_RECOVER_LIMIT,
        client_script: bool = True,
    ) -> None:
        if isinstance(history_recover_limit, bool) or not isinstance(history_recover_limit, int) \
                or history_recover_limit < 0:
            raise ValueError(f"history_recover_limit must be an integer >= 0, got {history_recover_limit!r}")
        options = self.options = Options(
            path, auth, rate_limit, batching, max_payload_length, idle_timeout, max_backpressure, compression,
            allowed_origins, max_connections, max_connections_per_ip, ssl, report_interval, health_path,
            metrics_path, access_log, broker, handler_metrics, history_recover_limit, client_script,
        )
        self.path = path
        self.auth = auth
        self.broker = broker
        self.app = App(ssl=ssl)
        engine = self.engine = Engine(options, self.app)
        self.metrics = engine.metrics
        self.router = engine.router
        self.clients = engine.clients
        self.limiter = engine.limiter
        self.session_context = engine.session_context
        self._on_message = engine.dispatcher.on_message
        self._reporter: Optional[Reporter] = None
        self.app.ws(
            path,
            {
                "upgrade": engine.upgrader.on_upgrade,
                "open": engine.lifecycle.on_open,
                "message": engine.dispatcher.on_message,
                "close": engine.lifecycle.on_close,
                "subscription": engine.pubsub.on_subscription,
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
        if client_script:
            self._client_script = ClientScript()
            self.app.get(self.client_script_path, self._serve_client_script)

    @property
    def client_script_path(self) -> str:
        """Where the JavaScript client is served (with ``client_script=True``)."""
        return self.path.rstrip("/") + "/client.js"

    # -- registration -------------------------------------------------------------------

    def on(self, kind: str, schema: Any = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: ``handler(client, message)`` for messages of this type. Its return value
        (a dict) is the reply, sent with the request's ``id``. Sync handlers are cheaper;
        ``async def`` handlers need :meth:`serve`.

        Args:
            kind: the message type (not a built-in one).
            schema: a msgspec Struct type or a callable that raises ValueError naming the bad field.
        """

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.engine.add_route(kind, handler, schema)
            return handler

        return register

    def history(self, pattern: str, size: int = 100, ttl: float = 300.0) -> "RealtimeServer":
        """Topics matching the fnmatch ``pattern`` keep their last ``size`` publications for
        ``ttl`` seconds (from the topic's last publish): their MESSAGEs carry an ``offset``
        and SUBSCRIBE can recover missed ones. The first matching pattern wins. Call before
        the server runs.

        Args:
            pattern: an fnmatch pattern, e.g. ``"chat.*"``.
            size: publications kept per topic (>= 1).
            ttl: seconds they are kept (> 0).
        """
        self.engine.add_history(HistoryOptions(pattern, size, ttl))
        return self

    def on_binary(self, handler: Callable[[Client, bytes], Any]) -> Callable[[Client, bytes], Any]:
        """Decorator: binary messages go to ``handler(client, data)`` (else INVALID_MESSAGE).

        Args:
            handler: the handler.
        """
        self.engine.dispatcher.binary_handler = handler
        return handler

    def on_connect(self, handler: Callable[[Client], Any]) -> Callable[[Client], Any]:
        """Decorator: ``handler(client)`` runs after CONNECTED was sent.

        Args:
            handler: the hook.
        """
        self.engine.lifecycle.connect_hooks.append(handler)
        return handler

    def on_disconnect(self, handler: Callable[[Client, int], Any]) -> Callable[[Client, int], Any]:
        """Decorator: ``handler(client, close_code)`` runs when a connection closed.

        Args:
            handler: the hook.
        """
        self.engine.lifecycle.disconnect_hooks.append(handler)
        return handler

    def authenticate(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: ``hook(claims, request)`` runs at each upgrade after the token (if any)
        was verified; ``request`` is a captured copy of the HTTP request. It returns False to
        refuse (403), a dict to use as the client's claims, or anything else to accept; raising
        AuthError refuses with 401. An ``async def`` hook (a user lookup, a JWKS fetch) is
        awaited without blocking the loop; it needs :meth:`serve`.

        Args:
            hook: the hook.
        """
        self.engine.upgrader.authenticate = hook
        return hook

    def authorize_topic(self, hook: TopicHook) -> TopicHook:
        """Decorator: ``hook(client, topic, action) -> bool`` ("subscribe" or "publish"),
        asked after the token's topic claim allowed the topic.

        Args:
            hook: the hook.
        """
        self.engine.pubsub.topic_hook = hook
        return hook

    # -- running --------------------------------------------------------------------------

    def listen(self, host: str = "127.0.0.1", port: int = 8080) -> "RealtimeServer":
        """Binds and listens (``port=0`` picks a free one; see :attr:`port`).

        Args:
            host: the address to bind.
            port: the port.
        """
        self.app.listen(port, host)
        return self

    @property
    def port(self) -> int:
        """The port bound by :meth:`listen`."""
        return self.app.port

    def run(self, host: str = "127.0.0.1", port: int = 8080) -> None:
        """Listens and runs until SIGTERM/SIGINT or :meth:`close`; shuts down gracefully.

        Args:
            host: the address to bind.
            port: the port.
        """
        self.listen(host, port)
        self.run_forever()

    def run_forever(self) -> None:
        """Runs an already listening server until SIGTERM/SIGINT or :meth:`close`."""
        self._start()
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: self.close())
        try:
            self.app.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.engine.pubsub.stop()

    async def serve(self, host: str = "127.0.0.1", port: int = 8080, handle_signals: bool = True) -> None:
        """As :meth:`run`, inside the running asyncio loop (async handlers allowed).

        Args:
            host: the address to bind.
            port: the port.
            handle_signals: stop gracefully on SIGTERM/SIGINT.
        """
        self.listen(host, port)
        loop = self.engine.runner.loop = asyncio.get_running_loop()
        self._start()
        installed = []
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(signum, self.close)
                    installed.append(signum)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        try:
            await self.app.serve()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            self.engine.runner.loop = None
            self.engine.pubsub.stop()

    def close(self, code: int = 1001, reason: str = "server shutting down", timeout: float = 5.0) -> None:
        """Graceful shutdown: flushes every batch, ends every connection, stops the loop.
        Callable from any thread.

        Args:
            code: the close code every connection gets.
            reason: the close reason.
            timeout: seconds before connections still closing are dropped.
        """

        def shut_down() -> None:
            for client in list(self.clients.values()):
                client.flush()
            if self._reporter is not None:
                self._reporter.stop()
            self.app.close(code, reason, timeout)

        self.app.defer(shut_down)

    def publish(self, topic: str, data: Any) -> bool:
        """A server-originated MESSAGE (``from`` is null) to every subscriber, in every
        process when there is a broker. Loop thread.

        Args:
            topic: the topic.
            data: the MESSAGE's ``data``.
        """
        return self.engine.pubsub.publish(topic, data)

    def _start(self) -> None:
        self.engine.pubsub.start(self.app.defer)
        self._start_reporting()

    def _start_reporting(self) -> None:
        interval = self.options.report_interval
        if interval:
            self._reporter = Reporter(self.metrics, interval, self.app.set_timeout, self.app.clear_timeout)
            self._reporter.start()

    # -- HTTP -----------------------------------------------------------------------------

    def _health(self, res: Any, req: Any) -> None:
        self.engine.access_log(res.get_remote_address(), "GET", req.get_url(), "200")
        res.write_header("Content-Type", "application/json").end(encode(self.metrics.health()))

    def _serve_client_script(self, res: Any, req: Any) -> None:
        address, url = res.get_remote_address(), req.get_url()
        self.engine.access_log(address, "GET", url, self._client_script(res, req))

    def _metrics(self, res: Any, req: Any) -> None:
        self.engine.access_log(res.get_remote_address(), "GET", req.get_url(), "200")
        res.write_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8").end(self.metrics.render())
