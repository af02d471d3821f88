"""The realtime route's ``upgrade`` handler: origin, connection limits, token, the
application's authenticate hook, then the Client the socket opens with.

One :class:`Upgrade` value carries what the steps share, from the request to the accept.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from .._asyncio import CapturedRequest
from ..auth import AuthError, JWTAuth, identity
from ..proxies import TrustedProxies
from ..ratelimit import ConnectionLimiter
from .session import Client, SessionContext

if TYPE_CHECKING:
    from .._asyncio import CoroutineRunner
    from ..metrics import Metrics

logger = logging.getLogger("uws_py.realtime")
access_logger = logging.getLogger("uws_py.access")


class AccessLog:
    """One line per upgrade or HTTP request when enabled (the path only: a token in the
    query string never reaches the log).

    Args:
        enabled: log or not.
    """

    __slots__ = ("enabled",)

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, address: str, method: str, path: str, status: str) -> None:
        """Logs ``address "METHOD path" status``."""
        if self.enabled:
            access_logger.info('%s "%s %s" %s', address, method, path, status)


@dataclass
class Upgrade:
    """One upgrade in progress: the response to answer, and what the accept needs.

    ``res``/``context``: the native response and upgrade context; ``address``: the peer;
    ``claims``/``topics``: the verified token's claims and topic patterns; ``key``,
    ``protocol``, ``extensions``: the handshake headers to answer with.
    """

    __slots__ = ("res", "context", "address", "claims", "topics", "key", "protocol", "extensions")

    res: Any
    context: Any
    address: str
    claims: dict[str, Any]
    topics: Optional[list[str]]
    key: str
    protocol: str
    extensions: str


class Upgrader:
    """Decides each upgrade of the realtime route.

    Args:
        path: the route's path (for the access log).
        auth: verifies the token; None accepts without one.
        allowed_origins: Origin values allowed (others get 403); None allows all.
        limiter: total and per-IP connection counts and the upgrade rate (503/429 with Retry-After).
        metrics: refused upgrades and tokens.
        access_log: the access log.
        runner: starts an ``async def`` authenticate hook.
        session_context: what every Client is given.
        proxies: the trusted reverse proxies, whose forwarding headers name the client.
    """

    def __init__(self, path: str, auth: Optional[JWTAuth], allowed_origins: Optional[frozenset[str]],
                 limiter: ConnectionLimiter, metrics: "Metrics", access_log: AccessLog,
                 runner: "CoroutineRunner", session_context: SessionContext,
                 proxies: Optional[TrustedProxies] = None) -> None:
        self.proxies = proxies if proxies is not None else TrustedProxies(())
        self.path = path
        self.auth = auth
        self.allowed_origins = allowed_origins
        self.limiter = limiter
        self.metrics = metrics
        self.access_log = access_log
        self.runner = runner
        self.session_context = session_context
        # hook(claims, request) -> False | dict | anything: the application's, set by authenticate.
        self.authenticate: Optional[Callable[..., Any]] = None
        # The server's own subprotocols (RealtimeServer(subprotocols=...)); when set, the
        # core chooses among the client's whole offer, so "bearer" is not forced here.
        self.subprotocols: tuple[str, ...] = ()

    def client_address(self, res: Any, req: Any) -> str:
        """The client's address: the peer's, or what a trusted proxy's header says.

        Args:
            res: the native response (the peer).
            req: the request (its X-Forwarded-For / Forwarded headers).
        """
        peer = res.get_remote_address()
        if not self.proxies:
            return peer
        return self.proxies.client_address(peer, req.get_header("x-forwarded-for"), req.get_header("forwarded"))

    def refuse(self, res: Any, status: str, message: str, address: Optional[str] = None,
               retry_after: Optional[int] = None) -> None:
        """Answers the upgrade with an HTTP error.

        Args:
            res: the native response.
            status: the status line ("403 Forbidden").
            message: the body, also logged.
            address: the client's address (default: the peer's).
            retry_after: seconds for a Retry-After header (RFC 9110, 10.2.3); None sends none.
        """
        if address is None:
            address = res.get_remote_address()
        self.metrics.refused(status[:3])
        self.access_log(address, "GET", self.path, status[:3])
        logger.info("refused upgrade from %s: %s (%s)", address, status, message)
        res.write_status(status)
        if retry_after is not None:
            res.write_header("Retry-After", str(retry_after))
        res.end(message)

    def on_upgrade(self, res: Any, req: Any, context: Any) -> None:
        """The route's ``upgrade`` handler.

        Args:
            res: the native response.
            req: the native request (valid during this call only).
            context: the upgrade context to pass to ``res.upgrade``.
        """
        address = self.client_address(res, req)
        origin = req.get_header("origin")
        # Browsers always send Origin (cross-site WebSocket hijacking comes from them); a
        # client without one is not a browser and is let through, as Centrifugo does.
        if self.allowed_origins is not None and origin is not None and origin not in self.allowed_origins:
            self.refuse(res, "403 Forbidden", "origin not allowed", address)
            return
        refusal = self.limiter.admit(address)
        if refusal is not None:
            self.refuse(res, refusal.status, refusal.reason, address, refusal.retry_after)
            return
        protocols = req.get_header("sec-websocket-protocol")
        upgrade = Upgrade(res, context, address, {}, None, req.get_header("sec-websocket-key"),
                          protocols or "", req.get_header("sec-websocket-extensions") or "")
        if self.auth is not None:
            token, selected = self.auth.token_from_request(
                req.get_header("authorization"), req.get_query(self.auth.query_parameter), protocols
            )
            try:
                upgrade.claims = self.auth.verify(token)
            except AuthError as exc:
                self.metrics.auth_failure(exc.reason)
                # The token itself is never logged: it may sit in the URL.
                self.refuse(res, "401 Unauthorized", exc.message, address)
                return
            upgrade.topics = self.auth.topics_allowed(upgrade.claims)
            if selected is not None and not self.subprotocols:
                upgrade.protocol = selected
        hook = self.authenticate
        if hook is None:
            self.accept(upgrade)
            return
        # The application's own check (a user lookup, a JWKS fetch...): the socket is accepted
        # only when it says yes, and the loop goes on serving others while it thinks.
        request = CapturedRequest(req._snapshot())
        if not asyncio.iscoroutinefunction(hook):
            try:
                verdict = hook(upgrade.claims, request)
            except AuthError as exc:
                self.metrics.auth_failure(exc.reason)
                self.refuse(res, "401 Unauthorized", exc.message, address)
                return
            self.conclude(upgrade, verdict)
            return
        if self.runner.loop is None:
            self.refuse(res, "500 Internal Server Error", "async authenticate needs server.serve()", address)
            return
        res.on_aborted(lambda: None)  # makes a late answer a harmless no-op
        self.runner.start(self.authenticate_later(hook, upgrade, request), name="authenticate")

    async def authenticate_later(self, hook: Callable[..., Any], upgrade: Upgrade, request: CapturedRequest) -> None:
        """Awaits an ``async def`` authenticate hook, then concludes unless the client left.

        Args:
            hook: the hook.
            upgrade: the upgrade in progress.
            request: the captured request given to the hook.
        """
        res = upgrade.res
        try:
            verdict = await hook(upgrade.claims, request)
        except AuthError as exc:
            self.metrics.auth_failure(exc.reason)
            if not res.aborted:
                self.refuse(res, "401 Unauthorized", exc.message, upgrade.address)
            return
        except Exception:
            logger.exception("exception in authenticate hook")
            if not res.aborted:
                self.refuse(res, "500 Internal Server Error", "authentication failed", upgrade.address)
            return
        if res.aborted:
            return  # the client left while we were checking
        self.conclude(upgrade, verdict)

    def conclude(self, upgrade: Upgrade, verdict: Any) -> None:
        """Applies an authenticate hook's verdict.

        Args:
            upgrade: the upgrade in progress.
            verdict: False refuses (403), a dict replaces the claims, anything else accepts.
        """
        if verdict is False:
            self.metrics.auth_failure("hook")
            self.refuse(upgrade.res, "403 Forbidden", "not allowed", upgrade.address)
            return
        if isinstance(verdict, dict):
            upgrade.claims = verdict
            if self.auth is not None:
                upgrade.topics = self.auth.topics_allowed(verdict)
        self.accept(upgrade)

    def accept(self, upgrade: Upgrade) -> None:
        """Makes the Client and completes the handshake.

        Args:
            upgrade: the accepted upgrade.
        """
        client = Client(self.session_context, uuid.uuid4().hex[:16], upgrade.claims, upgrade.topics, upgrade.address)
        claims = upgrade.claims
        if self.auth is not None:
            client.user_id, client.token_expires_at = identity(claims, self.auth.user_id_claim)
        elif "sub" in claims:
            client.user_id = str(claims["sub"])
        self.access_log(upgrade.address, "GET", self.path, "101")
        upgrade.res.upgrade(client, upgrade.key, upgrade.protocol, upgrade.extensions, upgrade.context)
