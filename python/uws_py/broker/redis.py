"""Redis pub/sub as the broker: redis-py's asyncio client on the broker thread
(:class:`uws_py.broker.threaded.ThreadedBroker`).

A message on channel ``uws:<topic>`` is framed ``<origin>|<payload>`` for a plain publish
(``<origin>;<traceparent>|<payload>`` when tracing carries the publisher's span context) and
``<origin>:<epoch>:<offset>|<payload>`` for a history publication (framed by the Lua script of
``uws_py.realtime.history_redis``; :func:`parse_frame` is the one reader of both).
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any, Awaitable, Callable, Coroutine, Optional

from .redact import redacting_logger
from .redis_once import certainly_not_sent, no_retries
from .redis_pool import bounded_client
from .threaded import ThreadedBroker, parse_frame

__all__ = ["RedisBroker", "parse_frame", "CHANNEL_PREFIX"]

logger = redacting_logger("uws_py.broker")

CHANNEL_PREFIX = "uws:"
# How long the publisher waits between reconnection attempts: doubles up to the cap.
BACKOFF_START = 0.2
BACKOFF_CAP = 5.0
# Seconds to connect, and to wait for the client's one connection when it is busy.
CONNECT_TIMEOUT = 2.0
# Connections each of the broker's two clients opens at most. The publisher sends one message
# at a time and the subscriber's pub/sub holds its connection for as long as it lives, so each
# needs one; a concurrent caller would wait for it (up to CONNECT_TIMEOUT) instead of opening
# another and keeping it open afterwards, as redis-py's default pool does.
CLIENT_CONNECTIONS = 1
# Seconds the publisher waits for Redis to answer one PUBLISH (RedisBroker's publish_timeout).
PUBLISH_TIMEOUT = 5.0

# A job for RedisBroker.run: awaited on the broker's loop; its result (or exception) goes to done.
Job = Callable[[], Awaitable[Any]]
Done = Callable[[Any], None]


class RedisBroker(ThreadedBroker):
    """``RedisBroker("redis://host:port/db")`` (``rediss://`` for TLS).

    Every publish carries this process's id, so a process never delivers its own publish a
    second time. While Redis is unreachable, local delivery goes on; publishes made meanwhile
    are counted in ``publish_failures`` and logged (at most once per second), and the broker
    reconnects with backoff and subscribes again to every topic that has local subscribers.

    A PUBLISH is sent to Redis once (``uws_py.broker.redis_once``). One that Redis does not
    answer within ``publish_timeout`` seconds (a frozen or overloaded Redis), or whose
    connection is lost after it was written, ends the connection as a lost one: the publisher
    reconnects and the publishes queued behind it go out on the new connection, in their
    order. That one is reported failed (``done(False)``, counted in ``publish_failures``) and
    not sent again, since Redis may have run it or still run it when it resumes: it is
    delivered at most once. Only a PUBLISH that certainly never left (no connection could be
    opened) goes again, first on the next connection. An idle connection Redis closed (a
    restart) is replaced before anything is written on it, so it costs no publish.

    Args:
        url: ``redis://host:port/db`` or ``rediss://...``.
        channel_prefix: what precedes a topic in its channel's name.
        publish_timeout: seconds to wait for Redis to answer one PUBLISH (a positive number).
    """

    system = "Redis"
    # Whether this is the Redis Cluster variant (sharded channels; the history store follows).
    cluster = False

    def __init__(self, url: str, channel_prefix: str = CHANNEL_PREFIX, *,
                 publish_timeout: float = PUBLISH_TIMEOUT) -> None:
        if isinstance(publish_timeout, bool) or not isinstance(publish_timeout, (int, float)) or not publish_timeout > 0:
            raise ValueError(f"publish_timeout must be a positive number of seconds, not {publish_timeout!r}")
        try:
            importlib.import_module("redis.asyncio")
        except ImportError:
            raise RuntimeError("the Redis broker needs redis-py: pip install 'uws-py[redis]'") from None
        super().__init__(url)
        self.prefix = channel_prefix
        self.publish_timeout = float(publish_timeout)
        self._jobs: Optional[asyncio.Queue[tuple[Job, Done]]] = None
        self._unordered: set[asyncio.Task[None]] = set()
        self._pubsub: Any = None

    def channel(self, topic: str) -> str:
        """The Redis channel of topic (``uws:<topic>``)."""
        return self.prefix + topic

    def topic_of(self, channel: bytes) -> str:
        return channel.decode("utf-8", "surrogateescape")[len(self.prefix):]

    def run(self, job: Job, done: Done, ordered: bool = True) -> None:
        """Awaits ``job()`` on the broker's loop and calls ``done(result)`` (the exception
        raised, if any) on the server's loop.

        Ordered jobs run one at a time in the order given: history publishes go through here
        so that one process's publishes keep their order. An unordered job (a history read,
        atomic by itself) starts at once beside them, so it never waits behind a backlog of
        publishes.

        Args:
            job: a coroutine function of no arguments
            done: receives its result
            ordered: queue it behind the other ordered jobs.

        Raises:
            RuntimeError: before :meth:`start`.
        """
        schedule = self._schedule
        if schedule is None:
            raise RuntimeError("RedisBroker.run before start()")
        loop, jobs = self._loop, self._jobs
        if loop is None or jobs is None or self._stopping:
            failure = ConnectionError("the Redis broker thread is not running")
            schedule(lambda: done(failure))
            return
        if ordered:
            loop.call_soon_threadsafe(jobs.put_nowait, (job, done))
        else:
            loop.call_soon_threadsafe(self._start_job, job, done)

    # -- broker thread ---------------------------------------------------------------------

    def _tasks(self) -> list[Coroutine[Any, Any, None]]:
        self._jobs = asyncio.Queue()
        return [self._publisher(), self._job_runner(), self._subscriber()]

    async def _connect(self) -> Any:
        # No limit per reply (socket_timeout=None): the pub/sub connection waits for messages
        # with get_message's own timeout, and the publisher puts its own on each PUBLISH. The
        # first PING has CONNECT_TIMEOUT: a frozen Redis accepts the connection (its kernel
        # does) but never answers. No retry inside redis-py (no_retries): the publisher decides
        # what is sent again, and the subscriber reconnects itself.
        client = bounded_client(self.url, max_connections=CLIENT_CONNECTIONS, timeout=CONNECT_TIMEOUT,
                                retry=no_retries(), socket_timeout=None, socket_keepalive=True)
        try:
            await asyncio.wait_for(client.ping(), CONNECT_TIMEOUT)
        except BaseException:
            await client.aclose()
            raise
        return client

    async def _publisher(self) -> None:
        backoff = BACKOFF_START
        assert self._outbox is not None
        retry: Optional[tuple[str, bytes, Optional[Callable[[bool], None]], bytes]] = None
        while not self._stopping:
            try:
                client = await self._connect()
            except Exception as exc:
                logger.debug("Redis connect failed: %s", exc)
                if retry is not None:
                    self._notify(retry[2], False)
                    retry = None
                    self._failed(1)
                self._drain_outbox_as_failed()
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_CAP, backoff * 2)
                continue
            backoff = BACKOFF_START
            try:
                while True:
                    if retry is None:
                        topic, payload, done, trace = await self._outbox.get()
                    else:
                        (topic, payload, done, trace), retry = retry, None
                    try:
                        await asyncio.wait_for(
                            client.publish(self.channel(topic), self.frame_head(trace) + b"|" + payload),
                            self.publish_timeout)
                    except Exception as exc:
                        if certainly_not_sent(exc):
                            # Nothing of it left (no connection could be opened): it goes
                            # first on the next connection, ahead of the ones behind it.
                            retry = (topic, payload, done, trace)
                            raise
                        # Written, or maybe: Redis may have run it (its answer lost with the
                        # connection) or may still run it (frozen), so it is not sent again
                        # (at most once); the connection is treated as lost.
                        self._failed(1)
                        self._notify(done, False)
                        if isinstance(exc, TimeoutError):
                            logger.warning("Redis did not answer a PUBLISH within %.1f s (it may still be delivered); "
                                           "reconnecting", self.publish_timeout)
                        else:
                            logger.warning("lost the Redis connection during a PUBLISH (%r); not sent again, it may "
                                           "have been delivered; reconnecting", exc)
                        raise
                    self._counters["published"] += 1
                    self._notify(done, True)
            except Exception as exc:
                logger.debug("Redis publish failed: %s", exc)
                try:
                    await client.aclose()
                except Exception:
                    pass

    async def _job_runner(self) -> None:
        assert self._jobs is not None
        while True:
            job, done = await self._jobs.get()
            await self._run_job(job, done)

    def _start_job(self, job: Job, done: Done) -> None:
        task = asyncio.get_running_loop().create_task(self._run_job(job, done))
        # The loop keeps only weak references to tasks: hold it until it is done.
        self._unordered.add(task)
        task.add_done_callback(self._unordered.discard)

    async def _run_job(self, job: Job, done: Done) -> None:
        assert self._schedule is not None
        try:
            result: Any = await job()
        except Exception as exc:
            result = exc
        self._schedule(lambda: done(result))

    async def _apply_subscription(self, topic: str, subscribe: bool) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return  # applied from self._topics on (re)connection
        try:
            if subscribe and topic in self._topics:
                await pubsub.subscribe(self.channel(topic))
            elif not subscribe and topic not in self._topics:
                await pubsub.unsubscribe(self.channel(topic))
        except Exception as exc:
            logger.debug("Redis (un)subscribe failed: %s", exc)

    async def _subscriber(self) -> None:
        backoff = BACKOFF_START
        first = True
        while not self._stopping:
            try:
                client = await self._connect()
                # Subscribe acknowledgements are kept: they say when a subscription is live.
                pubsub = client.pubsub(ignore_subscribe_messages=False)
                topics = list(self._topics)
                if topics:
                    await pubsub.subscribe(*(self.channel(t) for t in topics))
                else:
                    # redis-py needs one subscription before listening; this one never carries data.
                    await pubsub.subscribe(self.prefix + "\x00idle")
            except Exception as exc:
                self._counters["connected"] = 0
                logger.debug("Redis subscriber connect failed: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_CAP, backoff * 2)
                continue
            if not first:
                self._counters["reconnects"] += 1
                logger.info("reconnected to Redis; resubscribed to %d topic(s)", len(topics))
            first = False
            backoff = BACKOFF_START
            self._pubsub = pubsub
            self._counters["connected"] = 1
            self._resubscribing = {self.channel(t).encode("utf-8", "surrogateescape") for t in topics}
            if not self._resubscribing:
                self._resubscribing = None
                self._notify(self._on_connection, True)
            self.ready.set()
            # Topics that changed while we were connecting.
            for topic in set(self._topics) - set(topics):
                await pubsub.subscribe(self.channel(topic))
            try:
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    kind = message.get("type")
                    if kind == "message":
                        self._received(message["channel"], message["data"])
                    elif kind == "subscribe":
                        self._subscription_confirmed(message["channel"])
            except Exception as exc:
                logger.warning("lost the Redis connection: %s; reconnecting", exc)
            finally:
                self._pubsub = None
                self._connection_lost()
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:
                    pass
