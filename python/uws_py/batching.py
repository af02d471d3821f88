"""Combining what the server sends one client into BATCH frames. No I/O: the owner sends
what ``add`` and ``flush`` return and runs the timer ``add`` asks for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Batching:
    """Messages to one client within ``max_wait_ms`` leave together, as one
    ``{"type": "BATCH", "timestamp": ..., "messages": [...]}`` frame, or as soon as
    ``max_size`` are queued. A lone message leaves as itself."""

    max_size: int = 10
    max_wait_ms: float = 50.0

    def __post_init__(self) -> None:
        if self.max_size < 1 or self.max_wait_ms <= 0:
            raise ValueError("Batching needs max_size >= 1 and max_wait_ms > 0")


class Batcher:
    """One client's queue. Order is always kept: a priority message first flushes what was
    queued before it. ``clock`` gives the BATCH timestamp (milliseconds)."""

    __slots__ = ("options", "queue", "clock")

    def __init__(self, options: Batching, clock: Callable[[], int]) -> None:
        self.options = options
        self.queue: list[Any] = []
        self.clock = clock

    def add(self, message: Any, priority: bool = False) -> tuple[list[Any], bool]:
        """Queues message. Returns (frames to send now, in order; whether to start the
        flush timer, wanted when the queue just became non-empty)."""
        if priority:
            frames = self.flush()
            frames.append(message)
            return frames, False
        self.queue.append(message)
        if len(self.queue) >= self.options.max_size:
            return self.flush(), False
        return [], len(self.queue) == 1

    def flush(self) -> list[Any]:
        """The queue as frames (none, the lone message, or one BATCH); the queue empties."""
        if not self.queue:
            return []
        queued, self.queue = self.queue, []
        if len(queued) == 1:
            return queued
        return [{"type": "BATCH", "timestamp": self.clock(), "messages": queued}]
