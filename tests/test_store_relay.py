"""The store's relay outbox and suppression list (issue 7), on each backend.

Real databases (tests/helpers/stores.py); time is a ManualClock: lease expiry and retry
schedules are exercised by moving the clock, never by sleeping. Events are queued the way the
gateway queues them: with the MO (``store_mo``), with an MT status change or a report.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mm7.core.status import MMStatus
from mm7.service.errors import AllSuppressedError
from mm7.service.store import (
    ManualClock,
    MediaPart,
    MessageStatus,
    MoRelay,
    NewMessage,
    NewMo,
    OptOut,
    RecipientStatus,
    RelayItem,
    RelayKind,
    RelayStatus,
    SqliteStore,
    Store,
    normalize_address,
)
from mm7.service.store.outbox import RelayOutcome
from mm7.service.store.sqlite.migrations import LATEST, migrate, schema_version
from tests.helpers.stores import Backend

TTL = timedelta(seconds=60)
LINK = "mmsc1"


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


async def mo(
    store: Any,
    sender: str = "+15550001",
    *,
    hook: str | None = "app",
    ordered: bool = False,
    tid: str | None = None,
    opt_out: OptOut | None = None,
    text: str = "hello",
) -> str:
    """Store an MO (relayed to ``hook`` unless None) the way ingest does; its id."""
    relay = None
    if hook is not None:
        relay = MoRelay(
            hook=hook,
            route="r1",
            media="url",
            event={"type": "mo", "from": sender, "text": text},
            sender_key=normalize_address(sender) if ordered else None,
        )
    result = await store.store_mo(
        NewMo(
            link=LINK,
            transaction_id=tid,
            mm7_message_id=None,
            fields={"from": sender, "text": text},
            parts=(MediaPart("image/png", data=b"\x89PNG\r\n\x1a\n" + sender.encode()),),
            relay=relay,
            opt_out=opt_out,
        )
    )
    assert not result.duplicate
    return result.mo_id


def sources(items: list[RelayItem]) -> list[str | None]:
    return [i.source_id for i in items]


async def test_each_due_event_is_leased_once_until_its_lease_expires(
    store: Any, clock: ManualClock
) -> None:
    ids = [await mo(store, f"+1555000{i}") for i in range(3)]
    first = await store.lease_relay("w1", 10, TTL)
    assert sources(first) == ids
    assert [i.attempt for i in first] == [1, 1, 1]
    assert all(i.kind is RelayKind.MO and i.idempotency_key == f"mo:{i.source_id}" for i in first)
    assert all(i.event["id"] == i.source_id and i.hook == "app" for i in first)
    assert [len(i.parts) for i in first] == [1, 1, 1]
    assert await store.lease_relay("w2", 10, TTL) == []
    clock.advance(TTL - timedelta(milliseconds=1))
    assert await store.lease_relay("w2", 10, TTL) == []
    clock.advance(timedelta(milliseconds=1))
    again = await store.lease_relay("w2", 10, TTL)
    assert sources(again) == ids
    assert [i.attempt for i in again] == [2, 2, 2]
    assert all(i.owner == "w2" for i in again)


async def test_lease_respects_n(store: Any) -> None:
    ids = [await mo(store, f"+1555000{i}") for i in range(3)]
    assert sources(await store.lease_relay("w1", 2, TTL)) == ids[:2]
    assert sources(await store.lease_relay("w1", 2, TTL)) == ids[2:]


async def test_an_outcome_with_a_stale_lease_changes_nothing(
    store: Any, clock: ManualClock
) -> None:
    await mo(store)
    [old] = await store.lease_relay("w1", 1, TTL)
    clock.advance(TTL)
    [new] = await store.lease_relay("w2", 1, TTL)
    assert new.id == old.id and new.lease_token != old.lease_token
    assert await store.relay_outcome(old, "delivered", http_status=200) is False
    record = await store.get_relay_event(old.id)
    assert record is not None and record.status is RelayStatus.PENDING
    assert record.last_http_status is None and record.first_attempt_at is None
    assert await store.release_relay(old) is False
    # the new holder still owns it
    assert await store.lease_relay("w3", 1, TTL) == []
    assert await store.relay_outcome(new, "delivered", http_status=204) is True
    record = await store.get_relay_event(new.id)
    assert record is not None and record.status is RelayStatus.DELIVERED
    assert record.last_http_status == 204 and record.attempts == 2


async def test_retry_is_scheduled_and_the_first_attempt_time_is_kept(
    store: Any, clock: ManualClock
) -> None:
    mo_id = await mo(store)
    t0 = clock.now()
    [item] = await store.lease_relay("w1", 1, TTL)
    assert item.first_attempt_at is None
    retry_at = t0 + timedelta(seconds=30)
    assert await store.relay_outcome(
        item, "retry", attempted_at=t0, retry_at=retry_at, http_status=503, error="HTTP 503"
    )
    record = await store.get_relay_event(item.id)
    assert record is not None
    assert record.status is RelayStatus.PENDING and record.attempts == 1
    assert record.next_attempt_at == retry_at and record.first_attempt_at == t0
    assert record.last_http_status == 503 and record.last_error == "HTTP 503"
    got = await store.get_mo(mo_id)
    assert got is not None and got.status == "pending"  # a retry does not settle the MO

    clock.advance(timedelta(seconds=29))
    assert await store.lease_relay("w1", 1, TTL) == []
    clock.advance(timedelta(seconds=1))
    [second] = await store.lease_relay("w1", 1, TTL)
    assert second.attempt == 2 and second.first_attempt_at == t0
    t1 = clock.now()
    assert await store.relay_outcome(
        second, "retry", attempted_at=t1, retry_at=t1 + timedelta(seconds=60), error="timeout"
    )
    record = await store.get_relay_event(item.id)
    assert record is not None and record.first_attempt_at == t0
    assert record.last_http_status is None and record.last_error == "timeout"
    with pytest.raises(ValueError, match="retry_at"):
        await store.relay_outcome(second, "retry")


async def test_release_gives_the_lease_back_without_counting_the_attempt(
    store: Any,
) -> None:
    await mo(store)
    [item] = await store.lease_relay("w1", 1, TTL)
    assert await store.release_relay(item) is True
    [again] = await store.lease_relay("w2", 1, TTL)
    assert again.id == item.id and again.attempt == 1


async def test_ordered_hooks_hand_out_one_event_per_sender_oldest_first(
    store: Any, clock: ManualClock
) -> None:
    a = [await mo(store, "+15550001", ordered=True, text=f"a{i}") for i in range(3)]
    b = [await mo(store, "+15550002", ordered=True, text=f"b{i}") for i in range(2)]
    # the same sender on a hook that is not ordered: never held back
    c = [await mo(store, "+15550001", hook="other", ordered=True, text=f"c{i}") for i in range(2)]
    ordered = {"app"}

    first = await store.lease_relay("w", 10, TTL, ordered_hooks=ordered)
    assert sorted(sources(first)) == sorted([a[0], b[0], *c])
    # a[0] in flight holds back a[1], a[2]
    assert await store.lease_relay("w", 10, TTL, ordered_hooks=ordered) == []
    by_id = {i.source_id: i for i in first}
    t0 = clock.now()
    # the head of a fails: its retry holds back the later ones of the same sender
    assert await store.relay_outcome(
        by_id[a[0]], "retry", attempted_at=t0, retry_at=t0 + timedelta(seconds=10)
    )
    assert await store.relay_outcome(by_id[b[0]], "delivered")
    assert sources(await store.lease_relay("w", 10, TTL, ordered_hooks=ordered)) == [b[1]]
    assert await store.lease_relay("w", 10, TTL, ordered_hooks=ordered) == []
    clock.advance(timedelta(seconds=10))
    [head] = await store.lease_relay("w", 10, TTL, ordered_hooks=ordered)
    assert head.source_id == a[0] and head.attempt == 2
    assert await store.relay_outcome(head, "delivered")
    assert sources(await store.lease_relay("w", 10, TTL, ordered_hooks=ordered)) == [a[1]]

    # without ordered_hooks the same rows are not held back
    clock.advance(TTL)
    rest = await store.lease_relay("w", 10, TTL)
    assert set(sources(rest)) >= {a[1], a[2]}


async def test_a_dead_head_lets_the_next_event_of_the_sender_go(store: Any) -> None:
    a = [await mo(store, "+15550001", ordered=True, text=f"a{i}") for i in range(2)]
    [head] = await store.lease_relay("w", 10, TTL, ordered_hooks={"app"})
    assert head.source_id == a[0]
    assert await store.relay_outcome(head, "dead", error="HTTP 410")
    assert sources(await store.lease_relay("w", 10, TTL, ordered_hooks={"app"})) == [a[1]]


async def test_outcomes_settle_the_mo(store: Any) -> None:
    ids = [await mo(store, f"+1555000{i}") for i in range(3)]
    items = {i.source_id: i for i in await store.lease_relay("w", 10, TTL)}
    assert await store.relay_outcome(items[ids[0]], "delivered", http_status=200)
    assert await store.relay_outcome(items[ids[1]], "dead", error="HTTP 500")
    assert await store.relay_outcome(items[ids[2]], "skipped")
    statuses = []
    for mo_id in ids:
        got = await store.get_mo(mo_id)
        assert got is not None
        statuses.append(got.status)
    assert statuses == ["relayed", "dead", "skipped"]


async def test_requeue_and_drop(store: Any, clock: ManualClock) -> None:
    ids = [await mo(store, f"+1555000{i}") for i in range(4)]
    items = {i.source_id: i for i in await store.lease_relay("w", 10, TTL)}
    for mo_id in ids[:3]:
        item = items[mo_id]
        assert await store.relay_outcome(item, "dead", attempted_at=clock.now(), error="HTTP 500")
    assert await store.relay_outcome(items[ids[3]], "delivered")
    dead = [items[m].id for m in ids[:3]]
    delivered = items[ids[3]].id
    assert await store.relay_counts() == {"dead": 3, "delivered": 1}
    assert [r.id for r in await store.relay_events(status=RelayStatus.DEAD)] == dead

    # by id: only that one, with its attempts and first-attempt time reset
    assert await store.requeue_relay([dead[0], delivered]) == 1
    record = await store.get_relay_event(dead[0])
    assert record is not None and record.status is RelayStatus.PENDING
    assert record.attempts == 0 and record.first_attempt_at is None
    assert record.last_error is None
    [again] = await store.lease_relay("w", 10, TTL)
    assert again.id == dead[0] and again.attempt == 1 and again.first_attempt_at is None

    # drop: a dead one and a pending (leased) one; the delivered one is left alone
    assert await store.drop_relay([dead[1], again.id, delivered]) == 2
    assert await store.relay_outcome(again, "delivered") is False  # its lease went with it
    for event_id in (dead[1], again.id):
        record = await store.get_relay_event(event_id)
        assert record is not None and record.status is RelayStatus.DROPPED
    clock.advance(TTL)
    assert await store.lease_relay("w", 10, TTL) == []
    assert await store.relay_counts() == {"dead": 1, "delivered": 1, "dropped": 2}

    # all dead ones (not the dropped ones)
    assert await store.requeue_relay() == 1
    assert [i.id for i in await store.lease_relay("w", 10, TTL)] == [dead[2]]
    # a dropped one comes back only when named
    assert await store.requeue_relay([dead[1]]) == 1
    assert [i.id for i in await store.lease_relay("w", 10, TTL)] == [dead[1]]
    assert await store.relay_counts() == {"pending": 2, "delivered": 1, "dropped": 1}


async def test_relay_events_filters_and_pages(store: Any) -> None:
    await mo(store, "+15550001")
    await mo(store, "+15550002", hook="other")
    await mo(store, "+15550003")
    app = await store.relay_events(hook="app")
    assert [r.hook for r in app] == ["app", "app"]
    page = await store.relay_events(limit=1)
    assert len(page) == 1
    rest = await store.relay_events(after_id=page[0].id)
    assert [r.id for r in rest] == [page[0].id + 1, page[0].id + 2]
    assert await store.relay_events(kind=RelayKind.STATUS) == []


async def submitted(store: Any, mm7_id: str, recipient: str, *, callback: str | None) -> str:
    result = await store.enqueue_message(
        NewMessage(link=LINK, fields={"api_key": "dev"}, callback_url=callback), [recipient]
    )
    for item in await store.lease(LINK, "d", 10, TTL):
        assert await store.complete(item, mm7_id, 1000, "Success")
    return result.message_id


async def test_status_events_only_for_messages_with_a_callback(store: Any) -> None:
    with_cb = await submitted(store, "M1", "+15550001", callback="https://app/cb")
    await submitted(store, "M2", "+15550002", callback=None)
    [event] = await store.relay_events(kind=RelayKind.STATUS)
    assert event.callback_url == "https://app/cb" and event.hook is None
    assert event.source_id == with_cb and event.link == LINK
    assert event.event["message_id"] == with_cb and event.event["status"] == "submitted"
    assert event.event["recipient"] == "+15550001" and event.event["mm7_message_id"] == "M1"
    assert event.event["status_code"] == 1000 and event.event["type"] == "status"
    [item] = await store.lease_relay("w", 10, TTL)
    assert item.api_key == "dev" and item.parts == ()
    # reports: relayed only for the message with a callback
    await store.record_delivery_report(LINK, "M1", "+15550001", MMStatus.RETRIEVED)
    await store.record_delivery_report(LINK, "M2", "+15550002", MMStatus.RETRIEVED)
    await store.record_delivery_report(LINK, "nobody", "+15550003", MMStatus.RETRIEVED)
    [dlr] = await store.relay_events(kind=RelayKind.DELIVERY_REPORT)
    assert dlr.event["message_id"] == with_cb and dlr.event["status"] == "delivered"
    assert dlr.idempotency_key == f"dlr:{LINK}:M1:15550001:Retrieved"
    assert await store.record_read_reply(LINK, "M1", "15550001", "Read") == with_cb
    await store.record_read_reply(LINK, "M2", "15550002", "Read")
    [rr] = await store.relay_events(kind=RelayKind.READ_REPLY)
    assert rr.event["status"] == "read" and rr.event["mm_status"] == "Read"
    assert rr.callback_url == "https://app/cb"


async def test_a_repeated_report_queues_one_event(store: Any) -> None:
    await submitted(store, "M1", "+15550001", callback="https://app/cb")
    for _ in range(2):
        await store.record_delivery_report(LINK, "M1", "+15550001", MMStatus.FORWARDED)
    await store.record_delivery_report(LINK, "M1", "15550001/TYPE=PLMN", MMStatus.FORWARDED)
    await store.record_delivery_report(LINK, "M1", "+15550001", MMStatus.RETRIEVED)
    events = await store.relay_events(kind=RelayKind.DELIVERY_REPORT)
    assert [e.event["mm_status"] for e in events] == ["Forwarded", "Retrieved"]
    assert len(await store.delivery_reports()) == 4  # every report is kept all the same


async def test_relay_all_statuses_queues_every_status_and_unknown_reports(
    backend: Backend, clock: ManualClock
) -> None:
    store: Any = await backend.open(clock=clock, relay_all_statuses=True)
    mid = await submitted(store, "M2", "+15550002", callback=None)
    [status] = await store.relay_events(kind=RelayKind.STATUS)
    assert status.callback_url is None and status.source_id == mid and status.link == LINK
    await store.record_delivery_report(LINK, "nobody", "+15550003", MMStatus.RETRIEVED)
    [dlr] = await store.relay_events(kind=RelayKind.DELIVERY_REPORT)
    assert dlr.event["message_id"] is None and dlr.event["status"] == "unknown"
    assert dlr.event["mm7_message_id"] == "nobody" and dlr.link == LINK
    assert dlr.source_id is None


async def test_unknown_report_queues_nothing_by_default(store: Any) -> None:
    await store.record_delivery_report(LINK, "nobody", "+15550003", MMStatus.RETRIEVED)
    await store.record_read_reply(LINK, "nobody", "+15550003", "Read")
    assert await store.relay_events() == []
    assert await store.relay_counts() == {}


async def test_stop_then_start_edits_the_suppression_list(store: Any) -> None:
    sender = "+15550001"
    spellings = [sender, "15550001/TYPE=PLMN", "tel:+15550001"]
    assert await store.suppressed(spellings) == set()
    stop_id = await mo(store, sender, opt_out=OptOut("stop", sender, "STOP"), tid="t1", text="STOP")
    assert await store.suppressed([*spellings, "+15550002"]) == set(spellings)
    [entry] = await store.suppressions()
    assert (entry.address, entry.word, entry.link, entry.mo_id) == (sender, "STOP", LINK, stop_id)
    await mo(store, sender, opt_out=OptOut("start", sender, "START"), tid="t2", text="START")
    assert await store.suppressed(spellings) == set()
    assert await store.suppressions() == []
    # the MMSC retries the STOP: a duplicate changes nothing
    again = await store.store_mo(
        NewMo(
            link=LINK,
            transaction_id="t1",
            mm7_message_id=None,
            fields={},
            opt_out=OptOut("stop", sender, "STOP"),
        )
    )
    assert again.duplicate and again.mo_id == stop_id
    assert await store.suppressed(spellings) == set()


async def test_suppressed_recipients_are_stored_but_never_leased(store: Any) -> None:
    await mo(store, "+15550001", opt_out=OptOut("stop", "+15550001", "STOP"), hook=None)
    result = await store.enqueue_message(
        NewMessage(link=LINK, fields={}), ["15550001", "+15550002"]
    )
    assert result.created and result.suppressed == ("15550001",)
    record = await store.get_message(result.message_id)
    assert record is not None
    assert [r.status for r in record.recipients] == [
        RecipientStatus.SUPPRESSED,
        RecipientStatus.QUEUED,
    ]
    assert [e.kind for e in record.events] == ["queued", "suppressed"]
    assert await store.queue_depth(LINK) == 1
    [item] = await store.lease(LINK, "d", 10, TTL)
    assert item.address == "+15550002"
    assert await store.complete(item, "M9", 1000, "Success")
    assert await store.lease(LINK, "d", 10, TTL) == []
    record = await store.get_message(result.message_id)
    assert record is not None and record.status is MessageStatus.SUBMITTED


async def test_all_suppressed_writes_nothing(store: Any, backend: Backend) -> None:
    await mo(store, "+15550001", opt_out=OptOut("stop", "+15550001", "STOP"), hook=None)
    await mo(store, "+15550002", opt_out=OptOut("stop", "+15550002", "QUIT"), hook=None)
    with pytest.raises(AllSuppressedError) as info:
        await store.enqueue_message(
            NewMessage(link=LINK, fields={}, idempotency_key="k1"),
            ["+15550001", "15550002"],
            [MediaPart("image/gif", data=b"GIF89a-unique-bytes")],
        )
    assert info.value.addresses == ("+15550001", "15550002")
    assert await store.queue_depth() == 0
    for table in ("messages", "recipients", "message_media"):
        assert await backend.count(table) == 0, table
    # the idempotency key was not taken by the refused message
    ok = await store.enqueue_message(
        NewMessage(link=LINK, fields={}, idempotency_key="k1"), ["+15550003"]
    )
    assert ok.created


async def test_own_secret_is_made_once(backend: Backend, clock: ManualClock) -> None:
    store: Any = await backend.open(clock=clock)
    first = await store.own_secret("media_url")
    assert len(first) == 64 and await store.own_secret("media_url") == first
    assert await store.own_secret("other") != first
    await store.close()
    store = await backend.open(clock=clock)
    assert await store.own_secret("media_url") == first


async def test_a_version_2_database_is_upgraded_and_keeps_its_data(
    tmp_path: Path, clock: ManualClock
) -> None:
    db = tmp_path / "v2.db"
    conn = sqlite3.connect(db, isolation_level=None)
    assert migrate(conn, 0, target=2) == 2
    now = int(clock.now().timestamp() * 1000)
    conn.execute(
        "INSERT INTO messages (id, link, fields, status, recipient_count, queued_count,"
        " submitted_count, created_at, updated_at, callback_url)"
        " VALUES ('m1',?,'{\"api_key\":\"dev\"}','submitted',1,0,1,?,?,'https://app/cb')",
        (LINK, now, now),
    )
    conn.execute(
        "INSERT INTO recipients (message_id, link, address, address_key, status, mm7_message_id,"
        " transaction_id, next_attempt_at, updated_at)"
        " VALUES ('m1',?,'+15550001','15550001','submitted','MID','m1.0',?,?)",
        (LINK, now, now),
    )
    conn.execute(
        "INSERT INTO mo_messages (id, link, transaction_id, fields, status, next_attempt_at,"
        " received_at, updated_at) VALUES ('mo1',?,'t-old','{\"text\":\"hi\"}','stored',?,?,?)",
        (LINK, now, now, now),
    )
    conn.close()

    store = await SqliteStore.open(db, clock=clock)
    try:
        old = await store.get_mo("mo1")
        assert old is not None and old.fields == {"text": "hi"} and old.status == "stored"
        message = await store.get_message("m1")
        assert message is not None and message.callback_url == "https://app/cb"
        # the old MO's TransactionID still detects a retry
        dup = await store.store_mo(NewMo(link=LINK, transaction_id="t-old", mm7_message_id=None,
                                         fields={}))  # fmt: skip
        assert dup.duplicate and dup.mo_id == "mo1"
        # the relay tables of migration 3 work with the old rows
        await store.record_delivery_report(LINK, "MID", "+15550001", MMStatus.RETRIEVED)
        [event] = await store.relay_events()
        assert event.source_id == "m1" and event.callback_url == "https://app/cb"
        [item] = await store.lease_relay("w", 10, TTL)
        assert item.api_key == "dev"
    finally:
        await store.close()
    conn = sqlite3.connect(db)
    assert schema_version(conn) == LATEST
    conn.close()


async def test_purge_deletes_only_finished_events_older_than_the_cutoff(
    store: Any, clock: ManualClock
) -> None:
    ids = [await mo(store, f"+1555001{i}") for i in range(5)]
    items = {i.source_id: i for i in await store.lease_relay("w", 10, TTL)}
    assert await store.relay_outcome(items[ids[0]], "delivered")
    assert await store.relay_outcome(items[ids[1]], "skipped")
    assert await store.relay_outcome(items[ids[2]], "dead", error="HTTP 500")
    assert await store.relay_outcome(items[ids[3]], "retry", retry_at=clock.now())
    assert await store.drop_relay([items[ids[4]].id]) == 1
    cutoff = clock.now() + timedelta(seconds=1)
    clock.advance(timedelta(days=8))
    assert await store.purge_relay(cutoff) == 3
    assert await store.relay_counts() == {"dead": 1, "pending": 1}
    assert await store.purge_relay(cutoff) == 0
    # a finished event newer than the cutoff stays
    (item,) = await store.lease_relay("w", 10, TTL)
    assert await store.relay_outcome(item, "delivered")
    assert await store.purge_relay(cutoff) == 0
    assert (await store.relay_counts())["delivered"] == 1


async def test_quotas_bound_the_leases_per_hook(store: Any) -> None:
    for i in range(3):
        await mo(store, f"+1555003{i}", hook="app")
        await mo(store, f"+1555004{i}", hook="other")
    await submitted(store, "M9", "+15550049", callback="https://app/cb")  # a hookless event
    got = await store.lease_relay("w", 10, TTL, quotas={"app": 1, None: 0})
    hooks = sorted(i.hook or "-" for i in got)
    assert hooks == ["app", "other", "other", "other"]  # "other" is not limited
    got = await store.lease_relay("w", 10, TTL, quotas={"app": 0, "other": 0, None: 1})
    assert [(i.hook, i.kind.value) for i in got] == [(None, "status")]
    got = await store.lease_relay("w", 1, TTL, quotas={"app": 5})
    assert [i.hook for i in got] == ["app"]  # n still bounds the whole call


async def test_stop_also_stops_what_is_already_queued_for_the_sender(store: Any) -> None:
    queued = await store.enqueue_message(
        NewMessage(link=LINK, fields={"api_key": "dev"}, callback_url="https://app/cb"),
        ["+15550061", "+15550062"],
    )
    (leased,) = await store.lease(LINK, "d", 1, TTL)  # in flight already: the first one
    assert leased.address == "+15550061"
    await mo(store, "+1 555 0061", opt_out=OptOut("stop", "+1 555 0061", "STOP"), hook=None)
    remaining = await store.lease(LINK, "d", 10, TTL)
    assert [i.address for i in remaining] == ["+15550062"]
    record = await store.get_message(queued.message_id)
    assert record is not None
    by_address = {r.address: r.status.value for r in record.recipients}
    assert by_address["+15550061"] == "suppressed"
    # the attempt that was in flight for them records nothing any more
    assert not await store.complete(leased, "mm7-x", 1000, "Success")
    keys = [r.idempotency_key for r in await store.relay_events(kind=RelayKind.STATUS)]
    assert f"status:{queued.message_id}:{leased.recipient_id}:suppressed" in keys


async def test_dropping_and_requeueing_an_mo_event_moves_its_mo(store: Any) -> None:
    mo_id = await mo(store, "+15550071")
    (item,) = await store.lease_relay("w", 1, TTL)
    assert await store.drop_relay([item.id]) == 1
    got = await store.get_mo(mo_id)
    assert got is not None and got.status == "dropped"
    assert await store.requeue_relay([item.id]) == 1
    got = await store.get_mo(mo_id)
    assert got is not None and got.status == "pending"


async def test_events_of_hooks_the_quotas_do_not_name_come_only_when_asked(
    store: Any,
) -> None:
    await mo(store, "+15550081", hook="removed")
    await mo(store, "+15550082", hook="app")
    got = await store.lease_relay("w", 10, TTL, quotas={"app": 4, None: 4}, others=False)
    assert [i.hook for i in got] == ["app"]
    got = await store.lease_relay("w", 10, TTL, quotas={"app": 4, None: 4}, others=True)
    assert [i.hook for i in got] == ["removed"]


async def test_requeue_relay_of_an_api_key_and_the_counts_of_a_key(store: Store) -> None:
    for n in range(2):
        await submitted(store, f"M{n}", f"+1555009{n}", callback="https://app/cb")
    other = await store.enqueue_message(
        NewMessage(link=LINK, fields={"api_key": "ops"}, callback_url="https://ops/cb"),
        ["+15550099"],
    )
    for item in await store.lease(LINK, "d", 10, TTL):
        assert await store.complete(item, "M9", 1000, "Success")
    items = await store.lease_relay("w", 10, TTL)
    assert sorted(i.api_key or "-" for i in items) == ["dev", "dev", "ops"]
    for item in items:
        assert await store.relay_outcome(item, "dead", error="HTTP 500")
    assert await store.relay_counts("dev") == {"dead": 2}
    assert await store.relay_counts("ops") == {"dead": 1}
    assert await store.requeue_relay(api_key="ops") == 1
    assert await store.relay_counts("ops") == {"pending": 1}
    assert await store.relay_counts("dev") == {"dead": 2}
    [event] = await store.relay_events(api_key="ops")
    assert event.source_id == other.message_id and event.status is RelayStatus.PENDING
    assert await store.relay_events(api_key="nobody") == []


async def test_finished_outcomes_are_recorded_with_the_next_lease(
    store: Any, clock: ManualClock
) -> None:
    """``lease_relay(finished=...)``: the outcomes first, in the same transaction, then the
    lease, which does not take the events they finished; a stale one changes nothing."""
    ids = [await mo(store, f"+1555000{i}") for i in range(4)]
    items = {i.source_id: i for i in await store.lease_relay("w", 3, TTL)}
    assert set(items) == set(ids[:3])
    retry_at = clock.now() + timedelta(seconds=30)
    finished = [
        RelayOutcome(items[ids[0]], "delivered", http_status=200, hook="app"),
        RelayOutcome(items[ids[1]], "retry", retry_at=retry_at, http_status=503, error="HTTP 503"),
        RelayOutcome(items[ids[2]], "dead", error="HTTP 410"),
    ]
    stale = dataclasses.replace(items[ids[0]], lease_token="not-the-token")
    leased = await store.lease_relay(
        "w", 10, TTL, finished=[*finished, RelayOutcome(stale, "dead")]
    )
    assert sources(leased) == [ids[3]]  # the retried one is due in 30 s, not now
    records = [await store.get_relay_event(items[i].id) for i in ids[:3]]
    assert [(r.status, r.last_http_status) for r in records if r is not None] == [
        (RelayStatus.DELIVERED, 200),
        (RelayStatus.PENDING, 503),
        (RelayStatus.DEAD, None),
    ]
    assert [(await store.get_mo(i)).status for i in ids[:3]] == ["relayed", "pending", "dead"]  # type: ignore[union-attr]
    # only outcomes: n = 0 leases nothing
    assert await store.lease_relay("w", 0, TTL, finished=[RelayOutcome(leased[0], "skipped")]) == []
    assert (await store.get_relay_event(leased[0].id)).status is RelayStatus.SKIPPED  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="retry_at"):
        RelayOutcome(leased[0], "retry")
