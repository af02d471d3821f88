"""Routing client messages by ``type`` to handlers, with optional validation."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

from .._core import Counter
from .protocol import INVALID_MESSAGE, ProtocolError

Handler = Callable[..., Any]


class Route:
    """One message type's handler and its optional schema."""

    __slots__ = ("kind", "handler", "schema", "is_async", "fast", "histogram", "_calls", "_convert")

    def __init__(self, kind: str, handler: Handler, schema: Any = None) -> None:
        """``kind``: the message type; ``handler(client, message)``; ``schema``: see
        :meth:`Router.add`."""
        self.kind = kind
        self.handler = handler
        self.schema = schema
        self.is_async = inspect.iscoroutinefunction(handler)
        # A plain function without schema: the server calls it inline, on its fastest path.
        self.fast = not self.is_async and schema is None
        self.histogram: Any = None  # the server's latency histogram for this type, bound at registration
        # Handler calls, exact, read at scrape time: a C counter, which the native fast path
        # increments in place; Python paths count through count_call().
        self._calls = Counter()
        self._convert = _make_converter(schema)

    @property
    def calls(self) -> int:
        """The handler calls so far (exact), on every path."""
        return self._calls.value

    def count_call(self) -> int:
        """Counts one handler call and returns the new total."""
        return self._calls.add(1)

    def validate(self, message: dict[str, Any]) -> Any:
        """The message as the handler receives it; ProtocolError(INVALID_MESSAGE) naming the
        field when the schema refuses it."""
        if self._convert is None:
            return message
        return self._convert(message)


def _make_converter(schema: Any) -> Optional[Callable[[dict[str, Any]], Any]]:
    if schema is None:
        return None
    if hasattr(schema, "__struct_fields__"):  # a msgspec Struct
        import msgspec

        def convert_struct(message: dict[str, Any]) -> Any:
            try:
                return msgspec.convert(message, schema)
            except msgspec.ValidationError as exc:
                raise ProtocolError(INVALID_MESSAGE, str(exc)) from None

        return convert_struct
    if callable(schema):

        def convert_callable(message: dict[str, Any]) -> Any:
            try:
                result = schema(message)
            except (ValueError, TypeError, KeyError) as exc:
                raise ProtocolError(INVALID_MESSAGE, str(exc) or type(exc).__name__) from None
            return message if result is None else result

        return convert_callable
    raise TypeError(f"schema must be a msgspec Struct type or a callable, not {schema!r}")


class Router:
    """type -> Route. Built-in types are the server's; applications add the rest."""

    def __init__(self, reserved: frozenset[str] = frozenset()) -> None:
        """``reserved``: types that cannot be registered (the built-ins)."""
        self.routes: dict[str, Route] = {}  # read directly on the server's hot path
        self._reserved = reserved

    def add(self, kind: str, handler: Handler, schema: Any = None) -> Route:
        """Registers ``handler(client, message)`` for messages of type ``kind``; ``schema``
        (a msgspec Struct type or a validating callable) checks the message first. Raises
        ValueError for an empty, built-in or already registered type."""
        if not isinstance(kind, str) or not kind:
            raise ValueError("a message type is a non-empty string")
        if kind in self._reserved:
            raise ValueError(f"{kind!r} is a built-in message type")
        if kind in self.routes:
            raise ValueError(f"a handler for {kind!r} is already registered")
        route = Route(kind, handler, schema)
        self.routes[kind] = route
        return route

    def get(self, kind: str) -> Optional[Route]:
        """The route for messages of type ``kind``, or None."""
        return self.routes.get(kind)

    def types(self) -> list[str]:
        """The registered types, sorted (as announced in CONNECTED)."""
        return sorted(self.routes)
