"""The SQLite store's cluster operations: named leases and the inbound request keys.

A mixin of ``SqliteStore`` (its writer thread, readers and clock). A named lease
(``named_leases``) is held by one owner until its ``expires_at``; ``claim`` takes a free or
expired one, or renews the owner's own, in one write, and the fencing token grows by one each
time the lease changes hands. ``give_up`` ends a lease now and keeps its token, so that the next
holder's token is still larger. ``seen_requests`` holds the keys of inbound requests answered
with success until their expiry; ``purge`` (retention) deletes the expired ones.

One process uses a SQLite file, so there is nobody to ``watch`` for: it calls nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from mm7.service.store.base import Clock
from mm7.service.store.sqlite.rows import ms

__all__ = ["SqliteCluster", "purge_request_keys"]


class SqliteCluster:
    """The cluster half of ``SqliteStore`` (module docstring)."""

    _clock: Clock
    _write: Callable[..., Any]
    _read: Callable[..., Any]

    async def claim(self, name: str, owner: str, ttl: timedelta) -> int | None:
        """Take or renew the named lease ``name`` for ``owner`` until now + ``ttl``; its
        fencing token, or None while another owner holds it unexpired."""
        now = ms(self._clock.now())
        until = now + int(ttl.total_seconds() * 1000)

        def op(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT owner, token, expires_at FROM named_leases WHERE name=?", (name,)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO named_leases (name, owner, token, expires_at) VALUES (?,?,1,?)",
                    (name, owner, until),
                )
                return 1
            holder, token, expires_at = row
            if holder != owner:
                if expires_at > now:
                    return None
                token += 1  # changes hands
            conn.execute(
                "UPDATE named_leases SET owner=?, token=?, expires_at=? WHERE name=?",
                (owner, token, until, name),
            )
            return int(token)

        result: int | None = await self._write(op)
        return result

    async def give_up(self, name: str, owner: str) -> None:
        """End ``owner``'s lease ``name`` now (nothing when another owner holds it)."""
        now = ms(self._clock.now())

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE named_leases SET expires_at=? WHERE name=? AND owner=? AND expires_at>?",
                (now, name, owner, now),
            )

        await self._write(op)

    async def seen_request(self, key: str) -> bool:
        """Whether ``key`` was recorded and has not expired."""
        now = ms(self._clock.now())

        def read(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM seen_requests WHERE key=? AND expires_at>?", (key, now)
            ).fetchone()
            return row is not None

        seen: bool = await self._read(read)
        return seen

    async def record_request(self, key: str, ttl: timedelta) -> None:
        """Remember ``key`` until now + ``ttl`` (a key recorded before gets the new expiry)."""
        until = ms(self._clock.now()) + int(ttl.total_seconds() * 1000)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO seen_requests (key, expires_at) VALUES (?,?)"
                " ON CONFLICT(key) DO UPDATE SET expires_at=excluded.expires_at",
                (key, until),
            )

        await self._write(op)

    def watch(self, *, on_mt: Callable[[str], None], on_relay: Callable[[], None]) -> None:
        """Nothing to watch: no other process commits to this file."""
        return None


def purge_request_keys(conn: sqlite3.Connection, now: int, limit: int) -> tuple[int, bool]:
    """Delete up to ``limit`` expired request keys; (how many, whether more remain)."""
    count = conn.execute(
        "DELETE FROM seen_requests WHERE key IN (SELECT key FROM seen_requests"
        " INDEXED BY seen_requests_expiry WHERE expires_at<=? LIMIT ?)",
        (now, limit),
    ).rowcount
    return count, count == limit
