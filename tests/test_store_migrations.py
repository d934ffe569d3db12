"""Schema migrations: an old database is upgraded at open, a newer one is refused."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from mm7.core.status import MMStatus
from mm7.service.errors import SchemaTooNewError
from mm7.service.store import ManualClock, RecipientStatus, SqliteStore
from mm7.service.store.sqlite.migrations import LATEST, MIGRATIONS, migrate, schema_version


def connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(db, isolation_level=None)


def test_migrations_are_numbered_in_order() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))


async def test_a_new_database_gets_every_migration(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "new.db")
    await store.close()
    conn = connect(tmp_path / "new.db")
    assert [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")] == list(
        range(1, LATEST + 1)
    )
    conn.close()


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


async def test_a_newer_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    conn = connect(db)
    migrate(conn, 0)
    conn.execute(
        "INSERT INTO schema_version (version, description, applied_at) VALUES (?, 'future', 0)",
        (LATEST + 1,),
    )
    conn.close()
    with pytest.raises(SchemaTooNewError, match=rf"future\.db: schema version {LATEST + 1}"):
        await SqliteStore.open(db)
    conn = connect(db)
    assert schema_version(conn) == LATEST + 1
    conn.close()


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
