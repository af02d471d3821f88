"""Presence of one worker wired to its loop: who joined or left which presence topic (from the
core's subscription events), PRESENCE and PRESENCE_STATS, PRESENCE_DIFF coalescing, and, with
a Redis broker, the shared store and its periodic refresh.

Every method runs on the server's loop thread; the Redis store's coroutines run on the
broker's loop (``broker.run``), their results come back through ``defer``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional

import orjson

from ..broker.redact import redact, redacting_logger
from .dispatch import REPLIED
from .presence import (
    DEFAULT_DIFF_INTERVAL, DEFAULT_PRESENCE_TTL, DIFF_PREFIX, REFRESHES_PER_TTL, DiffCoalescer, MemoryPresence,
    NoPresence, PresenceEntry, PresenceMetrics, PresenceOptions, PresencePolicy, PresenceUnavailable, info_of,
)
from .protocol import INTERNAL, TEXT, ProtocolError, error, now_ms

if TYPE_CHECKING:
    from ..broker import Broker
    from ..broker.redis import RedisBroker
    from ..metrics import Metrics
    from .presence_redis import RedisPresence
    from .pubsub import PubSub
    from .session import Client

logger = redacting_logger("uws_py.realtime")

SetTimeout = Callable[[float, Callable[[], Any]], int]
# done(result): the entries (list), the stats (dict), or the exception that refused the request.
Done = Callable[[Any], None]
# Seconds between two warnings about a failing presence write.
WARN_EVERY = 5.0


class PresenceService:
    """Presence topics of one worker.

    Args:
        pubsub: topic policy (PRESENCE is authorized like SUBSCRIBE, action "presence").
        publish_local: the core's ``publish(topic, payload, opcode)``, for diffs.
        set_timeout: the loop's timer.
        metrics: counts ERROR replies; gets the presence counters.
        ttl: seconds an entry lives in Redis without a refresh (refreshed every ttl / 3).
        diff_interval: seconds between two PRESENCE_DIFFs of one topic.
    """

    def __init__(self, pubsub: "PubSub", publish_local: Callable[[str, bytes, int], bool], set_timeout: SetTimeout,
                 metrics: "Metrics", ttl: float = DEFAULT_PRESENCE_TTL,
                 diff_interval: float = DEFAULT_DIFF_INTERVAL) -> None:
        self.pubsub = pubsub
        self.publish_local = publish_local
        self.set_timeout = set_timeout
        self.metrics = metrics
        self.ttl = ttl
        self.policy = PresencePolicy()
        self.local = MemoryPresence()  # this worker's clients: the whole truth without Redis
        self.coalescer = DiffCoalescer(diff_interval)
        self.counters = PresenceMetrics()
        # Set by use_redis: the shared store, and the broker that runs its coroutines.
        self.store: Optional["RedisPresence"] = None
        self.broker: Optional["RedisBroker"] = None
        self.publisher: Optional["Broker"] = None
        # Writes not yet sent to Redis, per topic: entries to set and client ids to delete.
        self._adds: dict[str, dict[str, PresenceEntry]] = {}
        self._removes: dict[str, set[str]] = {}
        # Deletions sent to the broker's loop and not yet confirmed, redone at stop() in case the
        # broker stopped before running them.
        self._removing: dict[str, set[str]] = {}
        self._write_armed = False
        self._refresh_armed = False
        self._last_warning = 0.0

    def __bool__(self) -> bool:
        return bool(self.policy)

    def add(self, options: PresenceOptions) -> None:
        """Topics matching ``options.pattern`` track presence (first match wins).

        Args:
            options: the pattern and whether it has join/leave events.
        """
        self.policy.add(options)  # type: ignore[arg-type]

    def use_redis(self, broker: "RedisBroker", store: "RedisPresence", publisher: Optional["Broker"] = None) -> None:
        """Keeps presence in Redis (shared by every worker) through broker's loop.

        Args:
            broker: the Redis broker whose loop runs the store's coroutines
            store: the RedisPresence
            publisher: the broker that carries PRESENCE_DIFF broadcasts to the other workers (the
                server's broker: a NATS one beside its Redis); None: ``broker``.
        """
        self.broker, self.store = broker, store
        self.publisher = publisher if publisher is not None else broker

    # -- membership (the core's subscription events) -----------------------------------------

    def subscription(self, client: "Client", topic: str, joined: bool) -> None:
        """A client subscribed to (joined) or left topic: its entry is added or removed.

        Args:
            client: the socket's Client
            topic: any topic
            joined: subscribed, else left.
        """
        options = self.policy.options_for(topic)
        if options is None:
            return
        if joined:
            entry = PresenceEntry(client.id, client.user_id, info_of(client.claims))
            self.local.join(topic, entry)
            if self.store is not None:
                self._removes.get(topic, set()).discard(client.id)
                self._adds.setdefault(topic, {})[client.id] = entry
                self._arm_write()
            if options.join_leave:
                self._event(topic, "join", entry.to_wire())
            return
        entry = self.local.leave(topic, client.id)
        if entry is None:
            return
        if self.store is not None:
            self._adds.get(topic, {}).pop(client.id, None)
            self._removes.setdefault(topic, set()).add(client.id)
            self._arm_write()
        if options.join_leave:
            self._event(topic, "leave", {"clientId": entry.client_id, "userId": entry.user_id})

    # -- PRESENCE / PRESENCE_STATS ---------------------------------------------------------------

    def entries(self, topic: str, done: Done) -> None:
        """Calls ``done`` with every entry of topic (at once without Redis, later with it).

        Args:
            topic: the topic
            done: receives the list, or NoPresence/PresenceUnavailable.
        """
        if self.policy.options_for(topic) is None:
            done(NoPresence(topic))
            return
        store = self.store
        if store is None or self.broker is None:
            done(self.local.entries(topic))
            return
        self._flush_writes()  # jobs run in order: a client that just subscribed sees itself
        self.broker.run(lambda: store.entries(topic), done)

    def stats(self, topic: str, done: Done) -> None:
        """Calls ``done`` with ``{"numClients", "numUsers"}`` of topic (see :meth:`entries`).

        Args:
            topic: the topic
            done: receives the dict, or the exception.
        """
        if self.policy.options_for(topic) is None:
            done(NoPresence(topic))
            return
        store = self.store
        if store is None or self.broker is None:
            done(self.local.stats(topic))
            return
        self._flush_writes()
        self.broker.run(lambda: store.stats(topic), done)

    def handle_presence(self, client: "Client", message: dict[str, Any], out: Optional[list[Any]]) -> Any:
        """PRESENCE ``topic`` -> PRESENCE_RESULT ``clients``; authorized like SUBSCRIBE
        (action "presence"); NO_PRESENCE on a topic without presence.

        Args:
            client: the sender
            message: the request
            out: the BATCH being collected.
        """
        return self._request(client, message, out, "PRESENCE_RESULT", self.entries,
                             lambda result: {"clients": result})

    def handle_stats(self, client: "Client", message: dict[str, Any], out: Optional[list[Any]]) -> Any:
        """PRESENCE_STATS ``topic`` -> PRESENCE_STATS_RESULT ``numClients`` ``numUsers``.

        Args:
            client: the sender
            message: the request
            out: the BATCH being collected.
        """
        return self._request(client, message, out, "PRESENCE_STATS_RESULT", self.stats, lambda result: result)

    def _request(self, client: "Client", message: dict[str, Any], out: Optional[list[Any]], reply_type: str,
                 ask: Callable[[str, Done], None], fields: Callable[[Any], dict[str, Any]]) -> Any:
        topic = message.get("topic")
        self.pubsub.check_topic(client, topic, "presence")
        # ask() calls done at once (memory, or a refusal) or later (Redis): at once, the answer
        # is this built-in's return value (so it joins a BATCH); later, done sends it itself.
        answer: list[Any] = []
        request_id = message.get("id")
        synchronous = True

        def done(result: Any) -> None:
            if synchronous:
                answer.append(result)
                return
            if client.closed:
                return
            if isinstance(result, BaseException):
                refusal = refusal_of(result)
                self.metrics.error(refusal.code)
                client.send(error(refusal.code, refusal.message, request_id))
                return
            reply = {"type": reply_type, "topic": topic, **fields(result)}
            if request_id is not None:
                reply["id"] = request_id
            client.send(reply)

        ask(topic, done)  # type: ignore[arg-type]
        synchronous = False
        if not answer:
            return REPLIED  # through Redis: the reply is sent when the store answered
        result = answer[0]
        if isinstance(result, BaseException):
            raise refusal_of(result)
        return {"type": reply_type, "topic": topic, **fields(result)}

    # -- join/leave diffs ---------------------------------------------------------------------------

    def _event(self, topic: str, kind: str, entry: dict[str, Any]) -> None:
        if self.coalescer.local(topic, kind, entry):
            self.set_timeout(self.coalescer.interval, self._flush_diffs)

    def remote_diff(self, topic: str, payload: bytes) -> bool:
        """The broker's interceptor: True (consumed) for another worker's PRESENCE_DIFF, which
        joins this worker's next diff of the topic instead of going out on its own.

        Args:
            topic: the channel's topic
            payload: what the broker delivered.
        """
        if not payload.startswith(DIFF_PREFIX):
            return False
        try:
            diff = orjson.loads(payload)
        except orjson.JSONDecodeError:
            logger.warning("ignoring a malformed presence diff on %r", topic)
            return True
        if self.coalescer.remote(topic, diff):
            self.set_timeout(self.coalescer.interval, self._flush_diffs)
        return True

    def _flush_diffs(self) -> None:
        diffs, again = self.coalescer.flush()
        broker = self.publisher
        timestamp = now_ms()
        for diff in diffs:
            delivery = diff.delivery
            if delivery["joins"] or delivery["leaves"]:
                delivery["timestamp"] = timestamp
                self.publish_local(diff.topic, orjson.dumps(delivery), TEXT)
                self.counters.diffs_sent += 1
            if broker is not None and diff.broadcast is not None:
                broker.publish(diff.topic, orjson.dumps(diff.broadcast))
                self.counters.diffs_broadcast += 1
        if again:
            self.set_timeout(self.coalescer.interval, self._flush_diffs)

    # -- the Redis store: writes and refresh ----------------------------------------------------------

    def _arm_write(self) -> None:
        if not self._write_armed:
            self._write_armed = True
            # Joins and leaves of one loop turn (a reconnect storm) go out as one write per topic.
            self.set_timeout(0, self._flush_writes)
        if not self._refresh_armed:
            self._refresh_armed = True
            self.set_timeout(self.ttl / REFRESHES_PER_TTL, self._refresh)

    def stop(self) -> None:
        """The server stopped (its connections closed): deletes from Redis the entries whose
        removal is still pending, synchronously, so a graceful shutdown leaves no entry to
        expire. A failure is logged; the entries then expire after the ttl."""
        store = self.store
        if store is None:
            return
        removes, self._removes = self._removes, {}
        self._adds = {}
        pending = {topic: set(ids) for topic, ids in removes.items() if ids}
        for topic, ids in self._removing.items():
            pending.setdefault(topic, set()).update(ids)
        for topic, entries in self.local.topics.items():
            pending.setdefault(topic, set()).update(entries)
        if not pending:
            return
        try:
            store.delete_now(pending)
        except Exception as exc:
            logger.warning("could not delete %d presence entries at shutdown: %s",
                           sum(map(len, pending.values())), exc)

    def _flush_writes(self) -> None:
        self._write_armed = False
        adds, self._adds = self._adds, {}
        removes, self._removes = self._removes, {}
        writes = [(topic, [(entry.client_id, entry.encoded) for entry in adds.get(topic, {}).values()],
                   sorted(removes.get(topic, ()))) for topic in set(adds) | set(removes)]
        if writes:
            self._write(writes)

    def _refresh(self) -> None:
        """Pushes the expiry of every local entry ttl ahead; stops while there are none."""
        self._refresh_armed = False
        if not self.local.topics:
            return
        self.counters.refreshes += 1
        self._write([(topic, [(entry.client_id, entry.encoded) for entry in entries.values()], [])
                     for topic, entries in self.local.topics.items()])
        self._refresh_armed = True
        self.set_timeout(self.ttl / REFRESHES_PER_TTL, self._refresh)

    def _write(self, writes: list[tuple[str, list[tuple[str, bytes]], list[str]]]) -> None:
        """One job on the broker's loop for these topics' writes (pipelined by the store)."""
        store, broker = self.store, self.broker
        assert store is not None and broker is not None
        for topic, _, removed in writes:
            if removed:
                self._removing.setdefault(topic, set()).update(removed)

        def done(result: Any) -> None:
            # Done either way: a deletion that failed is left to the ttl (this worker no longer
            # refreshes those entries), so nothing here grows while Redis is away.
            for topic, _, removed in writes:
                removing = self._removing.get(topic)
                if removing is not None:
                    removing.difference_update(removed)
                    if not removing:
                        del self._removing[topic]
            if isinstance(result, BaseException):
                now = time.monotonic()
                if now - self._last_warning > WARN_EVERY:
                    self._last_warning = now
                    logger.warning("presence write of %d topic(s) failed: %s", len(writes), result)
                return
            for topic, expired in result.items():
                if expired:
                    self._expired(topic, expired)

        broker.run(lambda: store.write_many(writes), done)

    def _expired(self, topic: str, expired: list[dict[str, Any]]) -> None:
        # Entries of a worker that stopped refreshing: this worker found them, it reports them.
        self.counters.expired_removed += len(expired)
        options = self.policy.options_for(topic)
        if options is not None and options.join_leave:
            for entry in expired:
                self._event(topic, "leave", {"clientId": entry.get("clientId"), "userId": entry.get("userId")})


def refusal_of(exc: BaseException) -> ProtocolError:
    """The ERROR a presence request is refused with.

    Args:
        exc: NoPresence, PresenceUnavailable, a ProtocolError, or anything else (INTERNAL).
    """
    if isinstance(exc, ProtocolError):
        return exc
    if isinstance(exc, (NoPresence, PresenceUnavailable)):
        return ProtocolError(exc.code, redact(str(exc)))
    if isinstance(exc, (ConnectionError, OSError)):
        return ProtocolError(PresenceUnavailable.code, redact(f"presence storage unavailable: {exc}"))
    logger.error("presence request failed: %r", exc)
    return ProtocolError(INTERNAL, "internal error")
