"""What every broker client shares: a background thread with its own asyncio loop, bridged to
the server's loop through ``schedule`` (its ``defer``); publishes queued to that loop; the
receiving side's bookkeeping (which channels the broker confirmed, who waits for which
confirmation, the reconnection that still waits for some) and the counters.

A subclass says how a topic is named on the wire (:meth:`ThreadedBroker.channel`,
:meth:`ThreadedBroker.topic_of`) and supplies the coroutines the loop runs
(:meth:`ThreadedBroker._tasks`, :meth:`ThreadedBroker._apply_subscription`); it calls
:meth:`_received` for every message and :meth:`_subscription_confirmed` for every confirmed
subscription.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import uuid
from typing import Any, Callable, Coroutine, Optional

from . import Broker, Deliver, DeliverPositioned, OnConnection, Schedule
from .redact import redacting_logger

logger = redacting_logger("uws_py.broker")


def parse_frame(data: bytes) -> tuple[bytes, Optional[tuple[str, int]], bytes]:
    """Splits a channel message into (origin, (epoch, offset) or None, payload): ``<origin>|<payload>``
    for a plain publish, ``<origin>:<epoch>:<offset>|<payload>`` for a history publication.

    Args:
        data: the message as the broker delivered it.
    """
    head, _, payload = data.partition(b"|")
    origin, positioned, position = head.partition(b":")
    if not positioned:
        return origin, None, payload
    epoch, _, offset = position.partition(b":")
    return origin, (epoch.decode("ascii"), int(offset)), payload


class ThreadedBroker(Broker):
    """The shared half of a broker client (see the module docstring).

    Every publish carries this process's id (``origin``), so a process never delivers its own
    plain publish a second time. While the broker is unreachable, local delivery goes on;
    publishes made meanwhile are counted in ``publish_failures`` and logged (at most once per
    second).
    """

    # The name in log lines and the thread's name.
    system = "broker"

    def __init__(self, url: str) -> None:
        self.url = url
        self.origin = uuid.uuid4().hex.encode()
        self._topics: set[str] = set()
        self._deliver: Optional[Deliver] = None
        self._deliver_positioned: Optional[DeliverPositioned] = None
        self._deliver_traced: Optional[Callable[[str, bytes, bytes], None]] = None
        self._on_connection: Optional[OnConnection] = None
        # Channels the broker confirmed on the current connection, callbacks waiting for a
        # confirmation, and the channels a reconnection still waits for.
        self._confirmed: set[bytes] = set()
        self._waiting: dict[bytes, list[Callable[[], None]]] = {}
        self._resubscribing: Optional[set[bytes]] = None
        # Guards _confirmed and _waiting: subscribe() registers on the server's thread (also
        # before the broker's loop runs), confirmations arrive on the broker's.
        self._subscription_lock = threading.Lock()
        self._schedule: Optional[Schedule] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        # (topic, payload, done, traceparent): done(bool) once the broker took it or not.
        self._outbox: Optional[asyncio.Queue[tuple[str, bytes, Optional[Callable[[bool], None]], bytes]]] = None
        self._inbox: list[tuple[str, bytes, Optional[tuple[str, int]], bytes]] = []
        self._inbox_lock = threading.Lock()
        self._lifetime_tasks: list[asyncio.Task[None]] = []
        # The futures of _call's coroutines, held until they end (see _call).
        self._calls: set[concurrent.futures.Future[Any]] = set()
        self._calls_lock = threading.Lock()
        self._stopping = False
        self._last_failure_log = 0.0
        self._counters = {"published": 0, "received": 0, "publish_failures": 0, "reconnects": 0, "connected": 0}
        self.ready = threading.Event()

    # -- naming (subclasses) ------------------------------------------------------------------

    def channel(self, topic: str) -> str:
        """The broker's name for topic."""
        raise NotImplementedError

    def topic_of(self, channel: bytes) -> str:
        """The topic of a name :meth:`channel` made."""
        raise NotImplementedError

    # -- server side (loop thread) ---------------------------------------------------------

    # Plain publishes can carry a W3C traceparent (uws_py.monitoring.tracing).
    supports_trace_context = True

    def start(self, deliver: Deliver, schedule: Schedule, *, deliver_positioned: Optional[DeliverPositioned] = None,
              on_connection: Optional[OnConnection] = None,
              deliver_traced: Optional[Callable[[str, bytes, bytes], None]] = None) -> None:
        """See :meth:`Broker.start`. ``on_connection(True)`` is called after every connection
        (the first one too) once the broker confirmed the subscription of every topic, so a
        history read started from it misses nothing published afterwards.
        ``deliver_traced(topic, payload, traceparent)`` gets the plain publishes that carry a
        trace context (the others go to ``deliver``)."""
        self._deliver = deliver
        self._deliver_traced = deliver_traced
        self._deliver_positioned = deliver_positioned
        self._on_connection = on_connection
        self._schedule = schedule
        self._thread = threading.Thread(target=self._run, name=f"uws-py-{self.system.lower()}", daemon=True)
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

    def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        self._call(self._apply_subscription, topic, False)

    def publish(self, topic: str, payload: bytes, done: Optional[Callable[[bool], None]] = None,
                trace: bytes = b"") -> None:
        """See :meth:`Broker.publish`; ``trace``: a W3C traceparent to carry, or empty."""
        loop, outbox = self._loop, self._outbox
        if loop is None or outbox is None:
            self._failed(1)
            self._notify(done, False)
            return
        loop.call_soon_threadsafe(outbox.put_nowait, (topic, payload, done, trace))

    def frame_head(self, trace: bytes) -> bytes:
        """What precedes ``|`` in a plain publish's frame: the origin, and the traceparent."""
        return self.origin + b";" + trace if trace else self.origin

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
        """Runs ``coroutine_function(*args)`` on the broker's loop (from any thread).

        The loop holds its tasks only weakly, and the task of run_coroutine_threadsafe is
        reachable from its future: the future is held here until it is done, so a garbage
        collection cannot destroy the coroutine mid-await. An exception it ends with is logged.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not started, or stopped: (re)subscriptions are made from _topics on start
        coroutine = coroutine_function(*args)
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:  # the loop closed after the check above
            coroutine.close()
            return
        with self._calls_lock:
            self._calls.add(future)
        future.add_done_callback(self._call_done)

    def _call_done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._calls_lock:
            self._calls.discard(future)
        if future.cancelled():
            return  # cancelled when the loop stops
        error = future.exception()
        if error is not None:
            logger.error("%s: a broker call failed", self.system, exc_info=error)

    def _failed(self, count: int) -> None:
        self._counters["publish_failures"] += count
        now = time.monotonic()
        if now - self._last_failure_log > 1.0:
            self._last_failure_log = now
            logger.warning("%s unreachable: %d publish(es) not sent to other processes so far",
                           self.system, self._counters["publish_failures"])

    # -- broker thread ---------------------------------------------------------------------

    def _tasks(self) -> list[Coroutine[Any, Any, None]]:
        """The coroutines the broker's loop runs for the broker's lifetime (subclasses)."""
        raise NotImplementedError

    async def _apply_subscription(self, topic: str, subscribe: bool) -> None:
        """Follows a subscribe/unsubscribe on the live connection, if any (subclasses)."""
        raise NotImplementedError

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._outbox = asyncio.Queue()
        # The loop holds its tasks only weakly: a task whose awaited future is reachable only
        # from the task's own frame is garbage-collected mid-await. The Redis publisher was,
        # waiting for a reply on a blocking-pool connection, and no publish was sent after it.
        self._lifetime_tasks = [loop.create_task(coroutine) for coroutine in self._tasks()]
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    def _drain_outbox_as_failed(self) -> None:
        assert self._outbox is not None
        dropped = 0
        while not self._outbox.empty():
            self._notify(self._outbox.get_nowait()[2], False)
            dropped += 1
        if dropped:
            self._failed(dropped)

    def _notify(self, callback: Optional[Callable[..., None]], *args: Any) -> None:
        if callback is not None and self._schedule is not None:
            self._schedule(lambda: callback(*args))

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

    def _connection_lost(self) -> None:
        """The receiving side is down: nothing is confirmed any more; the server is told."""
        self._counters["connected"] = 0
        with self._subscription_lock:
            self._confirmed.clear()
        self._resubscribing = None
        if not self._stopping:
            self._notify(self._on_connection, False)

    def _received(self, channel: bytes, data: bytes) -> None:
        origin, position, payload = parse_frame(data)
        origin, _, trace = origin.partition(b";")
        if origin == self.origin and position is None:
            # Our own plain publish: local subscribers already have it. A history publication
            # is delivered here even to its own process, so local order is offset order too.
            return
        topic = self.topic_of(channel)
        self._counters["received"] += 1
        with self._inbox_lock:
            self._inbox.append((topic, payload, position, trace))
            first = len(self._inbox) == 1
        if first and self._schedule is not None:
            # One defer per burst: the loop thread takes everything received so far.
            self._schedule(self._flush_inbox)

    def _flush_inbox(self) -> None:
        with self._inbox_lock:
            batch, self._inbox = self._inbox, []
        deliver, deliver_positioned, deliver_traced = self._deliver, self._deliver_positioned, self._deliver_traced
        if deliver is None:
            return
        for topic, payload, position, trace in batch:
            if position is not None and deliver_positioned is not None:
                deliver_positioned(topic, payload, position[0], position[1])
            elif trace and deliver_traced is not None:
                deliver_traced(topic, payload, trace)
            else:
                deliver(topic, payload)
