"""Subscribers per topic in this process, kept from the core's subscription events (one dict
update per subscribe or unsubscribe; nothing per message)."""

from __future__ import annotations

import heapq
from typing import Any

# How many topics a snapshot carries: the dashboard shows the top ones of the whole server,
# and a topic big on one worker is among that worker's top ones.
TOP_TOPICS = 50


class TopicSubscribers:
    """Local subscriber counts by topic."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def on_subscription(self, ws: Any, topic: str, count: int, before: int) -> None:
        """The core's subscription event (``count`` local subscribers now)."""
        if count > 0:
            self.counts[topic] = count
        else:
            self.counts.pop(topic, None)

    def top(self, n: int = TOP_TOPICS) -> dict[str, int]:
        """The ``n`` topics with the most subscribers, as topic -> count."""
        return dict(heapq.nlargest(n, self.counts.items(), key=lambda item: item[1]))
