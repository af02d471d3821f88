"""Running handlers written as coroutines, and the captured request they receive."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Callable, Coroutine, Optional

logger = logging.getLogger("uws_py")


class CapturedRequest:
    """A copy of an HTTP request for coroutine handlers, which run after the native request
    is gone. Same methods as :class:`uws_py.HttpRequest`."""

    __slots__ = ("_method", "_url", "_full_url", "_query", "_headers", "_parameters")

    def __init__(self, snapshot: dict[str, Any]) -> None:
        """``snapshot``: what the native request's ``_snapshot()`` returned."""
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
    """The one place coroutines become tasks: on the asyncio loop that ``App.serve()`` (or
    ``RealtimeServer.serve()``) runs in, with failures logged."""

    def __init__(self) -> None:
        self.loop: Optional[asyncio.AbstractEventLoop] = None  # set while serve() runs
        self.count = 0  # coroutine-function handlers adapted (run() refuses them)

    def start(self, coroutine: Coroutine[Any, Any, Any], name: Optional[str] = None,
              needs: str = "`await server.serve()`") -> "asyncio.Task[Any]":
        """Starts ``coroutine`` as a task on the serving loop.

        Args:
            coroutine: the coroutine object; closed unstarted when no loop serves.
            name: the task's name (logged when it fails).
            needs: how to run the server so that coroutines work, for the RuntimeError
                raised when no loop serves.
        """
        loop = self.loop
        if loop is None:
            coroutine.close()
            raise RuntimeError(f"async handlers need {needs}")
        task = loop.create_task(coroutine, name=name)
        task.add_done_callback(_log_task_failure)
        return task

    def adapt(self, handler: Callable[..., Any], captures_request: bool = False) -> Callable[..., Any]:
        """``handler`` itself when it is a plain function; else a callable starting it.

        Args:
            handler: an App handler, plain or ``async def``.
            captures_request: the handler takes ``(res, req, ...)``: ``req`` is copied into
                a :class:`CapturedRequest`, since the native request dies with the call.
        """
        if not inspect.iscoroutinefunction(handler):
            return handler
        self.count += 1
        runner = self

        def start(*args: Any) -> None:
            if runner.loop is None:
                raise RuntimeError(f"{handler.__qualname__} is a coroutine function: run the app with `await app.serve()`")
            if captures_request:
                args = (args[0], CapturedRequest(args[1]._snapshot()), *args[2:])
            runner.start(handler(*args), name=handler.__qualname__)

        start.__wrapped__ = handler  # type: ignore[attr-defined]
        return start
