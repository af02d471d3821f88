"""The server's loop as a broker sees it, run on a test's own thread."""

from __future__ import annotations

import queue
import time
from typing import Callable


class ServerLoop:
    """``schedule`` queues a callback from any thread (a broker's ``schedule``); ``run_until``
    runs them on the test's thread until a condition holds or the time is up."""

    def __init__(self) -> None:
        self.callbacks: queue.Queue = queue.Queue()

    def schedule(self, callback: Callable[[], None]) -> None:
        self.callbacks.put(callback)

    def run_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Runs callbacks until condition() holds (True) or timeout s have passed (False)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            try:
                self.callbacks.get(timeout=0.02)()
            except queue.Empty:
                pass
        return True
