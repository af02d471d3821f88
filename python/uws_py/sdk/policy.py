"""The decisions of the client SDK, with no I/O: how long to wait before reconnecting, what a
close code or a refused handshake means, which offsets to deliver, when to refresh a token.

The client (``uws_py.sdk.client``) does the I/O and asks these functions what to do; they take
every input explicitly (a random source, the current time) so they are unit-tested without a
network or a clock.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import random
from dataclasses import dataclass
from typing import Any, Callable, Optional


class Backoff:
    """Exponential backoff with jitter: the n-th consecutive failure (0-based) waits a uniform
    draw from ``[min_delay, min(max_delay, min_delay * 2**(n+1))]``.

    Jitter (rather than a fixed exponential step) spreads the reconnects of many clients cut at
    the same moment, so a restarted server is not hit by all of them at once. The first retry
    is jittered too (``[min_delay, 2 * min_delay]``): it is the one every client of a restarted
    worker makes at once. The draw starts at ``min_delay`` rather than 0 so that no client
    retries immediately, and a uniform draw (rather than one clamped up to ``min_delay``) puts
    no pile of clients on that lower bound.
    """

    def __init__(self, min_delay: float = 0.2, max_delay: float = 20.0,
                 random_uniform: Callable[[float, float], float] = random.uniform) -> None:
        """min_delay, max_delay: seconds (0 < min_delay <= max_delay); random_uniform(a, b):
        the source of jitter, injectable for tests."""
        if not 0 < min_delay <= max_delay:
            raise ValueError(f"backoff needs 0 < min_delay <= max_delay, got {min_delay} and {max_delay}")
        self.min_delay = min_delay
        self.max_delay = max_delay
        self._uniform = random_uniform
        self.attempts = 0

    def ceiling(self, attempt: int) -> float:
        """The largest delay the attempt-th consecutive failure (0-based) can draw."""
        # Capped exponent: 2**attempt overflows a float long before it matters.
        return min(self.max_delay, self.min_delay * (2 ** (min(attempt, 64) + 1)))

    def next_delay(self) -> float:
        """The delay before the next attempt; counts one more failure."""
        ceiling = self.ceiling(self.attempts)
        self.attempts += 1
        # max/min guard a random source that strays outside its bounds.
        return min(ceiling, max(self.min_delay, self._uniform(self.min_delay, ceiling)))

    def reset(self) -> None:
        """After a successful connection the next failure starts from min_delay again."""
        self.attempts = 0


class Action(enum.Enum):
    """What the client does after its connection ended."""

    RECONNECT = "reconnect"
    REFRESH_AND_RECONNECT = "refresh_and_reconnect"
    STOP = "stop"


@dataclass(frozen=True)
class Decision:
    """An action and why, for logs and for the error the application gets on STOP.
    close_code, close_reason: the server's close frame it was decided on (None: there was
    none, or the decision is not about a close)."""

    action: Action
    reason: str
    close_code: Optional[int] = None
    close_reason: str = ""


# Codes the peer or the network may send for a transient condition (RFC 6455 section 7.4 and
# the IANA registry): going away, abnormal end, internal error, restart, try again later.
_TRANSIENT_CODES = {1001, 1005, 1006, 1011, 1012, 1013, 1014}
# This client broke the protocol or sent what the server cannot take: reconnecting would repeat it.
_CLIENT_FAULT_CODES = {1002, 1003, 1007, 1009, 1010}


def decide_close(code: Optional[int], reason: str, can_refresh: bool) -> Decision:
    """The action after the server closed the connection with ``code``/``reason`` (None: the
    transport failed without a close frame, as 1006). can_refresh: a ``get_token`` is set.

    - 1001/1005/1006/1011/1012/1013/1014 and transport errors: reconnect.
    - 1008 ``token expired``: a new token, then reconnect (stop without ``get_token``).
    - 1008 ``rate limit exceeded`` (the limit refills) and ``backpressure limit`` (this client
      read too slowly; on history topics it recovers what it missed): reconnect after the backoff.
    - 1000 (the application closed this client on purpose), other 1008 reasons, the protocol
      faults 1002/1003/1007/1009/1010, and 4000-4999 (application-defined, final by the
      protocol's convention): stop.
    - anything else (3000-3999, unknown 1xxx): reconnect.

    The Decision carries the code and reason, so the application can tell them apart (a
    ``disconnect_user`` with 4000 is final, with 3000..3999 the client comes back).
    """
    decision = _decide_close(code, reason, can_refresh)
    return dataclasses.replace(decision, close_code=code, close_reason=reason if code is not None else "")


def _decide_close(code: Optional[int], reason: str, can_refresh: bool) -> Decision:
    if code is None or code in _TRANSIENT_CODES:
        return Decision(Action.RECONNECT, f"connection lost ({code or 1006})")
    if code == 1008:
        if reason == "token expired":
            if can_refresh:
                return Decision(Action.REFRESH_AND_RECONNECT, "token expired")
            return Decision(Action.STOP, "token expired and no get_token to renew it")
        if reason in ("rate limit exceeded", "backpressure limit"):
            # The limit refills; a slow reader recovers what it missed when it resubscribes.
            return Decision(Action.RECONNECT, reason)
        return Decision(Action.STOP, f"policy violation: {reason or 'no reason given'}")
    if code == 1000:
        return Decision(Action.STOP, f"closed by the server: {reason or 'normal closure'}")
    if code in _CLIENT_FAULT_CODES:
        return Decision(Action.STOP, f"the server refused this client's data ({code} {reason})")
    if 4000 <= code <= 4999:
        return Decision(Action.STOP, f"closed by the application ({code} {reason})")
    return Decision(Action.RECONNECT, f"closed with {code} {reason}")


# The reason of a 401 that leads to a refresh; the client counts these in a row.
REFUSED_AT_UPGRADE = "token refused at the upgrade"


def decide_handshake(status: int, can_refresh: bool, auth_failures: int, max_auth_failures: int = 3) -> Decision:
    """The action after the server refused the WebSocket upgrade with HTTP ``status``.
    auth_failures: consecutive 401s so far, this one included.

    401 gets a fresh token from ``get_token`` up to ``max_auth_failures`` times in a row (a
    token that keeps being refused is a configuration error, not a network one); 429, 503 and
    other 5xx are load and reconnect after the backoff; the rest (403 origin, 404 path, ...) stop.
    """
    if status == 401:
        if can_refresh and auth_failures < max_auth_failures:
            return Decision(Action.REFRESH_AND_RECONNECT, REFUSED_AT_UPGRADE)
        return Decision(Action.STOP, f"{REFUSED_AT_UPGRADE} ({auth_failures} time(s))")
    if status in (429, 503) or 500 <= status <= 599:
        return Decision(Action.RECONNECT, f"server busy or failing (HTTP {status})")
    return Decision(Action.STOP, f"upgrade refused with HTTP {status}")


class Verdict(enum.Enum):
    """What to do with one publication of a subscription."""

    DELIVER = "deliver"
    DUPLICATE = "duplicate"


class OffsetTracker:
    """The position of one subscription: the epoch of its topic's history and the highest
    offset delivered. A publication at or below that offset was delivered already (a
    recovered copy of a live message, or the reverse) and is skipped; plain topics carry no
    offset and everything is delivered."""

    def __init__(self, epoch: Optional[str] = None, offset: Optional[int] = None) -> None:
        """epoch, offset: a saved position to continue from, or None for none."""
        self.epoch = epoch
        self.offset = offset

    @property
    def known(self) -> bool:
        """True once a history position is known (a SUBSCRIBED carried one)."""
        return self.epoch is not None and self.offset is not None

    def reset(self, epoch: Optional[str], offset: Optional[int]) -> None:
        """Continue from (epoch, offset): the server's current position after a gap, or a
        new epoch whose offsets start again."""
        self.epoch = epoch
        self.offset = offset

    def accept(self, offset: Optional[int]) -> Verdict:
        """DELIVER (and advance) or DUPLICATE for a publication at ``offset`` (None: plain)."""
        if offset is None:
            return Verdict.DELIVER
        if self.offset is not None and offset <= self.offset:
            return Verdict.DUPLICATE
        self.offset = offset
        return Verdict.DELIVER


def token_expiry(token: str) -> Optional[float]:
    """The ``exp`` claim of a JWT in seconds, read WITHOUT verifying it (only to know when to
    refresh; the server verifies), or None when the token has no readable ``exp``."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims: Any = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return float(exp)


def refresh_delay(expires_at: Optional[float], now: float, margin: float = 30.0) -> Optional[float]:
    """Seconds from ``now`` until the token expiring at ``expires_at`` (Unix seconds) should
    be refreshed, or None when it never expires. The refresh happens ``margin`` seconds early,
    or a third of the remaining lifetime early when that is less, so short tokens (seconds) are
    refreshed in time without being refreshed in a loop."""
    if expires_at is None:
        return None
    remaining = expires_at - now
    if remaining <= 0:
        return 0.0
    return remaining - min(margin, remaining / 3)
