"""Per-client rate limiting: a token bucket, and the policy for clients that keep going."""

from __future__ import annotations

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


class ConnectionLimiter:
    """Open connections in total and per IP address, for refusing upgrades (503/429)."""

    def __init__(self, max_connections: Optional[int], max_per_ip: Optional[int]) -> None:
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.total = 0
        self.per_ip: dict[str, int] = {}

    def check(self, address: str) -> Optional[str]:
        """The HTTP status refusing one more connection from address, or None to accept."""
        if self.max_connections is not None and self.total >= self.max_connections:
            return "503 Service Unavailable"
        if self.max_per_ip is not None and self.per_ip.get(address, 0) >= self.max_per_ip:
            return "429 Too Many Requests"
        return None

    def opened(self, address: str) -> None:
        self.total += 1
        self.per_ip[address] = self.per_ip.get(address, 0) + 1

    def closed(self, address: str) -> None:
        self.total -= 1
        left = self.per_ip.get(address, 1) - 1
        if left:
            self.per_ip[address] = left
        else:
            self.per_ip.pop(address, None)
