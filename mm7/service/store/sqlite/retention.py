"""The SQLite store's retention: deleting what is finished and older than ``[store] retain``.

A mixin of ``SqliteStore``. What goes, in small transactions so that the writer thread is never
held for long (each chunk is one group commit among the others):

- MT messages with no recipient left to send (none ``queued``) last changed before the cutoff,
  with their recipients, parts and events;
- MO messages received before the cutoff that have nothing left to relay (``relayed``,
  ``unrouted``, ``skipped``, ``dropped``; a ``pending`` or ``dead`` relay keeps its MO, since an
  operator may still retry it), with their parts;
- delivery reports received before the cutoff, and the reports and read replies kept early with
  them (``early_reports``: a MessageID never recorded);
- media no message refers to any more and stored before the cutoff (rows, then their files),
  and media files without a row left behind by a crash between the file write and the commit
  (older than a day, so that a write in progress is never taken for one);
- inbound request keys (duplicate detection, ``seen_requests``) whose expiry passed, whatever
  the cutoff: they have their own time to live.

Suppressions (opt-outs) are never purged: they hold until the subscriber sends START.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from mm7.service.store.base import Clock
from mm7.service.store.records import PurgeStats
from mm7.service.store.sqlite.cluster import purge_request_keys
from mm7.service.store.sqlite.rows import ms

__all__ = ["SqliteRetention"]

#: messages, MOs or media looked at per transaction
CHUNK = 500
#: rows deleted per transaction at most (a big campaign's recipients and events)
ROWS = 5000
#: a media file without a row must be at least this old to be removed (seconds)
ORPHAN_FILE_AGE = 86400.0
_DONE_MO = ("relayed", "unrouted", "skipped", "dropped")


class SqliteRetention:
    """The retention half of ``SqliteStore`` (module docstring)."""

    _clock: Clock
    _media_dir: Path
    _write: Callable[..., Any]

    async def purge(self, before: datetime) -> PurgeStats:
        """Delete what is finished and older than ``before`` (module docstring)."""
        cutoff = ms(before)
        messages = await self._chunked(lambda conn: _purge_messages(conn, cutoff))
        mos = await self._chunked(lambda conn: _purge_mos(conn, cutoff))
        reports = await self._chunked(lambda conn: _purge_reports(conn, cutoff))
        media = 0
        while True:
            gone: list[tuple[str, str | None]] = await self._write(
                lambda conn: _purge_media(conn, cutoff)
            )
            if not gone:
                break
            media += len(gone)
            # Files go on the writer thread, each only if its row is still gone: an enqueue of
            # the same bytes commits there too, so it cannot slip in between check and unlink.
            if any(path for _, path in gone):
                await self._write(lambda conn, gone=gone: self._unlink_unreferenced(conn, gone))
        orphans = await self._orphan_files()
        now = ms(self._clock.now())
        keys = await self._chunked(lambda conn: purge_request_keys(conn, now, ROWS))
        return PurgeStats(messages, mos, reports, media, orphans, keys)

    async def _chunked(self, op: Callable[[sqlite3.Connection], tuple[int, bool]]) -> int:
        """Run ``op`` (one transaction: (rows it deleted, whether more remain)) until done."""
        total = 0
        while True:
            done: tuple[int, bool] = await self._write(op)
            count, more = done
            total += count
            if not more:
                return total

    def _unlink_unreferenced(
        self, conn: sqlite3.Connection, files: list[tuple[str, str | None]]
    ) -> int:
        """On the writer thread: remove each file whose media row does not exist (now)."""
        removed = 0
        for sha256, rel in files:
            if rel is None:
                continue
            if conn.execute("SELECT 1 FROM media WHERE sha256=?", (sha256,)).fetchone():
                continue  # stored again meanwhile: the file is in use
            with contextlib.suppress(OSError):
                os.unlink(self._media_dir / rel)
                removed += 1
        return removed

    async def _orphan_files(self) -> int:
        """Remove media files no row names (a crash between file write and commit)."""
        # the directory walk is slow on a big store: never on the event loop
        candidates = await asyncio.to_thread(_old_files, self._media_dir)
        removed = 0
        for start in range(0, len(candidates), CHUNK):
            # temporary files of an interrupted write (".<sha>.<rand>.tmp") match no row either
            files: list[tuple[str, str | None]] = [
                (p.name, str(p.relative_to(self._media_dir)))
                for p in candidates[start : start + CHUNK]
            ]
            count: int = await self._write(
                lambda conn, files=files: self._unlink_unreferenced(conn, files)
            )
            removed += count
        return removed


def _old_files(folder: Path) -> list[Path]:
    """Media files older than ORPHAN_FILE_AGE (on a worker thread: this walks the folder)."""
    if not folder.is_dir():
        return []
    old = time.time() - ORPHAN_FILE_AGE
    found: list[Path] = []
    for sub in folder.iterdir():
        if not sub.is_dir():
            continue
        for path in sub.iterdir():
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_mtime < old:
                    found.append(path)
    return found


def _purge_messages(conn: sqlite3.Connection, cutoff: int) -> tuple[int, bool]:
    """Old finished messages, at most ROWS rows per transaction (children first).

    A 100,000-recipient campaign takes several transactions, so that the writer thread is never
    held for long; a message row goes once its recipients and events have. Returns (messages
    deleted, whether more remain).
    """
    rows = 0
    messages = 0
    for (message_id,) in conn.execute(
        "SELECT id FROM messages WHERE updated_at<? AND queued_count<=0 LIMIT ?",
        (cutoff, CHUNK),
    ).fetchall():
        for table in ("events", "recipients"):
            rows += conn.execute(
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table}"
                " WHERE message_id=? LIMIT ?)",
                (message_id, ROWS - rows),
            ).rowcount
            if rows >= ROWS:
                return messages, True
        rows += conn.execute("DELETE FROM message_media WHERE message_id=?", (message_id,)).rowcount
        conn.execute("DELETE FROM messages WHERE id=?", (message_id,))
        messages += 1
        rows += 1
        if rows >= ROWS:
            return messages, True
    return messages, messages == CHUNK


def _purge_mos(conn: sqlite3.Connection, cutoff: int) -> tuple[int, bool]:
    marks = ",".join("?" * len(_DONE_MO))
    ids = [
        r[0]
        for r in conn.execute(
            f"SELECT id FROM mo_messages WHERE received_at<? AND status IN ({marks}) LIMIT ?",
            (cutoff, *_DONE_MO, CHUNK),
        )
    ]
    for mo_id in ids:
        conn.execute("DELETE FROM mo_media WHERE mo_id=?", (mo_id,))
        conn.execute("DELETE FROM mo_messages WHERE id=?", (mo_id,))
    return len(ids), len(ids) == CHUNK


def _purge_reports(conn: sqlite3.Connection, cutoff: int) -> tuple[int, bool]:
    """Old delivery reports, and the early ones kept with them (read replies too: not
    counted)."""
    kept = conn.execute(
        "DELETE FROM early_reports WHERE id IN (SELECT id FROM early_reports"
        " WHERE received_at<? LIMIT ?)",
        (cutoff, ROWS),
    ).rowcount
    count = conn.execute(
        "DELETE FROM delivery_reports WHERE id IN (SELECT id FROM delivery_reports"
        " WHERE received_at<? LIMIT ?)",
        (cutoff, ROWS),
    ).rowcount
    return count, count == ROWS or kept == ROWS


def _purge_media(conn: sqlite3.Connection, cutoff: int) -> list[tuple[str, str | None]]:
    """Delete up to CHUNK unreferenced media rows; (sha256, file path or None) of each.

    Chosen through the (created_at, sha256) index, so the blobs are never read.
    """
    chosen = [
        r[0]
        for r in conn.execute(
            "SELECT sha256 FROM media m INDEXED BY media_created WHERE created_at<?"
            " AND NOT EXISTS (SELECT 1 FROM message_media x WHERE x.sha256=m.sha256)"
            " AND NOT EXISTS (SELECT 1 FROM mo_media y WHERE y.sha256=m.sha256) LIMIT ?",
            (cutoff, CHUNK),
        )
    ]
    gone: list[tuple[str, str | None]] = []
    for sha256 in chosen:
        row = conn.execute("SELECT path FROM media WHERE sha256=?", (sha256,)).fetchone()
        conn.execute("DELETE FROM media WHERE sha256=?", (sha256,))
        gone.append((sha256, row[0] if row else None))
    return gone
