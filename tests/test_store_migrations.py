"""Schema migrations: an old database is upgraded at open, a newer one is refused (each
backend; the PostgreSQL ones also under concurrent opens and a failing step)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from mm7.core.status import MMStatus
from mm7.service.errors import SchemaTooNewError, StoreError
from mm7.service.store import ManualClock, RecipientStatus, SqliteStore
from mm7.service.store.sqlite.migrations import LATEST, MIGRATIONS, migrate, schema_version
from tests.helpers.stores import Backend, pg_database


def schema_of(backend: Backend) -> tuple[int, list[int]]:
    """The backend's latest version and its migrations' numbers."""
    if backend.name == "postgresql":
        from mm7.service.store.postgres import migrations as pg

        return pg.LATEST, [m.version for m in pg.MIGRATIONS]
    return LATEST, [m.version for m in MIGRATIONS]


def connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(db, isolation_level=None)


async def test_migrations_are_numbered_in_order(backend: Backend) -> None:
    latest, numbers = schema_of(backend)
    assert numbers == list(range(1, latest + 1))


async def test_a_new_database_gets_every_migration(backend: Backend) -> None:
    store = await backend.open()
    await store.close()
    latest, _ = schema_of(backend)
    versions = await backend.rows("SELECT version FROM schema_version ORDER BY 1")
    assert [r[0] for r in versions] == list(range(1, latest + 1))


async def test_a_version_1_database_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = connect(db)
    assert migrate(conn, 0, target=1) == 1
    # a message written by a version-1 gateway, already submitted to the MMSC
    clock = ManualClock()
    now = int(clock.now().timestamp() * 1000)
    conn.execute(
        "INSERT INTO messages (id, link, fields, status, recipient_count, queued_count,"
        " submitted_count, created_at, updated_at)"
        " VALUES ('m1','mmsc1','{}','submitted',1,0,1,?,?)",
        (now, now),
    )
    conn.execute(
        "INSERT INTO recipients (message_id, link, address, address_key, status, mm7_message_id,"
        " transaction_id, next_attempt_at, updated_at)"
        " VALUES ('m1','mmsc1','123','123','submitted','MID','m1.0',?,?)",
        (now, now),
    )
    conn.close()

    store = await SqliteStore.open(db, clock=clock)
    try:
        # the tables of migration 2 exist and work with the old rows
        report = await store.record_delivery_report("mmsc1", "MID", "123", MMStatus.RETRIEVED)
        assert report.message_id == "m1"
        assert report.recipient_status is RecipientStatus.DELIVERED
        got = await store.get_message("m1")
        assert got is not None and got.recipients[0].status is RecipientStatus.DELIVERED
        assert await store.lease("mmsc1", "w", 1, timedelta(seconds=1)) == []
    finally:
        await store.close()
    conn = connect(db)
    assert schema_version(conn) == LATEST
    conn.close()


async def test_a_postgresql_version_1_database_is_upgraded_and_keeps_its_data() -> None:
    """A cluster's database written by the first PostgreSQL mm7: its rows work after the upgrade
    (a report correlates, a queued recipient is leased and completed through what later
    migrations added: the early-reports check in every completion)."""
    import asyncpg

    from mm7.service.store.postgres import PostgresStore
    from mm7.service.store.postgres import migrations as pg

    clock = ManualClock()
    now = int(clock.now().timestamp() * 1000)
    async with pg_database() as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            assert await pg.migrate(conn, now, target=1) == 1
            # m1 already submitted to the MMSC, m2 still queued, as a version-1 gateway left them
            await conn.execute(
                "INSERT INTO messages (id, link, fields, status, recipient_count, queued_count,"
                " submitted_count, created_at, updated_at) VALUES"
                " ('m1','mmsc1','{}','submitted',1,0,1,$1,$1),"
                " ('m2','mmsc1','{}','queued',1,1,0,$1,$1)",
                now,
            )
            await conn.execute(
                "INSERT INTO recipients (message_id, link, address, address_key, status,"
                " mm7_message_id, transaction_id, next_attempt_at, updated_at) VALUES"
                " ('m1','mmsc1','123','123','submitted','MID','m1.0',$1,$1),"
                " ('m2','mmsc1','456','456','queued',NULL,'m2.0',$1,$1)",
                now,
            )
        finally:
            await conn.close()

        store = await PostgresStore.open(dsn, clock=clock)
        try:
            report = await store.record_delivery_report("mmsc1", "MID", "123", MMStatus.RETRIEVED)
            assert report.message_id == "m1"
            assert report.recipient_status is RecipientStatus.DELIVERED
            (item,) = await store.lease("mmsc1", "w", 5, timedelta(seconds=30))
            assert item.message_id == "m2"
            assert await store.complete(item, "MID-2", 1000, "Success")
            got = await store.get_message("m2")
            assert got is not None and got.recipients[0].status is RecipientStatus.SUBMITTED
        finally:
            await store.close()
        conn = await asyncpg.connect(dsn)
        try:
            versions = await conn.fetch("SELECT version FROM schema_version ORDER BY 1")
            assert [r[0] for r in versions] == list(range(1, pg.LATEST + 1))
        finally:
            await conn.close()


async def test_a_newer_database_is_refused_and_left_untouched(backend: Backend) -> None:
    await (await backend.open()).close()
    latest, _ = schema_of(backend)
    await backend.rows(
        "INSERT INTO schema_version (version, description, applied_at) VALUES (?, 'future', 0)",
        latest + 1,
    )
    # the message names the database (never a DSN's password)
    where = r"gw\.db" if backend.name == "sqlite" else r"postgresql://[^/]+/mm7_test_\w+"
    with pytest.raises(SchemaTooNewError, match=rf"{where}: schema version {latest + 1} is newer"):
        await backend.open()
    versions = await backend.rows("SELECT MAX(version) FROM schema_version")
    assert versions == [(latest + 1,)]


def test_a_failed_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    db = tmp_path / "half.db"
    conn = connect(db)
    migrate(conn, 0, target=1)
    conn.execute("CREATE TABLE delivery_reports (x)")  # makes migration 2 fail midway
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, 0)
    assert schema_version(conn) == 1
    assert (
        conn.execute("SELECT name FROM sqlite_master WHERE name='mo_messages'").fetchone() is None
    )
    conn.close()


async def test_postgresql_failed_migration_leaves_the_previous_version() -> None:
    from mm7.service.store.postgres import PostgresStore

    async with pg_database() as dsn:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE delivery_reports (x int)")  # fails migration 1
            with pytest.raises(StoreError, match="cannot migrate the schema: relation"):
                await PostgresStore.open(dsn)
            # one transaction: nothing of the step is left, not even its record
            names = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
            assert [r[0] for r in names] == ["delivery_reports"]
        finally:
            await conn.close()


async def test_postgresql_instances_starting_together_migrate_once() -> None:
    from mm7.service.store.postgres import PostgresStore
    from mm7.service.store.postgres import migrations as pg

    async with pg_database() as dsn:
        stores = await asyncio.gather(*(PostgresStore.open(dsn) for _ in range(4)))
        try:
            import asyncpg

            conn = await asyncpg.connect(dsn)
            versions = await conn.fetch("SELECT version FROM schema_version ORDER BY 1")
            await conn.close()
            assert [r[0] for r in versions] == list(range(1, pg.LATEST + 1))
        finally:
            for store in stores:
                await store.close()


#: a message whose recipient's SMS fallback was submitted by a gateway before the parts table
#: (SQLite's version 9, PostgreSQL's 4), its receipt still to come
_FALLBACK_ROWS = (
    "INSERT INTO messages (id, link, fields, status, recipient_count, queued_count,"
    " submitted_count, created_at, updated_at) VALUES ('m1','mmsc1','{}','failed',1,0,0,?1,?1)",
    "INSERT INTO fallback_sms (message_id, recipient_id, address, sms_link, text_max, trigger,"
    " status, sms_id, next_attempt_at, created_at, updated_at)"
    " VALUES ('m1',1,'+15550001','smsc1',160,'failed','submitted','smsc-7',?1,?1,?1)",
)


async def test_a_fallback_submitted_before_the_parts_table_is_settled_by_its_receipt(
    tmp_path: Path,
) -> None:
    """Its one known id becomes its only part (migration 10), so its receipt settles it."""
    from mm7.service.store.records import FallbackStatus

    db = tmp_path / "old.db"
    conn = connect(db)
    assert migrate(conn, 0, target=9) == 9
    clock = ManualClock()
    now = int(clock.now().timestamp() * 1000)
    for statement in _FALLBACK_ROWS:
        conn.execute(statement, (now,))
    conn.close()
    store = await SqliteStore.open(db, clock=clock)
    try:
        assert await store.fallback_receipt("smsc1", "smsc-7", FallbackStatus.DELIVERED)
        (row,) = await store.fallback_sms("m1")
        assert (row.status, row.sms_id) == (FallbackStatus.DELIVERED, "smsc-7")
    finally:
        await store.close()


async def test_a_postgresql_fallback_submitted_before_the_parts_table_is_settled() -> None:
    """The same on PostgreSQL (migration 5)."""
    import asyncpg

    from mm7.service.store.postgres import PostgresStore
    from mm7.service.store.postgres import migrations as pg
    from mm7.service.store.records import FallbackStatus

    clock = ManualClock()
    now = int(clock.now().timestamp() * 1000)
    async with pg_database() as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            assert await pg.migrate(conn, now, target=4) == 4
            for statement in _FALLBACK_ROWS:
                await conn.execute(statement.replace("?1", "$1"), now)
        finally:
            await conn.close()
        store = await PostgresStore.open(dsn, clock=clock)
        try:
            assert await store.fallback_receipt("smsc1", "smsc-7", FallbackStatus.FAILED, "UNDELIV")
            (row,) = await store.fallback_sms("m1")
            assert (row.status, row.error) == (FallbackStatus.FAILED, "UNDELIV")
        finally:
            await store.close()
