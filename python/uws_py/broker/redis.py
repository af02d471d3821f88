"""Redis pub/sub as the broker: one background thread with its own asyncio loop and
redis-py's asyncio client, bridged to the server's loop through ``defer``."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any, Optional

from . import Broker, Deliver, Schedule

logger = logging.getLogger("uws_py.broker")

CHANNEL_PREFIX = "uws:"
# How long the publisher waits between reconnection attempts: doubles up to the cap.
BACKOFF_START = 0.2
BACKOFF_CAP = 5.0


class RedisBroker(Broker):
    """``RedisBroker("redis://host:port/db")`` (``rediss://`` for TLS).

    Every publish carries this process's id, so a process never delivers its own publish a
    second time. While Redis is unreachable, local delivery goes on; publishes made meanwhile
    are counted in ``publish_failures`` and logged (at most once per second), and the broker
    reconnects with backoff and subscribes again to every topic that has local subscribers.
    """

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
        self._schedule: Optional[Schedule] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._outbox: Optional[asyncio.Queue[tuple[str, bytes]]] = None
        self._inbox: list[tuple[str, bytes]] = []
        self._inbox_lock = threading.Lock()
        self._pubsub: Any = None
        self._stopping = False
        self._last_failure_log = 0.0
        self._counters = {"published": 0, "received": 0, "publish_failures": 0, "reconnects": 0, "connected": 0}
        self.ready = threading.Event()

    # -- server side (loop thread) ---------------------------------------------------------

    def start(self, deliver: Deliver, schedule: Schedule) -> None:
        self._deliver = deliver
        self._schedule = schedule
        self._thread = threading.Thread(target=self._run, name="uws-py-redis", daemon=True)
        self._thread.start()

    def subscribe(self, topic: str) -> None:
        self._topics.add(topic)
        self._call(self._apply_subscription, topic, True)

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
        loop.create_task(self._publisher())
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
                        await client.publish(self.prefix + topic, self.origin + b"|" + payload)
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

    async def _apply_subscription(self, topic: str, subscribe: bool) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return  # applied from self._topics on (re)connection
        try:
            if subscribe and topic in self._topics:
                await pubsub.subscribe(self.prefix + topic)
            elif not subscribe and topic not in self._topics:
                await pubsub.unsubscribe(self.prefix + topic)
        except Exception as exc:
            logger.debug("Redis (un)subscribe failed: %s", exc)

    async def _subscriber(self) -> None:
        backoff = BACKOFF_START
        first = True
        while not self._stopping:
            try:
                client = await self._connect()
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                topics = list(self._topics)
                if topics:
                    await pubsub.subscribe(*(self.prefix + t for t in topics))
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
            self.ready.set()
            # Topics that changed while we were connecting.
            for topic in set(self._topics) - set(topics):
                await pubsub.subscribe(self.prefix + topic)
            try:
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    self._received(message["channel"], message["data"])
            except Exception as exc:
                logger.warning("lost the Redis connection: %s; reconnecting", exc)
            finally:
                self._pubsub = None
                self._counters["connected"] = 0
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:
                    pass

    def _received(self, channel: bytes, data: bytes) -> None:
        origin, _, payload = data.partition(b"|")
        if origin == self.origin:
            return  # our own publish: local subscribers already have it
        topic = channel.decode("utf-8", "surrogateescape")[len(self.prefix):]
        self._counters["received"] += 1
        with self._inbox_lock:
            self._inbox.append((topic, payload))
            first = len(self._inbox) == 1
        if first and self._schedule is not None:
            # One defer per burst: the loop thread takes everything received so far.
            self._schedule(self._flush_inbox)

    def _flush_inbox(self) -> None:
        with self._inbox_lock:
            batch, self._inbox = self._inbox, []
        deliver = self._deliver
        if deliver is None:
            return
        for topic, payload in batch:
            deliver(topic, payload)
