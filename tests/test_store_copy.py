"""`mm7 store copy`: a real SQLite store copied into a fresh PostgreSQL database, all or nothing.

The source is built with the real ``SqliteStore`` API, as the gateway builds it: messages sharing
a medium large enough to live in a file, recipients submitted, delivered, failed, retrying,
suppressed, leased and queued, delivery reports (one correlated, one unknown), a read reply,
MOs (one a STOP), relay events in every status, its own secret. It stays open while the copy runs,
as a running gateway's would. The target is a database created for the test on the PostgreSQL
server at 127.0.0.1:5432 and dropped after it (tests/helpers/stores.py); without a server the
tests skip, saying why. The copy is checked against the source independently of the copy's own
queries: every column the two schemas share, row for row, the leases and the media bytes; then
the PostgreSQL store reads the copy and leases from it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mm7.core.status import MMStatus
from mm7.service.errors import StoreCopyError, StoreCopyRefusedError
from mm7.service.store import (
    ManualClock,
    MediaPart,
    MoRelay,
    NewMessage,
    NewMo,
    OptOut,
    RecipientStatus,
    RelayStatus,
    SqliteStore,
    WorkItem,
)
from mm7.service.store.limits import QuotaLimits, QuotaTaken
from mm7.service.store.migrate_copy.tables import SQLITE_NOT_COPIED
from mm7.service.store.records import FallbackStatus
from mm7.service.store.sqlite.migrations import LATEST, migrate
from tests.helpers.cli import run, run_cli
from tests.helpers.stores import pg_database

LINK = "mmsc1"
TTL = timedelta(minutes=5)
BIG = bytes(range(256)) * 40  # 10 KiB: above the 1 KiB inline limit below, so a file
SMALL = b"the text of the slide"
PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(200)) * 8  # 1.6 KiB: a file too
#: tables whose rows are work items with their lease on the row in PostgreSQL
LEASED = {"recipients": "mt", "relay_outbox": "relay"}
LEASE_COLUMNS = ("lease_owner", "lease_token", "lease_expires_at")


@dataclass
class Source:
    """The SQLite store built for a test and what the checks need to know about it."""

    path: Path
    store: SqliteStore
    clock: ManualClock
    campaign: str  # four recipients, the big medium and a small one, a callback_url
    second: str  # the big medium again, two recipients: one leased at the copy, one queued
    third: str  # one recipient suppressed
    in_flight: WorkItem
    photo_mo: str
    big_sha: str


async def _build(path: Path, clock: ManualClock) -> Source:
    store = await SqliteStore.open(path, clock=clock, inline_media_max=1024)
    await store.own_secret("media_url")
    stop = await store.store_mo(
        NewMo(
            LINK, "tx-stop", "mo-stop", {"from": "+15550099", "text": "STOP"},
            relay=MoRelay("app", "r1", "url", {"type": "mo", "text": "STOP"}),
            opt_out=OptOut("stop", "+15550099", "STOP"),
        )
    )  # fmt: skip
    assert not stop.duplicate
    photo = await store.store_mo(
        NewMo(
            LINK, "tx-photo", "mo-photo", {"from": "+15550050", "subject": "look"},
            parts=(MediaPart("image/jpeg", data=PHOTO, content_id="<p1>"),),
            fingerprint="fp-photo",
            relay=MoRelay("app", "r1", "url", {"type": "mo", "subject": "look"}, "15550050"),
        )
    )  # fmt: skip
    clock.advance(timedelta(seconds=1))
    campaign = await store.enqueue_message(
        NewMessage(
            LINK, {"from": "12345", "subject": "news", "api_key": "key-a",
                   "fallback": {"sms_link": "smsc1", "text_max": 160}},
            idempotency_key="idem-campaign", callback_url="http://127.0.0.1:9/status",
            request_digest="d" * 64,
        ),
        ["+15550001", "+15550002", "+15550003", "+15550004"],
        [
            MediaPart("image/png", data=BIG, content_id="<big>"),
            MediaPart("text/plain", data=SMALL, content_location="slide.txt"),
        ],
    )  # fmt: skip
    clock.advance(timedelta(seconds=1))
    second = await store.enqueue_message(
        NewMessage(LINK, {"from": "12345", "api_key": "key-b"}, idempotency_key="idem-second"),
        ["+15550010", "+15550011"],
        [MediaPart("image/png", data=BIG, content_location="same.png")],
    )
    third = await store.enqueue_message(
        NewMessage(LINK, {"from": "12345", "api_key": "key-b"}), ["+15550099", "+15550020"]
    )
    assert third.suppressed == ("+15550099",)
    items = await store.lease(LINK, "gw-1", 5, TTL)
    by_address = {i.address: i for i in items}
    assert set(by_address) == {"+15550001", "+15550002", "+15550003", "+15550004", "+15550010"}
    assert await store.complete(by_address["+15550001"], "mmsc-1", 1000, "Success")
    assert await store.complete(by_address["+15550002"], "mmsc-2", 1000, "Success")
    assert await store.fail(by_address["+15550003"], 4004, "Validation error")
    assert await store.retry_later(by_address["+15550004"], clock.now() + timedelta(hours=1), 3001)
    report = await store.record_delivery_report(LINK, "mmsc-1", "+15550001", MMStatus.RETRIEVED)
    assert report.message_id == campaign.message_id
    unknown = await store.record_delivery_report(LINK, "mmsc-??", "+15550777", MMStatus.EXPIRED)
    assert unknown.message_id is None
    assert await store.record_read_reply(LINK, "mmsc-1", "+15550001", "Read") is not None
    # the SMS fallback of the failed recipient, sent in two parts, one part's receipt in; a
    # receipt of no row yet
    (sms,) = await store.lease_fallback("fallback-1", 5, TTL)
    assert await store.fallback_sending(sms, TTL)
    assert await store.fallback_submitted(sms, "sms-1", ("sms-1", "sms-2"))
    assert await store.fallback_receipt("smsc1", "sms-1", FallbackStatus.DELIVERED)
    assert not await store.fallback_receipt("smsc1", "sms-early", FallbackStatus.DELIVERED)
    # relay events in every status: delivered, dead, skipped, dropped, pending retried, leased
    events = await store.lease_relay("relay-1", 100, TTL)
    assert len(events) >= 6, [e.kind for e in events]
    delivered, dead, skipped, retried, dropped, leased, *rest = events
    assert await store.relay_outcome(delivered, "delivered", http_status=204)
    assert await store.relay_outcome(dead, "dead", http_status=410, error="HTTP 410: gone")
    assert await store.relay_outcome(skipped, "skipped")
    retry_at = clock.now() + timedelta(minutes=2)
    assert await store.relay_outcome(retried, "retry", retry_at=retry_at, error="timeout")
    assert await store.release_relay(dropped)
    assert await store.drop_relay([dropped.id]) == 1
    for item in rest:
        assert await store.release_relay(item)
    del leased  # stays leased: its lease is copied with it
    statuses = {r.status for r in await store.relay_events(limit=100)}
    assert statuses == set(RelayStatus), statuses
    # the API keys' quotas: a day's count (copied) and a per-second bucket (not copied)
    quota = QuotaLimits(per_second=10, per_day=100)
    assert isinstance(await store.take_quota("key-a", 4, quota), QuotaTaken)
    assert isinstance(await store.take_quota("key-b", 3, QuotaLimits(per_day=50)), QuotaTaken)
    return Source(
        path, store, clock, campaign.message_id, second.message_id, third.message_id,
        by_address["+15550010"], photo.mo_id, _sha(BIG),
    )  # fmt: skip


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[Source]:
    clock = ManualClock()
    built = await _build(tmp_path / "gw.db", clock)
    yield built
    await built.store.close()


@pytest.fixture
async def target() -> AsyncIterator[str]:
    async with pg_database() as dsn:
        yield dsn


async def copy(source: Source, dsn: str, **options: Any) -> Any:
    from mm7.service.store.migrate_copy import copy_store

    return await copy_store(source.path, dsn, clock=source.clock, **options)


# -- reading both sides behind the stores' backs ----------------------------------------------


def sqlite_rows(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()


def sqlite_columns(path: Path, table: str) -> list[str]:
    # table_xinfo: the generated api_key of messages too
    return [r[1] for r in sqlite_rows(path, f"PRAGMA table_xinfo({table})")]


def sqlite_tables(path: Path) -> set[str]:
    rows = sqlite_rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in rows}


async def pg_rows(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def pg_columns(dsn: str, table: str) -> list[str]:
    rows = await pg_rows(
        dsn,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    return [r[0] for r in rows]


async def pg_tables(dsn: str) -> set[str]:
    rows = await pg_rows(
        dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    )
    return {r[0] for r in rows}


async def pg_dump(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: what "the target is as it was" compares."""
    dump = {}
    for table in sorted(await pg_tables(dsn)):
        rows = await pg_rows(dsn, f"SELECT * FROM {table}")
        dump[table] = sorted(rows, key=repr)
    return dump


def media_bytes(source: Source) -> dict[str, bytes]:
    """Every medium's bytes as the SQLite store keeps them: the BLOB or the file."""
    found = {}
    for sha, data, rel in sqlite_rows(source.path, "SELECT sha256, data, path FROM media"):
        folder = source.path.with_name(source.path.name + ".media")
        found[sha] = data if data is not None else (folder / rel).read_bytes()
    return found


# -- the copy ---------------------------------------------------------------------------------


async def test_the_copy_holds_every_row_of_every_table(source: Source, target: str) -> None:
    # small batches, so that every table goes in several
    report = await copy(source, target, batch_rows=3, batch_bytes=4096)
    copied = set(report.counts)
    assert copied == (sqlite_tables(source.path) - set(SQLITE_NOT_COPIED))
    for table in copied:
        in_source = sqlite_rows(source.path, f"SELECT count(*) FROM {table}")[0][0]
        assert report.counts[table] == in_source > 0, table
        shared = [
            c for c in await pg_columns(target, table) if c in sqlite_columns(source.path, table)
        ]
        if table == "media":
            shared.remove("data")  # compared below, with the files read
        select = f"SELECT {', '.join(shared)} FROM {table}"
        expected = sorted(sqlite_rows(source.path, select), key=repr)
        assert sorted(await pg_rows(target, select), key=repr) == expected, table
    # media: every one's bytes, those of files included; the big one once for two messages
    copied_media = dict(await pg_rows(target, "SELECT sha256, data FROM media"))
    assert copied_media == media_bytes(source)
    assert len(BIG) > 1024 and copied_media[source.big_sha] == BIG
    shared_by = await pg_rows(
        target, "SELECT DISTINCT message_id FROM message_media WHERE sha256 = $1", source.big_sha
    )
    assert {r[0] for r in shared_by} == {source.campaign, source.second}
    # leases: SQLite's item leases are on the rows, owner, fencing token and expiry kept
    for table, kind in LEASED.items():
        leases = sqlite_rows(
            source.path, "SELECT item_id, owner, token, expires_at FROM leases WHERE kind = ?", kind
        )
        assert leases, kind
        on_rows = await pg_rows(
            target,
            f"SELECT id, {', '.join(LEASE_COLUMNS)} FROM {table} WHERE lease_owner IS NOT NULL",
        )
        assert sorted(on_rows) == sorted(leases), table
    # recipients in every state the source had
    statuses = {r[0] for r in await pg_rows(target, "SELECT DISTINCT status FROM recipients")}
    assert statuses == {"queued", "submitted", "delivered", "failed", "suppressed"}
    # the schema version is the target's own, and the cluster's tables are left empty
    assert await pg_rows(target, "SELECT count(*) FROM leases") == [(0,)]
    assert await pg_rows(target, "SELECT count(*) FROM seen_requests") == [(0,)]
    # a gateway has the source open: the report says so, and when the snapshot was taken
    assert report.snapshot_at == source.clock.now()
    assert any("write-ahead log" in note for note in report.notes), report.notes
    assert report.target.startswith("postgresql://127.0.0.1:5432/mm7_test_")


async def test_every_column_of_both_schemas_is_copied_or_named(tmp_path: Path, target: str) -> None:
    """A migration that adds a column on one side must say what the copy does with it."""
    from mm7.service.store.migrate_copy.tables import NOT_COPIED, PLANS, SECRETS
    from mm7.service.store.postgres.base import asyncpg
    from mm7.service.store.postgres.migrations import migrate as pg_migrate

    db = tmp_path / "empty.db"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, 0)
    conn.close()
    pg = await asyncpg.connect(target)
    await pg_migrate(pg, 0)
    await pg.close()
    plans = {p.table: p for p in (*PLANS, SECRETS)}
    assert set(plans) | set(NOT_COPIED) == await pg_tables(target)
    assert set(plans) | set(SQLITE_NOT_COPIED) == sqlite_tables(db)
    for table, plan in plans.items():
        assert list(plan.columns) == await pg_columns(target, table), table
        only_pg = set(plan.columns) - set(sqlite_columns(db, table))
        only_sqlite = set(sqlite_columns(db, table)) - set(plan.columns)
        assert only_pg == (set(LEASE_COLUMNS) if table in LEASED else set()), table
        assert only_sqlite == ({"path"} if table == "media" else set()), table


async def test_the_postgres_store_reads_the_copy_and_leases_from_it(
    source: Source, target: str
) -> None:
    from mm7.service.store.postgres import PostgresStore

    await copy(source, target)
    pg = await PostgresStore.open(target, clock=source.clock)
    try:
        for message_id in (source.campaign, source.second, source.third):
            assert await pg.get_message(message_id) == await source.store.get_message(message_id)
        assert await pg.get_mo(source.photo_mo) == await source.store.get_mo(source.photo_mo)
        assert await pg.delivery_reports(unknown_only=True) == await source.store.delivery_reports(
            unknown_only=True
        )
        assert await pg.delivery_reports(message_id=source.campaign) == (
            await source.store.delivery_reports(message_id=source.campaign)
        )
        assert await pg.get_media(source.big_sha) == await source.store.get_media(source.big_sha)
        assert await pg.message_for_key("idem-second") == source.second
        # the due recipients are leased; the one in flight at the copy keeps its lease, the
        # one retrying keeps its time
        items = await pg.lease(LINK, "pg-1", 10, TTL)
        assert {(i.message_id, i.address) for i in items} == {
            (source.second, "+15550011"),
            (source.third, "+15550020"),
        }
        second = await source.store.get_message(source.second)
        assert second is not None
        assert [i.parts for i in items if i.message_id == source.second] == [second.parts]
        # the worker that leased it on SQLite still holds it: its fencing token applies
        assert await pg.complete(source.in_flight, "mmsc-10", 1000, "Success") is True
        copied = await pg.get_message(source.second)
        assert copied is not None
        assert {r.address: r.status for r in copied.recipients} == {
            "+15550010": RecipientStatus.SUBMITTED,
            "+15550011": RecipientStatus.QUEUED,
        }
        # sequences moved past the copied ids: new rows get new ids
        top = max(r[0] for r in await pg_rows(target, "SELECT id FROM recipients"))
        new = await pg.enqueue_message(NewMessage(LINK, {"from": "1"}), ["+15550123"])
        fresh = await pg.get_message(new.message_id)
        assert fresh is not None and fresh.recipients[0].id == top + 1
    finally:
        await pg.close()


async def test_commits_after_the_snapshot_are_not_copied(source: Source, target: str) -> None:
    def write_meanwhile(table: str, count: int) -> None:
        if table == "media":  # while the copy runs, the gateway goes on committing
            conn = sqlite3.connect(source.path, isolation_level=None)
            conn.execute(
                "INSERT INTO suppressions (address_key, address, word, created_at)"
                " VALUES ('15550777', '+15550777', 'STOP', 0)"
            )
            conn.close()

    before = sqlite_rows(source.path, "SELECT count(*) FROM suppressions")[0][0]
    report = await copy(source, target, progress=write_meanwhile)
    assert sqlite_rows(source.path, "SELECT count(*) FROM suppressions")[0][0] == before + 1
    assert report.counts["suppressions"] == before
    assert await pg_rows(target, "SELECT count(*) FROM suppressions") == [(before,)]


# -- refusals and failures ----------------------------------------------------------------------


async def test_a_non_empty_target_is_refused_and_left_as_it_was(
    source: Source, target: str
) -> None:
    await copy(source, target)
    dump = await pg_dump(target)
    with pytest.raises(StoreCopyRefusedError) as refused:
        await copy(source, target)
    message = str(refused.value)
    assert "is not empty" in message and "nothing was changed" in message
    assert "messages 3" in message and "mo_messages 2" in message and "relay_outbox" in message
    assert await pg_dump(target) == dump


async def test_the_targets_own_secret_is_replaced_and_named(source: Source, target: str) -> None:
    from mm7.service.store.postgres.base import asyncpg
    from mm7.service.store.postgres.migrations import migrate as pg_migrate

    # a gateway started once on the empty database made its own media URL key
    pg = await asyncpg.connect(target)
    await pg_migrate(pg, 0)
    await pg.execute("INSERT INTO store_secrets VALUES ('media_url', 'made-by-pg', 0)")
    await pg.close()
    report = await copy(source, target)
    assert report.counts["store_secrets"] == 1
    assert any("media_url" in note and "replaced" in note for note in report.notes)
    assert "made-by-pg" not in " ".join(report.notes)
    assert await pg_rows(target, "SELECT name, value, created_at FROM store_secrets") == (
        sqlite_rows(source.path, "SELECT name, value, created_at FROM store_secrets")
    )


async def test_a_missing_media_file_rolls_everything_back_and_names_it(
    source: Source, target: str
) -> None:
    file = source.path.with_name("gw.db.media") / source.big_sha[:2] / source.big_sha
    saved = file.read_bytes()
    file.unlink()
    with pytest.raises(StoreCopyError) as failed:
        await copy(source, target, batch_rows=1)
    assert not isinstance(failed.value, StoreCopyRefusedError)
    assert str(file) in str(failed.value) and "is missing" in str(failed.value)
    assert "rolled back" in str(failed.value)
    # nothing at all: not even the schema the copy applied first
    assert await pg_tables(target) == set()
    # put back, the same copy goes through into the same database
    file.write_bytes(saved)
    report = await copy(source, target)
    assert report.counts["media"] == len(media_bytes(source))


async def test_a_damaged_media_file_is_refused_by_its_hash(source: Source, target: str) -> None:
    file = source.path.with_name("gw.db.media") / source.big_sha[:2] / source.big_sha
    file.write_bytes(bytes(len(BIG)))  # same size, other bytes
    with pytest.raises(StoreCopyError, match="does not hash to its SHA-256"):
        await copy(source, target)
    assert await pg_tables(target) == set()


@pytest.mark.parametrize("version", [LATEST - 1, LATEST + 1])
async def test_a_source_at_another_schema_version_is_refused(
    tmp_path: Path, target: str, version: int
) -> None:
    from mm7.service.store.migrate_copy import copy_store

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, 0, target=min(version, LATEST))
    if version > LATEST:
        conn.execute("INSERT INTO schema_version VALUES (?, 'from the future', 0)", (version,))
    conn.close()
    with pytest.raises(StoreCopyRefusedError) as refused:
        await copy_store(db, target)
    if version < LATEST:
        assert f"schema version {version}" in str(refused.value)
        assert "start this mm7 once on it to migrate it" in str(refused.value)
    else:
        assert "newer mm7" in str(refused.value)
    assert await pg_tables(target) == set()


# -- the command --------------------------------------------------------------------------------


async def test_the_command_copies_with_the_dsn_from_the_environment(
    source: Source, target: str
) -> None:
    # trust authentication ignores the password: it is there to show it is never printed
    dsn = target.replace("postgres@", "postgres:pa55-w0rd@")
    env = {**os.environ, "MM7_COPY_DSN": dsn}

    def run_copy(*extra: str) -> Any:
        import subprocess

        from tests.helpers.cli import MM7

        args = [*MM7, "store", "copy", "--from", str(source.path), "--to-env", "MM7_COPY_DSN"]
        return subprocess.run(
            [*args, *extra], env=env, capture_output=True, timeout=120, check=False
        )

    done = await asyncio.to_thread(run_copy, "--json")
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert counts["messages"] == 3 and counts["mo_messages"] == 2 and counts["media"] == 3
    assert list(counts)[0] == "media"
    for table, count in counts.items():
        assert await pg_rows(target, f"SELECT count(*) FROM {table}") == [(count,)], table
    assert b"pa55-w0rd" not in done.stdout + done.stderr
    assert b"copied" in done.stderr and b"write-ahead log" in done.stderr
    again = await asyncio.to_thread(run_copy)
    assert again.returncode == 1 and again.stdout == b""
    assert again.stderr.startswith(b"mm7 store copy: postgresql://127.0.0.1:5432/")
    assert b"is not empty (media 3, messages 3" in again.stderr
    assert b"pa55-w0rd" not in again.stderr and again.stderr.count(b"\n") == 1


def test_the_command_prints_the_rows_per_table(
    source: Source, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "store", "copy", "--from", str(source.path), "--to", target)
    assert code == 0, err
    lines = [line.split() for line in out.splitlines()]
    assert [name for name, _count in lines] == [
        "media", "messages", "recipients", "message_media", "events", "delivery_reports",
        "early_reports", "mo_messages", "mo_media", "relay_outbox", "suppressions",
        "api_day_counts", "fallback_sms", "fallback_parts", "fallback_receipts",
        "store_secrets",
    ]  # fmt: skip
    for name, count in lines:
        assert sqlite_rows(source.path, f"SELECT count(*) FROM {name}") == [(int(count),)], name
    assert err.startswith(f"mm7 store copy: copied {source.path} into postgresql://127.0.0.1")
    assert re.search(r" as it was at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00\n", err), err


def test_bad_options_are_named_and_nothing_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MM7_NO_SUCH_DSN", raising=False)
    db = tmp_path / "none.db"
    code, out, err = run(capsys, "store", "copy", "--from", str(db), "--to-env", "MM7_NO_SUCH_DSN")
    assert (code, out) == (2, "")
    assert err == "mm7 store copy: --to-env MM7_NO_SUCH_DSN: the variable is not set or empty\n"
    code, out, err = run(capsys, "store", "copy", "--from", str(db), "--to", "mysql://u:s3cr3t@h/d")
    assert (code, out) == (2, "")
    assert (
        err
        == "mm7 store copy: --to: expected a URL postgresql://user:password@host:port/database\n"
    )
    code, out, err = run(capsys, "store", "copy", "--from", str(db), "--to", "postgresql://h/db")
    assert (code, out) == (2, "")
    assert err == f"mm7 store copy: --from {db}: no such file\n"
    assert not db.exists()
    code, out, err = run(capsys, "store", "copy", "--from", str(db))
    assert code == 2 and "one of the arguments --to --to-env is required" in err
    assert run_cli("store", "copy", "--help").returncode == 0


async def test_an_interrupted_copy_leaves_the_target_as_it_was(tmp_path: Path, target: str) -> None:
    import signal
    import subprocess

    from tests.helpers.cli import MM7

    # enough media that the copy is still sending them when it is interrupted
    db = tmp_path / "big.db"
    store = await SqliteStore.open(db)
    for i in range(80):
        await store.put_media(os.urandom(1024 * 1024) + bytes([i]), "video/mp4")
    await store.close()
    proc = subprocess.Popen(
        [*MM7, "store", "copy", "--from", str(db), "--to", target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        copying = []
        while not copying and proc.poll() is None:
            copying = await pg_rows(
                target,
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'mm7 store copy'"
                " AND query LIKE 'COPY%' AND datname = current_database()",
            )  # this copy's database only: the server may run another test's at once
        assert copying, "the copy ended before it was seen sending rows"
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert out == b"" and err.endswith(b"interrupted; nothing was written to the target\n")
    assert await pg_tables(target) == set()
