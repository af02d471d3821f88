"""A TCP proxy on loopback that, when told to, lets the client's next command reach the server
and cuts the client off (RST) once the server has answered it, without passing the answer on:
the one failure after which a client cannot know whether its command ran (it did).

``with CutProxy(upstream_port) as proxy``: clients connect to ``proxy.port``; each accepted
connection gets its own connection to the upstream. ``cut_after_next_command()`` arms the
cut for the next bytes any client sends; ``cuts`` counts the connections cut so, and
``cut_commands`` keeps the bytes each cut let through. One thread carries every connection
(a selector), and ``stop()`` ends it and every connection.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
from typing import Optional

HOST = "127.0.0.1"
# How often the carrying thread looks at the stop flag, in seconds.
POLL = 0.05


class _Flow:
    __slots__ = ("client", "upstream", "cutting")

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        # The client's last command was let through armed: the server's answer ends the flow.
        self.cutting = False


class CutProxy:
    """Listens on ``port`` and forwards to ``upstream_port``; see the module docstring."""

    def __init__(self, upstream_port: int, upstream_host: str = HOST) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.accepted = 0
        self.cuts = 0
        self.cut_commands: list[bytes] = []
        self._armed = threading.Event()
        self._stopping = threading.Event()
        self._listener: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._flows: dict[socket.socket, _Flow] = {}

    def start(self) -> "CutProxy":
        listener = socket.create_server((HOST, 0))
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._thread = threading.Thread(target=self._carry, name="cut-proxy", daemon=True)
        self._thread.start()
        return self

    def cut_after_next_command(self) -> None:
        """The next bytes a client sends go to the server; its answer is dropped and that
        client's connection is reset instead."""
        self._armed.set()

    @property
    def armed(self) -> bool:
        """Whether the cut asked for has not happened yet."""
        return self._armed.is_set()

    def stop(self) -> None:
        """Ends the carrying thread and every connection (waits for it, at most 5 s)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "CutProxy":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _carry(self) -> None:
        assert self._listener is not None
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                for key, _ in selector.select(POLL):
                    sock = key.fileobj
                    if sock is self._listener:
                        self._accept(selector)
                    elif sock in self._flows:
                        self._forward(selector, self._flows[sock], sock)
        finally:
            for flow in set(self._flows.values()):
                self._close(selector, flow)
            selector.close()
            self._listener.close()

    def _accept(self, selector: selectors.BaseSelector) -> None:
        assert self._listener is not None
        client, _ = self._listener.accept()
        self.accepted += 1
        try:
            upstream = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        flow = _Flow(client, upstream)
        for sock in (client, upstream):
            self._flows[sock] = flow
            selector.register(sock, selectors.EVENT_READ)

    def _forward(self, selector: selectors.BaseSelector, flow: _Flow, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close(selector, flow)
            return
        try:
            if sock is flow.client:
                if self._armed.is_set():
                    self._armed.clear()
                    flow.cutting = True
                    self.cut_commands.append(data)
                flow.upstream.sendall(data)
            elif flow.cutting:
                # The server answered: it ran the command. The client never hears of it.
                self.cuts += 1
                self._close(selector, flow)
            else:
                flow.client.sendall(data)
        except OSError:
            self._close(selector, flow)

    def _close(self, selector: selectors.BaseSelector, flow: _Flow) -> None:
        for sock in (flow.client, flow.upstream):
            if self._flows.pop(sock, None) is not None:
                selector.unregister(sock)
        _reset(flow.client)
        flow.upstream.close()


def _reset(sock: socket.socket) -> None:
    """Closes sock with an RST (SO_LINGER 0) instead of a FIN: the flow is dropped, not ended."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
