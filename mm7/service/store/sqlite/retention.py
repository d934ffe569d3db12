"""The SQLite store's retention: deleting what is finished and older than ``[store] retain``.

A mixin of ``SqliteStore``. What goes, in small transactions (each chunk is one group commit
among the others):

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

On the event loop. The store runs a write job's statements on the event loop, so each job here
stops after ``BUDGET`` seconds of work (or ``CHUNK`` items, ``ROWS`` rows) and says more remain:
a job holds the loop about 2 ms whatever the machine (BENCHMARKS.md, "Retention on the event
loop"). Files are unlinked on a worker thread, ``UNLINK_GROUP`` at a time, each only if its row
is still gone, by a connection of its own holding the database's write lock (``BEGIN
IMMEDIATE``) meanwhile: no write commits between the check and the unlink (the store's batches
wait on its commit thread, off the loop, as for any other connection's lock), and a write that
stores the same bytes afterwards finds the file gone and writes it again (``_insert_media``).
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

#: messages, MOs or media looked at per transaction at most
CHUNK = 100
#: rows deleted per transaction at most (a big campaign's recipients and events): one statement
#: deleting this many takes about a millisecond
ROWS = 1000
#: seconds of work after which a job commits and says more remain (it runs on the event loop)
BUDGET = 0.002
#: files unlinked per hold of the write lock (on a worker thread): the store's writes wait
#: meanwhile, about 1 ms a file on this machine's disk
UNLINK_GROUP = 20
#: a media file without a row must be at least this old to be removed (seconds)
ORPHAN_FILE_AGE = 86400.0
#: how long an unlink group waits for the write lock (ms; the store's own batches are short)
UNLINK_LOCK_WAIT_MS = 10_000
_DONE_MO = ("relayed", "unrouted", "skipped", "dropped")


class SqliteRetention:
    """The retention half of ``SqliteStore`` (module docstring)."""

    _clock: Clock
    _path: Path
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
            # each file only if its row is still gone, under the write lock (module docstring)
            await self._unlink_files(gone)
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

    async def _unlink_files(self, files: list[tuple[str, str | None]]) -> int:
        """Remove each file whose media row does not exist, off the event loop (module
        docstring); ``files``: (sha256, path under the media folder or None)."""
        named = [(sha256, rel) for sha256, rel in files if rel is not None]
        if not named:
            return 0
        conn = await asyncio.to_thread(self._unlink_connection)
        try:
            removed = 0
            for start in range(0, len(named), UNLINK_GROUP):
                group = named[start : start + UNLINK_GROUP]
                removed += await asyncio.to_thread(self._unlink_locked, conn, group)
            return removed
        finally:
            await asyncio.to_thread(conn.close)

    def _unlink_connection(self) -> sqlite3.Connection:
        """A connection of the unlinks' own (used from worker threads, one call at a time)."""
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {UNLINK_LOCK_WAIT_MS}")
        return conn

    def _unlink_locked(self, conn: sqlite3.Connection, files: list[tuple[str, str]]) -> int:
        """On a worker thread: hold the write lock, unlink each file whose row is gone (now)."""
        conn.execute("BEGIN IMMEDIATE")  # until the end: no write commits meanwhile
        try:
            removed = 0
            for sha256, rel in files:
                if conn.execute("SELECT 1 FROM media WHERE sha256=?", (sha256,)).fetchone():
                    continue  # stored again meanwhile: the file is in use
                with contextlib.suppress(OSError):
                    os.unlink(self._media_dir / rel)
                    removed += 1
            return removed
        finally:
            conn.execute("ROLLBACK")  # nothing written: the lock was the point

    async def _orphan_files(self) -> int:
        """Remove media files no row names (a crash between file write and commit)."""
        # the directory walk is slow on a big store: never on the event loop
        candidates = await asyncio.to_thread(_old_files, self._media_dir)
        # temporary files of an interrupted write (".<sha>.<rand>.tmp") match no row either
        files: list[tuple[str, str | None]] = [
            (p.name, str(p.relative_to(self._media_dir))) for p in candidates
        ]
        return await self._unlink_files(files)


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
    deadline = time.perf_counter() + BUDGET
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
        if rows >= ROWS or time.perf_counter() >= deadline:
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
    deadline = time.perf_counter() + BUDGET
    for done, mo_id in enumerate(ids, 1):
        conn.execute("DELETE FROM mo_media WHERE mo_id=?", (mo_id,))
        conn.execute("DELETE FROM mo_messages WHERE id=?", (mo_id,))
        if time.perf_counter() >= deadline:
            return done, True
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
    deadline = time.perf_counter() + BUDGET
    gone: list[tuple[str, str | None]] = []
    for sha256 in chosen:
        row = conn.execute("SELECT path FROM media WHERE sha256=?", (sha256,)).fetchone()
        conn.execute("DELETE FROM media WHERE sha256=?", (sha256,))
        gone.append((sha256, row[0] if row else None))
        if time.perf_counter() >= deadline:
            break  # the caller asks again until none is left
    return gone
