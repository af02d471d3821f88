"""Idempotency keys of the server API: a publish retried with the same ``idempotency_key``
publishes once and answers what the first one answered.

A key is claimed before the publish (so a retry racing the first attempt waits for it),
holds the result once the publish succeeded, and is released when it failed (a retry then
publishes). Keys live ``ttl`` seconds from their claim: in Redis (``SET NX`` with an expiry,
the key hash-tagged so that a Redis Cluster keeps it in one slot) when the server has a broker,
so every worker and machine sees them; in this process's memory without one.

Both stores answer through callbacks on the server's loop thread; nothing here blocks it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Optional

import orjson

from .history_redis import MAX_CONNECTIONS, TIMEOUT, bounded_client, check_max_connections

if TYPE_CHECKING:
    from ..broker.redis import RedisBroker

# Seconds a key is kept: a retry later than this publishes again.
DEFAULT_IDEMPOTENCY_TTL = 300.0
# Keys one process keeps without Redis; past it the oldest are forgotten first.
MAX_MEMORY_KEYS = 100_000
KEY_PREFIX = "uws:api:idem:"


class _Pending:
    """The state of a key claimed by a publish still running."""

    def __repr__(self) -> str:
        return "PENDING"


PENDING = _Pending()
# claim(key, done): done(None) when this call claimed the key, PENDING when another attempt
# holds it, the stored result (a dict) when it already succeeded, or an exception.
Done = Callable[[Any], None]


class MemoryIdempotency:
    """Keys in this process.

    Args:
        ttl: seconds a key is kept from its claim.
        clock: the monotonic clock (injectable for tests).
        max_keys: the most keys kept.
    """

    def __init__(self, ttl: float = DEFAULT_IDEMPOTENCY_TTL, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_MEMORY_KEYS) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_keys = max_keys
        # key -> (expires at, PENDING or the result); insertion order is expiry order.
        self.keys: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def claim(self, key: str, done: Done) -> None:
        """See :data:`Done`."""
        now = self.clock()
        while self.keys:
            oldest, (expires, _) = next(iter(self.keys.items()))
            if expires > now and len(self.keys) < self.max_keys:
                break
            del self.keys[oldest]
        held = self.keys.get(key)
        if held is not None:
            done(held[1])
            return
        self.keys[key] = (now + self.ttl, PENDING)
        done(None)

    def save(self, key: str, result: dict[str, Any]) -> None:
        """The claimed key's publish succeeded with result."""
        held = self.keys.get(key)
        if held is not None:
            self.keys[key] = (held[0], result)

    def release(self, key: str) -> None:
        """The claimed key's publish failed: a retry may publish."""
        self.keys.pop(key, None)


class RedisIdempotency:
    """Keys in the broker's Redis, through its job queue (``RedisBroker.run``).

    Args:
        broker: the server's RedisBroker.
        ttl: seconds a key is kept from its claim.
        key_prefix: of every key.
        max_connections: connections to Redis at most; more concurrent jobs wait for one (up
            to the 2 s timeout, then redis-py's ConnectionError, as for an unreachable Redis).
    """

    def __init__(self, broker: "RedisBroker", ttl: float = DEFAULT_IDEMPOTENCY_TTL,
                 key_prefix: str = KEY_PREFIX, max_connections: int = MAX_CONNECTIONS) -> None:
        self.max_connections = check_max_connections(max_connections)
        self.broker = broker
        self.ttl_ms = max(1, int(ttl * 1000))
        self.key_prefix = key_prefix
        self._client: Any = None

    def redis_key(self, key: str) -> str:
        """The Redis key of an idempotency key (hash-tagged on it)."""
        return f"{self.key_prefix}{{{key}}}"

    def client(self) -> Any:
        """The redis-py asyncio client, made on first use on the broker's loop."""
        if self._client is None:
            # A blocking pool: at most max_connections, a burst of requests waits for a free one.
            self._client = bounded_client(self.broker.url, max_connections=self.max_connections, timeout=TIMEOUT)
        return self._client

    def claim(self, key: str, done: Done) -> None:
        """See :data:`Done`; ConnectionError-like exceptions when Redis cannot be reached."""
        name = self.redis_key(key)

        async def job() -> Any:
            client = self.client()
            if await client.set(name, b"", nx=True, px=self.ttl_ms):
                return None
            held = await client.get(name)
            if held is None:  # expired between the two commands: claim again next time
                return PENDING
            return PENDING if held == b"" else orjson.loads(held)

        self.broker.run(job, done)

    def save(self, key: str, result: dict[str, Any]) -> None:
        """The claimed key's publish succeeded with result (kept for the rest of its ttl)."""
        name, value = self.redis_key(key), orjson.dumps(result)

        async def job() -> Any:
            return await self.client().set(name, value, xx=True, keepttl=True)

        self.broker.run(job, _ignore)

    def release(self, key: str) -> None:
        """The claimed key's publish failed: a retry may publish."""
        name = self.redis_key(key)

        async def job() -> Any:
            return await self.client().delete(name)

        self.broker.run(job, _ignore)


def _ignore(result: Any) -> None:
    return None


class Idempotent:
    """Runs an action once per key.

    Args:
        store: a MemoryIdempotency or RedisIdempotency.
        set_timeout: the loop's ``set_timeout(seconds, fn)``, to wait for an attempt in flight.
        wait: seconds between two looks at a key another attempt holds.
        attempts: looks before answering IN_PROGRESS.
    """

    def __init__(self, store: Any, set_timeout: Callable[[float, Callable[[], Any]], Any],
                 wait: float = 0.05, attempts: int = 100) -> None:
        self.store = store
        self.set_timeout = set_timeout
        self.wait = wait
        self.attempts = attempts

    def run(self, key: Optional[str], action: Callable[[Done], None], done: Done,
            in_progress: Callable[[], BaseException], unavailable: Callable[[BaseException], BaseException],
            tries: int = 0) -> None:
        """``action(finish)`` unless key already has a result, which goes to ``done`` instead.

        Args:
            key: the idempotency key; None runs the action.
            action: publishes, then calls its argument with a result dict or an exception.
            done: receives the result (the first attempt's for a retry) or an exception.
            in_progress: makes the exception for a key still held after every look.
            unavailable: makes the exception for a store that failed.
            tries: looks so far.
        """
        if key is None:
            action(done)
            return
        store = self.store

        def finish(result: Any) -> None:
            if isinstance(result, BaseException):
                store.release(key)
            else:
                store.save(key, result)
            done(result)

        def claimed(state: Any) -> None:
            if isinstance(state, BaseException):
                done(unavailable(state))
            elif state is None:
                action(finish)
            elif state is PENDING:
                if tries + 1 >= self.attempts:
                    done(in_progress())
                else:
                    self.set_timeout(self.wait, lambda: self.run(key, action, done, in_progress, unavailable,
                                                                 tries + 1))
            else:
                done(state)

        store.claim(key, claimed)
