"""Stand-ins for the native loop, socket and upgrade response, so that the realtime engine
runs without a network: text goes in through the route's handlers, the frames it would send
come out as decoded JSON."""

from __future__ import annotations

from typing import Any, Callable, Optional

import orjson
import pytest

from uws_py.realtime.server import Engine, Options
from uws_py.realtime.session import Client

TEXT, BINARY = 1, 2


class FakeLoop:
    """publish / set_timeout / clear_timeout / stats, as the engine uses an App. Timers run
    only when a test calls :meth:`fire`."""

    def __init__(self) -> None:
        self.timers: dict[int, tuple[float, Callable[[], Any]]] = {}
        self.next_id = 1
        self.published: list[tuple[str, bytes, int]] = []
        self.subscribers: dict[str, list["FakeSocket"]] = {}

    def set_timeout(self, seconds: float, fn: Callable[[], Any]) -> int:
        timer_id = self.next_id
        self.next_id += 1
        self.timers[timer_id] = (seconds, fn)
        return timer_id

    def clear_timeout(self, timer_id: int) -> None:
        self.timers.pop(timer_id, None)

    def fire(self) -> None:
        """Runs every pending timer once."""
        pending, self.timers = self.timers, {}
        for _, fn in pending.values():
            fn()

    def publish(self, topic: str, payload: bytes, opcode: int, compress: bool = False) -> bool:
        self.published.append((topic, payload, opcode))
        sockets = self.subscribers.get(topic, [])
        for ws in sockets:
            ws.send(payload, opcode)
        return bool(sockets)

    def stats(self) -> dict[str, int]:
        return dict.fromkeys(
            ("open_connections", "messages_in", "messages_out", "bytes_in", "bytes_out", "connections_opened", "connections_closed",
             "publishes", "deliveries", "drops", "backpressure_events", "protocol_errors", "http_rejections",
             "idle_timeouts", "header_timeouts", "http_send_timeouts"), 0)


class FakeSocket:
    """A WebSocket as the realtime handlers see it; ``frames()`` decodes what was sent."""

    def __init__(self, loop: FakeLoop, client: Client) -> None:
        self.loop = loop
        self.client = client
        self.sent: list[tuple[bytes, int]] = []
        self.topics: set[str] = set()
        self.ended: list[tuple[int, str]] = []
        self.published: list[tuple[str, bytes, bool]] = []  # what this socket published, with compress

    def get_user_data(self) -> Client:
        return self.client

    def send(self, data: Any, opcode: int = TEXT, compress: bool = False) -> int:
        self.sent.append((bytes(data), int(opcode)))
        return 0

    def is_subscribed(self, topic: str) -> bool:
        return topic in self.topics

    def get_topics(self) -> list[str]:
        return sorted(self.topics)

    def subscribe(self, topic: str) -> bool:
        fresh = topic not in self.topics
        self.topics.add(topic)
        if fresh:
            self.loop.subscribers.setdefault(topic, []).append(self)
        return fresh

    def unsubscribe(self, topic: str) -> bool:
        present = topic in self.topics
        self.topics.discard(topic)
        if present:
            self.loop.subscribers[topic].remove(self)
        return present

    def publish(self, topic: str, payload: bytes, opcode: int = TEXT, compress: bool = False) -> bool:
        self.published.append((topic, bytes(payload), bool(compress)))
        others = [ws for ws in self.loop.subscribers.get(topic, []) if ws is not self]
        for ws in others:
            ws.send(payload, opcode)
        return bool(others)

    def end(self, code: int = 1000, reason: str = "") -> None:
        self.ended.append((code, reason))

    def frames(self) -> list[dict[str, Any]]:
        """Every text frame sent so far, decoded, and forgotten."""
        out = []
        for data, opcode in self.sent:
            assert opcode == TEXT
            out.append(orjson.loads(data))
        self.sent.clear()
        return out


class FakeResponse:
    """The upgrade response: records the status it was answered with, or the upgrade."""

    def __init__(self, address: str = "10.0.0.1") -> None:
        self.address = address
        self.status: Optional[str] = None
        self.body: Any = None
        self.upgraded: Optional[tuple[Any, ...]] = None
        self.aborted = False
        self.headers: dict[str, str] = {}

    def get_remote_address(self) -> str:
        return self.address

    def write_status(self, status: str) -> "FakeResponse":
        self.status = status
        return self

    def write_header(self, name: str, value: str) -> "FakeResponse":
        assert self.status is not None, "a header before the status"
        self.headers[name.lower()] = value
        return self

    def end(self, body: Any = b"") -> "FakeResponse":
        self.body = body
        return self

    def upgrade(self, user_data: Any, key: Any, protocol: str, extensions: str, context: Any) -> None:
        self.upgraded = (user_data, key, protocol, extensions, context)

    def on_aborted(self, fn: Callable[[], Any]) -> None:
        pass


class FakeRequest:
    """The upgrade request: headers (lowercase names) and a query."""

    def __init__(self, headers: Optional[dict[str, str]] = None, query: Optional[dict[str, str]] = None) -> None:
        self.headers = {"sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", **(headers or {})}
        self.query = query or {}

    def get_header(self, name: str) -> Optional[str]:
        return self.headers.get(name)

    def get_query(self, key: Optional[str] = None) -> Optional[str]:
        return self.query.get(key) if key is not None else ""

    def _snapshot(self) -> dict[str, Any]:
        return {"method": "GET", "url": "/realtime", "full_url": "/realtime", "query": "",
                "headers": list(self.headers.items()), "parameters": []}


class Harness:
    """An engine over a FakeLoop, and connections made through its real upgrade and open."""

    def __init__(self, **options: Any) -> None:
        self.loop = FakeLoop()
        self.engine = Engine(Options(**options), self.loop)

    def upgrade(self, headers: Optional[dict[str, str]] = None, query: Optional[dict[str, str]] = None,
                address: str = "10.0.0.1") -> FakeResponse:
        res = FakeResponse(address)
        self.engine.upgrader.on_upgrade(res, FakeRequest(headers, query), "ctx")
        return res

    def connect(self, headers: Optional[dict[str, str]] = None, query: Optional[dict[str, str]] = None,
                address: str = "10.0.0.1") -> FakeSocket:
        """Upgrade, then open; the socket's CONNECTED frame stays unread in ``sent``."""
        res = self.upgrade(headers, query, address)
        assert res.upgraded is not None, (res.status, res.body)
        ws = FakeSocket(self.loop, res.upgraded[0])
        self.engine.lifecycle.on_open(ws)
        return ws

    def send(self, ws: FakeSocket, message: Any) -> list[dict[str, Any]]:
        """One text message in; the frames it caused on ``ws`` out."""
        data = message if isinstance(message, str) else orjson.dumps(message).decode()
        self.engine.dispatcher.on_message(ws, data, TEXT)
        return ws.frames()

    def close(self, ws: FakeSocket, code: int = 1000) -> None:
        self.engine.lifecycle.on_close(ws, code, b"")

    def on(self, kind: str, schema: Any = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Registers a handler as RealtimeServer.on does."""
        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.engine.add_route(kind, handler, schema)
            return handler
        return register


@pytest.fixture
def harness() -> Callable[..., Harness]:
    return Harness
