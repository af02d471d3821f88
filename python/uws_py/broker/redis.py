"""Redis pub/sub as the broker: one background thread with its own asyncio loop and
redis-py's asyncio client, bridged to the server's loop through ``defer``.

A message on channel ``uws:<topic>`` is framed ``<origin>|<payload>`` for a plain publish and
``<origin>:<epoch>:<offset>|<payload>`` for a history publication (framed by the Lua script of
``uws_py.realtime.history_redis``; :func:`parse_frame` is the one reader of both).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any, Awaitable, Callable, Optional

from . import Broker, Deliver, DeliverPositioned, OnConnection, Schedule

logger = logging.getLogger("uws_py.broker")

CHANNEL_PREFIX = "uws:"
# How long the publisher waits between reconnection attempts: doubles up to the cap.
BACKOFF_START = 0.2
BACKOFF_CAP = 5.0

# A job for RedisBroker.run: awaited on the broker's loop; its result (or exception) goes to done.
Job = Callable[[], Awaitable[Any]]
Done = Callable[[Any], None]


def parse_frame(data: bytes) -> tuple[bytes, Optional[tuple[str, int]], bytes]:
    """Splits a channel message into (origin, (epoch, offset) or None, payload).

    Args: data: the message as Redis delivered it.
    """
    head, _, payload = data.partition(b"|")
    origin, positioned, position = head.partition(b":")
    if not positioned:
        return origin, None, payload
    epoch, _, offset = position.partition(b":")
    return origin, (epoch.decode("ascii"), int(offset)), payload


class RedisBroker(Broker):
    """``RedisBroker("redis://host:port/db")`` (``rediss://`` for TLS).

    Every publish carries this process's id, so a process never delivers its own publish a
    second time. While Redis is unreachable, local delivery goes on; publishes made meanwhile
    are counted in ``publish_failures`` and logged (at most once per second), and the broker
    reconnects with backoff and subscribes again to every topic that has local subscribers.
    """

    # Whether this is the Redis Cluster variant (sharded channels; the history store follows).
    cluster = False

    def __init__(self, url: str, channel_prefix: str = CHANNEL_PREFIX) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            raise RuntimeError("the Redis broker needs redis-py: pip install 'uws-py[redis]'") from None
        self.url = url
        self.prefix = channel_prefix
        self.origin = uuid.uuid4().hex.encode()
        self._topics: set[str] = set()
        self._deliver: Optional[Deliver] = None
        self._deliver_positioned: Optional[DeliverPositioned] = None
        self._on_connection: Optional[OnConnection] = None
        self._jobs: Optional[asyncio.Queue[tuple[Job, Done]]] = None
        # Channels whose SUBSCRIBE Redis acknowledged on the current connection, callbacks
        # waiting for an acknowledgement, and the channels a reconnection still waits for.
        self._confirmed: set[bytes] = set()
        self._waiting: dict[bytes, list[Callable[[], None]]] = {}
        self._resubscribing: Optional[set[bytes]] = None
        # Guards _confirmed and _waiting: subscribe() registers on the server's thread (also
        # before the broker's loop runs), acknowledgements arrive on the broker's.
        self._subscription_lock = threading.Lock()
        self._schedule: Optional[Schedule] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._outbox: Optional[asyncio.Queue[tuple[str, bytes]]] = None
        self._inbox: list[tuple[str, bytes, Optional[tuple[str, int]]]] = []
        self._inbox_lock = threading.Lock()
        self._pubsub: Any = None
        self._stopping = False
        self._last_failure_log = 0.0
        self._counters = {"published": 0, "received": 0, "publish_failures": 0, "reconnects": 0, "connected": 0}
        self.ready = threading.Event()

    # -- server side (loop thread) ---------------------------------------------------------

    def start(self, deliver: Deliver, schedule: Schedule, *, deliver_positioned: Optional[DeliverPositioned] = None,
              on_connection: Optional[OnConnection] = None) -> None:
        """See :meth:`Broker.start`. ``on_connection(True)`` is called after every connection
        (the first one too) once Redis acknowledged the subscription of every topic, so a
        history read started from it misses nothing published afterwards."""
        self._deliver = deliver
        self._deliver_positioned = deliver_positioned
        self._on_connection = on_connection
        self._schedule = schedule
        self._thread = threading.Thread(target=self._run, name="uws-py-redis", daemon=True)
        self._thread.start()

    def subscribe(self, topic: str, ready: Optional[Callable[[], None]] = None) -> None:
        self._topics.add(topic)
        if ready is not None:
            channel = self.channel(topic).encode("utf-8", "surrogateescape")
            with self._subscription_lock:
                confirmed = channel in self._confirmed
                if not confirmed:
                    self._waiting.setdefault(channel, []).append(ready)
            if confirmed:
                self._notify(ready)
        self._call(self._apply_subscription, topic, True)

    def run(self, job: Job, done: Done) -> None:
        """Awaits ``job()`` on the broker's loop, one job at a time in the order given, and
        calls ``done(result)`` (the exception raised, if any) on the server's loop. History
        publishes go through here so that one process's publishes keep their order.

        Args: job: a coroutine function of no arguments; done: receives its result.
        Raises: RuntimeError before :meth:`start`.
        """
        schedule = self._schedule
        if schedule is None:
            raise RuntimeError("RedisBroker.run before start()")
        loop, jobs = self._loop, self._jobs
        if loop is None or jobs is None or self._stopping:
            failure = ConnectionError("the Redis broker thread is not running")
            schedule(lambda: done(failure))
            return
        loop.call_soon_threadsafe(jobs.put_nowait, (job, done))

    def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        self._call(self._apply_subscription, topic, False)

    def publish(self, topic: str, payload: bytes) -> None:
        loop, outbox = self._loop, self._outbox
        if loop is None or outbox is None:
            self._failed(1)
            return
        loop.call_soon_threadsafe(outbox.put_nowait, (topic, payload))

    def stop(self) -> None:
        self._stopping = True
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def stats(self) -> dict[str, int]:
        return dict(self._counters)

    def channel(self, topic: str) -> str:
        """The Redis channel of topic (``uws:<topic>``)."""
        return self.prefix + topic

    def topic_of(self, channel: bytes) -> str:
        """The topic of a channel :meth:`channel` made."""
        return channel.decode("utf-8", "surrogateescape")[len(self.prefix):]

    def _call(self, coroutine_function: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None:
            asyncio.run_coroutine_threadsafe(coroutine_function(*args), loop)

    def _failed(self, count: int) -> None:
        self._counters["publish_failures"] += count
        now = time.monotonic()
        if now - self._last_failure_log > 1.0:
            self._last_failure_log = now
            logger.warning("Redis unreachable: %d publish(es) not sent to other processes so far",
                           self._counters["publish_failures"])

    # -- broker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._outbox = asyncio.Queue()
        self._jobs = asyncio.Queue()
        loop.create_task(self._publisher())
        loop.create_task(self._job_runner())
        loop.create_task(self._subscriber())
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _connect(self) -> Any:
        import redis.asyncio as aioredis

        client = aioredis.from_url(self.url, socket_connect_timeout=2, socket_keepalive=True)
        await client.ping()
        return client

    async def _publisher(self) -> None:
        backoff = BACKOFF_START
        assert self._outbox is not None
        retry: Optional[tuple[str, bytes]] = None
        while not self._stopping:
            try:
                client = await self._connect()
            except Exception as exc:
                logger.debug("Redis connect failed: %s", exc)
                if retry is not None:
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
                        topic, payload = await self._outbox.get()
                    else:
                        (topic, payload), retry = retry, None
                    try:
                        await client.publish(self.channel(topic), self.origin + b"|" + payload)
                    except Exception:
                        # A connection that died while idle is only found out by using it:
                        # the message gets one more try on a fresh connection.
                        retry = (topic, payload)
                        raise
                    self._counters["published"] += 1
            except Exception as exc:
                logger.debug("Redis publish failed: %s", exc)
                try:
                    await client.aclose()
                except Exception:
                    pass

    def _drain_outbox_as_failed(self) -> None:
        assert self._outbox is not None
        dropped = 0
        while not self._outbox.empty():
            self._outbox.get_nowait()
            dropped += 1
        if dropped:
            self._failed(dropped)

    async def _job_runner(self) -> None:
        assert self._jobs is not None and self._schedule is not None
        schedule = self._schedule
        while True:
            job, done = await self._jobs.get()
            try:
                result: Any = await job()
            except Exception as exc:
                result = exc
            schedule(lambda done=done, result=result: done(result))

    def _notify(self, callback: Optional[Callable[..., None]], *args: Any) -> None:
        if callback is not None and self._schedule is not None:
            self._schedule(lambda: callback(*args))

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
                self._counters["connected"] = 0
                with self._subscription_lock:
                    self._confirmed.clear()
                self._resubscribing = None
                if not self._stopping:
                    self._notify(self._on_connection, False)
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:
                    pass

    def _subscription_confirmed(self, channel: bytes) -> None:
        with self._subscription_lock:
            self._confirmed.add(channel)
            waiting = self._waiting.pop(channel, ())
        for ready in waiting:
            self._notify(ready)
        pending = self._resubscribing
        if pending is not None:
            pending.discard(channel)
            if not pending:
                self._resubscribing = None
                self._notify(self._on_connection, True)

    def _received(self, channel: bytes, data: bytes) -> None:
        origin, position, payload = parse_frame(data)
        if origin == self.origin and position is None:
            # Our own plain publish: local subscribers already have it. A history publication
            # is delivered here even to its own process, so local order is offset order too.
            return
        topic = self.topic_of(channel)
        self._counters["received"] += 1
        with self._inbox_lock:
            self._inbox.append((topic, payload, position))
            first = len(self._inbox) == 1
        if first and self._schedule is not None:
            # One defer per burst: the loop thread takes everything received so far.
            self._schedule(self._flush_inbox)

    def _flush_inbox(self) -> None:
        with self._inbox_lock:
            batch, self._inbox = self._inbox, []
        deliver, deliver_positioned = self._deliver, self._deliver_positioned
        if deliver is None:
            return
        for topic, payload, position in batch:
            if position is not None and deliver_positioned is not None:
                deliver_positioned(topic, payload, position[0], position[1])
            else:
                deliver(topic, payload)
