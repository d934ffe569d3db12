"""The shared store: PostgreSQL, for several gateway instances behind a load balancer.

The same ``Store`` protocol and behaviour as ``SqliteStore`` (``sqlite/store.py``), on an
asyncpg pool. Every write commits before the call returns (``synchronous_commit = on``: the
WAL is flushed at commit), so what the gateway acknowledges survives a crash of the instance
or the database server. Work is leased with ``FOR UPDATE SKIP LOCKED``: instances leasing the
same link at once never get the same recipient, and never wait for each other's rows; each
lease carries a fencing token that its outcome must present.

Most operations are one statement (a CTE writing every table concerned, in one round trip);
the rest run in one transaction (``PostgresBase._write``). Transactions that make work due
send ``NOTIFY mm7_work`` (``listen``), delivered at commit to every instance.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mm7.service.errors import StoreUnavailableError
from mm7.service.store.base import Clock, SystemClock
from mm7.service.store.postgres.base import asyncpg, create_pool, why
from mm7.service.store.postgres.listen import WorkListener
from mm7.service.store.postgres.migrations import migrate
from mm7.service.store.postgres.relay import PostgresRelayOps
from mm7.service.store.postgres.retention import PostgresRetention
from mm7.service.store.postgres.rows import ms

if TYPE_CHECKING:
    from collections.abc import Callable


def describe(dsn: str) -> str:
    """The database a DSN names, for messages: ``host:port/dbname``, never the password."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "the PostgreSQL database"
    database = parts.path.lstrip("/") or parts.username or "postgres"
    return f"postgresql://{host}:{port}/{database}"


class PostgresStore(PostgresRelayOps, PostgresRetention):
    """``Store`` on PostgreSQL. Create with ``await PostgresStore.open(dsn)``."""

    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        clock: Clock,
        *,
        where: str,
        durability: str,
        mo_duplicate_window: timedelta,
        relay_all_statuses: bool,
        probe_interval: float,
    ) -> None:
        self._init_base(pool, clock, probe_interval)
        self._dsn = dsn
        self._where = where
        self._durability = durability
        self._mo_window_ms = int(mo_duplicate_window.total_seconds() * 1000)
        self._relay_all_statuses = relay_all_statuses
        self._listener: WorkListener | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        clock: Clock | None = None,
        mo_duplicate_window: timedelta = timedelta(days=7),
        relay_all_statuses: bool = False,
        probe_interval: float = 5.0,
        min_connections: int = 1,
        max_connections: int = 10,
    ) -> PostgresStore:
        """Connect to ``dsn`` and migrate its schema (under an advisory lock).

        ``relay_all_statuses``: queue a relay event for every status change (for status
        hooks), not only for messages with a callback_url. ``probe_interval``: how often at
        most ``writable()`` probes the server. Raises ``SchemaTooNewError`` for a newer
        database and ``StoreUnavailableError`` when the server cannot be reached.
        """
        the_clock = clock if clock is not None else SystemClock()
        where = describe(dsn)
        try:
            pool = await create_pool(dsn, min_size=min_connections, max_size=max_connections)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailableError(f"{where}: cannot connect: {why(exc)}") from exc
        try:
            async with pool.acquire() as conn:
                await migrate(conn, ms(the_clock.now()), where=where)
                sync = await conn.fetchval("SHOW synchronous_commit")
                fsync = await conn.fetchval("SHOW fsync")
        except BaseException:
            await pool.close()
            raise
        return cls(
            dsn,
            pool,
            the_clock,
            where=where,
            durability=f"synchronous_commit={sync} fsync={fsync}",
            mo_duplicate_window=mo_duplicate_window,
            relay_all_statuses=relay_all_statuses,
            probe_interval=probe_interval,
        )

    async def close(self) -> None:
        """Stop listening, then close every connection (waiting for operations in flight)."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            await self._listener.close()
        with contextlib.suppress(Exception):
            await self._pool.close()

    @property
    def durability(self) -> str:
        """The server's settings that make a commit durable, as read at open."""
        return self._durability

    @property
    def where(self) -> str:
        """The database, as ``postgresql://host:port/dbname`` (no credentials)."""
        return self._where

    def watch(self, *, on_mt: Callable[[str], None], on_relay: Callable[[], None]) -> None:
        """Call ``on_mt(link)`` when recipients of ``link`` become due on any instance, and
        ``on_relay()`` for relay events; after the listening connection is re-opened, each
        once (``listen``)."""
        if self._listener is None:
            self._listener = WorkListener(self._dsn)
        self._listener.add(on_mt, on_relay)
