"""Issue 13 test 5 as a scenario with parameters: one publisher publishes to a history topic at a
fixed rate while many clients keep cutting their connection and recovering with ``since``; at
the end every client must hold each offset from 1 to the last published one exactly once.

Used by the quick pytest variant (tests/integration/broker/test_history_churn.py) and by the
full run (bench/recovery_churn.py). The clients are raw RFC 6455 clients on asyncio protocols,
not the SDK: each frame costs a header parse and, for a MESSAGE, reading the offset from the
payload's end (the server writes ``..."offset":N}`` last), so one Python process keeps up with
tens of thousands of deliveries a second. A connection is cut with ``transport.abort()`` (a TCP
reset, no close frame), as a network drop would.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import struct
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

import orjson

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ChurnParams:
    """What the scenario runs.

    rate: publishes per second; clients: churning subscribers; duration: seconds of publishing;
    connected/disconnected: (min, max) seconds a client stays connected / away between cuts;
    settle: seconds every client gets at the end to reach the last offset; topic: a history
    topic of the servers; seed: of the random connect/cut times.
    """

    rate: float = 2000.0
    clients: int = 50
    duration: float = 30.0
    connected: tuple[float, float] = (0.3, 1.5)
    disconnected: tuple[float, float] = (0.05, 0.4)
    settle: float = 20.0
    topic: str = "chat.churn"
    seed: int = 13


@dataclass
class ClientReport:
    """One churning client: what it received and what went wrong."""

    index: int
    delivered: int = 0  # live MESSAGEs
    recovered: int = 0  # publications in SUBSCRIBED answers
    recoveries: int = 0  # SUBSCRIBEs with since that got SUBSCRIBED
    recovered_false: int = 0
    insufficient_state: int = 0
    errors: list[str] = field(default_factory=list)
    catch_up_s: list[float] = field(default_factory=list)  # SUBSCRIBE -> SUBSCRIBED
    duplicates: int = 0
    missing: int = 0
    out_of_order: int = 0  # an offset that is not last+1 when it arrived
    final_offset: int = 0
    epochs: set[str] = field(default_factory=set)


@dataclass
class ChurnResult:
    """The totals the scenario prints; ``ok`` when nothing is missing or duplicated anywhere."""

    params: dict[str, Any]
    published: int
    publish_errors: int
    publish_rate: float
    publish_ack_lag_s: float  # from the last PUBLISH sent to the last PUBLISHED received
    last_offset: int
    delivered: int
    recovered: int
    recoveries: int
    recovered_false: int
    insufficient_state: int
    duplicates: int
    missing: int
    out_of_order: int
    max_catch_up_s: float
    p50_catch_up_s: float
    p99_catch_up_s: float
    clients_at_last_offset: int
    errors: list[str]

    @property
    def ok(self) -> bool:
        return (self.duplicates == 0 and self.missing == 0 and self.out_of_order == 0
                and self.recovered_false == 0 and self.publish_errors == 0 and not self.errors
                and self.clients_at_last_offset == self.params["clients"] and self.published > 0)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# -- a raw WebSocket client on an asyncio protocol ----------------------------------------------


class WsProtocol(asyncio.Protocol):
    """Upgrades, then hands every text message to ``on_text(payload)``; answers PINGs."""

    def __init__(self, path: str, on_text: Callable[[bytes], None]) -> None:
        self.path = path
        self.on_text = on_text
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = bytearray()
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.key = base64.b64encode(os.urandom(16)).decode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        request = (f"GET {self.path} HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {self.key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        transport.write(request.encode())  # type: ignore[attr-defined]

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed during the upgrade: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end])
            del buffer[:end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(f"upgrade refused: {head[:200]!r}"))
                self.abort()
                return
            self.upgraded.set_result(None)
        position, size = 0, len(buffer)
        on_text = self.on_text
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            length = second & 0x7F
            start = position + 2
            if length == 126:
                if size - position < 4:
                    break
                length = (buffer[position + 2] << 8) | buffer[position + 3]
                start = position + 4
            elif length == 127:
                if size - position < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, position + 2)
                start = position + 10
            end = start + length
            if end > size:
                break
            opcode = first & 0x0F
            payload = bytes(buffer[start:end])
            position = end
            if opcode == 1:
                on_text(payload)
            elif opcode == 9:
                self.send_frame(0xA, payload)
            elif opcode == 8:
                self.abort()
                break
        del buffer[:position]

    def send_frame(self, opcode: int, payload: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(encode_client_frame(opcode, payload))

    def send(self, message: dict[str, Any]) -> None:
        self.send_frame(1, orjson.dumps(message))

    def send_many(self, messages: Sequence[dict[str, Any]]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(b"".join(encode_client_frame(1, orjson.dumps(m)) for m in messages))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def encode_client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (RFC 6455 5.2)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    mask = os.urandom(4)
    repeated = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")
    return header + mask + masked


async def open_ws(port: int, path: str, on_text: Callable[[bytes], None], timeout: float = 10.0) -> WsProtocol:
    """A connected, upgraded client (ConnectionError or TimeoutError otherwise)."""
    loop = asyncio.get_running_loop()
    _, protocol = await asyncio.wait_for(
        loop.create_connection(lambda: WsProtocol(path, on_text), HOST, port), timeout)
    await asyncio.wait_for(protocol.upgraded, timeout)
    return protocol


def offset_of(payload: bytes) -> int:
    """The offset of a history MESSAGE: its last field, ``..."offset":N}``."""
    return int(payload[payload.rindex(b":") + 1:-1])


# -- the churning subscriber --------------------------------------------------------------------


class Subscriber:
    """Connects, subscribes (recovering from its last position after the first time), stays a
    random while, cuts the connection, stays away a random while, and again until told to stop.
    ``counts[offset]`` is how often each offset arrived (live or recovered)."""

    def __init__(self, index: int, port: int, path: str, params: ChurnParams, rng: random.Random) -> None:
        self.report = ClientReport(index)
        self.port, self.path, self.params, self.rng = port, path, params, rng
        self.counts = bytearray(int(params.rate * params.duration * 1.5) + 10_000)
        self.epoch: Optional[str] = None
        self.last = 0
        self.ws: Optional[WsProtocol] = None
        self.subscribed = asyncio.Event()
        self.subscribe_sent = 0.0
        self.stop = False

    def _note(self, offset: int) -> None:
        counts = self.counts
        if offset >= len(counts):
            counts.extend(bytearray(offset + 10_000 - len(counts)))
        if counts[offset] < 255:
            counts[offset] += 1
        if offset != self.last + 1:
            self.report.out_of_order += 1
        if offset > self.last:
            self.last = offset

    def on_text(self, payload: bytes) -> None:
        if payload.startswith(b'{"type":"MESSAGE"'):
            self.report.delivered += 1
            self._note(offset_of(payload))
            return
        message = orjson.loads(payload)
        kind = message.get("type")
        if kind == "SUBSCRIBED":
            self._subscribed(message)
        elif kind == "UNSUBSCRIBED" and message.get("reason") == "insufficient_state":
            self.report.insufficient_state += 1
            self.subscribed.clear()
            self._subscribe()
        elif kind == "ERROR":
            self.report.errors.append(f"client {self.report.index}: {message}")
        elif kind not in ("CONNECTED", "PONG"):
            self.report.errors.append(f"client {self.report.index}: unexpected {message}")

    def _subscribed(self, message: dict[str, Any]) -> None:
        report = self.report
        report.catch_up_s.append(time.monotonic() - self.subscribe_sent)
        epoch, offset = message["epoch"], message["offset"]
        report.epochs.add(epoch)
        if message["wasRecovering"]:
            report.recoveries += 1
            if message["recovered"]:
                for publication in message["publications"]:
                    report.recovered += 1
                    self._note(publication["offset"])
            else:
                report.recovered_false += 1
                report.errors.append(f"client {report.index}: recovered false from {self.epoch}:{self.last} "
                                     f"(now {epoch}:{offset})")
        if self.epoch is None:
            self.last = offset
        elif epoch != self.epoch or offset > self.last:
            self.last = offset  # what could not be recovered stays missing in counts
        self.epoch = epoch
        self.subscribed.set()

    def _subscribe(self) -> None:
        request: dict[str, Any] = {"type": "SUBSCRIBE", "topic": self.params.topic}
        if self.epoch is not None:
            request.update(recover=True, since={"epoch": self.epoch, "offset": self.last})
        self.subscribe_sent = time.monotonic()
        if self.ws is not None:
            self.ws.send(request)

    async def connect(self) -> None:
        """Opens a connection and subscribes; returns once SUBSCRIBED arrived."""
        self.subscribed.clear()
        self.ws = await open_ws(self.port, self.path, self.on_text)
        self._subscribe()
        await asyncio.wait_for(self.subscribed.wait(), 30.0)

    async def churn(self, until: float) -> None:
        """Cuts and recovers until the monotonic time ``until``."""
        low, high = self.params.connected
        away_low, away_high = self.params.disconnected
        while True:
            await asyncio.sleep(self.rng.uniform(low, high))
            if self.ws is not None:
                self.ws.abort()
                self.ws = None
            if time.monotonic() >= until:
                return
            await asyncio.sleep(self.rng.uniform(away_low, away_high))
            try:
                await self.connect()
            except (ConnectionError, OSError, asyncio.TimeoutError) as exc:
                self.report.errors.append(f"client {self.report.index}: reconnect failed: {exc!r}")
                if self.ws is not None:
                    self.ws.abort()
                    self.ws = None

    async def finish(self, last_offset: int, deadline: float) -> None:
        """Reconnects (recovering) and waits until the last published offset arrived."""
        try:
            await self.connect()
        except (ConnectionError, OSError, asyncio.TimeoutError) as exc:
            self.report.errors.append(f"client {self.report.index}: final reconnect failed: {exc!r}")
            return
        while self.last < last_offset and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def tally(self, last_offset: int) -> ClientReport:
        report = self.report
        report.final_offset = self.last
        counts = memoryview(self.counts)[1:last_offset + 1]
        report.missing = counts.tobytes().count(0)
        report.duplicates = sum(c - 1 for c in counts if c > 1)
        report.duplicates += sum(self.counts[last_offset + 1:])  # offsets nobody published
        if len(report.epochs) > 1:
            report.errors.append(f"client {report.index}: epochs changed {sorted(report.epochs)}")
        return report


# -- the publisher ------------------------------------------------------------------------------


class Publisher:
    """PUBLISHes with ids at ``rate`` per second (in 5 ms bursts) and reads the PUBLISHED offsets."""

    def __init__(self, port: int, path: str, params: ChurnParams) -> None:
        self.port, self.path, self.params = port, path, params
        self.sent = 0
        self.acked = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.last_offset = 0
        self.ws: Optional[WsProtocol] = None
        self.elapsed = 0.0
        self.ack_lag = 0.0

    def on_text(self, payload: bytes) -> None:
        message = orjson.loads(payload)
        kind = message.get("type")
        if kind == "PUBLISHED":
            self.acked += 1
            self.last_offset = max(self.last_offset, message["offset"])
        elif kind == "ERROR":
            self.errors += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(f"publisher: {message}")

    async def run(self) -> None:
        self.ws = await open_ws(self.port, self.path, self.on_text)
        topic, rate = self.params.topic, self.params.rate
        started = time.monotonic()
        end = started + self.params.duration
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due = int((now - started) * rate) - self.sent
            if due > 0:
                first = self.sent
                self.ws.send_many([{"type": "PUBLISH", "topic": topic, "id": first + n, "data": {"n": first + n}}
                                   for n in range(due)])
                self.sent += due
            await asyncio.sleep(0.005)
        self.elapsed = time.monotonic() - started
        deadline = time.monotonic() + 15.0
        while self.acked + self.errors < self.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.ack_lag = time.monotonic() - started - self.elapsed


# -- the scenario -------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run_churn(client_ports: Sequence[int], publisher_port: int, params: ChurnParams,
                    path: str = "/realtime") -> ChurnResult:
    """Runs the scenario against servers already listening.

    Args: client_ports: the subscribers are spread over these ports in turn (several workers);
    publisher_port: where the publisher connects; params: what to run; path: the realtime path.
    """
    rng = random.Random(params.seed)
    subscribers = [Subscriber(i, client_ports[i % len(client_ports)], path, params, random.Random(rng.random()))
                   for i in range(params.clients)]
    # Everyone is subscribed (offset 0) before the first publish, so each must end with 1..last.
    await asyncio.gather(*(s.connect() for s in subscribers))
    publisher = Publisher(publisher_port, path, params)
    until = time.monotonic() + params.duration
    await asyncio.gather(publisher.run(), *(s.churn(until) for s in subscribers))
    last_offset = publisher.last_offset
    deadline = time.monotonic() + params.settle
    await asyncio.gather(*(s.finish(last_offset, deadline) for s in subscribers))
    await asyncio.sleep(0.5)  # a duplicate still in flight would arrive now
    for subscriber in subscribers:
        if subscriber.ws is not None:
            subscriber.ws.abort()
    if publisher.ws is not None:
        publisher.ws.abort()
    reports = [s.tally(last_offset) for s in subscribers]
    catch_up = [t for r in reports for t in r.catch_up_s]
    errors = publisher.error_samples + [e for r in reports for e in r.errors]
    return ChurnResult(
        params=asdict(params),
        published=publisher.acked,
        publish_errors=publisher.errors + (publisher.sent - publisher.acked - publisher.errors),
        publish_rate=publisher.acked / publisher.elapsed if publisher.elapsed else 0.0,
        publish_ack_lag_s=publisher.ack_lag,
        last_offset=last_offset,
        delivered=sum(r.delivered for r in reports),
        recovered=sum(r.recovered for r in reports),
        recoveries=sum(r.recoveries for r in reports),
        recovered_false=sum(r.recovered_false for r in reports),
        insufficient_state=sum(r.insufficient_state for r in reports),
        duplicates=sum(r.duplicates for r in reports),
        missing=sum(r.missing for r in reports),
        out_of_order=sum(r.out_of_order for r in reports),
        max_catch_up_s=max(catch_up, default=0.0),
        p50_catch_up_s=percentile(catch_up, 0.5),
        p99_catch_up_s=percentile(catch_up, 0.99),
        clients_at_last_offset=sum(1 for r in reports if r.final_offset == last_offset),
        errors=errors[:20],
    )


def churn(client_ports: Sequence[int], publisher_port: int, params: ChurnParams,
          path: str = "/realtime") -> ChurnResult:
    """:func:`run_churn` on a fresh event loop (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run_churn(client_ports, publisher_port, params, path))
    return uvloop.run(run_churn(client_ports, publisher_port, params, path))
