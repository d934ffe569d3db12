"""Live updates of the traffic record for the console (server-sent events): every subscriber
has its own bounded queue; one that falls behind is dropped, never the simulator, which only
appends a reference per subscriber on the request path. A dropped browser reconnects and
catches up from the ring by ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from mm7.core.errors import MM7Error

#: what a subscriber gets after ``reset``: the record was emptied
RESET = "reset"
#: queue length of one subscriber unless told otherwise
DEFAULT_QUEUE = 1000


class Dropped(MM7Error):
    """The subscriber fell ``limit`` items behind and was let go."""


class Subscription:
    """One subscriber's queue: items are exchanges or ``RESET``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = False
        self.closed = False
        self._items: collections.deque[Any] = collections.deque()
        self._ready = asyncio.Event()

    def offer(self, item: Any) -> bool:
        """Queue ``item``; False (and dropped) when the queue is full."""
        if self.dropped:
            return False
        if len(self._items) >= self.limit:
            self.dropped = True
            self._items.clear()
            self._ready.set()
            return False
        self._items.append(item)
        self._ready.set()
        return True

    def close(self) -> None:
        """End the wait in ``next`` now and every later one at once (the server stops)."""
        self.closed = True
        self._ready.set()

    async def next(self, timeout: float) -> list[Any]:
        """Everything queued, waiting up to ``timeout`` seconds for something ([] then, and at
        once when closed); Dropped once the subscriber has been let go."""
        if not self._items and not self.dropped and not self.closed:
            self._ready.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return []
        if self.dropped:
            raise Dropped(f"more than {self.limit} updates behind")
        items = list(self._items)
        self._items.clear()
        return items


class TrafficFeed:
    """The set of live subscribers of one traffic record."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        #: subscribers let go for being slow, since the start (shown by the control API)
        self.dropped = 0

    def subscribe(self, limit: int = DEFAULT_QUEUE) -> Subscription:
        if limit < 1:
            raise ValueError("a subscriber's queue holds at least 1 item")
        subscription = Subscription(limit)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, item: Any) -> None:
        """Offer ``item`` to every subscriber; the ones that are full are dropped."""
        if not self._subscribers:
            return
        for subscription in list(self._subscribers):
            if not subscription.offer(item):
                self._subscribers.discard(subscription)
                self.dropped += 1

    def close(self) -> None:
        """Wake every subscriber (the server is shutting down; their streams end)."""
        for subscription in self._subscribers:
            subscription.close()

    def reset(self) -> None:
        """Tell every subscriber that the record was emptied."""
        self.publish(RESET)
