"""Type stubs of the native module uws_py._core (private: import from uws_py)."""

import enum
from typing import Any, Callable, Optional, Union

Data = Union[str, bytes, bytearray, memoryview]

class OpCode(enum.IntEnum):
    CONTINUATION = 0
    TEXT = 1
    BINARY = 2
    CLOSE = 8
    PING = 9
    PONG = 10

class SendStatus(enum.IntEnum):
    SUCCESS = 0
    BACKPRESSURE = 1
    DROPPED = 2

class WebSocketClosedError(RuntimeError): ...

class HttpClosedError(RuntimeError):
    """Raised when an ``HttpRequest`` or ``HttpResponse`` is used after its request ended: the
    HTTP twin of ``WebSocketClosedError`` (both are ``RuntimeError``).

    A request is valid only during the handler it is passed to; a response ends when it is
    answered (``end``, ``try_end`` reaching its size, ``upgrade``, ``close``) or its client
    leaves. ``res.aborted`` tells which responses are still usable.
    """

class WebSocket:
    def send(self, data: Data, opcode: Optional[int] = None, compress: bool = False) -> SendStatus: ...
    def ping(self, data: Data = b"") -> SendStatus:
        """Sends a ping frame (at most 125 bytes of payload, else ``ValueError``); the
        client's pong reaches the route's ``pong`` handler."""
    def send_first_fragment(self, data: Data, opcode: Optional[int] = None, compress: bool = False) -> SendStatus:
        """Starts a message sent in fragments (FIN clear). ``opcode`` (TEXT/BINARY, from the
        type of ``data`` by default) and ``compress`` apply to the whole message. Until
        :meth:`send_last_fragment`, control frames (:meth:`ping`, ``send(opcode=PONG)``) may
        go out between fragments, another data message raises ``RuntimeError`` (so does a
        second ``send_first_fragment``), and published messages wait. Only this first
        fragment can be ``DROPPED`` (the message then did not start); later ones are always
        queued."""
    def send_fragment(self, data: Data) -> SendStatus:
        """A middle fragment (continuation frame, FIN clear); ``RuntimeError`` without
        :meth:`send_first_fragment`."""
    def send_last_fragment(self, data: Data) -> SendStatus:
        """The last fragment (continuation frame, FIN set): the message is complete.
        ``RuntimeError`` without :meth:`send_first_fragment`."""
    def end(self, code: int = 1000, reason: Union[str, bytes] = "") -> None: ...
    def close(self) -> None: ...
    def get_buffered_amount(self) -> int: ...
    def get_remote_address(self) -> str: ...
    def get_user_data(self) -> Any: ...
    def is_closed(self) -> bool: ...
    def subscribe(self, topic: Union[str, bytes]) -> bool: ...
    def unsubscribe(self, topic: Union[str, bytes]) -> bool: ...
    def is_subscribed(self, topic: Union[str, bytes]) -> bool: ...
    def get_topics(self) -> list[str]: ...
    def publish(self, topic: Union[str, bytes], message: Data, opcode: Optional[int] = None, compress: bool = False) -> bool: ...
    def cork(self, fn: Callable[[], Any]) -> Any: ...

class Counter:
    """An exact event count kept as a C integer (uws_py.realtime.routing.Route keeps its
    handler calls in one; the native fast path increments it in place)."""

    def __init__(self, value: int = 0) -> None: ...
    @property
    def value(self) -> int:
        """The count."""
        ...
    def add(self, n: int = 1) -> int:
        """Adds ``n`` (a non-negative int) and returns the new value."""
        ...

class RealtimeDispatch:
    """The realtime route's message handler with Dispatcher.on_message's common case in C
    (see uws_py.realtime.dispatch.Dispatcher.native_handler); App.ws() given one as its
    ``message`` handler calls it without making a str of each message first."""

    def __init__(self, dispatcher: Any, routes: dict[str, Any], loads: Callable[[Any], Any],
                 dumps: Callable[[Any], bytes], client_type: type, route_type: type, bucket_type: type,
                 monotonic: Callable[[], float],
                 sample_mask: int, max_payload_length: int, compress: bool, builtins: frozenset[str],
                 pubsub: Any, reserved: Callable[[str], bool], reserved_prefix: str, reserved_topic: str) -> None: ...
    def __call__(self, ws: Any, data: Union[str, bytes], opcode: int) -> None: ...
    max_batch_items: int
    """The dispatcher's max_batch_items, kept here (Dispatcher sets it when it changes)."""

class WebSocketContext: ...

class HttpRequest:
    """The request head, valid only during the handler it is passed to; afterwards every
    method raises ``HttpClosedError`` (coroutine handlers get a captured copy instead)."""

    def get_header(self, name: str) -> Optional[str]: ...
    def get_method(self) -> str: ...
    def get_case_sensitive_method(self) -> str: ...
    def get_url(self) -> str: ...
    def get_full_url(self) -> str: ...
    def get_query(self, key: Optional[str] = None) -> Optional[str]: ...
    def get_parameter(self, index_or_name: Union[int, str]) -> Optional[str]: ...
    def for_each_header(self, callback: Callable[[str, str], Any]) -> None: ...
    def _snapshot(self) -> dict[str, Any]: ...

class HttpResponse:
    """Answers one request; for an upgrade, accepts or refuses it.

    Once the response has ended (answered, or its client left) every method raises
    ``HttpClosedError``, except :attr:`aborted` (then True) and :meth:`upgrade` (then False).
    Every ``Date`` header is the loop's, formatted once a second.
    """

    @property
    def aborted(self) -> bool:
        """True once the response ended: answered, or the client left."""
    def write_status(self, status: Union[str, bytes]) -> "HttpResponse":
        """Sets the status line's text, e.g. ``"404 Not Found"`` (default ``"200 OK"``).

        Raises ``ValueError`` when it holds CR, LF or NUL, which would split the response."""
    def write_header(self, name: Union[str, bytes], value: Union[str, bytes]) -> "HttpResponse":
        """Adds a header. Raises ``ValueError``, saying which header and why, when the name is
        not a token (RFC 9110: letters, digits and ``!#$%&'*+-.^_`|~``) or the name or value
        holds CR, LF or NUL: user input put into a header cannot add headers of its own."""
    def write(self, chunk: Data) -> bool:
        """Streams a body chunk (chunked transfer encoding). Every byte is queued; returns False
        when some of them wait because the client reads slower than we write: stop, and go on
        from :meth:`on_writable`. Not after :meth:`try_end`."""
    def try_end(self, data: Data, total_size: int) -> tuple[bool, bool]:
        """Sends the next part of a body of ``total_size`` bytes (``Content-Length``), without
        buffering what the client cannot take now. Returns ``(ok, done)``: ``ok`` is False when
        only part of ``data`` was taken (offer the rest, from :meth:`get_write_offset`, when
        :meth:`on_writable` runs); ``done`` is True once ``total_size`` bytes went out, which
        ends the response. ``ValueError`` after :meth:`write`, past ``total_size``, or with
        another ``total_size`` than the first call's."""
    def end(self, body: Data = "", close_connection: bool = False) -> "HttpResponse":
        """Ends the response with ``body`` (all of it is queued, whatever the backpressure)."""
    def end_without_body(self) -> "HttpResponse": ...
    def upgrade(self, user_data: Any, key: Union[str, bytes], protocol: Union[str, bytes, None],
                extensions: Union[str, bytes, None], context: WebSocketContext) -> bool:
        """Accepts the upgrade; False (a harmless no-op) when the client is gone or the response
        ended already."""
    def on_aborted(self, callback: Callable[[], Any]) -> "HttpResponse":
        """``callback()`` runs if the client goes away before the response ends, or if it takes
        none of the waiting response bytes for 10 s (the send timeout closes it then)."""
    def on_data(self, callback: Callable[[bytes, bool], Any]) -> "HttpResponse":
        """``callback(chunk, is_last)`` receives the request body."""
    def on_writable(self, handler: Callable[[int], bool]) -> "HttpResponse":
        """``handler(offset) -> bool`` runs each time the client can take more after
        :meth:`write` returned False or :meth:`try_end` was not ok; ``offset`` is
        :meth:`get_write_offset`. Return whether it wrote what it wanted. A handler that raises
        is logged and the connection closed (the body cannot be finished)."""
    def get_write_offset(self) -> int:
        """Body bytes sent or queued so far for this response."""
    def close(self) -> None:
        """Closes the connection at once; queued bytes are lost and ``on_aborted`` runs if the
        response had not ended."""
    def cork(self, fn: Callable[[], Any]) -> Any:
        """Runs ``fn`` with what it writes gathered into one write."""
    def get_remote_address(self) -> str:
        """The client's address: the PROXY header's source on a ``proxy_protocol`` listener,
        ``""`` on a unix socket."""

class App:
    error_handler: Optional[Callable[[str, BaseException], Any]]
    log_handler: Optional[Callable[[int, str], Any]]
    # {level: enabled}: a line of a level mapped to False is neither built by the core nor
    # passed to log_handler (reset to None when log_handler is set).
    log_levels: Optional[dict[int, bool]]
    header_timeout: int
    send_timeout: int
    max_body_size: int
    embedded: bool
    @property
    def running(self) -> bool: ...
    @property
    def fd(self) -> int: ...
    def __init__(self) -> None: ...
    def use_tls(self, cert_file: str, key_file: str, passphrase: str = "", ca_file: str = "", ciphers: str = "",
                ciphersuites: str = "", min_version: str = "TLSv1.2") -> None: ...
    def add_server_name(self, hostname: str, cert_file: str, key_file: str, passphrase: str = "", ca_file: str = "",
                        ciphers: str = "", ciphersuites: str = "", min_version: str = "TLSv1.2") -> None: ...
    # A uws_py.behavior.Behavior, split by uws_py.App.ws: ``handlers`` holds its handler keys
    # (HANDLER_NAMES), ``options`` every option key, defaults filled in (OPTION_DEFAULTS).
    def ws(self, pattern: str, handlers: dict[str, Callable[..., Any]], options: dict[str, Any]) -> None: ...
    def route(self, method: str, pattern: str, handler: Callable[[HttpResponse, HttpRequest], Any]) -> None: ...
    def listen(self, host: str, port: int, backlog: int = 512, reuse_port: bool = True, proxy_protocol: bool = False) -> int: ...
    def listen_unix(self, path: str, backlog: int = 512, proxy_protocol: bool = False) -> None: ...
    def stop_listening(self) -> None: ...
    def run(self) -> None: ...
    def run_once(self) -> bool: ...
    def next_timer_delay_ms(self) -> int: ...
    def close(self, code: int = 1001, reason: str = "server shutting down", timeout: float = 5.0) -> None: ...
    def publish(self, topic: Union[str, bytes], message: Data, opcode: Optional[int] = None, compress: bool = False) -> bool: ...
    def publish_threadsafe(self, topic: Union[str, bytes], message: Data, opcode: Optional[int] = None, compress: bool = False) -> None: ...
    def num_subscribers(self, topic: Union[str, bytes]) -> int: ...
    def set_timeout(self, seconds: float, fn: Callable[[], Any]) -> int: ...
    def clear_timeout(self, timer_id: int) -> None: ...
    def defer(self, fn: Callable[[], Any]) -> None: ...
    def stats(self) -> dict[str, int]: ...
