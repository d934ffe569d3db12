"""The target of a copy: a PostgreSQL database, filled inside the caller's one transaction.

``prepare`` applies the PostgreSQL backend's migrations (``postgres/migrations.py``, under its
advisory lock, as a savepoint of the copy's transaction), locks every table it fills against
writers (``EXCLUSIVE``: instances may read, none may write until the copy commits or rolls
back) and refuses a database that holds anything. ``copy_rows`` sends rows with ``COPY``
(binary), which also writes the explicit values of identity columns; ``reset_sequences`` then
moves each identity past the largest id copied, so the next row inserted gets a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mm7.service.errors import SchemaTooNewError, StoreCopyRefusedError
from mm7.service.store.migrate_copy.tables import PLANS, SECRETS, TablePlan
from mm7.service.store.postgres.base import asyncpg
from mm7.service.store.postgres.migrations import migrate


async def prepare(conn: asyncpg.Connection, now_ms: int, where: str) -> None:
    """Migrate, lock the tables to fill and check they are empty (in the open transaction).

    Raises ``StoreCopyRefusedError`` for a schema newer than this mm7 or a non-empty database,
    naming what it holds.
    """
    try:
        await migrate(conn, now_ms, where=where)
    except SchemaTooNewError as exc:
        raise StoreCopyRefusedError(str(exc)) from None
    tables = [plan.table for plan in PLANS]
    await conn.execute(f"LOCK TABLE {', '.join([*tables, SECRETS.table])} IN EXCLUSIVE MODE")
    counts = await conn.fetchrow(
        "SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in tables)
    )
    held = [(t, int(counts[t])) for t in tables if counts is not None and counts[t]]
    if held:
        what = ", ".join(f"{t} {n}" for t, n in held)
        raise StoreCopyRefusedError(
            f"{where} is not empty ({what}): mm7 store copy fills an empty database only; "
            "nothing was changed"
        )


async def copy_rows(
    conn: asyncpg.Connection,
    plan: TablePlan,
    batches: Iterable[Sequence[tuple[Any, ...]]],
    progress: Callable[[str, int], None] | None = None,
) -> int:
    """COPY each batch into ``plan``'s table; the rows copied (``progress`` told after each
    batch, with the rows so far)."""
    copied = 0
    for batch in batches:
        tag = await conn.copy_records_to_table(plan.table, records=batch, columns=plan.columns)
        copied += int(tag.rpartition(" ")[2])
        if progress is not None:
            progress(plan.table, copied)
    return copied


async def reset_sequences(conn: asyncpg.Connection) -> None:
    """Set each identity column's sequence past the largest id copied (1 for an empty table)."""
    for plan in PLANS:
        if plan.identity:
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{plan.table}', 'id'),"
                f" COALESCE(MAX(id), 0) + 1, false) FROM {plan.table}"
            )


async def put_secrets(
    conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]
) -> tuple[int, list[str]]:
    """Write the source's own secrets over the target's; how many, and the names of those
    the target held with another value (a gateway started on it made its own)."""
    names = [row[0] for row in rows]
    replaced = await conn.fetch(
        "SELECT t.name FROM store_secrets t JOIN unnest($1::text[], $2::text[]) AS s(name, value)"
        " ON s.name = t.name WHERE s.value <> t.value ORDER BY t.name",
        names,
        [row[1] for row in rows],
    )
    await conn.executemany(
        "INSERT INTO store_secrets (name, value, created_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
        " created_at = excluded.created_at",
        rows,
    )
    return len(rows), [r[0] for r in replaced]
