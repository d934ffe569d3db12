"""How the SQLite store runs its writes (mm7.service.store.sqlite.store, "Where the work runs"):
a batch's statements on the event loop, its COMMIT on the commit thread; a batch that meets
another connection's write lock waits for it off the loop; a write from another event loop is
run by the store's own loop. Real SQLite files; nothing is timed."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mm7.service.store.records import NewMessage
from mm7.service.store.sqlite.store import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "gw.db")
    yield opened
    await opened.close()


async def test_a_batch_meeting_another_connections_lock_waits_for_it_off_the_loop(
    store: SqliteStore,
) -> None:
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # as a `mm7` command writing to the same file would
    try:
        write = asyncio.create_task(store.put_media(b"held", "text/plain"))
        ticks = 0
        while ticks < 20:  # the loop keeps running while the write waits for the lock
            await asyncio.sleep(0.005)
            ticks += 1
        assert not write.done()
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    digest = await write
    assert digest == hashlib.sha256(b"held").hexdigest()
    blob = await store.get_media(digest)
    assert blob is not None and blob.data == b"held"
    # and the next writes run on the loop again, sharing commits
    before = store.stats()
    await asyncio.gather(*(store.put_media(bytes([n]), "text/plain") for n in range(50)))
    after = store.stats()
    assert after.writes - before.writes == 50
    assert after.commits - before.commits < 50


async def test_a_write_from_another_event_loop_is_run_by_the_stores_loop(
    store: SqliteStore,
) -> None:
    await store.put_media(b"home", "text/plain")  # this loop is the store's from now on
    made: list[str] = []

    def elsewhere() -> None:
        async def write() -> str:
            result = await store.enqueue_message(NewMessage(link="l", fields={}), ["+1555"])
            return result.message_id

        made.append(asyncio.run(write()))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    await asyncio.to_thread(thread.join)
    (message_id,) = made
    record = await store.get_message(message_id)
    assert record is not None and [r.address for r in record.recipients] == ["+1555"]


async def test_writes_queued_before_close_commit(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "gw.db")
    writes = [asyncio.create_task(store.put_media(bytes([n]), "text/plain")) for n in range(20)]
    await asyncio.sleep(0)  # queued, not committed yet
    await store.close()
    assert len({await w for w in writes}) == 20
    again = await SqliteStore.open(tmp_path / "gw.db")
    try:
        found = await again.get_media_many(
            [hashlib.sha256(bytes([n])).hexdigest() for n in range(20)]
        )
        assert len(found) == 20
    finally:
        await again.close()


async def test_media_read_on_the_loop_and_from_files_come_back_in_the_order_asked(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path / "gw.db", inline_media_max=1024)
    try:
        small, big = b"s" * 100, b"b" * 5000  # a row's blob; a file beside the database
        inline = await store.put_media(small, "text/plain")
        in_file = await store.put_media(big, "application/octet-stream")
        assert list((tmp_path / "gw.db.media").rglob(in_file))
        missing = "0" * 64
        found = await store.get_media_many([in_file, missing, inline, in_file])
        assert list(found) == [in_file, inline]
        assert found[in_file].data == big and found[in_file].size == 5000
        assert found[inline].data == small and found[inline].content_type == "text/plain"
    finally:
        await store.close()
