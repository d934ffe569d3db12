"""What every part of ``PostgresStore`` shares: the pool, the clock, transactions, failures.

``PostgresBase`` is the common base of the store and its mixins (``relay``, ``retention``): it
holds the asyncpg pool and the injected ``Clock`` and runs the store's operations.

- ``_write(op)`` runs ``op(conn)`` in a transaction and returns once it committed (PostgreSQL
  commits durably with ``synchronous_commit = on``, its default; ``durability`` reports it).
  A deadlock or serialization failure is retried (the transaction rolled back as a whole).
- ``_read(op)`` runs ``op(conn)`` in a read-only REPEATABLE READ transaction: one snapshot for
  all of its SELECTs, as SQLite's readers have.
- ``_write_row(sql)``, ``_execute_write(sql)``: one write statement in its own transaction
  (most hot-path operations are one statement: a CTE writing every table concerned), retried
  like ``_write``; ``_fetch``, ``_fetchrow``, ``_fetchval``: one read statement.

A server that cannot be reached or refuses writes (connection lost, disk full, read-only,
shutting down) raises ``StoreUnavailableError`` and is remembered for ``writable()`` (readiness)
until a later operation, or a probe, succeeds.

The driver is asyncpg (measured against psycopg 3 in tools/bench/pgdriver.py, BENCHMARKS.md
"Issue 14: PostgreSQL driver"); without it, importing this module raises ``ConfigError`` naming
the extra to install.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from mm7.service.errors import ConfigError, StoreUnavailableError
from mm7.service.store import tally
from mm7.service.store.base import Clock
from mm7.service.store.postgres.rows import ms
from mm7.service.store.records import StoreStats

try:
    import asyncpg as asyncpg  # re-exported: the modules of this package import it from here
except ImportError as exc:  # the default install has no PostgreSQL driver
    raise ConfigError(
        'store.backend = "postgresql" needs the asyncpg driver, which is not installed: '
        "pip install 'mm7[postgresql]'"
    ) from exc

T = TypeVar("T")

#: the channel of work notifications: payload ``mt:<link>`` or ``relay``
CHANNEL = "mm7_work"
#: how often a transaction that deadlocked or failed to serialise is tried at most
_ATTEMPTS = 5
_COMMIT = "cannot commit"

#: errors that say the server cannot be used now, not that the operation was wrong
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.InsufficientResourcesError,
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.exceptions.OperatorInterventionError,
    # a connection the server ended while it sat in the pool can fail in the driver's state
    # machine ("cannot switch to state ...") instead of as a lost connection
    asyncpg.exceptions.InternalClientError,
)
_RETRY: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)


def why(exc: BaseException) -> str:
    """A failure's reason for logs and readiness: the first line, never a DSN."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def _no_reset(conn: asyncpg.Connection) -> None:
    """The pool's release hook: nothing. asyncpg's default runs a reset query (UNLISTEN, RESET
    ALL, ...) at every release, a round trip per operation; the store's statements leave no
    session state behind (it never LISTENs, SETs or holds advisory locks on a pooled
    connection)."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """The store's pool: prepared statements cached per connection, no reset at release."""
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        reset=_no_reset,
        statement_cache_size=512,
        server_settings={"application_name": "mm7"},
    )


class PostgresBase:
    """The pool, clock and transaction helpers shared by the store and its mixins."""

    _pool: asyncpg.Pool
    _clock: Clock

    def _init_base(self, pool: asyncpg.Pool, clock: Clock, probe_interval: float) -> None:
        self._pool = pool
        self._clock = clock
        self._probe_interval = probe_interval
        self._failures: dict[str, str] = {}
        self._last_ok = time.monotonic()
        self._last_probe = float("-inf")
        self._probing: asyncio.Lock | None = None
        self._writes = 0
        self._failed = 0
        #: changes ``tally.note``d by the transactions committed so far (``stats``)
        self._tally: collections.Counter[str] = collections.Counter()
        self._closed = False

    def _now_ms(self) -> int:
        """Now, from the store's clock, in epoch milliseconds."""
        return ms(self._clock.now())

    # -- failures --------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        """Remember that the server refused (readiness) and say so as the caller sees it."""
        self._failures[_COMMIT] = why(exc)
        failed = StoreUnavailableError(f"the store cannot commit: {why(exc)}")
        failed.__cause__ = exc
        return failed

    def _succeeded(self) -> None:
        if self._failures:
            self._failures.pop(_COMMIT, None)
        self._last_ok = time.monotonic()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; server failures become ``StoreUnavailableError``. Any failure
        to get a connection is one (refused, not accepting connections, authentication)."""
        if self._closed:
            raise RuntimeError("store is closed")
        try:
            conn = await self._pool.acquire()
        except Exception as exc:
            raise self._unavailable(exc) from exc
        try:
            yield conn
        except _UNAVAILABLE as exc:
            conn.terminate()  # never handed out again: the pool opens a new one in its place
            raise self._unavailable(exc) from exc
        finally:
            await self._pool.release(conn)

    # -- running operations ----------------------------------------------------------------

    async def _write(self, op: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``op`` in one transaction; return once it committed (retried on deadlock)."""

        async def in_transaction(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                return await op(conn)

        return await self._autocommit(in_transaction)

    async def _read(self, op: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``op`` in a read-only transaction: one snapshot for all of its SELECTs."""
        async with (
            self._connection() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await op(conn)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """One read statement: every row it returns."""
        async with self._connection() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        self._succeeded()
        return rows

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """One read statement: its first row, or None."""
        async with self._connection() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(sql, *args)
        self._succeeded()
        return row

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        """One read statement: the first column of its first row."""
        async with self._connection() as conn:
            value = await conn.fetchval(sql, *args)
        self._succeeded()
        return value

    async def _write_row(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """One write statement, its own transaction (committed on return): its first row.
        A deadlock or serialization failure runs it again (it was rolled back whole)."""

        async def op(conn: asyncpg.Connection) -> asyncpg.Record | None:
            row: asyncpg.Record | None = await conn.fetchrow(sql, *args)
            return row

        return await self._autocommit(op)

    async def _execute_write(self, sql: str, *args: Any) -> str:
        """One write statement, its own transaction: its status tag (e.g. ``UPDATE 3``)."""

        async def op(conn: asyncpg.Connection) -> str:
            tag: str = await conn.execute(sql, *args)
            return tag

        return await self._autocommit(op)

    async def _autocommit(self, op: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``op`` on a pooled connection, counted as a write; a deadlock or serialization
        failure (the transaction rolled back whole) runs it again."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with tally.counting() as notes:  # a retried attempt's notes are dropped
                    async with self._connection() as conn:
                        result = await op(conn)
            except _RETRY:
                if attempt == _ATTEMPTS:
                    self._failed += 1
                    raise
                continue
            except BaseException:
                self._failed += 1
                raise
            self._writes += 1
            self._tally.update(notes)  # committed: ``op`` returned
            self._succeeded()
            return result
        raise AssertionError("unreachable")

    # -- readiness and counters ------------------------------------------------------------

    def stats(self) -> StoreStats:
        """Writes committed and failed; one commit per write (PostgreSQL has no group commit
        for the store to do: the server's own ``commit_delay`` does that)."""
        return StoreStats(
            self._writes, self._writes, self._failed, 1 if self._writes else 0, dict(self._tally)
        )

    async def writable(self) -> str | None:
        """None when the store can commit, else why not (for /readyz).

        After a failure, or when nothing succeeded for ``probe_interval`` seconds, probes the
        server with a one-row commit, at most once per ``probe_interval``.
        """
        now = time.monotonic()
        due = now - self._last_probe >= self._probe_interval
        idle = now - self._last_ok >= self._probe_interval
        if due and (self._failures or idle):
            if self._probing is None:
                self._probing = asyncio.Lock()
            async with self._probing:
                if time.monotonic() - self._last_probe >= self._probe_interval:
                    self._last_probe = time.monotonic()
                    with contextlib.suppress(StoreUnavailableError):
                        await self._write(_probe_commit)
        if not self._failures:
            return None
        return "; ".join(f"{what}: {reason}" for what, reason in self._failures.items())


async def _probe_commit(conn: asyncpg.Connection) -> None:
    # rewrites one row with its own value: a real write, so a server that cannot write refuses
    await conn.execute(
        "UPDATE schema_version SET applied_at = applied_at"
        " WHERE version = (SELECT MAX(version) FROM schema_version)"
    )
