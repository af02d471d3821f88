"""A realtime "server" on loopback whose every reply a test writes by hand, for the SDK's
corner cases that a real server produces only by chance (a cut between SUBSCRIBE and
SUBSCRIBED, UNAVAILABLE on a resubscribe, a jump in live offsets).

``async with ScriptedServer() as server``: each accepted connection gets CONNECTED, then
``conn = await server.next_connection()``; ``await conn.expect("SUBSCRIBE")`` returns the
next message the client sent (failing on another type), ``await conn.send({...})`` answers,
``conn.cut()`` aborts the TCP connection without a close frame.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Optional

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

HOST = "127.0.0.1"
WAIT = 5.0


class ScriptedConnection:
    """One accepted connection: what the client sent, in order."""

    def __init__(self, ws: ServerConnection, client_id: str) -> None:
        self.ws = ws
        self.client_id = client_id
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.log: list[dict[str, Any]] = []
        self.closed = asyncio.Event()

    async def expect(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:
        """The next message from the client, which must be of type ``kind`` (PINGs skipped)."""
        while True:
            try:
                message = await asyncio.wait_for(self.received.get(), timeout)
            except TimeoutError:
                raise AssertionError(f"no {kind} from the client within {timeout} s (got {self.log!r})") from None
            if message.get("type") == "PING" and kind != "PING":
                await self.send({"type": "PONG", "id": message.get("id")})
                continue
            assert message.get("type") == kind, f"expected {kind}, got {message!r}"
            return message

    async def expect_nothing(self, within: float = 0.3) -> None:
        """Fails if the client sends anything within ``within`` seconds."""
        try:
            message = await asyncio.wait_for(self.received.get(), within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message from the client: {message!r}")

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    def cut(self) -> None:
        """Aborts the TCP connection (the client sees 1006)."""
        self.ws.transport.abort()


class ScriptedServer:
    """Listens on ``port``; ``url`` is the client's URL. user_id: CONNECTED's ``userId``."""

    def __init__(self, user_id: Optional[str] = None) -> None:
        self.port = 0
        self.user_id = user_id
        self._server: Optional[Server] = None
        self._accepted: asyncio.Queue[ScriptedConnection] = asyncio.Queue()
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/realtime"

    async def __aenter__(self) -> "ScriptedServer":
        self._server = await serve(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]  # type: ignore[index]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def next_connection(self, timeout: float = WAIT) -> ScriptedConnection:
        """The next connection accepted (CONNECTED already sent)."""
        try:
            return await asyncio.wait_for(self._accepted.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"the client did not connect within {timeout} s") from None

    async def _handle(self, ws: ServerConnection) -> None:
        connection = ScriptedConnection(ws, f"c{next(self._ids)}")
        await connection.send({"type": "CONNECTED", "clientId": connection.client_id, "userId": self.user_id})
        await self._accepted.put(connection)
        try:
            async for raw in ws:
                message = orjson.loads(raw)
                connection.log.append(message)
                await connection.received.put(message)
        except ConnectionClosed:
            pass
        finally:
            connection.closed.set()
