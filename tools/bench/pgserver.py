"""The PostgreSQL server of the cluster benchmarks: scratch databases and the server's own CPU.

``MM7_TEST_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``, as the tests) is an
admin connection: each run creates its database under a random name and drops it afterwards.

The server's CPU is read from /proc (the server runs on this machine): ``backend_pids(db)`` are
the processes ``pg_stat_activity`` shows connected to the benchmark's database (the gateway's
pool and LISTEN connections, autovacuum workers on it), which do all the work of its statements,
commits included (``synchronous_commit = on``: a backend flushes the WAL of its own commit);
``background_pids()`` are the server's shared processes (WAL writer, checkpointer, background
writer, autovacuum launcher): they also work for the other databases of the server, so their
figure is an upper bound of what the benchmark cost them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import Any

ADMIN_DSN = os.environ.get("MM7_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


async def _fetch(sql: str, *args: Any, dsn: str = ADMIN_DSN) -> list[tuple[Any, ...]]:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return [tuple(row) for row in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def fetch(sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the admin connection (a connection of its own, blocking)."""
    return asyncio.run(_fetch(sql, *args))


def unavailable() -> str | None:
    """Why these benchmarks cannot run here (no driver, no server), or None."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg is not installed (pip install -e '.[test]')"
    try:
        fetch("SELECT 1")
    except Exception as exc:  # asyncpg raises its own errors besides OSError
        return f"no PostgreSQL server at {ADMIN_DSN} (MM7_TEST_PG_DSN): {exc}"
    return None


def dsn_of(database: str) -> str:
    """The admin DSN pointed at ``database``."""
    base, _, rest = ADMIN_DSN.rpartition("/")
    query = rest.partition("?")[2]
    return f"{base}/{database}" + (f"?{query}" if query else "")


@contextlib.contextmanager
def scratch_database(prefix: str = "mm7_bench") -> Iterator[tuple[str, str]]:
    """A fresh, empty database: (its name, its DSN); dropped afterwards, connections and all."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    fetch(f'CREATE DATABASE "{name}"')
    try:
        yield name, dsn_of(name)
    finally:
        fetch(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def backend_pids(database: str) -> list[int]:
    """The server processes connected to ``database`` now."""
    rows = fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    return [int(r[0]) for r in rows]


def background_pids() -> list[int]:
    """The server's shared processes (no database of their own: WAL writer, checkpointer ...)."""
    rows = fetch(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname IS NULL AND backend_type <> 'client backend'"
    )
    return [int(r[0]) for r in rows]


def version() -> str:
    """The server's version string, short."""
    return str(fetch("SHOW server_version")[0][0])
