"""The ``App`` builder: WebSocket routes, listen, run and close, over the native core."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Union

from . import _core
from ._asyncio import CoroutineRunner
from .behavior import HANDLER_NAMES as _HANDLERS
from .behavior import OPTION_DEFAULTS as _OPTION_DEFAULTS
from .behavior import Behavior, subprotocol_list

logger = logging.getLogger("uws_py")

HttpHandler = Callable[["_core.HttpResponse", "_core.HttpRequest"], Any]


# Upper bound of byte limits (1 TiB): larger values mean "no limit" and would overflow sums.
_MAX_LIMIT = 1 << 40
# max_lifetime in minutes; the core counts seconds in 32 bits.
MAX_LIFETIME_MINUTES = 1_000_000


def _report_handler_error(where: str, exc: BaseException) -> None:
    logger.error("exception in %s handler", where, exc_info=exc)


def _forward_core_log(level: int, message: str) -> None:
    logger.log(level, "%s", message)


def _enabled_levels(target: logging.Logger) -> Optional[dict[int, bool]]:
    """The logger's own {level: enabled} cache, which the core reads to skip, without calling
    into Python, a line the logger would drop: ``isEnabledFor`` fills it, ``setLevel`` and
    ``logging.disable`` clear it in place, so a level missing from it goes to the handler,
    which asks the logger. None (no skipping) on a Python whose Logger has no such dict."""
    cache = getattr(target, "_cache", None)
    return cache if isinstance(cache, dict) else None


@dataclass(frozen=True)
class SSLOptions:
    """TLS for ``wss://`` and ``https://`` (OpenSSL; TLS 1.2 and 1.3).

    ``cert_file`` is a PEM chain (leaf first) and ``key_file`` its PEM key, encrypted with
    ``passphrase`` if given. With ``ca_file`` (a PEM bundle), clients must present a
    certificate it signed: a client without one, or with another, fails the handshake.
    ``ciphers`` is an OpenSSL cipher string for TLS 1.2 (default: ECDHE/DHE with AES-GCM or
    ChaCha20) and ``ciphersuites`` the TLS 1.3 list (default: OpenSSL's); one that selects
    nothing raises ``ValueError``. ``minimum_version`` is ``"TLSv1.2"`` (default) or
    ``"TLSv1.3"`` (``ssl.TLSVersion`` members work too): older clients fail the handshake.
    """

    cert_file: str
    key_file: str
    passphrase: Optional[str] = None
    ca_file: Optional[str] = None
    ciphers: Optional[str] = None
    ciphersuites: Optional[str] = None
    minimum_version: "Union[str, ssl.TLSVersion]" = "TLSv1.2"

    def _native_arguments(self) -> tuple[str, str, str, str, str, str, str]:
        version = self.minimum_version
        if isinstance(version, ssl.TLSVersion):
            names = {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}
            if version not in names:
                raise ValueError(f"minimum_version must be TLSv1.2 or TLSv1.3, not {version.name}")
            version = names[version]
        return (self.cert_file, self.key_file, self.passphrase or "", self.ca_file or "",
                self.ciphers or "", self.ciphersuites or "", version)


class App:
    """A WebSocket server on the native core: routes, listen, run, close.

    Handlers run on the loop's thread (the one calling :meth:`run`, or the asyncio loop's
    under :meth:`serve`). Which calls other threads may make — :meth:`defer`,
    :meth:`publish_threadsafe`, :meth:`close` and :meth:`stats` — is the table in
    docs/topics/threading.md, the one place it is written down.
    """

    def __init__(self, ssl: Optional[SSLOptions] = None) -> None:
        """``ssl``: serve TLS on every listener. A file that cannot be opened raises the
        ``OSError`` its errno names (``FileNotFoundError``, ``PermissionError``, ...); bad
        content, a wrong passphrase, a mismatched key or a cipher string that selects
        nothing raises ``ValueError``."""
        self._core = _core.App()
        if ssl is not None:
            self._core.use_tls(*ssl._native_arguments())
        self._core.error_handler = _report_handler_error
        self._core.log_handler = _forward_core_log
        self._core.log_levels = _enabled_levels(logger)  # after log_handler, which resets it
        self._port: Optional[int] = None
        self._coroutines = CoroutineRunner()
        # Seconds per max_lifetime minute. Tests set it lower to see a lifetime end in a
        # few seconds; the routes added after the change use it.
        self._seconds_per_lifetime_minute = 60

    def add_server_name(self, hostname: str, ssl: SSLOptions) -> "App":
        """SNI: TLS clients asking for ``hostname`` get the certificate, key and ``ca_file``
        of ``ssl``; others get the App's own. ``"*.example.com"`` matches one label
        (``a.example.com``); an exact name wins over a wildcard. The protocol floor and
        ciphers stay the App's (OpenSSL settles them before it reads the name). Adding a
        name again replaces it. Needs ``App(ssl=...)`` (``RuntimeError`` otherwise); raises
        as :class:`App` does for unreadable or bad files. Loop thread only.
        """
        self._core.add_server_name(hostname, *ssl._native_arguments())
        return self

    def ws(self, pattern: str, behavior: "Behavior | Mapping[str, Any]") -> "App":
        """Adds a WebSocket route.

        ``pattern`` is a path with optional ``:name`` segments and a trailing ``*``.
        ``behavior`` holds handlers (``open``, ``message``, ``drain``, ``close``, ``upgrade``,
        ``ping``, ``pong``, ``subscription``, ``dropped``) and options (``max_payload_length``, ``idle_timeout``,
        ``max_backpressure``, ``close_on_backpressure_limit``, ``send_pings_automatically``,
        ``compression``, ``compression_threshold``, ``max_lifetime``, ``reset_idle_timeout_on_send``,
        ``subprotocols``); unknown keys raise ``TypeError``.
        See :class:`uws_py.behavior.Behavior` for the types and defaults.
        """
        unknown = set(behavior) - set(_HANDLERS) - set(_OPTION_DEFAULTS)
        if unknown:
            known = ", ".join(sorted((*_HANDLERS, *_OPTION_DEFAULTS)))
            raise TypeError(f"unknown ws() behavior keys {sorted(unknown)}; known keys: {known}")
        handlers: dict[str, Callable[..., Any]] = {}
        for name in _HANDLERS:
            handler = behavior.get(name)
            if handler is None:
                continue
            if not callable(handler):
                raise TypeError(f"ws() behavior '{name}' must be callable, not {type(handler).__name__}")
            handlers[name] = self._coroutines.adapt(handler, captures_request=name == "upgrade")
        options = {**_OPTION_DEFAULTS, **{k: v for k, v in behavior.items() if k in _OPTION_DEFAULTS}}
        for name in ("max_payload_length", "idle_timeout", "max_backpressure", "compression_threshold"):
            value = options[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"ws() option '{name}' must be a non-negative int, not {value!r}")
        if not 0 < options["max_payload_length"] <= _MAX_LIMIT:
            raise ValueError(f"ws() option 'max_payload_length' must be 1..{_MAX_LIMIT}")
        if options["max_backpressure"] > _MAX_LIMIT:
            raise ValueError(f"ws() option 'max_backpressure' must be at most {_MAX_LIMIT}")
        lifetime = options["max_lifetime"]
        if not isinstance(lifetime, int) or isinstance(lifetime, bool) or not 0 <= lifetime <= MAX_LIFETIME_MINUTES:
            raise ValueError(f"ws() option 'max_lifetime' must be whole minutes 0..{MAX_LIFETIME_MINUTES}, not {lifetime!r}")
        for name in ("close_on_backpressure_limit", "send_pings_automatically", "reset_idle_timeout_on_send"):
            if not isinstance(options[name], bool):
                raise ValueError(f"ws() option '{name}' must be a bool, not {options[name]!r}")
        options["subprotocols"] = subprotocol_list(options["subprotocols"])
        options["compression"] = int(options["compression"])
        options["max_lifetime_seconds"] = lifetime * self._seconds_per_lifetime_minute
        self._core.ws(pattern, handlers, options)
        return self

    def get(self, pattern: str, handler: HttpHandler) -> "App":
        """Adds a GET route; ``handler(res, req)``. See :meth:`any` for patterns."""
        return self._route("GET", pattern, handler)

    def post(self, pattern: str, handler: HttpHandler) -> "App":
        """Adds a POST route; read the body with ``res.on_data(callback)``."""
        return self._route("POST", pattern, handler)

    def put(self, pattern: str, handler: HttpHandler) -> "App":
        """Adds a PUT route."""
        return self._route("PUT", pattern, handler)

    def delete(self, pattern: str, handler: HttpHandler) -> "App":
        """Adds a DELETE route."""
        return self._route("DELETE", pattern, handler)

    def patch(self, pattern: str, handler: HttpHandler) -> "App":
        """Adds a PATCH route."""
        return self._route("PATCH", pattern, handler)

    def options(self, pattern: str, handler: HttpHandler) -> "App":
        """Adds an OPTIONS route."""
        return self._route("OPTIONS", pattern, handler)

    def head(self, pattern: str, handler: HttpHandler) -> "App":
        """Adds a HEAD route (the body given to ``res.end`` is measured, not sent)."""
        return self._route("HEAD", pattern, handler)

    def any(self, pattern: str, handler: HttpHandler) -> "App":
        """Adds a route for every method.

        Patterns: literal segments, ``:name`` parameters (``req.get_parameter("name")`` or by
        index) and a trailing ``*``. The most specific route wins, segment by segment
        (literal, then parameter, then wildcard); then a route for the exact method over
        ``any``. No route: 404; a route for another method only: 405 with ``Allow``.
        The handler must end the response (now or later; ``res.on_aborted`` tells when the
        client left); ``req`` is valid only while the handler runs.
        """
        return self._route("*", pattern, handler)

    def _route(self, method: str, pattern: str, handler: HttpHandler) -> "App":
        if not callable(handler):
            raise TypeError(f"route handler must be callable, not {type(handler).__name__}")
        self._core.route(method, pattern, self._coroutines.adapt(handler, captures_request=True))
        return self

    @property
    def max_body_size(self) -> int:
        """Largest request body accepted, in bytes (default 1 MiB); more gets 413."""
        return self._core.max_body_size

    @max_body_size.setter
    def max_body_size(self, size: int) -> None:
        self._core.max_body_size = size

    def listen(
        self, port: int = 0, host: str = "127.0.0.1", *, backlog: int = 512, reuse_port: bool = True,
        proxy_protocol: bool = False,
    ) -> "App":
        """Binds and listens; ``port=0`` picks a free port (see :attr:`port`). Raises ``OSError``.

        With ``proxy_protocol=True`` every connection must start with a PROXY protocol header
        (v1 or v2, as HAProxy, AWS NLB and others send): its source address becomes the
        connection's remote address (``ws.get_remote_address()``, ``res.get_remote_address()``).
        A connection without a valid header is logged and closed. Only for a listener that
        nothing but the proxy can reach: whoever connects can claim any address.
        """
        self._port = self._core.listen(host, port, backlog, reuse_port, proxy_protocol)
        return self

    def listen_unix(self, path: str, *, backlog: int = 512, proxy_protocol: bool = False) -> "App":
        """Listens on a unix domain socket at ``path`` (HTTP and WebSocket alike).

        The socket file is removed when the listener closes (:meth:`close`,
        :meth:`stop_listening`). A stale socket file that nobody accepts on is replaced; a
        live one, or any other file, raises ``OSError``. Remote addresses are ``""`` on it
        unless ``proxy_protocol`` (see :meth:`listen`) supplies them.
        """
        self._core.listen_unix(os.fspath(path), backlog, proxy_protocol)
        return self

    def stop_listening(self) -> "App":
        """Closes every listener: new connections are refused while the open ones go on
        (a graceful restart or a blue/green switch). Callable from any thread; from another
        thread the listeners close at the loop's next iteration. A connection still waiting in
        the kernel's backlog at that moment (never accepted) is reset by the kernel."""
        self._core.stop_listening()
        return self

    @property
    def port(self) -> int:
        """The port bound by the last :meth:`listen`."""
        if self._port is None:
            raise RuntimeError("App.listen() has not been called")
        return self._port

    def run(self) -> None:
        """Runs the event loop on this thread until :meth:`close`: the fastest mode.

        The GIL is released while the loop waits and taken once per batch of events.
        Coroutine handlers need :meth:`serve` instead.
        """
        if self._coroutines.count:
            raise RuntimeError("this App has coroutine handlers: run it with `await app.serve()`")
        self._core.run()

    async def serve(self) -> None:
        """Runs the server inside the running asyncio loop (uvloop too) until :meth:`close`.

        The core's epoll descriptor is watched with ``loop.add_reader``; each readiness runs
        one non-blocking iteration of the core, and its timers are scheduled on the asyncio
        loop. Handlers may be coroutine functions: each call becomes a task on this loop.
        """
        loop = asyncio.get_running_loop()
        core = self._core
        core.embedded = True
        self._coroutines.loop = loop
        finished: asyncio.Future[None] = loop.create_future()
        timer: Optional[asyncio.TimerHandle] = None

        def step() -> None:
            nonlocal timer
            if timer is not None:
                timer.cancel()
                timer = None
            if finished.done():
                return
            try:
                stopped = core.run_once()
            except BaseException as exc:  # a handler's KeyboardInterrupt/SystemExit, or a loop failure
                finished.set_exception(exc)
                return
            if stopped:
                finished.set_result(None)
                return
            delay = core.next_timer_delay_ms()
            if delay >= 0:
                timer = loop.call_later(delay / 1000, step)

        loop.add_reader(core.fd, step)
        try:
            step()
            await finished
        finally:
            loop.remove_reader(core.fd)
            if timer is not None:
                timer.cancel()
            core.embedded = False
            self._coroutines.loop = None

    def close(self, code: int = 1001, reason: str = "server shutting down", timeout: float = 5.0) -> None:
        """Stops listening, ends every WebSocket with ``code``/``reason`` and makes :meth:`run` return.

        Sockets that have not finished closing after ``timeout`` seconds (millisecond
        precision; 0 drops them at once) are dropped. Callable from any thread.
        """
        self._core.close(code, reason, max(0.0, float(timeout)))

    def publish(
        self, topic: Union[str, bytes], message: Union[str, bytes], opcode: Optional[int] = None, compress: bool = False
    ) -> bool:
        """Sends ``message`` to every subscriber of ``topic``; the fan-out runs in C++.

        ``str`` goes out as text and bytes-like as binary unless ``opcode`` says otherwise.
        Returns False when the topic has no subscribers. Loop thread only.
        """
        return self._core.publish(topic, message, opcode, compress)

    def publish_threadsafe(
        self, topic: Union[str, bytes], message: Union[str, bytes], opcode: Optional[int] = None, compress: bool = False
    ) -> None:
        """:meth:`publish` from any thread: the message is copied and published on the loop
        thread in its next iteration, in call order per calling thread."""
        self._core.publish_threadsafe(topic, message, opcode, compress)

    def num_subscribers(self, topic: Union[str, bytes]) -> int:
        """How many sockets are subscribed to ``topic``."""
        return self._core.num_subscribers(topic)

    def set_timeout(self, seconds: float, fn: Callable[[], Any]) -> int:
        """Runs ``fn`` once on the loop thread after ``seconds`` (millisecond precision).
        Returns an id for :meth:`clear_timeout`. Loop thread only."""
        return self._core.set_timeout(seconds, fn)

    def clear_timeout(self, timer_id: int) -> None:
        """Cancels a timer from :meth:`set_timeout`; a no-op when it already ran."""
        self._core.clear_timeout(timer_id)

    def defer(self, fn: Callable[[], Any]) -> None:
        """Runs ``fn`` on the loop thread in its next iteration. Callable from any thread."""
        self._core.defer(fn)

    def stats(self) -> dict[str, int]:
        """The core's counters (messages, bytes, connections, drops, ...), read without locking."""
        return self._core.stats()

    @property
    def header_timeout(self) -> int:
        """Seconds a client has to send a complete request head (default 10)."""
        return self._core.header_timeout

    @header_timeout.setter
    def header_timeout(self, seconds: int) -> None:
        self._core.header_timeout = seconds

    @property
    def send_timeout(self) -> int:
        """Seconds a response may wait for a client that takes none of its bytes before the
        connection is closed and ``on_aborted`` runs (default 10). Each byte the client takes
        restarts it. Counted in ``stats()["http_send_timeouts"]``."""
        return self._core.send_timeout

    @send_timeout.setter
    def send_timeout(self, seconds: int) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            raise ValueError(f"send_timeout must be a positive whole number of seconds, not {seconds!r}")
        self._core.send_timeout = seconds
