"""Regression: a Redis store that cannot be reached named its URL, password included, in the
error sent to clients (ERROR UNAVAILABLE) and in log lines."""

from __future__ import annotations

import asyncio
import socket

import pytest

from uws_py.realtime.history import HistoryOptions, HistoryPolicy, HistoryUnavailable
from uws_py.realtime.history_redis import RedisHistory
from uws_py.realtime.presence import PresenceUnavailable
from uws_py.realtime.presence_redis import RedisPresence

SECRET = "s3cr3t-pw"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_history_store_error_hides_the_password() -> None:
    url = f"redis://user:{SECRET}@127.0.0.1:{closed_port()}/0"
    store = RedisHistory(url, HistoryPolicy([HistoryOptions("chat.*", size=10, ttl=60)]), timeout=1.0)

    async def attempt() -> None:
        try:
            await store.position("chat.a")
        finally:
            await store.aclose()

    with pytest.raises(HistoryUnavailable) as info:
        asyncio.run(attempt())
    assert SECRET not in str(info.value) and "user:***@127.0.0.1" in str(info.value)


def test_unreachable_presence_store_error_hides_the_password() -> None:
    url = f"redis://user:{SECRET}@127.0.0.1:{closed_port()}/0"
    store = RedisPresence(url, ttl=30, timeout=1.0)

    async def attempt() -> None:
        try:
            await store.entries("room")
        finally:
            await store.aclose()

    with pytest.raises(PresenceUnavailable) as info:
        asyncio.run(attempt())
    assert SECRET not in str(info.value) and "user:***@127.0.0.1" in str(info.value)
