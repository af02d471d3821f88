"""Per-client rate limiting: a token bucket, and the policy for clients that keep going."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class RateLimit:
    """``messages`` per ``per_seconds`` for each client, with bursts up to ``burst``
    (default: ``messages``). A client refused more than ``close_after`` times the allowance
    within one window is closed with 1008."""

    messages: int = 100
    per_seconds: float = 60.0
    burst: Optional[int] = None
    close_after: float = 2.0

    def __post_init__(self) -> None:
        if self.messages <= 0 or self.per_seconds <= 0:
            raise ValueError("RateLimit needs positive messages and per_seconds")
        if self.burst is not None and self.burst <= 0:
            raise ValueError("RateLimit burst must be positive")
        if self.close_after <= 0:
            raise ValueError("RateLimit close_after must be positive")


class TokenBucket:
    """Tokens refill at ``rate`` per second up to ``capacity``; each message takes one.

    ``clock`` is injectable so tests run without sleeping.
    """

    __slots__ = ("rate", "capacity", "tokens", "updated", "refused", "window_start", "window", "clock")

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = limit.messages / limit.per_seconds
        self.capacity = float(limit.burst or limit.messages)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self.window = limit.per_seconds
        self.window_start = self.updated
        self.refused = 0

    def take(self, count: int = 1) -> bool:
        """Takes ``count`` tokens, all or none; False (and counts a refusal) when fewer are left."""
        now = self.clock()
        tokens = self.tokens + (now - self.updated) * self.rate
        self.updated = now
        if tokens > self.capacity:
            tokens = self.capacity
        if tokens >= count:
            self.tokens = tokens - count
            return True
        self.tokens = tokens
        if now - self.window_start >= self.window:
            self.window_start = now
            self.refused = 0
        self.refused += 1
        return False

    def retry_after(self, count: int = 1) -> float:
        """Seconds until ``count`` tokens are there (more than the capacity: never; the time
        to a full bucket is returned)."""
        missing = min(float(count), self.capacity) - self.tokens
        return max(0.0, missing / self.rate)


# Seconds a refused upgrade is told to wait (Retry-After) when the server is full or the
# address has its share: the answer is spread over [retry_after, 2 * retry_after] so that the
# clients of one storm do not all come back in the same second.
DEFAULT_RETRY_AFTER = 5


@dataclass(frozen=True)
class Refusal:
    """Why an upgrade is refused: the HTTP ``status`` line, the ``retry_after`` seconds for
    the Retry-After header, and a short ``reason`` for the body and the log."""

    status: str
    retry_after: int
    reason: str


class ConnectionLimiter:
    """Open connections in total and per IP address, and upgrades per second, for refusing
    upgrades: 503 when the process holds ``max_connections``, 429 when the address holds
    ``max_per_ip``, 503 when more than ``max_upgrades_per_second`` upgrades came in the last
    second (a token bucket: bursts up to one second's worth). Each refusal carries the
    seconds for a Retry-After header.

    Args:
        max_connections: open connections of this process; None: no limit.
        max_per_ip: open connections of one address; None: no limit.
        max_upgrades_per_second: upgrades let through to the token check per second; None: no limit.
        retry_after: the base Retry-After, in seconds, of the 503/429 for a full server or address.
        clock: monotonic seconds (injectable for tests).
        jitter: a number in [0, 1) (injectable for tests), spreading the Retry-After.
    """

    def __init__(self, max_connections: Optional[int], max_per_ip: Optional[int],
                 max_upgrades_per_second: Optional[int] = None, retry_after: int = DEFAULT_RETRY_AFTER,
                 clock: Callable[[], float] = time.monotonic, jitter: Callable[[], float] = random.random) -> None:
        for name, value in (("max_connections", max_connections), ("max_connections_per_ip", max_per_ip),
                            ("max_upgrades_per_second", max_upgrades_per_second)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 1:
            raise ValueError(f"retry_after must be an integer >= 1, got {retry_after!r}")
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.max_upgrades_per_second = max_upgrades_per_second
        self.retry_after = retry_after
        self.jitter = jitter
        self.upgrades = (TokenBucket(RateLimit(messages=max_upgrades_per_second, per_seconds=1.0), clock)
                         if max_upgrades_per_second is not None else None)
        self.total = 0
        self.per_ip: dict[str, int] = {}

    def check(self, address: str) -> Optional[str]:
        """The HTTP status refusing one more connection from address, or None to accept
        (see :meth:`admit`, which this calls).

        Args:
            address: the client's address.
        """
        refusal = self.admit(address)
        return refusal.status if refusal is not None else None

    def admit(self, address: str) -> Optional[Refusal]:
        """The refusal of one more upgrade from address, or None to let it on (which takes
        one of this second's upgrades). Checked in this order: the total, the address's
        share, the upgrade rate.

        Args:
            address: the client's address.
        """
        if self.max_connections is not None and self.total >= self.max_connections:
            return Refusal("503 Service Unavailable", self._spread(), "too many connections")
        if self.max_per_ip is not None and self.per_ip.get(address, 0) >= self.max_per_ip:
            return Refusal("429 Too Many Requests", self._spread(), "too many connections")
        upgrades = self.upgrades
        if upgrades is not None and not upgrades.take():
            # The next token comes within 1 / rate s; the spread keeps the refused of one
            # burst from coming back together.
            wait = max(1, math.ceil(upgrades.retry_after()))
            return Refusal("503 Service Unavailable", wait + int(self.jitter() * 2), "too many upgrades")
        return None

    def _spread(self) -> int:
        return self.retry_after + int(self.jitter() * (self.retry_after + 1))

    def opened(self, address: str) -> None:
        """Counts a connection of address as open.

        Args:
            address: the client's address.
        """
        self.total += 1
        self.per_ip[address] = self.per_ip.get(address, 0) + 1

    def closed(self, address: str) -> None:
        """Counts a connection of address as closed.

        Args:
            address: the client's address.
        """
        self.total -= 1
        left = self.per_ip.get(address, 1) - 1
        if left:
            self.per_ip[address] = left
        else:
            self.per_ip.pop(address, None)
