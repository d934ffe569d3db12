"""A store of each backend for the store tests: SQLite in tmp_path, PostgreSQL in a fresh database.

``Backend`` opens stores on one database (again, for tests that reopen or run two instances
on it) and runs raw SQL on it for the checks a test makes behind the store's back (``?``
placeholders on both). The PostgreSQL database is created on the server at ``MM7_TEST_PG_DSN``
(default ``postgresql://postgres@127.0.0.1:5432/test``, used as the admin connection) under a
random name, and dropped after the test; the tests skip, saying why, only when no server can
be reached there (or the driver is not installed).

The fixtures (``backend``, ``any_store``) are in tests/conftest.py; a module runs on both
backends by defining ``store`` as ``any_store``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mm7.service.store import Clock, SqliteStore, Store

ADMIN_DSN = os.environ.get("MM7_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")

_reason: list[str | None] = []  # the answer of pg_unavailable, once asked


async def pg_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here (no driver, no server), or None."""
    if _reason:
        return _reason[0]
    try:
        import asyncpg
    except ImportError:
        _reason.append("asyncpg is not installed (pip install -e '.[test]')")
        return _reason[0]
    try:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        _reason.append(f"no PostgreSQL server reachable at {ADMIN_DSN} (MM7_TEST_PG_DSN): {exc}")
        return _reason[0]
    await conn.close()
    _reason.append(None)
    return None


def dsn_of(database: str) -> str:
    """The admin DSN pointed at ``database``."""
    base, _, rest = ADMIN_DSN.rpartition("/")
    query = rest.partition("?")[2]
    return f"{base}/{database}" + (f"?{query}" if query else "")


@contextlib.asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A fresh, empty database (its DSN), dropped afterwards; skips without a server."""
    why = await pg_unavailable()
    if why is not None:
        pytest.skip(why)
    import asyncpg

    name = f"mm7_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield dsn_of(name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _numbered(sql: str) -> str:
    counter = iter(range(1, 1000))
    return re.sub(r"\?", lambda _m: f"${next(counter)}", sql)


class Backend:
    """One database of one backend: opens stores on it and runs raw SQL on it."""

    name: str

    def __init__(self) -> None:
        self.stores: list[Store] = []

    async def open(self, clock: Clock | None = None, **options: Any) -> Store:
        """Another store on this database (closed at the end of the test). ``options`` go to
        ``open`` of the backend (``relay_all_statuses`` ...; SQLite-only ones are dropped for
        PostgreSQL)."""
        store = await self._open(clock, **options)
        self.stores.append(store)
        return store

    async def _open(self, clock: Clock | None, **options: Any) -> Store:
        raise NotImplementedError

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (``?`` placeholders), run behind the store's back."""
        raise NotImplementedError

    async def count(self, table: str) -> int:
        """Rows in ``table``."""
        return int((await self.rows(f"SELECT COUNT(*) FROM {table}"))[0][0])

    async def close(self) -> None:
        """Close every store opened."""
        for store in self.stores:
            await store.close()


class SqliteBackend(Backend):
    """An SQLite file in the test's tmp_path."""

    name = "sqlite"
    _SQLITE_ONLY = ("inline_media_max", "media_dir", "max_batch", "readers")

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    async def _open(self, clock: Clock | None, **options: Any) -> Store:
        return await SqliteStore.open(self.path, clock=clock, **options)

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(self.path, isolation_level=None)  # autocommit, as PostgreSQL
            try:
                return [tuple(r) for r in conn.execute(sql, args).fetchall()]
            finally:
                conn.close()

        return await asyncio.to_thread(run)


class PostgresBackend(Backend):
    """A fresh PostgreSQL database."""

    name = "postgresql"

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn
        self._conn: Any = None

    async def _open(self, clock: Clock | None, **options: Any) -> Store:
        from mm7.service.store.postgres import PostgresStore

        for name in SqliteBackend._SQLITE_ONLY:
            options.pop(name, None)
        return await PostgresStore.open(self.dsn, clock=clock, **options)

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        import asyncpg

        if self._conn is None:
            self._conn = await asyncpg.connect(self.dsn)
        return [tuple(r) for r in await self._conn.fetch(_numbered(sql), *args)]

    async def close(self) -> None:
        await super().close()
        if self._conn is not None:
            await self._conn.close()


@contextlib.asynccontextmanager
async def backend_of(name: str, tmp_path: Path) -> AsyncIterator[Backend]:
    """A ``Backend`` of ``name`` ("sqlite" or "postgresql"), cleaned up afterwards."""
    if name == "sqlite":
        backend: Backend = SqliteBackend(tmp_path / "gw.db")
        try:
            yield backend
        finally:
            await backend.close()
        return
    async with pg_database() as dsn:
        backend = PostgresBackend(dsn)
        try:
            yield backend
        finally:
            await backend.close()
