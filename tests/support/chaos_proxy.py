"""A TCP proxy on loopback that cuts every connection it carries after a random lifetime, for
testing clients that must reconnect and recover by themselves.

Each accepted connection is piped to the upstream in both directions; after a draw from
``[min_life, max_life]`` seconds both sides are aborted (RST-like, no close frame), as a
network that drops a flow would. ``cuts`` counts connections ended that way, so a test can
assert the chaos really happened. ``hang()`` makes the connections open right now swallow
every byte without ending, as a NAT that forgot a flow: only an application-level ping finds that.
"""

from __future__ import annotations

import asyncio
import random
from typing import Optional


class ChaosProxy:
    """``async with ChaosProxy(upstream_port) as proxy``: listens on ``proxy.port``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", host: str = "127.0.0.1",
                 min_life: float = 0.2, max_life: float = 2.0, seed: Optional[int] = None) -> None:
        """upstream_host/port: where to forward; host: the address to listen on (port picked
        by the kernel); min_life, max_life: the bounds of each connection's lifetime in
        seconds; seed: for a reproducible sequence of lifetimes."""
        if not 0 < min_life <= max_life:
            raise ValueError(f"need 0 < min_life <= max_life, got {min_life} and {max_life}")
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = 0
        self.min_life = min_life
        self.max_life = max_life
        self.cuts = 0
        self.accepted = 0
        self._random = random.Random(seed)
        self._server: Optional[asyncio.Server] = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._open: set[_Flow] = set()

    async def start(self) -> "ChaosProxy":
        """Starts listening."""
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stops listening and ends every carried connection (not counted as cuts)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def hang(self) -> int:
        """The connections open now stop forwarding (and never end by themselves); new ones
        are unaffected. Returns how many were hung."""
        for flow in self._open:
            flow.hung = True
        return len(self._open)

    async def __aenter__(self) -> "ChaosProxy":
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        upstream_writer: Optional[asyncio.StreamWriter] = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            flow = _Flow()
            self._open.add(flow)
            pipes = [asyncio.create_task(_pipe(client_reader, upstream_writer, flow)),
                     asyncio.create_task(_pipe(upstream_reader, client_writer, flow))]
            lifetime = self._random.uniform(self.min_life, self.max_life)
            try:
                done, _ = await asyncio.wait(pipes, timeout=lifetime, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    self.cuts += 1
            finally:
                self._open.discard(flow)
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        except OSError:
            pass  # upstream down: the client sees its connection end, like any cut
        finally:
            # abort, not close: no orderly FIN/close frame, as when a network drops the flow
            client_writer.transport.abort()
            if upstream_writer is not None:
                upstream_writer.transport.abort()
            self._tasks.discard(task)


class _Flow:
    """One proxied connection; hung: its bytes are dropped."""

    def __init__(self) -> None:
        self.hung = False


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flow: _Flow) -> None:
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return
        if flow.hung:
            continue
        writer.write(chunk)
        await writer.drain()
