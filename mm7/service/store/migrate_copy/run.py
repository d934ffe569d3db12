"""``copy_store``: an SQLite store's snapshot into an empty PostgreSQL database, all or nothing.

The source is read in one read transaction (``source.py``); the target is written in one
transaction (``target.py``) that also applies its migrations, so a refusal or a failure at any
point (a media file missing, the server gone) rolls everything back: the target is left as it
was. Nothing is written to the source.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mm7.service.errors import StoreCopyError, StoreCopyRefusedError
from mm7.service.store.base import Clock, SystemClock
from mm7.service.store.migrate_copy.source import BATCH_BYTES, BATCH_ROWS, SqliteSnapshot
from mm7.service.store.migrate_copy.tables import PLANS, SECRETS
from mm7.service.store.migrate_copy.target import copy_rows, prepare, put_secrets, reset_sequences
from mm7.service.store.postgres.base import asyncpg, why
from mm7.service.store.postgres.rows import ms
from mm7.service.store.postgres.store import describe

#: called after each batch with the table's name and its rows so far (progress on a terminal)
Progress = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What a copy did: the rows per table (in the order filled) and what the user should know."""

    source: Path
    #: the target as ``postgresql://host:port/dbname`` (never its credentials)
    target: str
    #: when the source's snapshot was taken: what it committed later is not in the copy
    snapshot_at: datetime
    counts: dict[str, int]
    #: warnings for stderr: a source that may be in use, target secrets replaced
    notes: tuple[str, ...]


async def copy_store(
    source: Path,
    dsn: str,
    *,
    clock: Clock | None = None,
    progress: Progress | None = None,
    batch_rows: int = BATCH_ROWS,
    batch_bytes: int = BATCH_BYTES,
) -> CopyReport:
    """Copy the SQLite store at ``source`` into the empty PostgreSQL database at ``dsn``.

    Raises ``StoreCopyRefusedError`` (nothing written) for a source whose schema is not this
    mm7's latest, a target newer than this mm7 or not empty; ``StoreCopyError`` for anything
    else that stopped the copy (rolled back: the target is as it was).
    """
    the_clock = clock if clock is not None else SystemClock()
    where = describe(dsn)
    snapshot = SqliteSnapshot.open(source, batch_rows=batch_rows, batch_bytes=batch_bytes)
    try:
        taken = the_clock.now()
        conn = await _connect(dsn, where)
        try:
            counts, replaced = await _copy(conn, snapshot, ms(taken), where, progress)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
    finally:
        snapshot.close()
    notes: list[str] = []
    if snapshot.in_use:
        at = taken.isoformat(timespec="milliseconds")
        notes.append(
            f"{source} had a write-ahead log when the copy began: a gateway may be running on "
            f"it, and what it committed after {at} is not in the copy"
        )
    if replaced:
        notes.append(
            f"the target's own secrets {', '.join(replaced)} were replaced by the source's"
        )
    return CopyReport(source, where, taken, counts, tuple(notes))


async def _connect(dsn: str, where: str) -> asyncpg.Connection:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            dsn, timeout=15, server_settings={"application_name": "mm7 store copy"}
        )
    except (OSError, TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        raise StoreCopyError(f"cannot connect to {where}: {why(e)}") from None
    return conn


async def _copy(
    conn: asyncpg.Connection,
    snapshot: SqliteSnapshot,
    now_ms: int,
    where: str,
    progress: Progress | None,
) -> tuple[dict[str, int], list[str]]:
    counts: dict[str, int] = {}
    table = "the schema"
    try:
        async with conn.transaction():
            await prepare(conn, now_ms, where)
            for plan in PLANS:
                table = plan.table
                counts[table] = await copy_rows(conn, plan, snapshot.batches(plan), progress)
            table = SECRETS.table
            secrets = [row for batch in snapshot.batches(SECRETS) for row in batch]
            counts[table], replaced = await put_secrets(conn, secrets)
            table = "the sequences"
            await reset_sequences(conn)
    except StoreCopyRefusedError:
        raise
    except StoreCopyError as exc:
        raise StoreCopyError(f"{exc}; the copy was rolled back: {where} is as it was") from None
    except sqlite3.Error as exc:
        raise StoreCopyError(
            f"reading {table} from {snapshot.path} failed: {exc}; the copy was rolled back: "
            f"{where} is as it was"
        ) from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreCopyError(
            f"copying {table} into {where} failed: {why(exc)}; the copy was rolled back: "
            f"{where} is as it was"
        ) from None
    return counts, replaced
