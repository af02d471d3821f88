"""RealtimeServer: the realtime protocol (docs/protocol.md) on an App. Options, decorators,
run/serve/close, and the wiring of the parts; the logic lives in the modules it wires."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import signal
import time
import warnings
from typing import Any, Callable, Optional, Sequence

import orjson

from .._asyncio import CoroutineRunner
from ..app import App, SSLOptions
from ..auth import JWTAuth
from ..batching import Batching
from ..behavior import CompressOptions
from ..broker import Broker
from ..metrics import Metrics, Reporter
from ..monitoring import cluster
from ..monitoring.dashboard import Dashboard
from ..monitoring.endpoint import Monitoring
from ..proxies import TrustedProxies
from ..ratelimit import DEFAULT_RETRY_AFTER, ConnectionLimiter, RateLimit
from .builtins import Builtins
from .client_script import ClientScript
from .dispatch import Dispatcher
from .history import DEFAULT_RECOVER_LIMIT, HistoryMetrics, HistoryOptions, HistoryPolicy, MemoryHistory
from .lifecycle import Lifecycle, TokenExpiry
from .options import (
    DEFAULT_COMPRESSION_THRESHOLD, DEFAULT_MAX_BATCH_ITEMS, DEFAULT_MAX_SUBSCRIPTIONS, DEFAULT_MAX_TOPIC_LENGTH,
    DEFAULT_RATE_LIMIT, Options, subprotocol_tuple, validate,
)
from .presence import DEFAULT_DIFF_INTERVAL, DEFAULT_PRESENCE_TTL, DIFF_PREFIX, PresenceOptions
from .presence_service import PresenceService
from .protocol import BUILTIN_TYPES, encode
from .pubsub import PubSub, TopicHook
from .routing import Router
from .session import Client, SessionContext
from .upgrade import AccessLog, Upgrader
from .users import CONTROL_TOPIC, Users, is_reserved

# Seconds between sweeps of expired history; a publication may outlive its ttl by this much.
HISTORY_SWEEP_INTERVAL = 5.0
# Why presence cannot be enabled: a broker without Redis (NATS without --history-store).
PRESENCE_NEEDS_REDIS = ("presence with a broker is kept in Redis: use a redis:// or redis+cluster:// broker, or give "
                        "a nats:// broker a Redis beside it (--history-store redis://...)")


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
        self.limiter = ConnectionLimiter(options.max_connections, options.max_connections_per_ip,
                                         options.max_upgrades_per_second, options.retry_after)
        self.access_log = AccessLog(options.access_log)
        self.history_policy = HistoryPolicy()
        self.history_metrics = HistoryMetrics()
        self.history = MemoryHistory(self.history_policy, metrics=self.history_metrics)
        compress = options.compression
        # The core deflates a publish once per shared window for every subscriber that
        # negotiated permessage-deflate, and sends it plain to the others.
        self.publish_local = functools.partial(loop.publish, compress=True) if compress else loop.publish
        self.pubsub = PubSub(self.publish_local, options.broker, self.history_policy, self.history, compress)
        self.pubsub.max_subscriptions = options.max_subscriptions
        self.pubsub.max_topic_length = options.max_topic_length
        self._loop = loop
        self._sweep_timer: Optional[int] = None
        self.history_options: list[HistoryOptions] = []
        self.presence_options: list[PresenceOptions] = []
        self.session_context = SessionContext(self.pubsub, loop.set_timeout, self.metrics, compress)
        auth = options.auth
        self.expiry = TokenExpiry(auth.leeway if auth is not None else None, loop.set_timeout,
                                  loop.clear_timeout, self.metrics)
        rate_limit = options.rate_limit
        self.lifecycle = Lifecycle(
            self.clients, self.limiter, self.expiry, loop.clear_timeout, self.runner, rate_limit, options.batching,
            {
                "batching": options.batching is not None,
                "compression": options.compression,
                "compressionThreshold": options.compression_threshold,
                "maxPayloadLength": options.max_payload_length,
                "maxBatchItems": options.max_batch_items,
                "maxSubscriptions": options.max_subscriptions,
                "maxTopicLength": options.max_topic_length,
                "rateLimit": None if rate_limit is None
                else {"messages": rate_limit.messages, "perSeconds": rate_limit.per_seconds},
            },
            self.router.types,
        )
        self.builtins = Builtins(auth, self.metrics, self.expiry.schedule, self.pubsub,
                                 options.history_recover_limit)
        self.dispatcher = Dispatcher(self.router, self.builtins.table(), self.metrics, self.runner,
                                     rate_limit, options.max_payload_length, compress, options.max_batch_items)
        self._wire_presence_and_users(options, loop)
        self.upgrader = Upgrader(
            options.path, auth,
            frozenset(options.allowed_origins) if options.allowed_origins is not None else None,
            self.limiter, self.metrics, self.access_log, self.runner, self.session_context,
            TrustedProxies(options.trusted_proxies or ()),
        )
        self.upgrader.subprotocols = tuple(options.subprotocols or ())

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
                                             self.publish_local, self.metrics, self.options.history_recover_limit)
        self.history_policy.add(options)
        self.history_options.append(options)
        self.pubsub.history_on = True
        self.metrics.history_metrics = self.history_metrics
        if self.pubsub.relay is None:
            history = self.history
            self.metrics.history_memory = lambda: (history.memory_bytes, history.topics)
        if self._sweep_timer is None:
            self._sweep_timer = self._loop.set_timeout(HISTORY_SWEEP_INTERVAL, self._sweep)

    def adopt(self, previous: "Engine") -> None:
        """Takes over what was registered on ``previous`` (an engine of the same server built
        from older options): routes, hooks and history patterns. ``previous`` is dropped.

        Args:
            previous: the engine being replaced; it never served.
        """
        for kind, route in previous.router.routes.items():
            self.add_route(kind, route.handler, route.schema)
        self.dispatcher.binary_handler = previous.dispatcher.binary_handler
        # The application's hooks; each engine has its own user index hooks.
        own = (previous.users.opened, previous.users.closed)
        self.lifecycle.connect_hooks.extend(h for h in previous.lifecycle.connect_hooks if h not in own)
        self.lifecycle.disconnect_hooks.extend(h for h in previous.lifecycle.disconnect_hooks if h not in own)
        self.upgrader.authenticate = previous.upgrader.authenticate
        self.pubsub.topic_hook = previous.pubsub.topic_hook
        if previous._sweep_timer is not None:
            self._loop.clear_timeout(previous._sweep_timer)
            previous._sweep_timer = None
        for history in previous.history_options:
            self.add_history(history)
        for presence in previous.presence_options:
            self.add_presence(presence)

    def _wire_presence_and_users(self, options: Options, loop: Any) -> None:
        """Presence (PRESENCE, PRESENCE_STATS; tracking starts with the first pattern) and the
        user operations, with their control topic when there is a broker."""
        self.presence = PresenceService(self.pubsub, loop.publish, loop.set_timeout, self.metrics,
                                        options.presence_ttl, options.presence_diff_interval)
        self.metrics.presence = self.presence
        self.dispatcher.builtins["PRESENCE"] = self.presence.handle_presence
        self.dispatcher.builtins["PRESENCE_STATS"] = self.presence.handle_stats
        self.users = Users(self.clients, loop.publish, options.broker)
        self.users.members = self._presence_members
        self.lifecycle.connect_hooks.append(self.users.opened)
        self.lifecycle.disconnect_hooks.append(self.users.closed)
        self.pubsub.reserved = is_reserved
        if options.broker is not None:
            options.broker.subscribe(CONTROL_TOPIC)
            self.pubsub.intercept = self._intercept

    def _intercept(self, topic: str, payload: bytes) -> bool:
        # On every delivery from the broker: the common case (a MESSAGE) costs two tests here.
        if topic == CONTROL_TOPIC:
            return self.users.intercept(topic, payload)
        return self.pubsub.presence is not None and payload.startswith(DIFF_PREFIX) and \
            self.presence.remote_diff(topic, payload)

    def _presence_members(self, topic: str) -> Optional[list[Client]]:
        if self.pubsub.presence is None or self.presence.policy.options_for(topic) is None:
            return None
        clients = self.clients
        return [clients[client_id] for client_id in self.presence.local.topics.get(topic, {}) if client_id in clients]

    def add_presence(self, options: PresenceOptions) -> None:
        """Topics matching ``options.pattern`` track presence; with a broker it is kept in
        Redis (the broker's, or with a NATS broker the Redis of its ``history=`` broker,
        ``--history-store`` in the CLI), shared by every worker.

        Args:
            options: the pattern and whether its subscribers get PRESENCE_DIFF events.

        Raises:
            ValueError: PRESENCE_NEEDS_REDIS, for a broker with no Redis to keep it in (a
                NATS broker without ``history=``).
        """
        publisher = self.options.broker
        if publisher is not None and self.presence.store is None:
            # A NATS broker keeps presence on the Redis broker beside it, as it keeps history;
            # the diffs between workers still travel on the NATS one, as every plain topic.
            broker = getattr(publisher, "history_broker", publisher)
            if not hasattr(broker, "run"):
                raise ValueError(PRESENCE_NEEDS_REDIS)
            from .presence_redis import RedisPresence

            self.presence.use_redis(broker, RedisPresence.for_broker(broker, self.options.presence_ttl),  # type: ignore[arg-type]
                                    publisher)
        self.presence.add(options)
        self.pubsub.presence = self.presence
        self.presence_options.append(options)

    def _sweep(self) -> None:
        self.history.sweep()
        self._sweep_timer = self._loop.set_timeout(HISTORY_SWEEP_INTERVAL, self._sweep)


def _port_and_host(port: Any, host: Any, method: str) -> tuple[int, str]:
    """``(port, host)`` as given, or swapped (with a DeprecationWarning) when a caller used
    the old ``(host, port)`` order: a str where the port goes.

    Args:
        port: the first argument.
        host: the second argument.
        method: the method's name, for the warning.
    """
    if isinstance(port, str):
        warnings.warn(f"RealtimeServer.{method}(host, port) is deprecated: the order is {method}(port, host), "
                      "as App.listen; pass them as keywords to be safe", DeprecationWarning, stacklevel=3)
        port, host = (host if isinstance(host, int) else 8080), port
    return port, host


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
    - ``max_connections`` (503 beyond) and ``max_connections_per_ip`` (429 beyond): open
      connections of this process (with ``uws-py serve --workers N``, of each worker).
    - ``max_upgrades_per_second``: upgrades per second this process lets on to the token
      check (bursts up to one second's worth); beyond, 503. None (default): no limit.
    - ``retry_after``: the Retry-After (seconds) of a 503/429 for a full server or address,
      spread over [retry_after, 2 * retry_after] (5); a refusal for the upgrade rate says
      when the next upgrade is let on (1-3 s).
    - ``ssl``: :class:`SSLOptions` for ``wss://``.
    - ``report_interval``: seconds between performance reports in the log; None is off.
    - ``health_path``, ``metrics_path``: the JSON health check and the Prometheus scrape.
    - ``broker``: a :class:`uws_py.broker.Broker` (e.g. RedisBroker) carrying publishes to
      and from other server processes; None keeps pub/sub within this process.
    - ``handler_metrics``: per-type handler latency histograms (inline sync handlers: one
      call in 16 is timed; ``async def`` handlers: every call); False times no handler.
      Call counts (``uws_handler_calls_total``) are kept either way: an addition per call.
    - ``access_log``: log each upgrade and HTTP request (path only: a token in the query
      string never reaches the log).
    - ``history_recover_limit``: the most publications one SUBSCRIBE recovery returns (more
      missed -> ``recovered: false``), and the cap of a HISTORY ``limit`` (1000).
    - ``dashboard_token``: serve the live dashboard at ``dashboard_path`` (``/dashboard``);
      its figures (``<dashboard_path>/data``) need ``Authorization: Bearer <token>`` (16+
      characters). None (the default) serves no dashboard.
    - ``tracing``: OpenTelemetry spans for upgrades, messages and publishes (the ``[otel]``
      extra): True for the global tracer provider, or a ``TracerProvider``; None (the
      default) imports nothing and costs nothing.
    - ``client_script``: serve the JavaScript client at ``{path}/client.js``
      (``/realtime/client.js``), so a page can import it with no build step; False leaves
      that URL to you.
    - ``compression_threshold``: with ``compression``, messages of at least this many bytes
      (256) leave deflated to clients that negotiated permessage-deflate; shorter ones plain.
    - ``max_batch_items``: the most messages one BATCH may hold (100); each costs a
      rate-limit token.
    - ``max_subscriptions``: topics one connection may be subscribed to (128);
      ``max_topic_length``: the longest topic, in characters (255). Past either: ERROR
      LIMIT_EXCEEDED (docs/protocol.md), the connection goes on.
    - ``trusted_proxies``: addresses or CIDRs of reverse proxies whose ``X-Forwarded-For`` /
      ``Forwarded`` header names the client (for ``client.remote_address``, the per-IP
      limit and the access log); None trusts no one.
    - ``presence_ttl``: seconds a presence entry lives in Redis without a refresh (30); each
      worker refreshes its own every ``presence_ttl / 3`` s, so a dead worker's clients are
      gone from PRESENCE within ``presence_ttl`` (see :meth:`enable_presence`).
    - ``presence_diff_interval``: the least seconds between two PRESENCE_DIFFs of one topic (1.0).
    - ``close_on_backpressure_limit``: a client that has ``max_backpressure`` bytes unread
      is closed with 1008 (as Centrifugo closes slow clients) instead of silently missing
      messages; it can reconnect and recover from history. Default True; False drops.
    - ``subprotocols``: subprotocols the server speaks, preferred first; the answer is the
      first of them the client offered, or none. With ``auth``, ``bearer`` (the browser
      token offer) is answered when the client offered none of them. None (default): the
      client's first offer (``bearer`` when the token came that way) is answered.
    - ``api_key``: serve the server API (``POST <api_path>/<method>`` with ``Authorization:
      apikey <key>``, 16+ characters; docs/reference/server-api.md) at ``api_path`` (``/api``).
      None (the default) serves no API.
    - ``max_lifetime``: whole minutes a connection may stay open whatever its traffic (0, the
      default: no limit); then it is closed with ``1001 max lifetime reached``, and an SDK
      client reconnects (and recovers its history topics), which spreads long-lived
      connections over the workers again after a deploy.
    """

    def __init__(
        self,
        path: str = "/realtime",
        auth: Optional[JWTAuth] = None,
        rate_limit: Optional[RateLimit] = DEFAULT_RATE_LIMIT,
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
        dashboard_token: Optional[str] = None,
        dashboard_path: str = "/dashboard",
        tracing: Any = None,
        client_script: bool = True,
        compression_threshold: int = DEFAULT_COMPRESSION_THRESHOLD,
        max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS,
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
        max_topic_length: int = DEFAULT_MAX_TOPIC_LENGTH,
        trusted_proxies: Optional[Sequence[str]] = None,
        presence_ttl: float = DEFAULT_PRESENCE_TTL,
        presence_diff_interval: float = DEFAULT_DIFF_INTERVAL,
        close_on_backpressure_limit: bool = True,
        subprotocols: Optional[Sequence[str]] = None,
        api_key: Optional[str] = None,
        api_path: str = "/api",
        max_upgrades_per_second: Optional[int] = None,
        retry_after: int = DEFAULT_RETRY_AFTER,
        max_lifetime: int = 0,
    ) -> None:
        options = self.options = Options(
            path, auth, rate_limit, batching, max_payload_length, idle_timeout, max_backpressure, compression,
            allowed_origins, max_connections, max_connections_per_ip, ssl, report_interval, health_path,
            metrics_path, access_log, broker, handler_metrics, history_recover_limit, dashboard_token,
            dashboard_path, tracing, client_script, compression_threshold, max_batch_items, max_subscriptions,
            max_topic_length, tuple(trusted_proxies) if trusted_proxies is not None else None,
            presence_ttl, presence_diff_interval, close_on_backpressure_limit, subprotocol_tuple(subprotocols),
            api_key, api_path, max_upgrades_per_second, retry_after, max_lifetime,
        )
        validate(options)
        self.path = path
        self.app = App(ssl=ssl)
        self._mounted = False
        self._reporter: Optional[Reporter] = None
        self._use(Engine(options, self.app))

    def _use(self, engine: Engine) -> None:
        self.engine = engine
        self.options = engine.options
        self.auth = engine.options.auth
        self.broker = engine.options.broker
        self.metrics = engine.metrics
        self.router = engine.router
        self.clients = engine.clients
        self.limiter = engine.limiter
        self.session_context = engine.session_context
        self._on_message = engine.dispatcher.on_message

    def _mount(self) -> None:
        """Registers the realtime route and the HTTP endpoints on the App: at the first
        listen, so that :meth:`configure` can still change what they are built from."""
        if self._mounted:
            return
        self._mounted = True
        engine, options = self.engine, self.options
        self.monitoring = Monitoring(self.app, self.metrics.registry, engine.access_log,
                                     engine.upgrader.client_address)
        on_upgrade, on_close = engine.upgrader.on_upgrade, engine.lifecycle.on_close
        on_message: Callable[..., Any] = engine.dispatcher.native_handler()
        if options.tracing is not None and options.tracing is not False:
            from ..monitoring.tracing import Tracing

            tracer = Tracing(None if options.tracing is True else options.tracing)
            tracer.install(engine)
            on_upgrade = tracer.upgrade_handler(options.path, on_upgrade)
            on_message = tracer.message_handler(on_message)
            on_close = tracer.close_handler(on_close)
        self.app.ws(
            options.path,
            {
                "upgrade": on_upgrade,
                "open": engine.lifecycle.on_open,
                "message": on_message,
                "close": on_close,
                "subscription": self._on_subscription,
                # The hard limit: twice the soft one, answered politely below it.
                "max_payload_length": options.max_payload_length * 2,
                "idle_timeout": options.idle_timeout,
                "max_lifetime": options.max_lifetime,
                "max_backpressure": options.max_backpressure,
                "close_on_backpressure_limit": options.close_on_backpressure_limit,
                # The core picks the first of these the client offered; "bearer" last, for
                # a browser's token offer.
                "subprotocols": [*options.subprotocols, "bearer"] if options.subprotocols and options.auth is not None
                else list(options.subprotocols or ()),
                "compression": (CompressOptions.SHARED_COMPRESSOR | CompressOptions.SHARED_DECOMPRESSOR)
                if options.compression
                else CompressOptions.DISABLED,
                "compression_threshold": options.compression_threshold,
            },
        )
        self.app.get(options.health_path, self._health)
        self.app.get(options.metrics_path, self.monitoring.metrics_route)
        if options.dashboard_token is not None:
            Dashboard(options.dashboard_token, self.monitoring.view, engine.access_log).install(
                self.app, options.dashboard_path)
        if options.api_key is not None:
            from .api import ServerApi

            self.api = ServerApi(engine, options.api_key, self.app.set_timeout, lambda: self.monitoring.topics.counts)
            self.api.install(self.app, options.api_path)
        if options.client_script:
            self._client_script = ClientScript()
            self.app.get(self.client_script_path, self._serve_client_script)

    @property
    def client_script_path(self) -> str:
        """Where the JavaScript client is served (with ``client_script=True``)."""
        return self.path.rstrip("/") + "/client.js"

    def configure(self, **changes: Any) -> "RealtimeServer":
        """Changes options of a server that has not listened yet, keeping the handlers,
        hooks and history patterns registered so far (``uws-py serve MODULE:ATTR`` applies
        its command-line options this way).

        Args:
            **changes: constructor keywords; ``ssl``, ``path``, ``health_path`` and
                ``metrics_path`` are fixed at construction (ValueError). RuntimeError once
                the server listens; TypeError for an unknown name.
        """
        if self._mounted:
            raise RuntimeError("configure() must be called before the server listens")
        unknown = set(changes) - {f.name for f in dataclasses.fields(Options)}
        if unknown:
            raise TypeError(f"unknown RealtimeServer options {sorted(unknown)}")
        fixed = set(changes) & {"ssl", "path", "health_path", "metrics_path"}
        if fixed:
            raise ValueError(f"{sorted(fixed)} cannot change after construction")
        if changes.get("trusted_proxies") is not None:
            changes["trusted_proxies"] = tuple(changes["trusted_proxies"])
        if "subprotocols" in changes:
            changes["subprotocols"] = subprotocol_tuple(changes["subprotocols"])
        options = dataclasses.replace(self.options, **changes)
        validate(options)
        engine = Engine(options, self.app)
        engine.adopt(self.engine)
        self._use(engine)
        return self

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

    def enable_presence(self, pattern: str, join_leave: bool = False) -> "RealtimeServer":
        """Topics matching the fnmatch ``pattern`` track who is subscribed: PRESENCE and
        PRESENCE_STATS answer for them (authorized like SUBSCRIBE, action ``"presence"``), and
        with ``join_leave`` their subscribers get PRESENCE_DIFF events, at most one per topic
        per ``presence_diff_interval``. With a Redis broker the presence is shared by every
        worker. The first matching pattern wins. Call before the server runs.

        Args:
            pattern: an fnmatch pattern, e.g. ``"chat.*"``.
            join_leave: send PRESENCE_DIFF (joins and leaves) to the topic's subscribers.
        """
        self.engine.add_presence(PresenceOptions(pattern, join_leave))
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
        """Decorator: ``hook(client, topic, action) -> bool`` ("subscribe", "publish",
        "history" or "presence"),
        asked after the token's topic claim allowed the topic.

        It judges what clients ask for (and ``Client.subscribe``). The server API's
        ``subscribe`` does not ask it: the backend that calls the API has decided, as with
        Centrifugo's server API.

        Args:
            hook: the hook.
        """
        self.engine.pubsub.topic_hook = hook
        return hook

    # -- running --------------------------------------------------------------------------

    def listen(self, port: Any = 8080, host: Any = "127.0.0.1", *, backlog: int = 512) -> "RealtimeServer":
        """Binds and listens (``port=0`` picks a free one; see :attr:`port`). The order is
        :meth:`App.listen`'s; the old ``listen(host, port)`` still works, with a
        DeprecationWarning.

        Args:
            port: the port.
            host: the address to bind.
            backlog: the kernel's queue of connections not yet accepted (capped by
                ``net.core.somaxconn``); past it, a connection storm's SYNs are dropped and
                those clients wait for their retransmissions.
        """
        port, host = _port_and_host(port, host, "listen")
        self._mount()
        self.app.listen(port, host, backlog=backlog)
        return self

    def listen_unix(self, path: str, *, backlog: int = 512) -> "RealtimeServer":
        """Listens on a unix domain socket at ``path`` (see :meth:`App.listen_unix
        <uws_py.App.listen_unix>`), instead of or beside :meth:`listen`.

        Args:
            path: the socket file's path (replaced when stale, removed on close).
            backlog: the kernel's queue of connections not yet accepted.
        """
        self._mount()
        self.app.listen_unix(path, backlog=backlog)
        return self

    @property
    def port(self) -> int:
        """The port bound by :meth:`listen`."""
        return self.app.port

    def run(self, port: Any = 8080, host: Any = "127.0.0.1") -> None:
        """Listens and runs until SIGTERM/SIGINT or :meth:`close`; shuts down gracefully.

        Args:
            port: the port (the old order ``run(host, port)`` is deprecated).
            host: the address to bind.
        """
        port, host = _port_and_host(port, host, "run")
        self._check_sync()
        self.listen(port, host)
        self.run_forever()

    def run_forever(self) -> None:
        """Runs an already listening server until SIGTERM/SIGINT or :meth:`close`.

        RuntimeError at once when a handler or hook is an ``async def`` (they need
        :meth:`serve`), instead of failing each message later.
        """
        self._check_sync()
        self._start()
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: self.close())
        try:
            self.app.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.engine.presence.stop()
            self.engine.pubsub.stop()
            self.monitoring.stop()

    def _check_sync(self) -> None:
        engine = self.engine
        names = [f"handler for {kind!r}" for kind, route in engine.router.routes.items() if route.is_async]
        for name, hooks in (("the authenticate hook", [engine.upgrader.authenticate]),
                            ("the binary handler", [engine.dispatcher.binary_handler]),
                            ("a connect hook", engine.lifecycle.connect_hooks),
                            ("a disconnect hook", engine.lifecycle.disconnect_hooks)):
            if any(hook is not None and asyncio.iscoroutinefunction(hook) for hook in hooks):
                names.append(name)
        if names:
            raise RuntimeError(f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} async: "
                               "run the server with `await server.serve()` instead of run()")

    async def serve(self, port: Any = 8080, host: Any = "127.0.0.1", handle_signals: bool = True) -> None:
        """As :meth:`run`, inside the running asyncio loop (async handlers allowed).

        Args:
            port: the port (the old order ``serve(host, port)`` is deprecated).
            host: the address to bind.
            handle_signals: stop gracefully on SIGTERM/SIGINT.
        """
        port, host = _port_and_host(port, host, "serve")
        self.listen(port, host)
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
            self.engine.presence.stop()
            self.engine.pubsub.stop()
            self.monitoring.stop()

    def close(self, code: int = 1001, reason: str = "server shutting down", timeout: float = 5.0) -> None:
        """Graceful shutdown: flushes every batch, ends every connection, stops the loop.
        Callable from any thread.

        Publishes to history topics that wait for Redis are answered first (within
        ``timeout``); new ones are refused with UNAVAILABLE meanwhile, so a publisher never
        loses the PUBLISHED of a publish Redis stored (and a rolling restart stores nothing twice).

        Args:
            code: the close code every connection gets.
            reason: the close reason.
            timeout: seconds before connections still closing are dropped.
        """
        deadline = time.monotonic() + timeout

        def shut_down() -> None:
            relay = self.engine.pubsub.relay
            if relay is not None and relay.drain() and time.monotonic() < deadline:
                self.app.set_timeout(0.01, shut_down)
                return
            for client in list(self.clients.values()):
                client.flush()
            if self._reporter is not None:
                self._reporter.stop()
            self.app.close(code, reason, timeout)

        self.app.defer(shut_down)

    def publish(self, topic: str, data: Any, exclude: Optional[Sequence[str]] = None) -> bool:
        """A server-originated MESSAGE (``from`` is null) to every subscriber, in every
        process when there is a broker. Loop thread.

        Returns whether this process had subscribers. The broker's copy leaves in the
        background (never blocking the loop): whether it reached the broker is what
        :meth:`publish_confirmed` awaits.

        Args:
            topic: the topic.
            data: the MESSAGE's ``data``.
            exclude: client ids that do not get it (plain topics only; with a broker it goes
                through the control topic to every worker, see :mod:`uws_py.realtime.users`).

        Returns whether this process had subscribers (always True with ``exclude``).
        """
        if not exclude:
            return self.engine.pubsub.publish(topic, data)
        if self.engine.pubsub.is_history_topic(topic):
            raise ValueError(f"publish with exclude is not supported on history topic {topic!r}")
        payload = encode({"type": "MESSAGE", "topic": topic, "data": data, "from": None})
        self.engine.users.publish_excluding(topic, payload, exclude)
        return True

    @property
    def users(self) -> Users:
        """The user operations for code on the loop thread (a sync handler, a hook):
        ``send_to_user``, ``disconnect_user``, ``connections``; the async methods below call them."""
        return self.engine.users

    async def presence(self, topic: str) -> list[dict[str, Any]]:
        """Every client present in topic (``{"clientId", "userId", "info"}``), in every worker
        with a Redis broker. Await it on the server's loop (:meth:`serve`).

        Args:
            topic: a presence topic.

        Raises NoPresence for a topic without presence, PresenceUnavailable when Redis cannot
        be reached.
        """
        return await self._ask(self.engine.presence.entries, topic)

    async def presence_stats(self, topic: str) -> dict[str, int]:
        """``{"numClients", "numUsers"}`` of topic (see :meth:`presence`).

        Args:
            topic: a presence topic.
        """
        return await self._ask(self.engine.presence.stats, topic)

    async def send_to_user(self, user_id: str, data: Any) -> int:
        """A MESSAGE on the per-user topic ``#user:<user_id>`` to every connection of the user,
        in every worker with a broker. Returns the connections of this worker it reached.

        Args:
            user_id: the user id (the token's user claim).
            data: the MESSAGE's ``data``.
        """
        return self.engine.users.send_to_user(user_id, data)

    async def disconnect_user(self, user_id: str, code: int = 1000, reason: str = "") -> int:
        """Closes every connection of the user, in every worker with a broker. Returns the
        connections of this worker it closed.

        Args:
            user_id: the user id.
            code: the close code: 1000 or 3000..4999 (ValueError otherwise).
            reason: the close reason.
        """
        return self.engine.users.disconnect_user(user_id, code, reason)

    async def _ask(self, ask: Callable[[str, Callable[[Any], None]], None], topic: str) -> Any:
        future = asyncio.get_running_loop().create_future()

        def done(result: Any) -> None:
            if future.done():
                return
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

        ask(topic, done)
        return await future

    async def publish_confirmed(self, topic: str, data: Any) -> bool:
        """:meth:`publish`, then waits until the broker took it: True once Redis answered
        the PUBLISH (for a history topic: once the publication is stored), False when it
        could not be sent (the broker is down; counted in ``uws_broker_publish_failures``).
        Without a broker it returns True at once. Loop thread, under :meth:`serve`.

        Args:
            topic: the topic.
            data: the MESSAGE's ``data``.
        """
        if self.broker is None:
            self.engine.pubsub.publish(topic, data)
            return True
        reached: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def confirm(ok: bool) -> None:
            if not reached.done():
                reached.set_result(ok)

        self.engine.pubsub.publish(topic, data, confirm)
        return await reached

    def publish_threadsafe(self, topic: str, data: Any) -> None:
        """:meth:`publish` from any thread: the same MESSAGE envelope, through the broker
        too, on the loop thread in its next iteration (in call order per calling thread).

        ``data`` is encoded here, at the call, so a later change to it is not published and
        a value that cannot be encoded raises TypeError to the caller.

        Args:
            topic: the topic (a non-empty str).
            data: the MESSAGE's ``data`` (JSON-encodable).
        """
        if not isinstance(topic, str) or not topic:
            raise ValueError("topic must be a non-empty string")
        fragment = orjson.Fragment(orjson.dumps(data))
        pubsub = self.engine.pubsub
        self.app.defer(lambda: pubsub.publish(topic, fragment))

    def _start(self) -> None:
        self.engine.pubsub.start(self.app.defer)
        self.monitoring.start()
        self._start_reporting()

    def _start_reporting(self) -> None:
        interval = self.options.report_interval
        if interval:
            member = cluster.membership()
            self._reporter = Reporter(self.metrics, interval, self.app.set_timeout, self.app.clear_timeout,
                                      worker=member.index if member is not None else 0)
            self._reporter.start()

    # -- HTTP -----------------------------------------------------------------------------

    def _health(self, res: Any, req: Any) -> None:
        self.engine.access_log(self.engine.upgrader.client_address(res, req), "GET", req.get_url(), "200")
        res.write_header("Content-Type", "application/json").end(encode(self.metrics.health()))

    def _on_subscription(self, ws: Any, topic: str, count: int, before: int) -> None:
        self.engine.pubsub.on_subscription(ws, topic, count, before)
        self.monitoring.topics.on_subscription(ws, topic, count, before)

    def _serve_client_script(self, res: Any, req: Any) -> None:
        address, url = self.engine.upgrader.client_address(res, req), req.get_url()
        self.engine.access_log(address, "GET", url, self._client_script(res, req))
