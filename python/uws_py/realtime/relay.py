"""History topics across processes: publishes, recoveries and HISTORY through the Redis store
(on the broker's loop, via ``broker.run``), and delivery of history publications as the broker
hands them over (``deliver_positioned``), in offset order, with continuity checked.

Every method runs on the server's loop thread; the store's coroutines run on the broker's.

How a recovering SUBSCRIBE gets no gap and no duplicate: the client is not subscribed in the
core until its read is done. First the broker subscribes to the topic and confirms it (from
then on every publication is received); then the history is read (position and publications
in one atomic step); publications received meanwhile are buffered for that client. When the
read is done the client is subscribed in the core, gets SUBSCRIBED (position = the top read),
then the buffered publications above that top; later ones reach it through the core. When
other local subscribers are still behind that top (their deliveries are in flight), the new
one joins the core's fan-out only once delivery reached its top, so it gets nothing twice.

How a missed broker delivery is made good: an offset jump (the broker's PUBLISH of some
publications never arrived) is filled from the history before the later publication is
delivered, in offset order and without duplicates, and only when that is impossible (more
missing than the recover limit, the history trimmed or lost, Redis unreachable) are the
subscribers told ``insufficient_state``. After a lost broker connection, every topic it lost
(all of them, or with a Redis Cluster those of the failed shard) is caught up the same way,
from its last delivered offset to the top, once the broker is back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from ..broker.redact import redacting_logger
from .history import (
    Continuity, DeliveryTracker, HistoryError, HistoryUnavailable, Position, Recovery, message_parts, sender_of,
)
from .protocol import INTERNAL, TEXT, ProtocolError, error

if TYPE_CHECKING:
    from ..broker.redis import RedisBroker
    from ..metrics import Metrics
    from .history_redis import RedisHistory
    from .session import Client

logger = redacting_logger("uws_py.realtime")

# The push telling a subscriber the server lost continuity of a topic (spec-history.md).
INSUFFICIENT_STATE = "insufficient_state"
# The most publications sent to Redis in one pipeline.
PUBLISH_BATCH = 500
# Deliveries held while a gap is being filled; past it the fill gives up (insufficient_state).
FILL_HOLD_LIMIT = 10_000


class _Pending:
    """A SUBSCRIBE waiting for its read: what arrived live meanwhile, and whether continuity
    broke before the read was done."""

    __slots__ = ("client", "buffered", "broken", "top")

    def __init__(self, client: "Client") -> None:
        self.client = client
        self.buffered: list[tuple[int, bytes]] = []
        self.broken = False
        # Set once SUBSCRIBED was sent while delivery was still behind this offset.
        self.top: Optional[int] = None


class _Fill:
    """A gap being filled from the history: what the broker delivered meanwhile, held back."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: list[tuple[bytes, str, int]] = []


class HistoryRelay:
    """History topics of one worker with a Redis broker.

    Args:
        broker: the process's RedisBroker (``run``, ``subscribe(topic, ready=)``).
        store: the RedisHistory beside it.
        tracker: the last position delivered per topic.
        publish_local: the core's ``publish(topic, payload, opcode)``.
        metrics: counts ERROR replies.
        recover_limit: the most publications one recovery returns.
    """

    def __init__(self, broker: "RedisBroker", store: "RedisHistory", tracker: DeliveryTracker,
                 publish_local: Callable[[str, bytes, int], bool], metrics: "Metrics", recover_limit: int) -> None:
        self.broker = broker
        self.store = store
        self.tracker = tracker
        self.publish_local = publish_local
        # Publishes sent to the store and not answered yet; a closing server waits for them
        # (their PUBLISHED would be lost with the connection while the store may keep them).
        self.in_flight = 0
        self.closing = False
        self.metrics = metrics
        self.recover_limit = recover_limit
        self.pending: dict[str, list[_Pending]] = {}
        # Publishes waiting for the batch in flight (one at a time, see _send_publishes).
        self._outgoing: list[tuple[str, bytes, bytes, Callable[[Any], None]]] = []
        self._publishing = False
        # Clients subscribed in the core to each history topic, told when continuity breaks.
        self.members: dict[str, dict[str, "Client"]] = {}
        # Topics whose offset jump is being filled from the history (see _fill).
        self.fills: dict[str, _Fill] = {}
        # What the broker reported lost since it was last connected (see connection): every
        # topic, or the topics of the shards whose connection was lost (a Redis Cluster).
        self._lost_all = True
        self._lost_topics: set[str] = set()

    # -- replies ----------------------------------------------------------------------------

    def _refuse(self, client: "Client", request_id: Any, result: BaseException) -> None:
        if isinstance(result, HistoryError):
            exc = ProtocolError(result.code, str(result), **(
                result.position.to_wire() if hasattr(result, "position") else {}))
        elif isinstance(result, (ConnectionError, OSError)):
            exc = ProtocolError(HistoryUnavailable.code, f"history storage unavailable: {result}")
        else:
            logger.error("history request failed: %r", result)
            exc = ProtocolError(INTERNAL, "internal error")
        self.metrics.error(exc.code)
        client.send(error(exc.code, exc.message, request_id, **exc.extra))

    # -- PUBLISH ----------------------------------------------------------------------------

    def publish(self, client: Optional["Client"], topic: str, data: Any, echo: bool, request_id: Any,
                reply: bool, confirm: Optional[Callable[[bool], None]] = None) -> None:
        """Publishes through the store; every process (this one too) delivers it when the
        broker hands it over. PUBLISHED (with the position) or ERROR UNAVAILABLE follows.

        Args:
            client: the publisher, None for the server.
            topic: an already checked history topic.
            data: the MESSAGE's ``data``.
            echo: also send the MESSAGE to the publisher (the broker's delivery skips it, as the
                core's fan-out does without a broker).
            request_id: the request's id.
            reply: send PUBLISHED (the request had an id).
            confirm: called with whether the publication was stored.
        """
        if self.closing:
            # Refused before it reaches the store: the client knows it did not happen and
            # publishes again on its next connection.
            failure = HistoryUnavailable("the server is shutting down")
            if client is not None:
                self._refuse(client, request_id, failure)
            if confirm is not None:
                confirm(False)
            return
        head, tail = message_parts(topic, data, client.id if client is not None else None)

        def done(result: Any) -> None:
            self.in_flight -= 1
            if confirm is not None:
                confirm(not isinstance(result, BaseException))
            if isinstance(result, BaseException):
                if client is None:
                    logger.warning("server publish to %r failed: %s", topic, result)
                else:
                    self._refuse(client, request_id, result)
                return
            position, publication = result
            if client is None:
                return
            if echo:
                client.send({"type": "MESSAGE", "topic": topic, "data": data, "from": client.id,
                             "offset": publication.offset})
            if reply:
                client.send({"type": "PUBLISHED", "topic": topic, "id": request_id,
                             "offset": position.offset, "epoch": position.epoch})

        self.in_flight += 1
        self._outgoing.append((topic, head, tail, done))
        if not self._publishing:
            self._send_publishes()

    def _send_publishes(self) -> None:
        """Sends what waits in one pipeline; what arrives meanwhile waits for the next one.
        One batch at a time keeps this process's publishes in order, and batching lets a
        worker publish far more than one Redis round trip per publication would allow."""
        batch, self._outgoing = self._outgoing[:PUBLISH_BATCH], self._outgoing[PUBLISH_BATCH:]
        self._publishing = True
        store, items = self.store, [(topic, head, tail) for topic, head, tail, _ in batch]

        def finished(results: Any) -> None:
            self._publishing = False
            if isinstance(results, BaseException):
                results = [results] * len(batch)
            for (_, _, _, done), result in zip(batch, results):
                done(result)
            if self._outgoing:
                self._send_publishes()

        try:
            self.broker.run(lambda: store.publish_many(items), finished)
        except BaseException:
            self._publishing = False
            raise

    def drain(self) -> int:
        """Starts closing: publishes from now on are refused (UNAVAILABLE); returns how many
        are still waiting for the store (the caller waits until that is 0)."""
        self.closing = True
        return self.in_flight

    # -- SUBSCRIBE ----------------------------------------------------------------------------

    def subscribe(self, client: "Client", topic: str, since: Optional[Position], request_id: Any) -> None:
        """Subscribes once the broker confirmed the topic and the history was read; SUBSCRIBED
        (with the recovery, when ``since``) or ERROR UNAVAILABLE follows.

        Args:
            client: the subscriber (its topic already checked).
            topic: a history topic.
            since: the position to recover from, None when not recovering.
            request_id: the request's id.
        """
        pending = _Pending(client)
        self.pending.setdefault(topic, []).append(pending)
        store, limit = self.store, self.recover_limit

        def read() -> Any:
            return store.recover(topic, since, limit) if since is not None else store.position(topic)

        def done(result: Any) -> None:
            waiting = self.pending.get(topic, [])
            if pending in waiting:
                waiting.remove(pending)
            if not waiting:
                self.pending.pop(topic, None)
            if client.closed or client.ws is None:
                self._release(topic)
                return
            if isinstance(result, BaseException):
                self._release(topic)
                self._refuse(client, request_id, result)
                return
            if isinstance(result, Recovery):
                position = result.position
                reply = {"type": "SUBSCRIBED", "topic": topic, **position.to_wire(), "wasRecovering": True,
                         "recovered": result.recovered,
                         "publications": [p.to_wire() for p in result.publications]}
            else:
                position = result
                reply = {"type": "SUBSCRIBED", "topic": topic, **position.to_wire(), "wasRecovering": False,
                         "recovered": False}
            if request_id is not None:
                reply["id"] = request_id
            client.send(reply)
            for offset, payload in pending.buffered:
                if offset > position.offset and sender_of(payload) != client.id:
                    client.ws.send(payload, TEXT, client.context.compress)
            pending.buffered = []
            last = self.tracker.last(topic)
            if self.members.get(topic) and last is not None and last.epoch == position.epoch \
                    and last.offset < position.offset and not pending.broken:
                pending.top = position.offset  # joins the fan-out when delivery reaches it
                self.pending.setdefault(topic, []).append(pending)
                return
            if not self.members.get(topic) and (last is None or last.epoch != position.epoch
                                                or last.offset < position.offset):
                self.tracker.track(topic, position)
            self._activate(topic, pending)

        self.broker.subscribe(topic, ready=lambda: self.broker.run(read, done, ordered=False))

    def _activate(self, topic: str, pending: _Pending) -> None:
        """The subscriber joins the core's fan-out (or, continuity lost meanwhile, is told)."""
        client = pending.client
        if client.closed or client.ws is None:
            self._release(topic)
            return
        client.ws.subscribe(topic)
        self.members.setdefault(topic, {})[client.id] = client
        if pending.broken:
            self._drop(topic, [client])

    def _release(self, topic: str) -> None:
        """A pending subscription ended without subscribing: the broker may leave the topic."""
        if topic not in self.pending and not self.members.get(topic):
            self.broker.unsubscribe(topic)

    def unsubscribed(self, client: "Client", topic: str) -> None:
        """The client left topic (UNSUBSCRIBE).

        Args:
            client: who left
            topic: the topic.
        """
        members = self.members.get(topic)
        if members is not None:
            members.pop(client.id, None)
            if not members:
                del self.members[topic]
                self.tracker.forget(topic)

    # -- HISTORY -----------------------------------------------------------------------------

    def history(self, client: "Client", topic: str, since: Optional[Position], limit: int, reverse: bool,
                request_id: Any) -> None:
        """HISTORY_RESULT (or its ERROR) once the store answered.

        Args:
            client: the requester
            topic: a checked history topic
            since: the validated request
            limit: the validated request
            reverse: the validated request
            request_id: its id.
        """
        store = self.store

        def done(result: Any) -> None:
            if isinstance(result, BaseException):
                self._refuse(client, request_id, result)
                return
            reply = {"type": "HISTORY_RESULT", "topic": topic, **result.position.to_wire(),
                     "publications": [p.to_wire() for p in result.publications]}
            if request_id is not None:
                reply["id"] = request_id
            client.send(reply)

        self.broker.run(lambda: store.read(topic, since, limit, reverse), done, ordered=False)

    # -- delivery ------------------------------------------------------------------------------

    def deliver(self, topic: str, payload: bytes, epoch: str, offset: int) -> None:
        """A history publication from the broker (every process's, in offset order).

        An offset jump is filled from the history before anything later is delivered (see
        :meth:`_fill`); while that read runs, what arrives is held back.

        Args:
            topic: its topic
            payload: the MESSAGE as kept
            epoch: its position.
            offset: its position.
        """
        if topic not in self.pending and topic not in self.members:
            return  # nobody here follows it (a broker unsubscribe still in flight)
        fill = self.fills.get(topic)
        if fill is not None:
            if len(fill.held) < FILL_HOLD_LIMIT:
                fill.held.append((payload, epoch, offset))
                return
            logger.warning("history %r: %d deliveries held while filling a gap; subscribers must recover",
                           topic, len(fill.held))
            self._lost(topic)
            return
        continuity = self.tracker.observe(topic, epoch, offset)
        if continuity is Continuity.GAP and self._fill(topic, payload, epoch, offset):
            return
        self._hand_over(topic, payload, epoch, offset, continuity)

    def _hand_over(self, topic: str, payload: bytes, epoch: str, offset: int, continuity: Continuity) -> None:
        """Delivers one classified publication to the core's subscribers and to the pending ones."""
        waiting = self.pending.get(topic)
        for pending in waiting or ():
            if pending.top is None:
                pending.buffered.append((offset, payload))
        if continuity is Continuity.NEXT:
            self._fan_out(topic, payload)
        elif continuity is Continuity.UNTRACKED:
            self.tracker.track(topic, Position(epoch, offset))
            self._fan_out(topic, payload)
        elif continuity is not Continuity.DUPLICATE:
            logger.warning("history %r: %s at %s:%d; subscribers must recover", topic, continuity.value, epoch, offset)
            self._lost(topic)
            return
        for pending in list(waiting or ()):
            if pending.top is not None and offset >= pending.top:
                self._unpend(topic, pending)
                client = pending.client
                if offset > pending.top and client.ws is not None and not client.closed \
                        and sender_of(payload) != client.id:
                    client.ws.send(payload, TEXT, client.context.compress)  # the core's fan-out passed this client
                self._activate(topic, pending)

    def _fan_out(self, topic: str, payload: bytes) -> None:
        """To every local subscriber but the publisher, as without a broker: a publisher gets
        its own MESSAGE only with ``echo`` (sent by :meth:`publish`)."""
        members = self.members.get(topic)
        sender = members.get(sender_of(payload) or "") if members else None
        if sender is not None and sender.ws is not None and not sender.closed:
            sender.ws.publish(topic, payload, TEXT, sender.context.compress)
        else:
            self.publish_local(topic, payload, TEXT)

    def _fill(self, topic: str, payload: bytes, epoch: str, offset: int) -> bool:
        """Starts filling the offsets between the last delivered one and ``offset`` (which
        just arrived, and is held) from the history; False when the gap is larger than the
        recover limit (the caller then tells the subscribers to recover)."""
        last = self.tracker.last(topic)
        assert last is not None  # a GAP is only reported for a tracked topic
        missing = offset - last.offset - 1
        if missing > self.recover_limit:
            return False
        self._read_missing(topic, last, missing, [(payload, epoch, offset)], offset - 1)
        return True

    def _catch_up(self, topic: str) -> None:
        """After a broker reconnect: delivers what was published to topic while the
        connection was down, read from the history up to its top."""
        last = self.tracker.last(topic)
        if last is not None and topic not in self.fills:
            self._read_missing(topic, last, self.recover_limit, [], None)

    def _read_missing(self, topic: str, since: Position, limit: int, held: list[tuple[bytes, str, int]],
                      needed: Optional[int]) -> None:
        """Reads up to ``limit`` publications after ``since`` and delivers them in offset
        order before what is held (and what arrives meanwhile); a duplicate is dropped as
        such. Every offset up to ``needed`` (None: the top the read saw) must be found, or the
        subscribers get insufficient_state: the read failed, the epoch changed, or the
        history no longer holds them."""
        fill = _Fill()
        fill.held.extend(held)
        self.fills[topic] = fill
        store = self.store

        def done(result: Any) -> None:
            if self.fills.get(topic) is not fill:
                return  # given up meanwhile (the broker connection was lost)
            del self.fills[topic]
            if isinstance(result, BaseException) or result.position.epoch != since.epoch:
                logger.warning("history %r: missed publications after %s:%d not filled (%s); subscribers must "
                               "recover", topic, since.epoch, since.offset,
                               result if isinstance(result, BaseException) else "new epoch")
                self._lost(topic)
                return
            for publication in result.publications:
                if publication.offset != self._delivered_offset(topic) + 1:
                    break
                continuity = self.tracker.observe(topic, since.epoch, publication.offset)
                self._hand_over(topic, publication.payload, since.epoch, publication.offset, continuity)
            target = needed if needed is not None else result.position.offset
            if self._delivered_offset(topic) < target:
                logger.warning("history %r: missed publications %d..%d no longer all in the history; subscribers "
                               "must recover", topic, since.offset + 1, target)
                self._lost(topic)
                return
            if target > since.offset:
                self.tracker.metrics.gaps_filled += 1
            for held_payload, held_epoch, held_offset in fill.held:
                self.deliver(topic, held_payload, held_epoch, held_offset)

        self.broker.run(lambda: store.read(topic, since, limit, False), done, ordered=False)

    def _delivered_offset(self, topic: str) -> int:
        """The last delivered offset of topic (-1 when untracked)."""
        last = self.tracker.last(topic)
        return last.offset if last is not None else -1

    def _unpend(self, topic: str, pending: _Pending) -> None:
        waiting = self.pending.get(topic, [])
        if pending in waiting:
            waiting.remove(pending)
        if not waiting:
            self.pending.pop(topic, None)

    def connection(self, connected: bool, topics: Optional[Iterable[str]] = None) -> None:
        """The broker's receiving connection was lost (False) or is back and subscribed
        again to every topic (True). Every history topic it lost may have missed publications
        meanwhile: once back, each is caught up from the history (or its subscribers told
        insufficient_state). Subscriptions of a lost topic still waiting for their read are
        told insufficient_state. The other topics are left alone.

        Args:
            connected: the new state
            topics: with False, the topics whose subscription was lost (a Redis Cluster names those
                of the failed shard; several calls add up until the next True); None: every topic.
        """
        if connected:
            lost_all, lost = self._lost_all, self._lost_topics
            self._lost_all, self._lost_topics = False, set()
            for topic in self.tracker.topics():
                if lost_all or topic in lost:
                    self._catch_up(topic)
            return
        if topics is None:
            self._lost_all = True
            self.fills.clear()  # what they held is read again by the catch-up
            self.tracker.connection_lost()
            affected = list(self.pending)
        else:
            lost = set(topics)
            self._lost_topics |= lost
            for topic in lost:
                self.fills.pop(topic, None)
            self.tracker.connection_lost(lost)
            affected = [topic for topic in self.pending if topic in lost]
        for topic in affected:
            for pending in list(self.pending.get(topic, ())):
                pending.broken = True
                if pending.top is not None:
                    self._unpend(topic, pending)
                    self._activate(topic, pending)

    def _lost(self, topic: str) -> None:
        self.fills.pop(topic, None)
        for pending in list(self.pending.get(topic, ())):
            pending.broken = True
            if pending.top is not None:
                self._unpend(topic, pending)
                self._activate(topic, pending)
        self._drop(topic, list(self.members.get(topic, {}).values()))

    def _drop(self, topic: str, clients: list["Client"]) -> None:
        """Unsubscribes clients from topic and tells them to recover."""
        for client in clients:
            self.unsubscribed(client, topic)
            if client.ws is not None and not client.closed and client.ws.unsubscribe(topic):
                client.send({"type": "UNSUBSCRIBED", "topic": topic, "reason": INSUFFICIENT_STATE,
                             "resubscribe": True})
        if not self.members.get(topic):
            self.tracker.forget(topic)
