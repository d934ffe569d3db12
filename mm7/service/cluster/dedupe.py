"""Inbound duplicate detection on the store, shared by every instance and kept across restarts.

``StoreDedupe`` is the ``mm7.transport.dedupe.DuplicateStore`` the gateway gives its inbound
endpoint: a key recorded by any instance on the store is seen by all of them, until its time to
live (24 hours, as the in-memory one) runs out; retention deletes the expired keys. Keys are
kept as their SHA-256: a key holds the sender's address, the subject and the message ids, which
the store does not need to compare keys.

No in-memory cache in front: a key not in a local cache may have been recorded by another
instance, so only the store can say "not seen", and "seen" (a retry) is the rare answer a cache
would save a read for.

A DeliverReq's key is neither looked up nor recorded: the store's ``store_mo`` finds a retry of
a stored MO itself (same link and TransactionID with the same sender, date, subject and media,
within ``mo_duplicate_window``, 7 days by default; or the same vendor MessageID), in the very
statement that would store it, and answers it as a duplicate. Looking the key up first and
recording it after would only repeat that check at two more round trips per MO (issue 15).

``for_store`` chooses: ``StoreDedupe`` for a store other processes share, None (the endpoint's
in-memory ``MemoryDedupe``) for SQLite, which one process uses: there the store's read and write
per inbound request cost 0.3 - 0.5 ms of CPU per MO (about a fifth, BENCHMARKS.md) and answer
nothing the memory does not.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Literal, Protocol

__all__ = ["DEFAULT_TTL", "StoreDedupe", "for_store"]

#: how long a request key is remembered (as ``MemoryDedupe``'s default)
DEFAULT_TTL = 24 * 3600.0


class _RequestKeys(Protocol):
    """What the dedupe needs of a ``Store``."""

    async def seen_request(self, key: str) -> bool: ...

    async def record_request(self, key: str, ttl: timedelta) -> None: ...


#: the field separator of ``mm7.transport.dedupe`` keys (peer, kind, fields ...) and the kind of
#: a DeliverReq's key
_SEP = "\x1f"
_MO = "mo"


def _checked_by_the_store(key: str) -> bool:
    """Whether ``key`` is a DeliverReq's, whose retries ``store_mo`` detects (module docstring)."""
    fields = key.split(_SEP, 2)
    return len(fields) > 2 and fields[1] == _MO


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class StoreDedupe:
    """A ``DuplicateStore`` over the store's request keys (module docstring)."""

    def __init__(self, store: _RequestKeys, ttl: float = DEFAULT_TTL) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.store = store
        self.ttl = timedelta(seconds=ttl)

    async def seen(self, key: str) -> bool:
        """Whether any instance recorded ``key`` within its time to live (a DeliverReq's: never
        here, ``store_mo`` tells)."""
        if _checked_by_the_store(key):
            return False
        return await self.store.seen_request(_digest(key))

    async def record(self, key: str) -> None:
        """Remember ``key`` for every instance (after the handler succeeded; a DeliverReq's is
        not kept: ``store_mo`` keeps the MO)."""
        if not _checked_by_the_store(key):
            await self.store.record_request(_digest(key), self.ttl)


def for_store(backend: Literal["sqlite", "postgresql"], store: _RequestKeys) -> StoreDedupe | None:
    """The inbound endpoint's duplicate store for ``store`` of ``backend`` (None: in memory)."""
    return None if backend == "sqlite" else StoreDedupe(store)
