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


def history_store(url: str) -> RedisHistory:
    return RedisHistory(url, HistoryPolicy([HistoryOptions("chat.*", size=10, ttl=60)]), timeout=1.0)


def presence_store(url: str) -> RedisPresence:
    return RedisPresence(url, ttl=30, timeout=1.0)


@pytest.mark.parametrize(("make", "call", "error"), [
    (history_store, lambda store: store.position("chat.a"), HistoryUnavailable),
    (presence_store, lambda store: store.entries("room"), PresenceUnavailable),
], ids=["history", "presence"])
def test_unreachable_store_error_hides_the_password(make, call, error) -> None:
    store = make(f"redis://user:{SECRET}@127.0.0.1:{closed_port()}/0")

    async def attempt() -> None:
        try:
            await call(store)
        finally:
            await store.aclose()

    with pytest.raises(error) as info:
        asyncio.run(attempt())
    assert SECRET not in str(info.value) and "user:***@127.0.0.1" in str(info.value)
