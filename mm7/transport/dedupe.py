"""Duplicate detection for inbound requests: has this peer sent this request before?

MMSCs retry a DeliverReq or DeliveryReportReq they got no answer to (a timeout, a reset, a 5xx),
sometimes with the same TransactionID, sometimes with a fresh one but the same report. The inbound
endpoint asks a ``DuplicateStore`` before calling the handler and hands the handler
``duplicate=True`` when any key of the request was seen, so the gateway can answer 1000 without
relaying the message twice.

Keys are recorded only after the handler succeeded (a 1xxx answer): if the first attempt failed,
its retry must be processed again, not waved through as a duplicate. Concurrent requests with the
same key are serialised (``KeyedLocks``) so a retry arriving while the first attempt is still in
the handler waits for its outcome instead of racing it.

``MemoryDedupe`` is a bounded LRU with a time-to-live, for one process; the gateway plugs in a
durable store (same two methods) that survives restarts and is shared between instances.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Protocol, runtime_checkable

from mm7.core.mime import Part
from mm7.core.model import Address, DeliverReq, DeliveryReportReq, Message, ReadReplyReq

__all__ = [
    "DuplicateStore",
    "KeyedLocks",
    "MemoryDedupe",
    "NoDedupe",
    "any_seen",
    "content_digest",
    "dedupe_keys",
]

#: separates the fields of a key (not a character that survives XML parsing as text)
_SEP = "\x1f"


@runtime_checkable
class DuplicateStore(Protocol):
    """Where the endpoint remembers which requests it has answered with success."""

    async def seen(self, key: str) -> bool:
        """Whether ``key`` was recorded (and has not expired)."""
        ...

    async def record(self, key: str) -> None:
        """Remember ``key``: called after the handler succeeded, never before."""
        ...


class MemoryDedupe:
    """An in-process DuplicateStore: at most ``max_entries`` keys, each kept ``ttl`` seconds.

    The oldest key goes first when full (LRU: ``record`` refreshes a key). ``clock`` is
    injectable so expiry can be tested without waiting.
    """

    def __init__(
        self,
        max_entries: int = 100_000,
        ttl: float = 24 * 3600.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._expires: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expires)

    async def seen(self, key: str) -> bool:
        expires = self._expires.get(key)
        if expires is None:
            return False
        if expires <= self._clock():
            del self._expires[key]
            return False
        return True

    async def record(self, key: str) -> None:
        now = self._clock()
        self._expires[key] = now + self.ttl
        self._expires.move_to_end(key)
        # drop expired keys from the old end, then the oldest while over the bound
        while self._expires:
            oldest, expires = next(iter(self._expires.items()))
            if expires > now and len(self._expires) <= self.max_entries:
                break
            del self._expires[oldest]


class NoDedupe:
    """A DuplicateStore that never sees anything (duplicate detection off)."""

    async def seen(self, key: str) -> bool:
        return False

    async def record(self, key: str) -> None:
        return None


def _key(peer: str, kind: str, *fields: str) -> str:
    return _SEP.join((peer, kind, *fields))


def dedupe_keys(
    peer: str, message: Message, leaves: dict[int, bytes] | None = None
) -> tuple[str, ...]:
    """The keys that identify ``message`` from ``peer``; a retry matches at least one.
    ``leaves``: as for ``content_digest``.

    MMSCs recycle small TransactionID counters, so a TransactionID alone would make a new
    message with a recycled one a "duplicate" and drop it. Each key therefore holds what a
    retry repeats and a different message does not:

    - DeliveryReportReq: ``MessageID + recipient + sender + MMStatus`` (one message gets several
      reports, Forwarded then Retrieved, which are not duplicates of each other; the sender
      too because some MMSCs (Mbuni) put the handset there and the VASP's short code in
      Recipient, and two handsets' reports of one message must not be taken for one);
    - ReadReplyReq: ``MessageID + recipient + sender + read status``;
    - DeliverReq (no MessageID in the schema): ``TransactionID + sender + Date + Subject`` and
      a digest of the content (Date and Subject are optional; the content tells two messages
      from one handset apart when they are missing);
    - any other request: its TransactionID.
    """
    if isinstance(message, DeliveryReportReq | ReadReplyReq) and message.message_id:
        kind = "dr" if isinstance(message, DeliveryReportReq) else "rr"
        status = message.mm_status_raw or str(message.mm_status)
        recipient, sender = _value(message.recipient), _value(message.sender)
        return (_key(peer, kind, message.message_id, recipient, sender, status),)
    if not message.transaction_id:
        return ()
    if isinstance(message, DeliverReq):
        date = message.timestamp.isoformat() if message.timestamp is not None else ""
        return (
            _key(
                peer, "mo", message.transaction_id, _value(message.sender), date,
                message.subject or "", content_digest(message.content, leaves),
            ),
        )  # fmt: skip
    return (_key(peer, "tid", message.transaction_id),)


def _value(address: Address | None) -> str:
    return address.value if address is not None else ""


def content_digest(part: Part | None, leaves: dict[int, bytes] | None = None) -> str:
    """A SHA-256 (hex) over the bodies of a content's leaf parts, in order ("" for none).

    Over the decoded bodies, not the wire bytes: a retry may come with another MIME boundary.
    ``leaves`` is filled with each leaf body's own SHA-256 keyed by the ``id`` of the body, so
    that the request's handler need not hash the same bytes again (valid while the message
    holds them).
    """
    if part is None:
        return ""
    digest = hashlib.sha256()
    stack = [part]
    while stack:
        current = stack.pop()
        if current.children:
            stack.extend(reversed(current.children))
        else:
            leaf = hashlib.sha256(current.body).digest()
            if leaves is not None:
                leaves[id(current.body)] = leaf
            digest.update(leaf)
    return digest.hexdigest()


async def any_seen(store: DuplicateStore, keys: Iterable[str]) -> bool:
    """Whether ``store`` has seen any of ``keys``."""
    for key in keys:
        if await store.seen(key):
            return True
    return False


class KeyedLocks:
    """Per-key asyncio locks, created on demand and dropped when no one holds or waits on them.

    ``hold(keys)`` takes the locks of all ``keys`` in sorted order (no deadlock between two
    requests sharing several keys).
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    def users(self, key: str) -> int:
        """How many requests hold or wait for ``key`` (0 when none)."""
        entry = self._locks.get(key)
        return entry[1] if entry is not None else 0

    @asynccontextmanager
    async def hold(self, keys: Iterable[str]) -> AsyncIterator[None]:
        ordered = sorted(set(keys))
        for key in ordered:
            lock, users = self._locks.get(key, (None, 0))
            self._locks[key] = (lock or asyncio.Lock(), users + 1)
        acquired: list[asyncio.Lock] = []
        try:
            for key in ordered:
                lock = self._locks[key][0]
                await lock.acquire()
                acquired.append(lock)
            yield
        finally:
            for lock in reversed(acquired):
                lock.release()
            for key in ordered:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)
