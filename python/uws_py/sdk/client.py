"""The asyncio client of the realtime protocol (docs/protocol.md), on the ``websockets``
library: it connects with a token, reconnects by itself with backoff, refreshes the token on
the live connection, keeps subscriptions across reconnects (recovering what was missed on
history topics) and matches replies to requests by ``id``.

Not to be confused with ``uws_py.Client``, the server's view of one connection.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Optional

import orjson
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from .errors import ClientClosed, ConnectionLost, PublishQueueFull, ServerError, Unauthorized
from .policy import REFUSED_AT_UPGRADE, Action, Backoff, Decision, decide_close, decide_handshake, refresh_delay, token_expiry
from .presence import PresenceEntry, PresenceStats, parse_entries, parse_stats
from .subscription import OnMessage, OnPresence, OnSubscribed, Position, Publication, Subscription, SubscriptionState

logger = logging.getLogger("uws_py.sdk")


def _log_failure(task: "asyncio.Future[Any]") -> None:
    """Done callback of the client's background tasks: logs the exception one ended with
    (a cancelled task is not a failure)."""
    if not task.cancelled() and task.exception() is not None:
        logger.error("a task of the realtime client failed", exc_info=task.exception())

GetToken = Callable[[], Awaitable[str]]


class ClientState(enum.Enum):
    """DISCONNECTED (between attempts) -> CONNECTING -> CONNECTED -> ... -> CLOSED (for good)."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass
class ClientOptions:
    """Settings of a RealtimeClient; every field has a default.

    min_delay, max_delay: the reconnect backoff (seconds; jittered from the first retry on, see ``policy.Backoff``).
    open_timeout: seconds for TCP + upgrade + CONNECTED.
    ping_interval, ping_timeout: an application PING every ping_interval seconds of the
    connection; no PONG within ping_timeout ends the connection (and reconnects). It finds a
    dead peer where TCP gives no signal (a NAT dropped the flow, a proxy hangs). None: off.
    request_timeout: the default ``timeout`` of request/subscribe/history.
    refresh_margin: refresh the token this many seconds before it expires (at most a third
    of its remaining lifetime early).
    publish_queue_size: publishes (without ``ack``) made while disconnected wait in a queue of
    this many and leave, in order, once connected again; a full queue raises PublishQueueFull.
    0: no queue, a publish while disconnected raises at once.
    max_message_size: the largest message accepted from the server. A recovering SUBSCRIBED
    carries every missed publication (up to the server's history_recover_limit) in one
    message: keep this above that many of your largest messages. A bigger one ends the
    connection; a recovery that big is given up (reported as a gap) rather than retried.
    headers: extra HTTP headers of the upgrade; ssl: an ``ssl.SSLContext`` for wss://;
    compression: "deflate" (permessage-deflate offered) or None.
    """

    min_delay: float = 0.2
    max_delay: float = 20.0
    open_timeout: float = 10.0
    ping_interval: Optional[float] = 20.0
    ping_timeout: float = 10.0
    request_timeout: float = 10.0
    refresh_margin: float = 30.0
    publish_queue_size: int = 1000
    max_message_size: int = 16 * 1024 * 1024
    headers: dict[str, str] = field(default_factory=dict)
    ssl: Any = None
    compression: Optional[str] = "deflate"


@dataclass
class ClientStats:
    """Counters of one RealtimeClient."""

    connects: int = 0
    disconnects: int = 0
    token_refreshes: int = 0
    late_replies_dropped: int = 0
    user_messages: int = 0


@dataclass(frozen=True)
class HistoryResult:
    """A HISTORY_RESULT: the topic's current position and a page of its publications."""

    position: Position
    publications: list[Publication]


OnState = Callable[[ClientState, Optional[BaseException]], Any]
OnError = Callable[[ServerError], Any]
OnUserMessage = Callable[[Publication], Any]

# The server sends messages to a user on this topic + the user id (docs/protocol.md).
USER_TOPIC_PREFIX = "#user:"


class RealtimeClient:
    """A connection to a realtime server that keeps itself up. Use ``async with
    connect(...) as client`` (or ``await client.start()`` ... ``await client.close()``)."""

    def __init__(self, url: str, *, token: Optional[str] = None, get_token: Optional[GetToken] = None,
                 options: Optional[ClientOptions] = None, on_state: Optional[OnState] = None,
                 on_error: Optional[OnError] = None, on_user_message: Optional[OnUserMessage] = None) -> None:
        """url: ws[s]://host:port/realtime. token: the JWT of the first connection;
        get_token: an async callable returning a fresh JWT, called when none is known, when
        the token is about to expire and after the server refused or expired it (raise
        Unauthorized in it to stop for good). on_state(state, error): each state change
        (error: why a connection ended or why the client closed: a ConnectionLost or
        ClientClosed whose ``close_code``/``close_reason`` are the server's close frame).
        on_error(error): ERRORs the server sent outside any request (RATE_LIMITED, token
        expiry). on_user_message(publication): each message the server sent to this
        connection's user (``server.send_to_user``; topic ``#user:<user id>``, sender None);
        may be async, awaited like on_message."""
        self.url = url
        self.options = options or ClientOptions()
        self.on_state = on_state
        self.on_error = on_error
        self.on_user_message = on_user_message
        self.state = ClientState.DISCONNECTED
        self.error: Optional[BaseException] = None
        self.stats = ClientStats()
        self.connected_info: dict[str, Any] = {}
        self.expires_at: Optional[float] = None
        self._token = token
        self._get_token = get_token
        self._backoff = Backoff(self.options.min_delay, self.options.max_delay)
        self._ws: Optional[ClientConnection] = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._subscribing: dict[int, Subscription] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._queue: collections.deque[bytes] = collections.deque()
        self._state_changed = asyncio.Event()
        self._runner: Optional[asyncio.Task[None]] = None
        self._closing = False
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Future[None]] = set()
        # What an async on_state returned, held until it ends (the loop holds tasks weakly).
        self._callbacks: set[asyncio.Future[Any]] = set()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, wait: bool = True) -> "RealtimeClient":
        """Starts connecting; with wait, returns once connected (raises ClientClosed when
        the client stopped for good first, e.g. a refused token)."""
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run(), name=f"uws-py-sdk {self.url}")
        if wait:
            await self.wait_for(ClientState.CONNECTED)
        return self

    async def close(self) -> None:
        """Closes the connection (1000) and stops reconnecting; pending requests fail."""
        self._closing = True
        self._wake.set()
        if self._ws is not None:
            await self._ws.close(1000, "client closed")
        if self._runner is not None:
            try:
                await self._runner
            except asyncio.CancelledError:
                pass
        self._finish(None)

    async def __aenter__(self) -> "RealtimeClient":
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def wait_for(self, state: ClientState, timeout: Optional[float] = None) -> None:
        """Returns once the client is in ``state``; ClientClosed when it closed instead,
        TimeoutError after timeout seconds (None: no limit)."""
        async with asyncio.timeout(timeout):
            while self.state is not state:
                if self.state is ClientState.CLOSED:
                    raise ClientClosed("client closed", self.error)
                self._state_changed.clear()
                await self._state_changed.wait()

    @property
    def client_id(self) -> Optional[str]:
        """The server's ``clientId`` of the current (or last) connection."""
        return self.connected_info.get("clientId")

    @property
    def user_id(self) -> Optional[str]:
        """The server's ``userId`` of the current (or last) connection: None without auth."""
        return self.connected_info.get("userId")

    @property
    def user_topic(self) -> Optional[str]:
        """The topic the server's messages to this user arrive on (``#user:<user id>``), or
        None when the connection has no user. It needs no subscription (and cannot have one)."""
        user_id = self.user_id
        return USER_TOPIC_PREFIX + user_id if isinstance(user_id, str) else None

    # -- requests ------------------------------------------------------------------------

    async def request(self, type: str, data: Optional[Mapping[str, Any]] = None, *,
                      timeout: Optional[float] = None) -> dict[str, Any]:
        """Sends ``{"type": type, **data, "id": <new>}`` and returns the reply with that id.
        Waits for a connection first, within the same timeout (default
        ``options.request_timeout``). Raises TimeoutError (a reply that comes later is
        dropped), ServerError for an ERROR reply, ConnectionLost when the connection ends
        first, ClientClosed when the client is closed; RuntimeError when called (and
        awaited) from inside a callback of this client (on_message, on_subscribed,
        on_presence, on_user_message, on_error), whose reply could never be read: start a
        task there instead."""
        if self._runner is not None and asyncio.current_task() is self._runner:
            raise RuntimeError(f"awaiting the reply to {type} inside a callback of this client would wait for "
                               "ever (the reply is read after the callback returns): use asyncio.create_task")
        async with asyncio.timeout(self.options.request_timeout if timeout is None else timeout):
            await self.wait_for(ClientState.CONNECTED)
            request_id, future = self._new_request()
            try:
                await self._send({**(data or {}), "type": type, "id": request_id})
                reply = await future
            finally:
                self._pending.pop(request_id, None)
                if future.done() and not future.cancelled():
                    # The connection ended during the send: the send's error is the one raised,
                    # the future's (the same ConnectionLost) is retrieved here, not logged.
                    future.exception()
        if reply.get("type") == "ERROR":
            raise ServerError(str(reply.get("code")), str(reply.get("message", "")), reply)
        return reply

    async def ping(self, timeout: Optional[float] = None) -> float:
        """An application PING; returns the round trip in seconds."""
        started = time.monotonic()
        await self.request("PING", timeout=timeout)
        return time.monotonic() - started

    async def publish(self, topic: str, data: Any, *, ack: bool = False, echo: bool = False,
                      timeout: Optional[float] = None) -> Optional[dict[str, Any]]:
        """Publishes ``data`` on ``topic``. With ack, waits for PUBLISHED and returns it (its
        ``offset``/``epoch`` on a history topic); errors as for request. Without ack, returns
        None at once: sent now when connected, else queued (at most publish_queue_size,
        PublishQueueFull beyond; sent in order after the next connect, lost if the client
        closes first). A queued publish is sent once; if that connection then drops before
        the server read it, it is lost like any message sent without ack.

        On a history topic this client is subscribed to, ``echo`` is implied: the
        subscription gets its own publications too, so its offsets stay contiguous (a
        server without a broker does not send a subscribed publisher its own MESSAGE, and
        the hole would look like missed messages and cost a recovery)."""
        message = {"type": "PUBLISH", "topic": topic, "data": data}
        subscription = self._subscriptions.get(topic)
        if echo or (subscription is not None and subscription.position is not None):
            message["echo"] = True
        if ack:
            return await self.request("PUBLISH", message, timeout=timeout)
        if self.state is ClientState.CLOSED:
            raise ClientClosed("client closed", self.error)
        frame = orjson.dumps(message)
        if self.state is ClientState.CONNECTED and self._ws is not None and not self._queue:
            try:
                await self._ws.send(frame.decode())
                return None
            except ConnectionClosed:
                pass
        if len(self._queue) >= self.options.publish_queue_size:
            raise PublishQueueFull(f"{len(self._queue)} publishes already wait for a connection "
                                   f"(publish_queue_size={self.options.publish_queue_size})")
        self._queue.append(frame)
        return None

    async def history(self, topic: str, *, limit: Optional[int] = None, since: Optional[Position] = None,
                      reverse: bool = False, timeout: Optional[float] = None) -> HistoryResult:
        """A page of ``topic``'s history: ``limit`` publications after ``since`` (absent: from
        the start, or the newest with reverse). ServerError NO_HISTORY on a plain topic,
        UNRECOVERABLE_POSITION when ``since`` is from a lost history."""
        message: dict[str, Any] = {"topic": topic}
        if limit is not None:
            message["limit"] = limit
        if since is not None:
            message["since"] = {"epoch": since.epoch, "offset": since.offset}
        if reverse:
            message["reverse"] = True
        reply = await self.request("HISTORY", message, timeout=timeout)
        publications = [Publication(topic, p.get("data"), p.get("from"), p.get("offset"), True)
                        for p in reply.get("publications") or []]
        return HistoryResult(Position(str(reply.get("epoch")), int(reply.get("offset") or 0)), publications)

    async def presence(self, topic: str, *, timeout: Optional[float] = None) -> list[PresenceEntry]:
        """Who is present in ``topic`` now: one entry per connection (clientId, userId, info),
        in no defined order. The client need not be subscribed. ServerError NO_PRESENCE when
        the topic has no presence, FORBIDDEN, UNAVAILABLE (the server's Redis is down);
        otherwise errors as for request."""
        reply = await self.request("PRESENCE", {"topic": topic}, timeout=timeout)
        return parse_entries(reply.get("clients"))

    async def presence_stats(self, topic: str, *, timeout: Optional[float] = None) -> PresenceStats:
        """How many are present in ``topic``: connections and distinct users; errors as for
        presence."""
        reply = await self.request("PRESENCE_STATS", {"topic": topic}, timeout=timeout)
        return parse_stats(topic, reply)

    # -- subscriptions -------------------------------------------------------------------

    async def subscribe(self, topic: str, on_message: OnMessage, *, on_subscribed: Optional[OnSubscribed] = None,
                        on_presence: Optional[OnPresence] = None, since: Optional[Position] = None,
                        timeout: Optional[float] = None) -> Subscription:
        """Subscribes to ``topic`` for as long as the client lives (or until
        ``unsubscribe()``) and returns once the first SUBSCRIBED came (within timeout).

        on_message(publication): each publication once, in order; may be async (it is
        awaited before the next message is read). on_subscribed(event): each SUBSCRIBED,
        the first and every resubscribe, with ``recovered``/``was_recovering``/``gap``.
        on_presence(diff): each PresenceDiff (joins and leaves) on a topic whose presence has
        join_leave; diffs sent while the client was disconnected are lost, so call
        ``presence()`` again after a resubscribe to know who is there.
        since: a saved position to recover from. The SUBSCRIBE is sent now when connected,
        else once connected, and again on every new connection until it is answered.
        Raises ServerError (FORBIDDEN, INVALID_MESSAGE, UNAVAILABLE) or TimeoutError: the
        subscription is then dropped (and unsubscribed if the server took it), so the same
        topic may be subscribed again; ClientClosed if the client closed first.

        Later refusals of a resubscribe (a refreshed token that no longer allows the topic)
        end the subscription and go to ``on_error``; UNAVAILABLE (Redis unreachable) is
        retried on the same connection after the backoff."""
        if topic in self._subscriptions:
            raise ValueError(f"already subscribed to {topic!r}; unsubscribe first")
        if self.state is ClientState.CLOSED:
            raise ClientClosed("client closed", self.error)
        subscription = Subscription(self, topic, on_message, on_subscribed, since, on_presence)
        self._subscriptions[topic] = subscription
        if self.state is ClientState.CONNECTED and self._ws is not None:
            self._spawn(self._subscribe_on(self._ws, subscription))
        # Otherwise the next CONNECTED subscribes every registered subscription.
        try:
            async with asyncio.timeout(self.options.request_timeout if timeout is None else timeout):
                await subscription.wait_subscribed()
        except TimeoutError:
            self._forget(subscription)
            if self.state is ClientState.CONNECTED:
                # Not waiting for UNSUBSCRIBED: the caller's time is up.
                self._spawn(self._unsubscribe_now(topic))
            raise
        except BaseException:
            self._forget(subscription)
            raise
        return subscription

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        """The live subscriptions by topic (a copy)."""
        return dict(self._subscriptions)

    def _forget(self, subscription: Subscription, error: Optional[BaseException] = None) -> None:
        """Ends the subscription here; what the server holds is the caller's business."""
        if self._subscriptions.get(subscription.topic) is subscription:
            del self._subscriptions[subscription.topic]
        if subscription.state is not SubscriptionState.UNSUBSCRIBED:
            subscription.ended(error)

    async def _unsubscribe(self, subscription: Subscription) -> None:
        self._forget(subscription)
        if self.state is not ClientState.CONNECTED:
            return  # the server forgets it with the connection
        if asyncio.current_task() is self._runner:
            # Called from a callback: the reply cannot be read before it returns.
            self._spawn(self._unsubscribe_now(subscription.topic))
        else:
            await self._unsubscribe_now(subscription.topic)

    async def _unsubscribe_now(self, topic: str) -> None:
        try:
            await self.request("UNSUBSCRIBE", {"topic": topic})
        except (ConnectionLost, TimeoutError, ClientClosed):
            pass  # the server forgets it with the connection anyway

    def _registered(self, subscription: Subscription, ws: ClientConnection) -> bool:
        """The subscription is still wanted and ws is still the connection."""
        return self._subscriptions.get(subscription.topic) is subscription and self._ws is ws

    async def _subscribe_on(self, ws: ClientConnection, subscription: Subscription) -> None:
        """SUBSCRIBE (recovering from the subscription's position) on ws until it is
        answered: UNAVAILABLE is retried after the backoff, another refusal ends the
        subscription; a lost connection leaves it to the next one."""
        retry = Backoff(self.options.min_delay, self.options.max_delay)
        while self._registered(subscription, ws):
            request_id, future = self._new_request()
            self._subscribing[request_id] = subscription
            try:
                await self._send(subscription.subscribe_message(request_id))
                reply = await asyncio.wait_for(future, self.options.request_timeout)
            except (ConnectionLost, ClientClosed, ConnectionClosed):
                return  # the next connection subscribes again
            except TimeoutError:
                if self._registered(subscription, ws):
                    logger.warning("no SUBSCRIBED for %r within %.1f s; reconnecting", subscription.topic,
                                   self.options.request_timeout)
                    ws.transport.abort()
                return
            finally:
                self._pending.pop(request_id, None)
                self._subscribing.pop(request_id, None)
            if reply.get("type") != "ERROR":
                if subscription.recovery_needed and self._registered(subscription, ws):
                    # A jump among the messages held during this subscribe: once more.
                    await self._recover_on(ws, subscription)
                return
            error = ServerError(str(reply.get("code")), str(reply.get("message", "")), reply)
            if error.code == "UNAVAILABLE" and subscription.resubscribe:
                delay = retry.next_delay()
                logger.warning("subscribing to %r: %s; again in %.2f s", subscription.topic, error, delay)
                await asyncio.sleep(delay)
                continue
            first = not subscription.resubscribe
            self._forget(subscription, error)
            if not first:
                logger.error("resubscribing to %r refused: %s", subscription.topic, error)
                await self._report(error)
            return

    async def _recover_on(self, ws: ClientConnection, subscription: Subscription) -> None:
        """Live offsets jumped: leave the topic and subscribe again from the last offset
        delivered, so the server sends exactly what was skipped."""
        try:
            await self.request("UNSUBSCRIBE", {"topic": subscription.topic}, timeout=self.options.request_timeout)
        except (ConnectionLost, ClientClosed):
            return  # the next connection recovers
        except TimeoutError:
            if self._ws is ws:
                ws.transport.abort()
            return
        await self._subscribe_on(ws, subscription)

    # -- the connection loop ---------------------------------------------------------------

    async def _run(self) -> None:
        refresh = self._token is None and self._get_token is not None
        auth_failures = 0
        while not self._closing:
            self._set_state(ClientState.CONNECTING)
            decision: Decision
            try:
                if refresh:
                    await self._fetch_token()
            except Unauthorized as exc:
                self._finish(exc)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A failing get_token (its service is down) may pass. The token we hold is the
                # one that expired or was refused: ask again rather than connect with it, and
                # do not count this as a refused token.
                logger.warning("get_token failed: %r", exc)
                decision = Decision(Action.REFRESH_AND_RECONNECT, f"get_token failed: {exc!r}")
            else:
                decision = await self._attempt(auth_failures)
                auth_failures = auth_failures + 1 if decision.reason == REFUSED_AT_UPGRADE else 0
            if self._closing:
                break
            if decision.action is Action.STOP:
                self._finish(ClientClosed(decision.reason, close_code=decision.close_code,
                                          close_reason=decision.close_reason))
                return
            refresh = decision.action is Action.REFRESH_AND_RECONNECT
            self._set_state(ClientState.DISCONNECTED, ConnectionLost(
                decision.reason, close_code=decision.close_code, close_reason=decision.close_reason))
            delay = self._backoff.next_delay()
            logger.info("%s; reconnecting in %.2f s", decision.reason, delay)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
        # Stopped from inside (get_token raised Unauthorized during a refresh) or by close().
        self._finish(None)

    async def _attempt(self, auth_failures: int) -> Decision:
        """One connection, from TCP to its end; auth_failures: the 401s in a row before it."""
        try:
            return await self._connect_once()
        except InvalidStatus as exc:
            status = exc.response.status_code
            # A 401 that leads to a refresh has the reason REFUSED_AT_UPGRADE; _run counts them.
            return decide_handshake(status, self._get_token is not None, auth_failures + 1 if status == 401 else 0)
        except InvalidURI as exc:
            return Decision(Action.STOP, str(exc))
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            return Decision(Action.RECONNECT, f"cannot connect: {exc!r}")

    async def _fetch_token(self) -> None:
        if self._get_token is None:
            return
        self._token = await self._get_token()

    async def _connect_once(self) -> Decision:
        headers = dict(self.options.headers)
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        ws = await websockets.connect(
            self.url, additional_headers=headers, open_timeout=self.options.open_timeout,
            ping_interval=None, max_size=self.options.max_message_size, ssl=self.options.ssl,
            compression=self.options.compression, proxy=None,
        )
        try:
            return await self._session(ws)
        finally:
            self._ws = None
            await ws.close()
            self._connection_ended()

    async def _session(self, ws: ClientConnection) -> Decision:
        """One connection: CONNECTED, resubscribe, flush the queue, read until it ends."""
        try:
            first = orjson.loads(await asyncio.wait_for(ws.recv(), self.options.open_timeout))
        except ConnectionClosed as exc:
            return self._closed_decision(exc)
        if not isinstance(first, dict) or first.get("type") != "CONNECTED":
            return Decision(Action.RECONNECT, f"expected CONNECTED, got {first!r}")
        self._ws = ws
        self.connected_info = first
        self.expires_at = first["expiresAt"] if "expiresAt" in first else (
            token_expiry(self._token) if self._token else None)
        self.stats.connects += 1
        self._backoff.reset()
        self._set_state(ClientState.CONNECTED)
        helpers = [asyncio.create_task(self._subscribe_on(ws, s)) for s in list(self._subscriptions.values())]
        helpers.append(asyncio.create_task(self._flush_queue(ws)))
        helpers.append(asyncio.create_task(self._keep_token_fresh()))
        if self.options.ping_interval:
            helpers.append(asyncio.create_task(self._keep_alive(ws)))
        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    continue  # the server sends only text frames
                try:
                    message = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    logger.warning("not JSON from the server: %r", raw[:200])
                    continue
                await self._handle(message)
            # The iterator ends quietly on a 1000/1001 close; close_exc holds the frame it got.
            return self._closed_decision(ws.close_exc)
        except ConnectionClosed as exc:
            return self._closed_decision(exc)
        finally:
            for helper in helpers + list(self._tasks):
                helper.cancel()

    def _closed_decision(self, exc: ConnectionClosed) -> Decision:
        if exc.sent is not None and exc.sent.code == 1009 and not exc.rcvd_then_sent:
            return self._message_too_big()
        received = exc.rcvd
        if received is None:
            return decide_close(None, "", self._get_token is not None)
        return decide_close(received.code, received.reason, self._get_token is not None)

    def _message_too_big(self) -> Decision:
        """This client closed the connection (1009) on a message over max_message_size. If a
        recovering SUBSCRIBE was waiting, its reply was probably that message, and it would be
        as large on every connection: those subscribe once without recovering (a gap they
        report) instead of reconnecting for ever."""
        limit = self.options.max_message_size
        giving_up = [s for s in self._subscribing.values() if s.position is not None]
        for subscription in giving_up:
            subscription.give_up_recovery()
        logger.error("a message from the server was over max_message_size (%d bytes)%s", limit,
                     f"; {', '.join(repr(s.topic) for s in giving_up)} resubscribe without recovering (a gap)"
                     if giving_up else "")
        return Decision(Action.RECONNECT, f"a message from the server was over max_message_size ({limit} bytes)")

    def _connection_ended(self) -> None:
        self.stats.disconnects += 1 if self.state is ClientState.CONNECTED else 0
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionLost("the connection ended before the reply"))
        self._pending.clear()
        self._subscribing.clear()
        for subscription in self._subscriptions.values():
            subscription.connection_lost()

    async def _handle(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "BATCH" and isinstance(message.get("messages"), list) and "id" not in message:
            for item in message["messages"]:
                await self._handle(item)
            return
        if kind == "MESSAGE":
            topic = message.get("topic")
            if topic is not None and topic == self.user_topic:
                await self._user_message(message)
                return
            subscription = self._subscriptions.get(topic)  # type: ignore[arg-type]
            if subscription is not None:
                jumped_before = subscription.recovery_needed
                await subscription.on_live(message)
                # A jump seen now, while no SUBSCRIBE is in flight (that one would see it
                # when its reply is handled): recover once.
                if subscription.recovery_needed and not jumped_before and self._ws is not None \
                        and subscription not in self._subscribing.values():
                    self._spawn(self._recover_on(self._ws, subscription))
            return
        if kind == "PRESENCE_DIFF":
            subscription = self._subscriptions.get(message.get("topic"))  # type: ignore[arg-type]
            if subscription is not None:
                await subscription.on_presence_diff(message)
            return
        request_id = message.get("id")
        if request_id is not None:
            subscription = self._subscribing.pop(request_id, None)
            if subscription is not None and kind == "SUBSCRIBED":
                # Here, not in the waiting task: the MESSAGEs after it must wait for it.
                await subscription.on_subscribed_reply(message)
            future = self._pending.get(request_id)
            if future is None:
                self.stats.late_replies_dropped += 1
            elif not future.done():
                future.set_result(message)
            return
        if kind == "UNSUBSCRIBED" and message.get("resubscribe"):
            subscription = self._subscriptions.get(message.get("topic"))  # type: ignore[arg-type]
            if subscription is not None and self._ws is not None:
                subscription.connection_lost()
                self._spawn(self._subscribe_on(self._ws, subscription))
            return
        if kind == "ERROR":
            await self._report(ServerError(str(message.get("code")), str(message.get("message", "")), message))

    async def _user_message(self, message: dict[str, Any]) -> None:
        self.stats.user_messages += 1
        if self.on_user_message is None:
            return
        publication = Publication(str(message["topic"]), message.get("data"), message.get("from"), None)
        try:
            result = self.on_user_message(publication)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_user_message raised")

    async def _report(self, error: ServerError) -> None:
        if self.on_error is None:
            return
        try:
            result = self.on_error(error)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_error raised")

    def _spawn(self, coro: Awaitable[None]) -> None:
        """Runs a helper of the current connection; kept referenced until it ends, and
        cancelled with the connection."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    async def _flush_queue(self, ws: ClientConnection) -> None:
        while self._queue and self._ws is ws:
            frame = self._queue[0]
            try:
                await ws.send(frame.decode())
            except ConnectionClosed:
                return  # it stays first in the queue for the next connection
            self._queue.popleft()

    async def _keep_alive(self, ws: ClientConnection) -> None:
        assert self.options.ping_interval
        while True:
            await asyncio.sleep(self.options.ping_interval)
            try:
                await self.request("PING", timeout=self.options.ping_timeout)
            except TimeoutError:
                logger.warning("no PONG within %.1f s; the connection is dead", self.options.ping_timeout)
                ws.transport.abort()
                return
            except (ConnectionLost, ClientClosed):
                return

    async def _keep_token_fresh(self) -> None:
        while self._get_token is not None:
            delay = refresh_delay(self.expires_at, time.time(), self.options.refresh_margin)
            if delay is None:
                return
            await asyncio.sleep(delay)
            try:
                token = await self._get_token()
                reply = await self.request("AUTH", {"token": token})
            except Unauthorized as exc:
                logger.error("get_token refused to renew the token: %s", exc)
                self._closing = True
                self.error = exc
                if self._ws is not None:
                    await self._ws.close(1000, "unauthorized")
                return
            except (ConnectionLost, ClientClosed):
                return
            except Exception as exc:  # a refused token or a failing get_token: try again soon
                logger.warning("token refresh failed: %r", exc)
                await asyncio.sleep(self._backoff.ceiling(0))
                continue
            self._token = token
            # A server that leaves expiresAt out (older than the spec) still gets refreshed.
            expires_at = reply.get("expiresAt")
            self.expires_at = expires_at if isinstance(expires_at, (int, float)) else token_expiry(token)
            self.stats.token_refreshes += 1

    # -- plumbing --------------------------------------------------------------------------

    def _new_request(self) -> tuple[int, "asyncio.Future[dict[str, Any]]"]:
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        return self._next_id, future

    async def _send(self, message: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            raise ConnectionLost("not connected")
        try:
            await ws.send(orjson.dumps(message).decode())
        except ConnectionClosed as exc:
            raise ConnectionLost("the connection ended while sending") from exc

    def _set_state(self, state: ClientState, error: Optional[BaseException] = None) -> None:
        if state is self.state:
            return
        self.state = state
        self._state_changed.set()
        if self.on_state is not None:
            try:
                result = self.on_state(state, error)
                if inspect.isawaitable(result):
                    callback = asyncio.ensure_future(result)
                    self._callbacks.add(callback)
                    callback.add_done_callback(self._callbacks.discard)
                    callback.add_done_callback(_log_failure)
            except Exception:
                logger.exception("on_state raised")

    def _finish(self, error: Optional[BaseException]) -> None:
        if self.state is ClientState.CLOSED:
            return
        self._closing = True
        if error is not None or self.error is None:
            self.error = error if error is not None else self.error
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ClientClosed("client closed", self.error))
        self._pending.clear()
        for subscription in self._subscriptions.values():
            subscription.ended(self.error)
        self._queue.clear()
        self._set_state(ClientState.CLOSED, self.error)


def connect(url: str, *, token: Optional[str] = None, get_token: Optional[GetToken] = None,
            options: Optional[ClientOptions] = None, on_state: Optional[OnState] = None,
            on_error: Optional[OnError] = None, on_user_message: Optional[OnUserMessage] = None) -> RealtimeClient:
    """A RealtimeClient for ``url``, to use as ``async with connect(url, token=...) as client:``
    (connects on entry, closes on exit). Arguments as for RealtimeClient."""
    return RealtimeClient(url, token=token, get_token=get_token, options=options, on_state=on_state,
                          on_error=on_error, on_user_message=on_user_message)
