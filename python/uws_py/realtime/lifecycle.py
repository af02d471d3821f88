"""A connection's life after the upgrade: open (CONNECTED, per-client state), close (its
timers and hooks), and the live expiry of its token."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..batching import Batcher, Batching
from ..ratelimit import ConnectionLimiter, RateLimit, TokenBucket
from .protocol import BUILTIN_TYPES, UNAUTHORIZED, error, now_ms

if TYPE_CHECKING:
    from .._asyncio import CoroutineRunner
    from ..metrics import Metrics
    from .session import Client

logger = logging.getLogger("uws_py.realtime")

SetTimeout = Callable[[float, Callable[[], Any]], int]
ClearTimeout = Callable[[int], None]


def run_hook(runner: "CoroutineRunner", hook: Callable[..., Any], *args: Any) -> None:
    """Calls an application hook; a coroutine it returns becomes a task, an exception is logged.

    Args:
        runner: starts coroutines.
        hook: the hook.
        *args: its arguments.
    """
    try:
        result = hook(*args)
        if asyncio.iscoroutine(result):
            runner.start(result)
    except Exception:
        logger.exception("exception in %s", getattr(hook, "__qualname__", hook))


class TokenExpiry:
    """Ends a connection when its token expires (plus the auth's leeway).

    Args:
        leeway: seconds of grace after ``exp`` (``JWTAuth.leeway``); None: no tokens, no expiry.
        set_timeout: the loop's timer.
        clear_timeout: cancels one.
        metrics: counts ``expired_live`` and the UNAUTHORIZED error.
        clock: wall-clock seconds.
    """

    def __init__(self, leeway: Optional[float], set_timeout: SetTimeout, clear_timeout: ClearTimeout,
                 metrics: "Metrics", clock: Callable[[], float] = time.time) -> None:
        self.leeway = leeway
        self.set_timeout = set_timeout
        self.clear_timeout = clear_timeout
        self.metrics = metrics
        self.clock = clock

    def schedule(self, client: "Client") -> None:
        """(Re)arms the client's expiry timer from ``client.token_expires_at``.

        Args:
            client: the connection.
        """
        if client.expiry_timer is not None:
            self.clear_timeout(client.expiry_timer)
            client.expiry_timer = None
        if client.token_expires_at is None or self.leeway is None:
            return
        delay = client.token_expires_at + self.leeway - self.clock()
        client.expiry_timer = self.set_timeout(max(0.0, delay), lambda: self.expire(client))

    def expire(self, client: "Client") -> None:
        """The timer fired: UNAUTHORIZED, then close with 1008.

        Args:
            client: the connection.
        """
        client.expiry_timer = None
        if client.closed:
            return
        self.metrics.auth_failure("expired_live")
        self.metrics.error(UNAUTHORIZED)
        client.send(error(UNAUTHORIZED, "token expired"), priority=True)
        client.close(1008, "token expired")


class Lifecycle:
    """The ``open`` and ``close`` handlers of the realtime route.

    Args:
        clients: id -> Client of open connections (owned here, read by the server).
        limiter: connection counts (opened/closed here, checked at the upgrade).
        expiry: token expiry timers.
        clear_timeout: cancels a client's timers at close.
        runner: starts coroutine hooks.
        rate_limit: per-client token bucket, or None.
        batching: per-client batcher, or None.
        capabilities: what CONNECTED announces besides ``types`` (batching, compression...).
        route_types: the application's types, sorted, for CONNECTED.
    """

    def __init__(self, clients: dict[str, "Client"], limiter: ConnectionLimiter, expiry: TokenExpiry,
                 clear_timeout: ClearTimeout, runner: "CoroutineRunner", rate_limit: Optional[RateLimit],
                 batching: Optional[Batching], capabilities: dict[str, Any],
                 route_types: Callable[[], list[str]]) -> None:
        self.clients = clients
        self.limiter = limiter
        self.expiry = expiry
        self.clear_timeout = clear_timeout
        self.runner = runner
        self.rate_limit = rate_limit
        self.batching = batching
        self.capabilities = capabilities
        self.route_types = route_types
        self.connect_hooks: list[Callable[["Client"], Any]] = []
        self.disconnect_hooks: list[Callable[["Client", int], Any]] = []

    def on_open(self, ws: Any) -> None:
        """The socket is open: per-client state, CONNECTED, then the connect hooks.

        Args:
            ws: the WebSocket, whose user data is the Client made at the upgrade.
        """
        client: "Client" = ws.get_user_data()
        client.ws = ws
        self.clients[client.id] = client
        self.limiter.opened(client.remote_address)
        if self.rate_limit is not None:
            client.bucket = TokenBucket(self.rate_limit)
        if self.batching is not None:
            client.batcher = Batcher(self.batching, now_ms)
        self.expiry.schedule(client)
        client.send(
            {
                "type": "CONNECTED",
                "clientId": client.id,
                "userId": client.user_id,
                "serverTime": now_ms(),
                "capabilities": {**self.capabilities, "types": sorted(BUILTIN_TYPES) + self.route_types()},
            },
            priority=True,
        )
        for hook in self.connect_hooks:
            run_hook(self.runner, hook, client)

    def on_close(self, ws: Any, code: int, reason: bytes) -> None:
        """The socket closed: timers cancelled, counts released, disconnect hooks run.

        Args:
            ws: the WebSocket.
            code: the close code.
            reason: the close reason.
        """
        client: "Client" = ws.get_user_data()
        client.closed = True
        self.clients.pop(client.id, None)
        self.limiter.closed(client.remote_address)
        for timer in (client.batch_timer, client.expiry_timer):
            if timer is not None:
                self.clear_timeout(timer)
        client.batch_timer = client.expiry_timer = None
        for hook in self.disconnect_hooks:
            run_hook(self.runner, hook, client, code)
        client.ws = None
