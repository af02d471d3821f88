"""What the realtime integration tests share: a RealtimeServer on loopback, tokens, and reading
JSON messages and metrics (the serve fixture is in tests/integration/conftest.py).

A RealtimeServer runs on a background thread (App.run, since RealtimeServer.run installs
signal handlers, which only the main thread may do); tests talk to it with the raw-socket
client and real HS256 tokens. Whether a client did *not* get something is checked with a
marker: a PING whose PONG must be the next message the client reads.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any, Optional

import jwt
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from uws_py import JWTAuth, RealtimeServer
from .harness import HOST, WAIT
from .wsclient import HandshakeRefused, Op, TestClient, connect, parse_close_payload, raw_http

# HS256 keys shorter than the hash (32 bytes) are weak; pyjwt warns about them.
SECRET = "uws-py realtime integration tests: a 32+ byte key"
OTHER_SECRET = "a different key, also long enough for HS256 use"
BUILTIN_TYPES = ["AUTH", "BATCH", "HISTORY", "PING", "PRESENCE", "PRESENCE_STATS", "PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE"]


def make_token(sub: Optional[str] = "alice", ttl: Optional[float] = 60.0, secret: str = SECRET, **claims: Any) -> str:
    """A signed HS256 token for sub expiring ttl seconds from now (None: no sub / no exp)."""
    payload: dict[str, Any] = {"iat": int(time.time())}
    if sub is not None:
        payload["sub"] = sub
    if ttl is not None:
        payload["exp"] = time.time() + ttl
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


def realtime_server(**options: Any) -> RealtimeServer:
    """A RealtimeServer checking tokens signed with SECRET unless auth= says otherwise."""
    options.setdefault("auth", JWTAuth(secret=SECRET))
    return RealtimeServer(**options)


class LiveServer:
    """A RealtimeServer listening on an ephemeral loopback port, its loop on a daemon thread,
    and the clients a test opened to it."""

    def __init__(self, server: RealtimeServer) -> None:
        self.server = server
        server.listen(port=0, host=HOST)
        self.port = server.port
        self.clients: list[TestClient] = []
        self.thread = threading.Thread(target=server.app.run, name=f"realtime-{self.port}", daemon=True)
        self.thread.start()

    def connect(
        self,
        token: Optional[str] = None,
        path: Optional[str] = None,
        headers: Optional[list] = None,
        protocols: Optional[list] = None,
    ) -> TestClient:
        """Upgrades, with token (if any) as Authorization: Bearer; raises HandshakeRefused."""
        headers = list(headers or [])
        if token is not None:
            headers.append(("Authorization", f"Bearer {token}"))
        client = connect(HOST, self.port, path or self.server.path, headers=headers, protocols=protocols)
        self.clients.append(client)
        return client

    def join(self, sub: str = "alice", **claims: Any) -> tuple[TestClient, dict]:
        """A connected client with a fresh token for sub, and its CONNECTED message."""
        client = self.connect(make_token(sub, **claims))
        connected = recv_json(client)
        assert connected["type"] == "CONNECTED", connected
        return client, connected

    def refused(self, **connect_args: Any) -> Any:
        """The HttpResponse of an upgrade the server must refuse."""
        with pytest.raises(HandshakeRefused) as refusal:
            self.connect(**connect_args)
        return refusal.value.response

    def http_get(self, path: str) -> Any:
        request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nConnection: close\r\n\r\n"
        return raw_http(HOST, self.port, request.encode("ascii"))

    def stop(self) -> None:
        """Drops the clients (so the close handshake has no one to wait for), closes the
        server and fails unless its loop returns within WAIT."""
        for client in self.clients:
            client.disconnect()
        if self.thread.is_alive():
            self.server.close()
            self.thread.join(WAIT)
        assert not self.thread.is_alive(), f"server on port {self.port} still running {WAIT} s after close()"


class ServingThread:
    """A RealtimeServer running ``serve()`` in its own asyncio loop on a daemon thread."""

    def __init__(self, server: RealtimeServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + WAIT
        while server.app._port is None:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not listen"
            time.sleep(0.01)
        self.port = server.port

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve(port=0, host=HOST, handle_signals=False))
        finally:
            self.loop.close()

    def call(self, coroutine, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.server.close(timeout=1)
        self.thread.join(10)
        assert not self.thread.is_alive(), "server still running after close()"


def send_json(client: TestClient, message: Any) -> None:
    client.send_text(orjson.dumps(message))


def recv_json(client: TestClient, timeout: float = WAIT) -> dict:
    """The next text message, parsed; a close frame instead fails the test naming its code."""
    message = client.recv_message(timeout)
    if message.opcode == Op.CLOSE:
        code, reason = parse_close_payload(message.payload)
        raise AssertionError(f"expected a message, the server closed with {code} {reason!r}")
    assert message.opcode == Op.TEXT, f"expected a text message, got opcode {message.opcode}"
    return orjson.loads(message.payload)


def request(client: TestClient, message: Any, timeout: float = WAIT) -> dict:
    send_json(client, message)
    return recv_json(client, timeout)


_marker_ids = itertools.count(1)


def assert_next_is_pong(client: TestClient, what: str = "nothing else") -> None:
    """Sends a marker PING; its PONG must be the next message, so nothing was pending."""
    marker = f"marker-{next(_marker_ids)}"
    reply = request(client, {"type": "PING", "id": marker})
    assert reply.get("type") == "PONG" and reply.get("id") == marker, f"expected {what}, got {reply}"


def scrape(live: LiveServer) -> dict:
    """/metrics as {(sample name, ((label, value), ...)): value}."""
    response = live.http_get("/metrics")
    assert response.status == 200, response
    samples = {}
    for family in text_string_to_metric_families(response.body.decode("utf-8")):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict, name: str, **labels: str) -> float:
    """One sample's value, 0 when absent (a labelled counter appears at its first increment)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# -- CONNECTED ----------------------------------------------------------------------------------


# -- serve() under asyncio -----------------------------------------------------------------------


class AsyncServed:
    """A RealtimeServer under ``await server.serve()`` on a thread's asyncio loop; ``call``
    awaits one of its async methods there."""

    def __init__(self, server) -> None:
        self.server = server
        self.ready = threading.Event()
        self.loop = None

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            serving = asyncio.ensure_future(server.serve(port=0, host="127.0.0.1", handle_signals=False))
            await asyncio.sleep(0.05)  # serve() listens before its first await
            self.ready.set()
            await serving

        self.thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self.thread.start()
        assert self.ready.wait(5.0), "serve() did not start"
        self.port = server.port

    def call(self, coroutine, timeout: float = 5.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.server.close(timeout=1)
        self.thread.join(5.0)
        assert not self.thread.is_alive()

