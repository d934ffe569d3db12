"""The PostgreSQL store's retention: deleting what is finished and older than ``[store] retain``.

A mixin of ``PostgresStore``, the counterpart of ``sqlite/retention.py`` with the same rules,
in small transactions (at most ``CHUNK`` messages, MOs or media and about ``ROWS`` rows each) so
that no lock or WAL burst is held for long:

- MT messages with no recipient left to send (none ``queued``) last changed before the cutoff,
  with their recipients, parts and events;
- MO messages received before the cutoff that have nothing left to relay (``relayed``,
  ``unrouted``, ``skipped``, ``dropped``; a ``pending`` or ``dead`` relay keeps its MO, since an
  operator may still retry it), with their parts;
- delivery reports received before the cutoff, and the reports and read replies kept early with
  them (``early_reports``: a MessageID never recorded);
- media no message or MO refers to and last used before the cutoff (media lives in its rows:
  there are no files, so no orphan files either);
- inbound request keys (``seen_requests``) whose duplicate window has passed.

Named leases (``leases``) and suppressions are never touched. Other instances keep working
meanwhile: a row one of them has locked (an enqueue reusing media, a report on a message) is
skipped (``SKIP LOCKED``) and left for the next purge, and media is deleted only after a second
look, under the lock, finds it still unreferenced, so a message committed meanwhile keeps it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from mm7.service.store.postgres.base import PostgresBase, asyncpg
from mm7.service.store.postgres.rows import ms
from mm7.service.store.records import PurgeStats

__all__ = ["PostgresRetention"]

#: messages, MOs or media looked at per transaction
CHUNK = 500
#: rows deleted per transaction at most (a big campaign's recipients and events; reports)
ROWS = 5000
_DONE_MO = ["relayed", "unrouted", "skipped", "dropped"]
_UNUSED = (
    "NOT EXISTS (SELECT 1 FROM message_media x WHERE x.sha256 = m.sha256)"
    " AND NOT EXISTS (SELECT 1 FROM mo_media y WHERE y.sha256 = m.sha256)"
)

#: one transaction of a purge: (rows of its kind deleted, whether more may remain)
Step = Callable[[asyncpg.Connection], Awaitable[tuple[int, bool]]]


def _count(tag: str) -> int:
    """The row count of a status tag (``DELETE 12``)."""
    return int(tag.rsplit(" ", 1)[-1])


class PostgresRetention(PostgresBase):
    """The retention half of ``PostgresStore`` (module docstring)."""

    async def purge(self, before: datetime) -> PurgeStats:
        """Delete what is finished and older than ``before``, and request keys expired now
        (module docstring)."""
        cutoff = ms(before)
        messages = await self._chunked(lambda conn: _purge_messages(conn, cutoff))
        mos = await self._chunked(lambda conn: _purge_mos(conn, cutoff))
        reports = await self._chunked(lambda conn: _purge_reports(conn, cutoff))
        media = await self._chunked(lambda conn: _purge_media(conn, cutoff))
        now = self._now_ms()
        keys = await self._chunked(lambda conn: _purge_request_keys(conn, now))
        return PurgeStats(messages, mos, reports, media, 0, keys)

    async def _chunked(self, step: Step) -> int:
        """Run ``step`` (one transaction each) until it says nothing more remains; the total."""
        total = 0
        while True:
            count, more = await self._write(step)
            total += count
            if not more:
                return total


async def _purge_messages(conn: asyncpg.Connection, cutoff: int) -> tuple[int, bool]:
    """Old finished messages, children first, at most ROWS children per transaction: a
    100,000-recipient campaign takes several, and its message row goes in the last one.
    Returns (messages deleted, whether more remain)."""
    ids = [
        r[0]
        for r in await conn.fetch(
            "SELECT id FROM messages WHERE updated_at < $1 AND queued_count <= 0"
            " LIMIT $2 FOR UPDATE SKIP LOCKED",
            cutoff,
            CHUNK,
        )
    ]
    if not ids:
        return 0, False
    rows = 0
    for table in ("events", "recipients"):
        rows += _count(
            await conn.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table}"
                " WHERE message_id = ANY($1::text[]) LIMIT $2)",
                ids,
                ROWS - rows,
            )
        )
        if rows >= ROWS:
            return 0, True
    await conn.execute("DELETE FROM message_media WHERE message_id = ANY($1::text[])", ids)
    deleted = _count(await conn.execute("DELETE FROM messages WHERE id = ANY($1::text[])", ids))
    return deleted, len(ids) == CHUNK


async def _purge_mos(conn: asyncpg.Connection, cutoff: int) -> tuple[int, bool]:
    ids = [
        r[0]
        for r in await conn.fetch(
            "SELECT id FROM mo_messages WHERE received_at < $1 AND status = ANY($2::text[])"
            " LIMIT $3 FOR UPDATE SKIP LOCKED",
            cutoff,
            _DONE_MO,
            CHUNK,
        )
    ]
    if not ids:
        return 0, False
    await conn.execute("DELETE FROM mo_media WHERE mo_id = ANY($1::text[])", ids)
    deleted = _count(await conn.execute("DELETE FROM mo_messages WHERE id = ANY($1::text[])", ids))
    return deleted, len(ids) == CHUNK


async def _purge_reports(conn: asyncpg.Connection, cutoff: int) -> tuple[int, bool]:
    """Old delivery reports, and the early ones kept with them (read replies too: not
    counted); a row a completion is applying is left for the next purge."""
    kept = _count(
        await conn.execute(
            "DELETE FROM early_reports WHERE id IN (SELECT id FROM early_reports"
            " WHERE received_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            cutoff,
            ROWS,
        )
    )
    count = _count(
        await conn.execute(
            "DELETE FROM delivery_reports WHERE id IN (SELECT id FROM delivery_reports"
            " WHERE received_at < $1 LIMIT $2)",
            cutoff,
            ROWS,
        )
    )
    return count, count == ROWS or kept == ROWS


async def _purge_media(conn: asyncpg.Connection, cutoff: int) -> tuple[int, bool]:
    """Unused media last used before the cutoff, up to CHUNK (chosen through the
    ``media_created`` index, so the bytes are never read).

    The candidates are locked first, then deleted by a second statement, whose snapshot sees
    every message or MO committed until then: one that refers to the media keeps it, and one
    still being written waits for the lock (or holds it, and the media is skipped).
    """
    chosen = [
        r[0]
        for r in await conn.fetch(
            f"SELECT sha256 FROM media m WHERE created_at < $1 AND {_UNUSED}"
            " ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            cutoff,
            CHUNK,
        )
    ]
    if not chosen:
        return 0, False
    deleted = _count(
        await conn.execute(
            f"DELETE FROM media m WHERE sha256 = ANY($1::text[]) AND created_at < $2 AND {_UNUSED}",
            chosen,
            cutoff,
        )
    )
    return deleted, len(chosen) == CHUNK


async def _purge_request_keys(conn: asyncpg.Connection, now: int) -> tuple[int, bool]:
    """Inbound request keys whose duplicate window ended by ``now`` (``seen_requests``)."""
    count = _count(
        await conn.execute(
            "DELETE FROM seen_requests WHERE key IN (SELECT key FROM seen_requests"
            " WHERE expires_at <= $1 LIMIT $2)",
            now,
            ROWS,
        )
    )
    return count, count == ROWS
