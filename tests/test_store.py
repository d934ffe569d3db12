"""The store, on each backend: idempotency, media dedupe, commits, leases, retries, reports, MO.

Real databases (an SQLite file in tmp_path, a fresh PostgreSQL database: tests/helpers/stores.py);
time is a ManualClock so that lease expiry and retry schedules are exercised by moving the clock,
never by sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mm7.core.status import MMStatus
from mm7.service.errors import UnknownMediaError
from mm7.service.store import (
    ManualClock,
    MediaPart,
    MessageStatus,
    NewMessage,
    NewMo,
    RecipientStatus,
    SqliteStore,
    Store,
    normalize_address,
)
from tests.helpers.stores import Backend

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40  # ~10 KB, stored inline
BIG = b"\x89PNG\r\n\x1a\n" + b"x" * (300 * 1024)  # above the inline limit: stored as a file


def message(
    key: str | None = None,
    link: str = "mmsc1",
    *,
    expires_at: datetime | None = None,
    not_before: datetime | None = None,
    callback_url: str | None = None,
) -> NewMessage:
    return NewMessage(
        link=link,
        fields={"from": "12345", "subject": "hi"},
        idempotency_key=key,
        expires_at=expires_at,
        not_before=not_before,
        callback_url=callback_url,
    )


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


async def test_store_implements_the_protocol(store: Store) -> None:
    missing = sorted(
        name
        for name in dir(Store)
        if not name.startswith("_") and not callable(getattr(type(store), name, None))
    )
    assert missing == []
    assert isinstance(store, Store)


async def test_sqlite_database_is_wal_and_fully_synchronous(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = await SqliteStore.open(tmp_path / "gw.db", clock=clock)
    try:
        conn = sqlite3.connect(store.path)
        assert conn.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
        conn.close()
        # synchronous is per connection: the store reads its writer's setting back
        assert store.durability == "journal_mode=wal synchronous=FULL"
    finally:
        await store.close()


async def test_commits_are_durable(store: Any, backend: Backend) -> None:
    expected = {
        "sqlite": "journal_mode=wal synchronous=FULL",
        "postgresql": "synchronous_commit=on fsync=on",
    }
    assert store.durability == expected[backend.name]


async def test_enqueue_then_get_message(store: Store) -> None:
    result = await store.enqueue_message(
        message("k1", callback_url="http://app/cb"),
        ["+4917000001", "4917000002"],
        [MediaPart("image/jpeg", data=JPEG, content_id="<img>")],
    )
    assert result.created
    got = await store.get_message(result.message_id)
    assert got is not None
    assert got.status is MessageStatus.QUEUED
    assert got.fields == {"from": "12345", "subject": "hi"}
    assert got.callback_url == "http://app/cb"
    assert [r.address for r in got.recipients] == ["+4917000001", "4917000002"]
    assert {r.status for r in got.recipients} == {RecipientStatus.QUEUED}
    assert len({r.transaction_id for r in got.recipients}) == 2
    assert got.parts[0].sha256 == hashlib.sha256(JPEG).hexdigest()
    assert got.parts[0].content_id == "<img>"
    assert [e.kind for e in got.events] == ["queued"]
    assert await store.get_message("nope") is None


async def test_message_content_is_the_message_without_recipients_or_events(store: Store) -> None:
    result = await store.enqueue_message(
        message(),
        [f"+49170000{n:04d}" for n in range(300)],
        [
            MediaPart("text/plain; charset=utf-8", data=b"hi", content_id="<t>"),
            MediaPart("image/jpeg", data=JPEG, content_location="photo.jpg"),
        ],
    )
    full = await store.get_message(result.message_id)
    content = await store.message_content(result.message_id)
    assert full is not None and content is not None
    assert (content.id, content.link, content.fields) == (full.id, full.link, full.fields)
    assert content.created_at == full.created_at
    assert content.parts == full.parts and len(content.parts) == 2
    assert await store.message_content("nope") is None


async def test_repeated_idempotency_key_returns_the_original_and_writes_nothing(
    store: Store, backend: Backend
) -> None:
    first = await store.enqueue_message(message("same"), ["111"])
    before = await backend.rows("SELECT COUNT(*) FROM recipients")
    again = await store.enqueue_message(
        message("same"), ["222", "333"], [MediaPart("image/jpeg", data=JPEG)]
    )
    assert again.message_id == first.message_id and not again.created
    assert await backend.rows("SELECT COUNT(*) FROM recipients") == before
    assert await backend.rows("SELECT COUNT(*) FROM media") == [(0,)]
    # concurrent repeats of a new key also create exactly one message
    results = await asyncio.gather(
        *(store.enqueue_message(message("burst"), ["444"]) for _ in range(20))
    )
    assert len({r.message_id for r in results}) == 1
    assert sum(r.created for r in results) == 1


async def test_media_shared_by_two_messages_is_stored_once(store: Store, backend: Backend) -> None:
    a = await store.enqueue_message(message(), ["1"], [MediaPart("image/jpeg", data=JPEG)])
    b = await store.enqueue_message(
        message(), ["2"], [MediaPart("image/jpeg", data=JPEG, content_location="x.jpg")]
    )
    digest = await store.put_media(JPEG, "image/jpeg")
    assert await backend.rows("SELECT sha256 FROM media") == [(digest,)]
    ma, mb = await store.get_message(a.message_id), await store.get_message(b.message_id)
    assert ma is not None and mb is not None
    assert ma.parts[0].sha256 == mb.parts[0].sha256 == digest
    blob = await store.get_media(digest)
    assert blob is not None and blob.data == JPEG and blob.content_type == "image/jpeg"


async def test_large_media_is_stored_once_and_can_be_referenced(
    store: Store, backend: Backend, tmp_path: Path
) -> None:
    digest = await store.put_media(BIG, "image/png")
    assert await store.put_media(BIG, "image/png") == digest
    if backend.name == "sqlite":  # above the inline limit: one file, the row names it
        files = [p for p in (tmp_path / "gw.db.media").rglob("*") if p.is_file()]
        assert [p.name for p in files] == [digest]
        assert await backend.rows("SELECT data IS NULL, path FROM media") == [
            (1, f"{digest[:2]}/{digest}")
        ]
    else:  # one row holding the bytes, whatever their size
        assert await backend.rows("SELECT sha256, size, length(data) FROM media") == [
            (digest, len(BIG), len(BIG))
        ]
    made = await store.enqueue_message(message(), ["1"], [MediaPart("image/png", sha256=digest)])
    got = await store.get_message(made.message_id)
    assert got is not None and got.parts[0].size == len(BIG)
    blob = await store.get_media(digest)
    assert blob is not None and blob.data == BIG


async def test_unknown_media_reference_fails_that_write_only(
    store: Store, backend: Backend
) -> None:
    bad = store.enqueue_message(message("bad"), ["1"], [MediaPart("image/png", sha256="0" * 64)])
    good = store.enqueue_message(message("good"), ["2"])
    outcome = await asyncio.gather(bad, good, return_exceptions=True)
    assert isinstance(outcome[0], UnknownMediaError)
    assert await backend.rows("SELECT idempotency_key FROM messages") == [("good",)]


async def test_concurrent_writes_are_visible_after_await(store: Store, backend: Backend) -> None:
    before = store.stats()

    async def one(i: int) -> None:
        made = await store.enqueue_message(message(f"c{i}"), [f"49170{i:05d}"])
        # visible to a separate reader connection as soon as the await returned
        assert await store.get_message(made.message_id) is not None

    await asyncio.gather(*(one(i) for i in range(300)))
    after = store.stats()
    writes = after.writes - before.writes
    commits = after.commits - before.commits
    assert writes == 300
    if backend.name == "sqlite":  # group commit: concurrent writes share commits
        assert commits < writes
        assert after.largest_batch > 1
    assert await backend.rows("SELECT COUNT(*) FROM messages") == [(300,)]


async def test_lease_hands_out_due_items_once(store: Store, clock: ManualClock) -> None:
    await store.enqueue_message(message(), ["1", "2", "3"])
    await store.enqueue_message(message(link="other"), ["9"])
    first = await store.lease("mmsc1", "w1", 2, timedelta(seconds=30))
    second = await store.lease("mmsc1", "w2", 5, timedelta(seconds=30))
    assert [i.address for i in first] == ["1", "2"]
    assert [i.address for i in second] == ["3"]
    assert await store.lease("mmsc1", "w3", 5, timedelta(seconds=30)) == []
    item = first[0]
    assert item.attempts == 1 and item.owner == "w1" and item.fields["subject"] == "hi"
    assert item.lease_expires_at == clock.now() + timedelta(seconds=30)
    got = await store.get_message(item.message_id)
    assert got is not None and got.status is MessageStatus.SENDING


async def test_expired_lease_is_taken_over_and_the_old_holder_is_fenced(
    store: Store, clock: ManualClock
) -> None:
    made = await store.enqueue_message(message(), ["1"])
    (dead,) = await store.lease("mmsc1", "dead-worker", 1, timedelta(seconds=30))
    clock.advance(timedelta(seconds=29))
    assert await store.lease("mmsc1", "w2", 1, timedelta(seconds=30)) == []
    clock.advance(timedelta(seconds=2))
    (taken,) = await store.lease("mmsc1", "w2", 1, timedelta(seconds=30))
    assert taken.recipient_id == dead.recipient_id and taken.attempts == 2
    assert taken.transaction_id == dead.transaction_id  # stable: the MMSC can drop duplicates
    # the first worker wakes up late: its result is kept as an event but does not apply
    assert not await store.complete(dead, "MSG-OLD", 1000, "Success")
    assert await store.complete(taken, "MSG-NEW", 1000, "Success")
    got = await store.get_message(made.message_id)
    assert got is not None
    assert got.recipients[0].mm7_message_id == "MSG-NEW"
    assert got.recipients[0].status is RecipientStatus.SUBMITTED
    assert got.status is MessageStatus.SUBMITTED
    kinds = [e.kind for e in got.events]
    assert kinds == ["queued", "lease_expired", "stale_result", "submitted"]
    assert got.events[2].details["mm7_message_id"] == "MSG-OLD"


async def test_retry_later_schedules_the_next_attempt(store: Store, clock: ManualClock) -> None:
    made = await store.enqueue_message(message(), ["1"])
    (item,) = await store.lease("mmsc1", "w", 1, timedelta(seconds=30))
    assert await store.retry_later(item, clock.now() + timedelta(seconds=60), 3001, "busy")
    assert await store.lease("mmsc1", "w", 1, timedelta(seconds=30)) == []
    clock.advance(timedelta(seconds=59))
    assert await store.lease("mmsc1", "w", 1, timedelta(seconds=30)) == []
    clock.advance(timedelta(seconds=1))
    (again,) = await store.lease("mmsc1", "w", 1, timedelta(seconds=30))
    assert again.attempts == 2
    assert await store.fail(again, 2001, "bad address")
    got = await store.get_message(made.message_id)
    assert got is not None
    r = got.recipients[0]
    assert r.status is RecipientStatus.FAILED and r.last_status_code == 2001
    assert got.status is MessageStatus.FAILED
    assert [e.kind for e in got.events] == ["queued", "retry", "failed"]
    assert await store.queue_depth("mmsc1") == 0


async def test_release_gives_the_item_back_unattempted(store: Store) -> None:
    await store.enqueue_message(message(), ["1"])
    (item,) = await store.lease("mmsc1", "w", 1, timedelta(seconds=30))
    assert await store.release(item)
    (again,) = await store.lease("mmsc1", "w2", 1, timedelta(seconds=30))
    assert again.attempts == 1
    assert not await store.release(item)  # a released lease cannot be released twice


async def test_scheduled_and_expired_messages(store: Store, clock: ManualClock) -> None:
    later = await store.enqueue_message(message(not_before=clock.now() + timedelta(hours=1)), ["1"])
    short = await store.enqueue_message(
        message(expires_at=clock.now() + timedelta(minutes=10)), ["2"]
    )
    (item,) = await store.lease("mmsc1", "w", 5, timedelta(seconds=30))
    assert item.message_id == short.message_id
    # a retry past the expiry expires the recipient instead
    assert await store.retry_later(item, clock.now() + timedelta(minutes=11), 3001, "busy")
    got = await store.get_message(short.message_id)
    assert got is not None and got.recipients[0].status is RecipientStatus.EXPIRED
    clock.advance(timedelta(hours=1))
    (due,) = await store.lease("mmsc1", "w", 5, timedelta(seconds=30))
    assert due.message_id == later.message_id
    # a due recipient whose expiry passed while queued is expired instead of leased
    stale = await store.enqueue_message(
        message(expires_at=clock.now() + timedelta(seconds=5)), ["3"]
    )
    clock.advance(timedelta(seconds=6))
    assert await store.lease("mmsc1", "w", 5, timedelta(seconds=30)) == []
    got = await store.get_message(stale.message_id)
    assert got is not None and got.recipients[0].status is RecipientStatus.EXPIRED
    assert got.status is MessageStatus.EXPIRED


async def test_delivery_reports_correlate_by_link_message_id_and_recipient(
    store: Store,
) -> None:
    made = await store.enqueue_message(message(), ["+49 170 0001", "4917000002"])
    items = await store.lease("mmsc1", "w", 2, timedelta(seconds=30))
    for item in items:  # one SubmitReq for both recipients: one MessageID
        assert await store.complete(item, "MID-1", 1000, "Success")
    forwarded = await store.record_delivery_report(
        "mmsc1", "MID-1", "491700001/TYPE=PLMN", MMStatus.FORWARDED
    )
    assert forwarded.message_id == made.message_id
    assert forwarded.recipient_status is RecipientStatus.SUBMITTED
    final = await store.record_delivery_report(
        "mmsc1", "MID-1", "tel:+491700001", MMStatus.RETRIEVED, status_text="ok"
    )
    assert final.recipient_id == forwarded.recipient_id
    assert final.recipient_status is RecipientStatus.DELIVERED
    # a late, out-of-order non-final or contradicting report does not undo the final outcome
    late = await store.record_delivery_report("mmsc1", "MID-1", "+491700001", MMStatus.REJECTED)
    assert late.recipient_status is RecipientStatus.DELIVERED
    other = await store.record_delivery_report("mmsc1", "MID-1", "4917000002", MMStatus.REJECTED)
    assert other.recipient_status is RecipientStatus.UNDELIVERED
    got = await store.get_message(made.message_id)
    assert got is not None
    assert [r.status for r in got.recipients] == [
        RecipientStatus.DELIVERED,
        RecipientStatus.UNDELIVERED,
    ]
    reports = [e for e in got.events if e.kind == "delivery_report"]
    assert [e.status for e in reports] == ["Forwarded", "Retrieved", "Rejected", "Rejected"]
    assert len(await store.delivery_reports(message_id=made.message_id)) == 4


async def test_unknown_delivery_reports_are_kept_for_inspection(store: Store) -> None:
    made = await store.enqueue_message(message(), ["1"])
    (item,) = await store.lease("mmsc1", "w", 1, timedelta(seconds=30))
    await store.complete(item, "MID-9")
    unknown = await store.record_delivery_report(
        "mmsc1", "NEVER-SENT", "1", MMStatus.RETRIEVED, raw="<soap/>"
    )
    wrong_link = await store.record_delivery_report("mmsc2", "MID-9", "1", MMStatus.RETRIEVED)
    assert unknown.message_id is None and unknown.recipient_id is None
    assert wrong_link.message_id is None
    kept = await store.delivery_reports(unknown_only=True)
    assert [(r.mm7_message_id, r.link, r.raw) for r in kept] == [
        ("NEVER-SENT", "mmsc1", "<soap/>"),
        ("MID-9", "mmsc2", None),
    ]
    got = await store.get_message(made.message_id)
    assert got is not None and got.recipients[0].status is RecipientStatus.SUBMITTED


async def test_mo_duplicates_are_detected_per_link(
    store: Store, backend: Backend, clock: ManualClock
) -> None:
    first = await store.store_mo(
        NewMo("mmsc1", "T1", "M1", {"text": "hello"}, [MediaPart("image/jpeg", data=JPEG)])
    )
    assert not first.duplicate
    same_msg = await store.store_mo(NewMo("mmsc1", "T2", "M1", {"text": "hello"}))
    same_txn = await store.store_mo(NewMo("mmsc1", "T1", None, {"text": "hello"}))
    assert same_msg == same_txn == first.__class__(first.mo_id, True)
    other_link = await store.store_mo(NewMo("mmsc2", "T1", "M1", {"text": "hello"}))
    assert not other_link.duplicate
    # a recycled TransactionID with a new MessageID is a new message, even within the window
    assert not (await store.store_mo(NewMo("mmsc1", "T1", "M2", {}))).duplicate
    # without MessageIDs the fingerprint (sender, date, subject) tells a retry from a recycle
    fp = await store.store_mo(NewMo("mmsc1", "T5", None, {}, fingerprint="a"))
    assert (await store.store_mo(NewMo("mmsc1", "T5", None, {}, fingerprint="a"))) == (
        fp.__class__(fp.mo_id, True)
    )
    assert not (await store.store_mo(NewMo("mmsc1", "T5", None, {}, fingerprint="b"))).duplicate
    # a recycled TransactionID long after is a new message; a MessageID never is
    clock.advance(timedelta(days=8))
    assert not (await store.store_mo(NewMo("mmsc1", "T1", None, {}))).duplicate
    assert (await store.store_mo(NewMo("mmsc1", "T9", "M1", {}))).duplicate
    got = await store.get_mo(first.mo_id)
    assert got is not None and got.fields == {"text": "hello"} and got.status == "unrouted"
    assert got.parts[0].sha256 == hashlib.sha256(JPEG).hexdigest()
    assert await backend.rows("SELECT COUNT(*) FROM media") == [(1,)]


def test_normalize_address() -> None:
    assert normalize_address("+49 (170) 123-45/TYPE=PLMN") == "4917012345"
    assert normalize_address("tel:+4917012345") == "4917012345"
    assert normalize_address("Bob@Example.COM") == "bob@example.com"
    assert normalize_address("12345") == "12345"


def test_media_part_needs_data_or_hash() -> None:
    with pytest.raises(ValueError):
        MediaPart("image/jpeg")
    with pytest.raises(ValueError):
        MediaPart("image/jpeg", data=b"x", sha256="0" * 64)


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.enqueue_message(message(expires_at=datetime(2030, 1, 1)), ["1"])


async def test_expire_finishes_the_recipient_under_its_lease_only(
    store: Store, clock: ManualClock
) -> None:
    made = await store.enqueue_message(message(), ["1", "2"])
    first, second = await store.lease("mmsc1", "w", 2, timedelta(seconds=30))
    assert first.created_at == clock.now()  # the deadline without expiry counts from here
    assert await store.expire(first, 3001, "busy", {"max_age_s": 60.0})
    assert not await store.expire(first, 3001, "busy")  # the lease is gone with the outcome
    got = await store.get_message(made.message_id)
    assert got is not None
    expired = next(r for r in got.recipients if r.address == first.address)
    assert expired.status is RecipientStatus.EXPIRED and expired.last_status_code == 3001
    assert [e.details["max_age_s"] for e in got.events if e.kind == "expired"] == [60.0]
    assert got.status is not MessageStatus.FAILED  # the other recipient is still in flight
    assert await store.fail(second, 2001, "bad address")
    got = await store.get_message(made.message_id)
    assert got is not None and got.status is MessageStatus.FAILED
    assert await store.queue_depth("mmsc1") == 0


async def test_reports_correlate_by_the_other_address_and_on_the_other_links(
    store: Store,
) -> None:
    one = await store.enqueue_message(message(link="a"), ["+15550001"])
    two = await store.enqueue_message(message(link="a"), ["+15550002", "+15550003"])
    for item in await store.lease("a", "w", 5, timedelta(seconds=30)):
        mid = "M-1" if item.message_id == one.message_id else "M-2"
        assert await store.complete(item, mid, 1000)
    # the MMSC swapped Sender and Recipient: the handset is the report's other address
    swapped = await store.record_delivery_report(
        "a", "M-2", "12345", MMStatus.FORWARDED, alternate="+15550003"
    )
    assert swapped.alternate_matched and swapped.recipient == "+15550003"
    assert swapped.message_id == two.message_id and swapped.link == "a"
    # a report reaching the peer of another link: looked for on the links named, in order
    moved = await store.record_delivery_report(
        "b", "M-2", "+15550002", MMStatus.RETRIEVED, other_links=("c", "a")
    )
    assert moved.link == "a" and moved.recipient_status is RecipientStatus.DELIVERED
    # there, an address must match: a MessageID is unique per MMSC only
    stranger = await store.record_delivery_report(
        "b", "M-2", "+19999999", MMStatus.RETRIEVED, other_links=("a",)
    )
    assert stranger.message_id is None and stranger.link == "b"
    # on the link itself, a MessageID naming one recipient matches whatever the spelling
    spelled = await store.record_delivery_report("a", "M-1", "someone-else", MMStatus.RETRIEVED)
    assert spelled.message_id == one.message_id
    assert spelled.recipient_status is RecipientStatus.DELIVERED
    # read replies correlate the same way
    assert (
        await store.record_read_reply(
            "b", "M-2", "12345", "Read", alternate="+15550003", other_links=("a",)
        )  # fmt: skip
        == two.message_id
    )
    got = await store.get_message(two.message_id)
    assert got is not None
    first = next(e for e in got.events if e.kind == "delivery_report")
    assert "report-addresses-swapped" in first.details["leniencies"]
    assert [e.kind for e in got.events][-1] == "read_reply"
    assert len(await store.delivery_reports(unknown_only=True)) == 1
