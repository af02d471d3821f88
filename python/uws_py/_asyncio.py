"""Running handlers written as coroutines, and the captured request they receive."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Callable, Optional

logger = logging.getLogger("uws_py")


class CapturedRequest:
    """A copy of an HTTP request for coroutine handlers, which run after the native request
    is gone. Same methods as :class:`uws_py.HttpRequest`."""

    __slots__ = ("_method", "_url", "_full_url", "_query", "_headers", "_parameters")

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self._method: str = snapshot["method"]
        self._url: str = snapshot["url"]
        self._full_url: str = snapshot["full_url"]
        self._query: str = snapshot["query"]
        self._headers: list[tuple[str, str]] = snapshot["headers"]
        self._parameters: list[tuple[str, str]] = snapshot["parameters"]

    def get_method(self) -> str:
        """The method in lowercase ('get')."""
        return self._method.lower()

    def get_case_sensitive_method(self) -> str:
        """The method as sent ('GET')."""
        return self._method

    def get_url(self) -> str:
        """The path, without the query."""
        return self._url

    def get_full_url(self) -> str:
        """The path and query as sent."""
        return self._full_url

    def get_query(self, key: Optional[str] = None) -> Optional[str]:
        """The raw query string, or one decoded value (None if absent)."""
        if key is None:
            return self._query
        from urllib.parse import parse_qsl

        for name, value in parse_qsl(self._query, keep_blank_values=True):
            if name == key:
                return value
        return None

    def get_header(self, name: str) -> Optional[str]:
        """A header's value (case-insensitive; repeated lines joined by ', '), or None."""
        lowered = name.lower()
        values = [value for header, value in self._headers if header == lowered]
        return ", ".join(values) if values else None

    def get_parameter(self, index_or_name: "int | str") -> Optional[str]:
        """A route parameter by position or by name."""
        if isinstance(index_or_name, int):
            if 0 <= index_or_name < len(self._parameters):
                return self._parameters[index_or_name][1]
            return None
        for name, value in self._parameters:
            if name == index_or_name:
                return value
        return None

    def for_each_header(self, callback: Callable[[str, str], Any]) -> None:
        """Calls callback(name, value) for every header line."""
        for name, value in self._headers:
            callback(name, value)


def _log_task_failure(task: "asyncio.Task[Any]") -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("exception in coroutine handler %s", task.get_name(), exc_info=exc)


class CoroutineRunner:
    """Turns coroutine-function handlers into plain callables that start a task on the
    asyncio loop App.serve() runs in."""

    def __init__(self) -> None:
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.count = 0

    def adapt(self, handler: Callable[..., Any], captures_request: bool = False) -> Callable[..., Any]:
        """handler itself when it is a plain function; else a callable scheduling it."""
        if not inspect.iscoroutinefunction(handler):
            return handler
        self.count += 1
        runner = self

        def start(*args: Any) -> None:
            loop = runner.loop
            if loop is None:
                raise RuntimeError(f"{handler.__qualname__} is a coroutine function: run the app with `await app.serve()`")
            if captures_request:
                # (res, req[, context]): the native request dies when this call returns.
                args = (args[0], CapturedRequest(args[1]._snapshot()), *args[2:])
            task = loop.create_task(handler(*args), name=handler.__qualname__)
            task.add_done_callback(_log_task_failure)

        start.__wrapped__ = handler  # type: ignore[attr-defined]
        return start
