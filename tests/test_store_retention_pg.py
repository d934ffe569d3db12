"""Retention on PostgreSQL (issue 14): what the PostgreSQL store purges besides the rules of
test_store_retention.py (which runs on both backends): expired inbound request keys (never
named leases), in small transactions; and purges that meet other instances' work: locked rows
are skipped, not waited for, and two instances purging at once share the work.

A fresh database per test (tests/helpers/stores.py: skipped, saying why, without a server).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from mm7.core.status import MMStatus
from mm7.service.store import ManualClock, MediaPart, NewMessage, PurgeStats, Store
from mm7.service.store.postgres import retention
from tests.helpers.stores import Backend, PostgresBackend, backend_of
from tests.test_store_retention import LINK, SMALL, TTL, sent

DAY = timedelta(days=1)


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[PostgresBackend]:
    """A fresh PostgreSQL database, dropped after the test."""
    async with backend_of("postgresql", tmp_path) as made:
        assert isinstance(made, PostgresBackend)
        yield made


@pytest.fixture
async def store(pg: Backend, clock: ManualClock) -> Store:
    return await pg.open(clock=clock)


async def test_a_campaign_goes_in_small_transactions(
    pg: Backend, store: Store, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "ROWS", 7)
    monkeypatch.setattr(retention, "CHUNK", 2)
    campaign = await store.enqueue_message(
        NewMessage(LINK, {"text": "x"}), [f"+1555010{i:02d}" for i in range(20)]
    )
    while items := await store.lease(LINK, "w", 8, TTL):
        for item in items:
            assert await store.fail(item, 4000, "refused")
    small = [await sent(store, to=f"+155502{i:02d}") for i in range(3)]
    queued = await store.enqueue_message(
        NewMessage(LINK, {"text": "later"}, not_before=clock.now() + 365 * DAY), ["+15550399"]
    )
    commits = store.stats().commits
    clock.advance(31 * DAY)
    stats = await store.purge(clock.now() - 30 * DAY)
    assert stats.messages == 4 and stats.delivery_reports == 3
    # 20 recipients and their 40+ events at 7 rows a transaction
    assert store.stats().commits - commits > 60 // 7
    for message_id in (campaign.message_id, *small):
        assert await store.get_message(message_id) is None
    assert await pg.rows("SELECT DISTINCT message_id FROM recipients") == [(queued.message_id,)]
    assert await pg.rows("SELECT DISTINCT message_id FROM events") == [(queued.message_id,)]


async def test_expired_request_keys_go_and_named_leases_stay(
    pg: Backend, store: Store, clock: ManualClock
) -> None:
    await store.record_request("old", timedelta(hours=1))
    await store.record_request("fresh", timedelta(hours=48))
    assert await store.claim("link:main", "gw-1", timedelta(seconds=10)) == 1
    assert await store.claim("housekeeping", "gw-1", timedelta(days=1)) == 1
    clock.advance(timedelta(hours=2))  # the link's lease expired too: it stays all the same
    await store.purge(clock.now() - 30 * DAY)
    assert await pg.rows("SELECT key FROM seen_requests") == [("fresh",)]
    assert await store.seen_request("fresh") and not await store.seen_request("old")
    assert sorted(await pg.rows("SELECT name, owner, token FROM leases")) == [
        ("housekeeping", "gw-1", 1),
        ("link:main", "gw-1", 1),
    ]
    # the next holder of the expired lease still gets the next token
    assert await store.claim("link:main", "gw-2", timedelta(seconds=10)) == 2


async def test_rows_another_transaction_holds_are_skipped_not_waited_for(
    pg: PostgresBackend, store: Store, clock: ManualClock
) -> None:
    busy = await sent(store, to="+15550001")
    free = await sent(store, to="+15550002")
    unused = await store.put_media(b"GIF89a-held", "image/gif")
    other = await store.put_media(b"GIF89a-free", "image/gif")
    clock.advance(31 * DAY)
    cutoff = clock.now() - 30 * DAY
    conn = await asyncpg.connect(pg.dsn)
    try:
        async with conn.transaction():
            # what a report on the message and an enqueue reusing the media hold meanwhile
            await conn.execute("SELECT 1 FROM messages WHERE id = $1 FOR NO KEY UPDATE", busy)
            await conn.execute("SELECT 1 FROM media WHERE sha256 = $1 FOR KEY SHARE", unused)
            # a bound against a hang, not a timing: a purge that waited would never return
            stats = await asyncio.wait_for(store.purge(cutoff), 30)
            assert stats.messages == 1 and stats.media == 1
        assert await store.get_message(free) is None and await store.get_media(other) is None
        assert await store.get_message(busy) is not None
        assert await store.get_media(unused) is not None
    finally:
        await conn.close()
    stats = await store.purge(cutoff)  # the next purge takes what was skipped
    assert stats.messages == 1 and stats.media == 1
    assert await store.get_message(busy) is None and await store.get_media(unused) is None


async def test_two_instances_purging_at_once_share_the_work(
    pg: Backend, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "CHUNK", 3)
    one, two = await pg.open(clock=clock), await pg.open(clock=clock)
    for i in range(24):
        await sent(one, MediaPart("image/png", data=SMALL + bytes([i])), to=f"+15550{i:03d}")
    clock.advance(31 * DAY)
    cutoff = clock.now() - 30 * DAY
    first, second = await asyncio.gather(one.purge(cutoff), two.purge(cutoff))
    assert first.messages + second.messages == 24
    assert first.media + second.media == 24
    assert first.delivery_reports + second.delivery_reports == 24
    for table in ("messages", "recipients", "events", "media", "delivery_reports"):
        assert await pg.count(table) == 0, table


async def test_reports_older_than_the_cutoff_go_in_batches(
    pg: Backend, store: Store, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "ROWS", 4)
    for i in range(10):
        await store.record_delivery_report(LINK, f"nobody-{i}", "+15550009", MMStatus.RETRIEVED)
    clock.advance(2 * DAY)
    await store.record_delivery_report(LINK, "recent", "+15550009", MMStatus.RETRIEVED)
    stats = await store.purge(clock.now() - DAY)
    assert stats == PurgeStats(delivery_reports=10)
    assert await pg.rows("SELECT mm7_message_id FROM delivery_reports") == [("recent",)]
