"""The SQLite store's retention: deleting what is finished and older than ``[store] retain``.

A mixin of ``SqliteStore``. What goes, in small transactions so that the writer thread is never
held for long (each chunk is one group commit among the others):

- MT messages with no recipient left to send (none ``queued``) last changed before the cutoff,
  with their recipients, parts and events;
- MO messages received before the cutoff that have nothing left to relay (``relayed``,
  ``unrouted``, ``skipped``, ``dropped``; a ``pending`` or ``dead`` relay keeps its MO, since an
  operator may still retry it), with their parts;
- delivery reports received before the cutoff;
- media no message refers to any more and stored before the cutoff (rows, then their files),
  and media files without a row left behind by a crash between the file write and the commit
  (older than a day, so that a write in progress is never taken for one).

Suppressions (opt-outs) are never purged: they hold until the subscriber sends START.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mm7.service.store.base import Clock
from mm7.service.store.sqlite_rows import ms

__all__ = ["PurgeStats", "SqliteRetention"]

#: rows per transaction
CHUNK = 500
#: a media file without a row must be at least this old to be removed (seconds)
ORPHAN_FILE_AGE = 86400.0
_DONE_MO = ("relayed", "unrouted", "skipped", "dropped")


@dataclass(frozen=True, slots=True)
class PurgeStats:
    """How much one purge removed."""

    messages: int = 0
    mo_messages: int = 0
    delivery_reports: int = 0
    media: int = 0
    orphan_files: int = 0


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
        reports = await self._chunked(
            lambda conn: (
                conn.execute(
                    "DELETE FROM delivery_reports WHERE id IN (SELECT id FROM delivery_reports"
                    " WHERE received_at<? LIMIT ?)",
                    (cutoff, CHUNK),
                ).rowcount
            )
        )
        media = 0
        while True:
            paths: list[str] = await self._write(lambda conn: _purge_media(conn, cutoff))
            if not paths:
                break
            media += len(paths)
            for rel in paths:
                if rel:
                    with contextlib.suppress(FileNotFoundError):
                        (self._media_dir / rel).unlink()
        orphans = await self._orphan_files()
        return PurgeStats(messages, mos, reports, media, orphans)

    async def _chunked(self, op: Callable[[sqlite3.Connection], int]) -> int:
        total = 0
        while True:
            count: int = await self._write(op)
            total += count
            if count < CHUNK:
                return total

    async def _orphan_files(self) -> int:
        """Remove media files no row names (a crash between file write and commit)."""
        folder = self._media_dir
        if not folder.is_dir():
            return 0
        old = time.time() - ORPHAN_FILE_AGE
        candidates: list[Path] = []
        for sub in folder.iterdir():
            if not sub.is_dir():
                continue
            for path in sub.iterdir():
                with contextlib.suppress(OSError):
                    if path.is_file() and path.stat().st_mtime < old:
                        candidates.append(path)
        if not candidates:
            return 0
        names = [p.name for p in candidates]

        def known(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(names), 500):
                chunk = names[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(
                    r[0]
                    for r in conn.execute(
                        f"SELECT sha256 FROM media WHERE sha256 IN ({marks})", chunk
                    )
                )
            return found

        # asked on the writer thread: a row being committed right now is seen or not yet made
        referenced: set[str] = await self._write(known)
        removed = 0
        for path in candidates:
            # temporary files of an interrupted write (".<sha>.<rand>.tmp") have no row either
            if path.name not in referenced:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    removed += 1
        return removed


def _purge_messages(conn: sqlite3.Connection, cutoff: int) -> int:
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM messages WHERE updated_at<? AND queued_count<=0 LIMIT ?",
            (cutoff, CHUNK),
        )
    ]
    for message_id in ids:
        conn.execute("DELETE FROM events WHERE message_id=?", (message_id,))
        conn.execute("DELETE FROM message_media WHERE message_id=?", (message_id,))
        conn.execute("DELETE FROM recipients WHERE message_id=?", (message_id,))
        conn.execute("DELETE FROM messages WHERE id=?", (message_id,))
    return len(ids)


def _purge_mos(conn: sqlite3.Connection, cutoff: int) -> int:
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
    return len(ids)


def _purge_media(conn: sqlite3.Connection, cutoff: int) -> list[str]:
    """Delete up to CHUNK unreferenced media rows; the file paths to remove ("" inline)."""
    rows = conn.execute(
        "SELECT sha256, path FROM media m WHERE created_at<?"
        " AND NOT EXISTS (SELECT 1 FROM message_media x WHERE x.sha256=m.sha256)"
        " AND NOT EXISTS (SELECT 1 FROM mo_media y WHERE y.sha256=m.sha256) LIMIT ?",
        (cutoff, CHUNK),
    ).fetchall()
    for sha256, _ in rows:
        conn.execute("DELETE FROM media WHERE sha256=?", (sha256,))
    return [path or "" for _, path in rows]
