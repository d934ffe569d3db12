"""Retention on a real store of each backend: what is finished and older than the cutoff goes
(messages, MOs, reports, media no message uses, and with SQLite media files a crash left without
a row); what is still to be sent, relayed or retried by an operator stays."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mm7.core.status import MMStatus
from mm7.service.store import ManualClock, MediaPart, MoRelay, NewMessage, NewMo, SqliteStore
from mm7.service.store.sqlite import retention
from tests.helpers.stores import Backend, PostgresBackend, SqliteBackend

LINK = "carrier"
TTL = timedelta(seconds=60)
BIG = os.urandom(40_000)  # stored as a file (inline_media_max below)
SMALL = b"\x89PNG\r\n\x1a\n" + os.urandom(100)


@pytest.fixture
async def store(backend: Backend, clock: ManualClock) -> Any:
    return await backend.open(clock=clock, inline_media_max=10_000)


@pytest.fixture
async def sqlite_store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "gw.db", clock=clock, inline_media_max=10_000)
    yield s
    await s.close()


def media_files(store: Any) -> list[Path]:
    """SQLite's media files (PostgreSQL keeps every medium in its database: none)."""
    if not isinstance(store, SqliteStore):
        return []
    folder = store.path.with_name(store.path.name + ".media")
    return sorted(p for p in folder.rglob("*") if p.is_file())


async def sent(store: Any, *parts: MediaPart, to: str = "+15550001") -> str:
    """A message the MMSC accepted and reported delivered."""
    result = await store.enqueue_message(NewMessage(LINK, {"text": "x"}), [to], parts)
    for item in await store.lease(LINK, "w", 10, TTL):
        assert await store.complete(item, f"mm7-{item.recipient_id}", 1000, "Success")
        await store.record_delivery_report(
            LINK, f"mm7-{item.recipient_id}", item.address, MMStatus.RETRIEVED
        )
    return result.message_id


async def test_finished_messages_and_their_unused_media_go(
    store: Any, backend: Backend, clock: ManualClock
) -> None:
    old = await sent(store, MediaPart("application/octet-stream", data=BIG))
    shared = MediaPart("image/png", data=SMALL)
    old_shared = await sent(store, shared)
    later = NewMessage(LINK, {"text": "later"}, not_before=clock.now() + timedelta(days=365))
    queued = await store.enqueue_message(later, ["+15550002"])
    assert len(media_files(store)) == (1 if backend.name == "sqlite" else 0)
    clock.advance(timedelta(days=31))
    cutoff = clock.now() - timedelta(days=30)
    recent = await sent(store, shared, to="+15550003")  # uses the shared image again
    stats = await store.purge(cutoff)
    assert stats.messages == 2 and stats.delivery_reports == 2 and stats.media == 1
    assert await store.get_message(old) is None and await store.get_message(old_shared) is None
    assert await store.get_message(queued.message_id) is not None  # still to be sent
    kept = await store.get_message(recent)
    assert kept is not None and (await store.get_media(kept.parts[0].sha256)) is not None
    assert media_files(store) == []  # the big one's file went with its row
    assert await backend.count("events") == len(kept.events) + 1  # + the queued message's
    assert await store.purge(cutoff) == stats.__class__()  # nothing more


async def test_mos_go_once_relayed_but_not_while_pending_or_dead(
    store: Any, clock: ManualClock
) -> None:
    relay = MoRelay(hook="app", route="r", media="url", event={"type": "mo"})
    ids = []
    for n in range(3):
        part = MediaPart("image/png", data=SMALL + bytes([n]))
        result = await store.store_mo(NewMo(LINK, f"t{n}", None, {}, [part], relay=relay))
        ids.append(result.mo_id)
    unrouted = (await store.store_mo(NewMo(LINK, "t9", None, {}))).mo_id
    items = {i.source_id: i for i in await store.lease_relay("w", 10, TTL)}
    assert await store.relay_outcome(items[ids[0]], "delivered")
    assert await store.relay_outcome(items[ids[1]], "dead", error="HTTP 500")
    clock.advance(timedelta(days=31))
    stats = await store.purge(clock.now() - timedelta(days=30))
    assert stats.mo_messages == 2 and stats.media == 1
    assert await store.get_mo(ids[0]) is None and await store.get_mo(unrouted) is None
    assert await store.get_mo(ids[1]) is not None  # dead: an operator may retry it
    assert await store.get_mo(ids[2]) is not None  # still pending


async def test_media_reused_recently_counts_as_used(store: Any, clock: ManualClock) -> None:
    sha = await store.put_media(SMALL, "image/png")
    clock.advance(timedelta(days=31))
    assert await store.put_media(SMALL, "image/png") == sha  # used again now
    stats = await store.purge(clock.now() - timedelta(days=30))
    assert stats.media == 0 and await store.get_media(sha) is not None
    clock.advance(timedelta(days=31))
    assert (await store.purge(clock.now() - timedelta(days=30))).media == 1


async def test_a_file_retention_removed_meanwhile_is_written_again(
    sqlite_store: SqliteStore, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sqlite_store
    first = await sent(store, MediaPart("application/octet-stream", data=BIG))
    (path,) = media_files(store)
    clock.advance(timedelta(days=31))
    cutoff = clock.now() - timedelta(days=30)
    prepare = store._prepare_parts

    async def prepare_then_purge(parts: Any) -> Any:
        ready = await prepare(parts)  # the file exists: nothing written
        await store.purge(cutoff)  # the old message goes, and the unused media with its file
        assert not path.exists()
        return ready

    monkeypatch.setattr(store, "_prepare_parts", prepare_then_purge)
    again = await store.enqueue_message(
        NewMessage(LINK, {"text": "x"}), ["+15550009"], [MediaPart("a/b", data=BIG)]
    )
    assert await store.get_message(first) is None
    record = await store.get_message(again.message_id)
    assert record is not None
    blob = await store.get_media(record.parts[0].sha256)
    assert blob is not None and blob.data == BIG and path.exists()


async def test_media_files_a_crash_left_without_a_row_are_removed(
    sqlite_store: SqliteStore, clock: ManualClock
) -> None:
    store = sqlite_store
    await sent(store, MediaPart("application/octet-stream", data=BIG))
    (kept,) = media_files(store)
    stray = kept.parent / ("f" * 64)
    stray.write_bytes(b"left by a crash")
    fresh = kept.parent / ("e" * 64)
    fresh.write_bytes(b"being written right now")
    day_ago = time.time() - 2 * 86400
    for path in (kept, stray):
        os.utime(path, (day_ago, day_ago))
    stats = await store.purge(clock.now() - timedelta(days=30))
    assert stats.orphan_files == 1
    assert not stray.exists() and kept.exists() and fresh.exists()


async def test_the_gateway_purges_at_start(backend: Backend, tmp_path: Path) -> None:
    from mm7.service.config.loader import load_config
    from mm7.service.runtime import Gateway
    from tests.helpers.runtime import bound_socket, write_config

    with bound_socket() as mmsc:
        path = write_config(tmp_path, mmsc.getsockname()[1])
    env = {}
    if isinstance(backend, PostgresBackend):
        text = path.read_text()
        db_line = f'path = "{(tmp_path / "var" / "mm7.sqlite").as_posix()}"'
        assert db_line in text
        path.write_text(text.replace(db_line, 'backend = "postgresql"\ndsn_env = "MM7_TEST_DSN"'))
        env["MM7_TEST_DSN"] = backend.dsn
    config = load_config(path, env=env)
    if isinstance(backend, SqliteBackend):
        backend.path = config.store.path
        config.store.path.parent.mkdir(parents=True, exist_ok=True)
    old = await backend.open(clock=ManualClock())  # 2026-01-01
    finished = await old.enqueue_message(NewMessage("main", {"text": "x"}), ["+15550001"])
    (item,) = await old.lease("main", "w", 1, TTL)
    assert await old.complete(item, "mm7-1", 1000, "Success")
    await old.close()
    backend.stores.remove(old)
    gateway = Gateway(config, configure_logs=False, announce=lambda line: None)
    await gateway.start()
    try:
        assert gateway.store is not None
        for _ in range(500):  # the first pass runs at start (a bound, not a timing)
            if await gateway.store.get_message(finished.message_id) is None:
                break
            await asyncio.sleep(0.01)
        assert await gateway.store.get_message(finished.message_id) is None
    finally:
        await gateway.stop()


async def test_files_go_off_the_event_loop_and_an_enqueue_meanwhile_keeps_its_file(
    sqlite_store: SqliteStore, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unlinks run on a worker thread holding the write lock: an enqueue of the same bytes
    that comes while they run commits only after them, finds its file gone and writes it
    again (without the lock it would commit in the gap and keep a row without a file)."""
    store = sqlite_store
    first = await sent(store, MediaPart("application/octet-stream", data=BIG))
    others = [
        await sent(store, MediaPart("application/octet-stream", data=os.urandom(20_000)))
        for _ in range(3)
    ]
    (path,) = [p for p in media_files(store) if p.read_bytes() == BIG]
    clock.advance(timedelta(days=31))
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    threads: list[int] = []
    enqueues: list[Any] = []
    real_unlink = retention.os.unlink

    def unlink(target: Any) -> None:
        threads.append(threading.get_ident())
        if Path(target) == path and not enqueues:
            again = store.enqueue_message(
                NewMessage(LINK, {"text": "x"}), ["+15550009"], [MediaPart("a/b", data=BIG)]
            )
            enqueues.append(asyncio.run_coroutine_threadsafe(again, loop))
            time.sleep(0.2)  # room for the enqueue to commit in the gap, were there one
        real_unlink(target)

    monkeypatch.setattr(retention.os, "unlink", unlink)
    stats = await store.purge(clock.now() - timedelta(days=30))
    assert stats.messages == 4 and stats.media == 4
    assert threads and loop_thread not in threads
    assert len(threads) == 4  # each purged file once, none of them on the loop
    again = await asyncio.wrap_future(enqueues[0])
    record = await store.get_message(again.message_id)
    assert record is not None
    blob = await store.get_media(record.parts[0].sha256)
    assert blob is not None and blob.data == BIG and path.exists()
    for mid in (first, *others):
        assert await store.get_message(mid) is None
    assert media_files(store) == [path]
