"""The server side of the integration tests: a real App on loopback, run on a background
thread, and a recorder of what its handlers saw.

Handlers run on the server's loop thread; they put what they see into queues, and tests wait on
those queues with timeouts. Anything a test does to a WebSocket goes through Server.call, which
runs it on the loop thread with app.defer, because the core is not thread-safe.

The loop is app.run() unless the Server is given another runner: serve_asyncio and serve_uvloop
run `await app.serve()` inside an asyncio (or uvloop) event loop on that thread instead.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable, Optional

from uws_py import App, SSLOptions

HOST = "127.0.0.1"
WAIT = 5.0


def wait_for(q: queue.Queue, what: str, timeout: float = WAIT) -> Any:
    """The next item of q, or a test failure naming what did not happen in time."""
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"{what} did not happen within {timeout} s") from None


def assert_nothing_more(q: queue.Queue, what: str, within: float = 0.3) -> None:
    try:
        item = q.get(timeout=within)
    except queue.Empty:
        return
    raise AssertionError(f"unexpected {what}: {item!r}")


class Recorder:
    """Handlers that record every event into queues; the message handler echoes by default."""

    def __init__(self) -> None:
        self.opens: queue.Queue = queue.Queue()  # ws
        self.messages: queue.Queue = queue.Queue()  # (ws, message, opcode)
        self.closes: queue.Queue = queue.Queue()  # (ws, code, reason)
        self.drains: queue.Queue = queue.Queue()  # ws
        self.errors: list = []  # exceptions raised inside guarded handlers
        self.handler_threads: set = set()  # idents of the threads handlers ran on
        self._lock = threading.Lock()

    def guard(self, handler: Callable) -> Callable:
        """Wraps a handler so an exception in it fails the test, not only the server's log."""

        def guarded(*args):
            with self._lock:
                self.handler_threads.add(threading.get_ident())
            try:
                return handler(*args)
            except BaseException as error:
                with self._lock:
                    self.errors.append(error)
                raise

        return guarded

    def behavior(self, echo: bool = True, **overrides: Any) -> dict:
        """A behavior dict with recording handlers; overrides replace handlers or set options."""

        def on_message(ws, message, opcode):
            self.messages.put((ws, message, opcode))
            if echo:
                ws.send(message, opcode)

        behavior = {
            "open": self.guard(self.opens.put),
            "message": self.guard(on_message),
            "drain": self.guard(self.drains.put),
            "close": self.guard(lambda ws, code, reason: self.closes.put((ws, code, reason))),
        }
        behavior.update(overrides)
        return behavior

    def next_open(self, timeout: float = WAIT):
        return wait_for(self.opens, "the open handler", timeout)

    def next_message(self, timeout: float = WAIT) -> tuple:
        return wait_for(self.messages, "the message handler", timeout)

    def next_close(self, timeout: float = WAIT) -> tuple:
        return wait_for(self.closes, "the close handler", timeout)


def serve_asyncio(app: App) -> None:
    """A runner: app.serve() in a new asyncio event loop on the calling thread."""
    asyncio.run(app.serve())


def serve_uvloop(app: App) -> None:
    """A runner: app.serve() in a new uvloop event loop on the calling thread."""
    import uvloop

    uvloop.run(app.serve())


RUNNERS = {"run": App.run, "asyncio": serve_asyncio, "uvloop": serve_uvloop}


class Server:
    """An App listening on an ephemeral loopback port, its loop on a daemon thread."""

    def __init__(
        self,
        behavior: Optional[dict] = None,
        route: str = "/*",
        setup: Optional[Callable[[App], Any]] = None,
        ssl: Optional[SSLOptions] = None,
        runner: Callable[[App], None] = App.run,
    ) -> None:
        """behavior: the WebSocket route's handlers and options, or None for no WebSocket route.
        setup(app) runs before listen, to add HTTP routes or set options such as max_body_size.
        ssl makes it a TLS server; runner(app) is what the loop thread runs (see RUNNERS), and
        what it raised, if anything, is kept in runner_error."""
        self.app = App(ssl=ssl)
        self.runner_error: Optional[BaseException] = None
        if behavior is not None:
            self.app.ws(route, behavior)
        if setup is not None:
            setup(self.app)
        self.app.listen(0, host=HOST)
        self.host = HOST
        self.port = self.app.port
        assert isinstance(self.port, int) and self.port > 0, (
            f"app.port after listen(0) is {self.port!r}"
        )
        self._runner = runner
        self.thread = threading.Thread(
            target=self._run_loop, name=f"uws-loop-{self.port}", daemon=True
        )
        self.thread.start()

    def _run_loop(self) -> None:
        try:
            self._runner(self.app)
        except BaseException as error:
            self.runner_error = error
            raise

    @property
    def address(self) -> tuple:
        return self.host, self.port

    def call(self, fn: Callable[[], Any], timeout: float = WAIT) -> Any:
        """Runs fn on the loop thread and returns its result, or raises what it raised."""
        done = threading.Event()
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["value"] = fn()
            except BaseException as error:
                outcome["error"] = error
            finally:
                done.set()

        self.app.defer(run)
        if not done.wait(timeout):
            raise AssertionError(f"a deferred call did not run within {timeout} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    def stop(self, timeout: float = WAIT) -> None:
        """app.close() on the loop thread; fails if run() has not returned within timeout."""
        if not self.thread.is_alive():
            return
        self.app.defer(self.app.close)
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"app.run() did not return within {timeout} s of app.close()")


def payload_of_size(size: int, seed: int = 0) -> bytes:
    """Deterministic binary payload of exactly size bytes, every byte value represented."""
    pattern = bytes((i * 7 + seed) & 0xFF for i in range(256))
    return (pattern * (size // 256 + 1))[:size]


def text_of_size(size: int) -> str:
    """A str whose UTF-8 encoding is exactly size bytes, mixing 1-, 2-, 3- and 4-byte characters."""
    unit = "aé€😀"  # 1 + 2 + 3 + 4 bytes
    text = unit * (size // 10)
    text += "a" * (size - len(text.encode("utf-8")))
    return text


class ServerPool:
    """The servers one test starts, stopped together at its end."""

    def __init__(self) -> None:
        self.servers: list = []

    def start(self, *args: Any, **kwargs: Any) -> Server:
        """A running Server(*args, **kwargs), stopped by stop_all."""
        server = Server(*args, **kwargs)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        """Stops every server; fails naming each one whose loop did not return."""
        failures = []
        for server in self.servers:
            try:
                server.stop()
            except AssertionError as error:
                failures.append(str(error))
        assert not failures, "; ".join(failures)
