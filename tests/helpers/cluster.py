"""Two instances' views of one store, for the cluster tests: each backend opens the database twice
(two connections, as two processes would), both on one ManualClock.

``BACKENDS`` is the list the ``stores`` fixtures are parametrised over; a backend joins it by
adding its opener to ``open_pair``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from mm7.service.store.base import ManualClock, Store
from mm7.service.store.sqlite.store import SqliteStore
from tests.helpers.stores import pg_database

#: the backends the cluster tests run on
BACKENDS = ["sqlite", "postgresql"]


class Monotonic:
    """A monotonic clock the test moves (an instance's own clock, apart from the store's)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@asynccontextmanager
async def open_pair(
    backend: str, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[tuple[Store, Store]]:
    """Two handles on one fresh database of ``backend``."""
    if backend == "postgresql":
        from mm7.service.store.postgres import PostgresStore

        async with pg_database() as dsn:
            one = await PostgresStore.open(dsn, clock=clock)
            two = await PostgresStore.open(dsn, clock=clock)
            try:
                yield one, two
            finally:
                await two.close()
                await one.close()
        return
    if backend != "sqlite":
        raise LookupError(f"no opener for backend {backend!r}")
    first = await SqliteStore.open(tmp_path / "cluster.db", clock=clock)
    second = await SqliteStore.open(tmp_path / "cluster.db", clock=clock)
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()
