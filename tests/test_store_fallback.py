"""The SMS fallback rows, on each backend (a real SQLite file, a fresh PostgreSQL database):
queued in the same commit as the failure they follow, never twice for one recipient, leased,
fenced, settled by receipts correlated in the store per part (a long text: delivered once every
part is, failed at the first failed part, across a reopen), expired when their receipts do not
come in time (only submitted rows, in batches, a late receipt changing nothing), each change
with its ``fallback_sms`` event in the relay outbox in the same commit
(``mm7.service.fallback``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mm7.core.status import MMStatus
from mm7.service.fallback.rules import OUTCOME_UNKNOWN
from mm7.service.store import ManualClock, NewMessage, RelayKind, Store, WorkItem, tally
from mm7.service.store.records import FallbackStatus
from tests.helpers.stores import Backend

CALLBACK = "http://app.example/status"
TTL = timedelta(seconds=30)
FALLBACK = {"sms_link": "smsc1", "text_max": 160}


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


async def leased(
    store: Store,
    recipients: list[str],
    *,
    fallback: Any = FALLBACK,
    callback: str | None = CALLBACK,
) -> list[WorkItem]:
    fields: dict[str, Any] = {"from": "12345", "text": "Hello there", "api_key": "k"}
    if fallback is not None:
        fields["fallback"] = fallback
    message = NewMessage(link="mmsc1", fields=fields, callback_url=callback)
    await store.enqueue_message(message, recipients)
    items = await store.lease("mmsc1", "w", len(recipients), TTL)
    return sorted(items, key=lambda i: recipients.index(i.address))


async def fallback_events(store: Store) -> list[tuple[str, str | None]]:
    return [
        (e.event["recipient"], e.event["status"])
        for e in await store.relay_events(limit=1000)
        if e.kind is RelayKind.FALLBACK_SMS
    ]


async def test_a_failure_queues_the_fallback_in_its_own_commit(
    store: Store, backend: Backend
) -> None:
    (item,) = await leased(store, ["+15550001"])
    assert await store.fail(item, 2002, "address error")
    (row,) = await store.fallback_sms(item.message_id)
    assert (row.address, row.sms_link, row.status, row.trigger) == (
        "+15550001", "smsc1", FallbackStatus.QUEUED, "failed",
    )  # fmt: skip
    assert await fallback_events(store) == [("+15550001", "queued")]
    got = await store.get_message(item.message_id)
    assert got is not None
    assert [(e.kind, e.status) for e in got.events][-1] == ("fallback_sms", "queued")


async def test_no_fallback_without_the_message_asking_for_it(
    store: Store, backend: Backend
) -> None:
    (item,) = await leased(store, ["+15550001"], fallback=None)
    assert await store.fail(item, 2002, "address error")
    assert await store.fallback_sms(item.message_id) == []
    assert await backend.count("fallback_sms") == 0


async def test_a_lost_lease_queues_nothing(
    store: Store, backend: Backend, clock: ManualClock
) -> None:
    (item,) = await leased(store, ["+15550001"])
    clock.advance(TTL + timedelta(seconds=1))
    (again,) = await store.lease("mmsc1", "w2", 1, TTL)
    assert not await store.fail(item, 2002, "address error")  # stale: nothing recorded
    assert await backend.count("fallback_sms") == 0
    assert await store.fail(again, 2002, "address error")
    assert await backend.count("fallback_sms") == 1


async def test_reports_that_say_the_handset_cannot_take_it_queue_it_once(
    store: Store, backend: Backend
) -> None:
    a, b, c = await leased(store, ["+15550001", "+15550002", "+15550003"])
    for item, mm7_id in ((a, "M-1"), (b, "M-2"), (c, "M-3")):
        assert await store.complete(item, mm7_id, 1000, "ok")
    await store.record_delivery_report("mmsc1", "M-1", "+15550001", MMStatus.REJECTED)
    await store.record_delivery_report("mmsc1", "M-1", "+15550001", MMStatus.REJECTED)  # again
    await store.record_delivery_report("mmsc1", "M-2", "+15550002", MMStatus.UNRECOGNISED)
    await store.record_delivery_report("mmsc1", "M-3", "+15550003", MMStatus.EXPIRED)
    rows = await store.fallback_sms(a.message_id)
    assert [(r.address, r.trigger) for r in rows] == [
        ("+15550001", "report:Rejected"),
        ("+15550002", "report:Unrecognised"),
    ]
    assert sorted(await fallback_events(store)) == [
        ("+15550001", "queued"),
        ("+15550002", "queued"),
    ]


async def test_the_whole_path_and_a_receipt_after_a_reopen(
    store: Store, backend: Backend, clock: ManualClock
) -> None:
    (item,) = await leased(store, ["+15550001"])
    assert await store.fail(item, 4004, "refused")
    (lease,) = await store.lease_fallback("fw", 5, TTL)
    assert lease.attempts == 1 and lease.fields["text"] == "Hello there"
    assert await store.lease_fallback("fw", 5, TTL) == []  # leased: not handed out again
    assert await store.fallback_sending(lease, TTL)
    assert await store.fallback_submitted(lease, "sms-1")
    reopened = await backend.open(clock=clock)
    assert await reopened.fallback_receipt("smsc1", "sms-1", FallbackStatus.DELIVERED)
    assert not await reopened.fallback_receipt("smsc1", "sms-1", FallbackStatus.FAILED, "late")
    (row,) = await reopened.fallback_sms(item.message_id)
    assert (row.status, row.sms_id, row.error) == (FallbackStatus.DELIVERED, "sms-1", None)
    assert await fallback_events(reopened) == [
        ("+15550001", "queued"),
        ("+15550001", "submitted"),
        ("+15550001", "delivered"),
    ]


async def test_a_receipt_before_the_submitted_commit_is_kept_until_then(
    store: Store, backend: Backend
) -> None:
    (item,) = await leased(store, ["+15550001"])
    assert await store.fail(item, 4004, "refused")
    (lease,) = await store.lease_fallback("fw", 5, TTL)
    assert await store.fallback_sending(lease, TTL)
    assert not await store.fallback_receipt("smsc1", "sms-9", FallbackStatus.FAILED, "UNDELIV")
    assert await store.fallback_submitted(lease, "sms-9")
    (row,) = await store.fallback_sms(item.message_id)
    assert (row.status, row.error) == (FallbackStatus.FAILED, "UNDELIV")
    assert await backend.count("fallback_receipts") == 0


async def submitted_in_parts(store: Store, parts: tuple[str, ...]) -> str:
    """A failed recipient's fallback sent as ``parts`` (a long text); its message id."""
    (item,) = await leased(store, ["+15550001"])
    assert await store.fail(item, 4004, "refused")
    (lease,) = await store.lease_fallback("fw", 5, TTL)
    assert await store.fallback_sending(lease, TTL)
    assert await store.fallback_submitted(lease, parts[0], parts)
    return item.message_id


async def status_of(store: Store, message_id: str) -> tuple[FallbackStatus, str | None]:
    (row,) = await store.fallback_sms(message_id)
    return row.status, row.error


async def test_a_long_text_is_delivered_once_every_part_is_across_a_reopen(
    store: Store, backend: Backend, clock: ManualClock
) -> None:
    (item,) = await leased(store, ["+15550001"])
    assert await store.fail(item, 4004, "refused")
    (lease,) = await store.lease_fallback("fw", 5, TTL)
    assert await store.fallback_sending(lease, TTL)
    # part 2's receipt beats the submitted commit: kept, then applied to its part only
    assert not await store.fallback_receipt("smsc1", "p-2", FallbackStatus.DELIVERED)
    assert await store.fallback_submitted(lease, "p-1", ("p-1", "p-2", "p-3"))
    assert await status_of(store, item.message_id) == (FallbackStatus.SUBMITTED, None)
    assert await backend.count("fallback_receipts") == 0
    assert await store.fallback_receipt("smsc1", "p-1", FallbackStatus.DELIVERED)
    assert await status_of(store, item.message_id) == (FallbackStatus.SUBMITTED, None)
    # the gateway restarts between the parts' receipts: the parts are in the store
    reopened = await backend.open(clock=clock)
    # a part's second receipt changes nothing (its first counts)
    assert await reopened.fallback_receipt("smsc1", "p-1", FallbackStatus.FAILED, "late")
    assert await status_of(reopened, item.message_id) == (FallbackStatus.SUBMITTED, None)
    assert await reopened.fallback_receipt("smsc1", "p-3", FallbackStatus.DELIVERED)
    (row,) = await reopened.fallback_sms(item.message_id)
    assert (row.status, row.sms_id, row.error) == (FallbackStatus.DELIVERED, "p-1", None)
    assert await fallback_events(reopened) == [
        ("+15550001", "queued"),
        ("+15550001", "submitted"),
        ("+15550001", "delivered"),
    ]


async def test_a_failed_part_fails_the_row_at_once_and_later_parts_change_nothing(
    store: Store, backend: Backend, clock: ManualClock
) -> None:
    message_id = await submitted_in_parts(store, ("p-1", "p-2", "p-3"))
    assert await store.fallback_receipt("smsc1", "p-1", FallbackStatus.DELIVERED)
    reopened = await backend.open(clock=clock)
    assert await reopened.fallback_receipt("smsc1", "p-3", FallbackStatus.FAILED, "UNDELIV")
    assert await status_of(reopened, message_id) == (FallbackStatus.FAILED, "UNDELIV")
    assert not await reopened.fallback_receipt("smsc1", "p-2", FallbackStatus.DELIVERED)
    assert await status_of(reopened, message_id) == (FallbackStatus.FAILED, "UNDELIV")
    assert await fallback_events(reopened) == [
        ("+15550001", "queued"),
        ("+15550001", "submitted"),
        ("+15550001", "failed"),
    ]


async def test_receipts_of_every_part_before_the_commit_settle_it_there(store: Store) -> None:
    (item,) = await leased(store, ["+15550001"])
    assert await store.fail(item, 4004, "refused")
    (lease,) = await store.lease_fallback("fw", 5, TTL)
    assert await store.fallback_sending(lease, TTL)
    assert not await store.fallback_receipt("smsc1", "p-2", FallbackStatus.DELIVERED)
    assert not await store.fallback_receipt("smsc1", "p-1", FallbackStatus.DELIVERED)
    assert await store.fallback_submitted(lease, "p-1", ("p-1", "p-2"))
    assert await status_of(store, item.message_id) == (FallbackStatus.DELIVERED, None)


@pytest.mark.parametrize(
    ("sms_id", "parts"),
    [("p-1", ("p-2", "p-1")), ("p-1", ("p-1", "p-1")), ("p-1", ("p-1", "")), ("p-1", "p-1")],
)
async def test_part_ids_out_of_shape_are_refused_and_change_nothing(
    store: Store, backend: Backend, sms_id: str, parts: Any
) -> None:
    (item,) = await leased(store, ["+15550001"])
    assert await store.fail(item, 4004, "refused")
    (lease,) = await store.lease_fallback("fw", 5, TTL)
    assert await store.fallback_sending(lease, TTL)
    with pytest.raises((ValueError, TypeError), match="part_ids"):
        await store.fallback_submitted(lease, sms_id, parts)
    assert await status_of(store, item.message_id) == (FallbackStatus.SENDING, None)
    assert await backend.count("fallback_parts") == 0


async def test_a_row_left_sending_is_failed_never_sent_again(
    store: Store, backend: Backend, clock: ManualClock
) -> None:
    (item,) = await leased(store, ["+15550001"])
    assert await store.fail(item, 4004, "refused")
    (lease,) = await store.lease_fallback("fw", 5, TTL)
    assert await store.fallback_sending(lease, TTL)
    # the process stops here, mid-send; another worker comes after the lease
    clock.advance(TTL + timedelta(seconds=1))
    assert await store.lease_fallback("fw2", 5, TTL) == []
    (row,) = await store.fallback_sms(item.message_id)
    assert (row.status, row.error) == (FallbackStatus.FAILED, OUTCOME_UNKNOWN)
    # the first worker's late answer changes nothing
    assert not await store.fallback_submitted(lease, "sms-late")
    assert await fallback_events(store) == [("+15550001", "queued"), ("+15550001", "failed")]


async def test_stats_count_each_status_reached_once_committed(
    store: Store, clock: ManualClock
) -> None:
    """``StoreStats.fallback_sms`` (``mm7_fallback_sms_total``): each status a row reaches, the
    failure of a row left ``sending`` included; a rolled-back transaction counts nothing."""
    a, b, c = await leased(store, ["+15550001", "+15550002", "+15550003"])
    assert await store.fail(a, 4004, "refused")
    assert await store.fail(b, 4004, "refused")
    assert await store.complete(c, "M-3", 1000, "ok")
    await store.record_delivery_report("mmsc1", "M-3", "+15550003", MMStatus.REJECTED)
    first, second, third = await store.lease_fallback("fw", 5, TTL)
    for lease, sms_id in ((first, "sms-1"), (second, "sms-2")):
        assert await store.fallback_sending(lease, TTL)
        assert await store.fallback_submitted(lease, sms_id)
    assert await store.fallback_receipt("smsc1", "sms-1", FallbackStatus.DELIVERED)
    assert await store.fallback_receipt("smsc1", "sms-2", FallbackStatus.FAILED, "UNDELIV")
    assert await store.fallback_sending(third, TTL)
    clock.advance(TTL + timedelta(seconds=1))
    assert await store.lease_fallback("fw2", 5, TTL) == []  # the third: outcome unknown
    expected = {"queued": 3, "submitted": 2, "delivered": 1, "failed": 2}
    assert store.stats().fallback_sms == expected

    def noted_then_failed(*_: Any) -> Any:
        tally.note("queued")
        raise RuntimeError("rolled back")

    async def noted_then_failed_async(*_: Any) -> Any:
        noted_then_failed()

    is_pg = type(store).__name__.startswith("Postgres")
    with pytest.raises(RuntimeError):
        await store._write(noted_then_failed_async if is_pg else noted_then_failed)
    assert store.stats().fallback_sms == expected


async def test_a_row_leased_but_not_sending_is_leased_again(
    store: Store, clock: ManualClock
) -> None:
    (item,) = await leased(store, ["+15550001"])
    assert await store.fail(item, 4004, "refused")
    (first,) = await store.lease_fallback("fw", 5, TTL)
    clock.advance(TTL + timedelta(seconds=1))
    (second,) = await store.lease_fallback("fw2", 5, TTL)
    assert second.id == first.id and second.attempts == 2
    assert not await store.fallback_sending(first, TTL)  # fenced: the old lease sends nothing
    assert await store.fallback_sending(second, TTL)


async def test_retry_then_failed(store: Store, clock: ManualClock) -> None:
    (item,) = await leased(store, ["+15550001"])
    assert await store.fail(item, 4004, "refused")
    (lease,) = await store.lease_fallback("fw", 5, TTL)
    assert await store.fallback_sending(lease, TTL)
    assert await store.fallback_retry(lease, clock.now() + timedelta(seconds=10), "down")
    assert await store.lease_fallback("fw", 5, TTL) == []  # not due yet
    clock.advance(timedelta(seconds=10))
    (again,) = await store.lease_fallback("fw", 5, TTL)
    assert again.attempts == 2
    assert await store.fallback_failed(again, "rejected: 0x45")
    (row,) = await store.fallback_sms(item.message_id)
    assert (row.status, row.error, row.attempts) == (FallbackStatus.FAILED, "rejected: 0x45", 2)


async def test_no_callback_no_relay_event_but_the_history_has_it(store: Store) -> None:
    (item,) = await leased(store, ["+15550001"], callback=None)
    assert await store.fail(item, 4004, "refused")
    assert await fallback_events(store) == []
    got = await store.get_message(item.message_id)
    assert got is not None and got.events[-1].kind == "fallback_sms"


async def test_retention_takes_the_rows_with_their_message(
    store: Store, backend: Backend, clock: ManualClock
) -> None:
    await submitted_in_parts(store, ("p-1", "p-2"))
    assert await backend.count("fallback_parts") == 2
    clock.advance(timedelta(days=2))
    await store.purge(clock.now() - timedelta(days=1))
    assert await backend.count("fallback_sms") == 0
    assert await backend.count("fallback_parts") == 0


async def test_a_sendmms_message_sends_no_fallback_event_to_its_dlr_url(store: Store) -> None:
    fields = {"text": "Hi", "api_key": "k", "fallback": FALLBACK,
              "sendmms": {"dlr_url": "http://kannel.example/dlr?s=%d"}}  # fmt: skip
    message = NewMessage(link="mmsc1", fields=fields, callback_url="http://kannel.example/dlr")
    await store.enqueue_message(message, ["+15550001"])
    (item,) = await store.lease("mmsc1", "w", 1, TTL)
    assert await store.fail(item, 4004, "refused")
    assert len(await store.fallback_sms(item.message_id)) == 1
    assert await fallback_events(store) == []


async def test_a_rejected_report_before_the_completion_queues_it_with_the_completion(
    store: Store,
) -> None:
    (item,) = await leased(store, ["+15550001"])
    early = await store.record_delivery_report("mmsc1", "M-9", "+15550001", MMStatus.REJECTED)
    assert early.message_id is None
    assert await store.fallback_sms(item.message_id) == []
    assert await store.complete(item, "M-9", 1000, "ok")
    (row,) = await store.fallback_sms(item.message_id)
    assert row.trigger == "report:Rejected"


# --------------------------------------------------------------------------- expiry


async def submitted_now(
    store: Store, recipient: str, sms_id: str, parts: tuple[str, ...] = ()
) -> str:
    """``recipient``'s fallback submitted now (as ``parts``, a long text, when given); its
    message id."""
    (item,) = await leased(store, [recipient])
    assert await store.fail(item, 4004, "refused")
    (lease,) = await store.lease_fallback("fw", 5, TTL)
    assert await store.fallback_sending(lease, TTL)
    assert await store.fallback_submitted(lease, sms_id, parts)
    return item.message_id


async def test_a_row_submitted_before_the_cut_expires_a_newer_one_waits(
    store: Store, clock: ManualClock
) -> None:
    """``expire_fallback``: a row still ``submitted`` since before the cut is ``expired`` with
    the error given, its event on the message and in the relay outbox; one submitted after the
    cut stays; so does a long text whose last part's receipt is missing (not before the cut)."""
    old = await submitted_now(store, "+15550001", "p-1", ("p-1", "p-2"))
    assert await store.fallback_receipt("smsc1", "p-1", FallbackStatus.DELIVERED)  # p-2 never
    clock.advance(timedelta(hours=1))
    cut = clock.now()
    clock.advance(timedelta(seconds=1))
    new = await submitted_now(store, "+15550002", "sms-2")
    clock.advance(timedelta(hours=1))
    error = "no delivery receipt within receipt_timeout (3600s)"
    assert await store.expire_fallback(cut, 10, error=error) == 1
    assert await status_of(store, old) == (FallbackStatus.EXPIRED, error)
    assert await status_of(store, new) == (FallbackStatus.SUBMITTED, None)
    (row,) = await store.fallback_sms(old)
    assert row.updated_at == clock.now() and row.sms_id == "p-1"
    assert await fallback_events(store) == [
        ("+15550001", "queued"), ("+15550001", "submitted"),
        ("+15550002", "queued"), ("+15550002", "submitted"), ("+15550001", "expired"),
    ]  # fmt: skip
    expired = next(
        e.event for e in await store.relay_events(limit=1000)
        if e.kind is RelayKind.FALLBACK_SMS and e.event["status"] == "expired"
    )  # fmt: skip
    assert (expired["message_id"], expired["error"], expired["sms_id"]) == (old, error, "p-1")
    got = await store.get_message(old)
    assert got is not None
    assert [(e.kind, e.status) for e in got.events][-1] == ("fallback_sms", "expired")
    assert store.stats().fallback_sms["expired"] == 1
    assert await store.expire_fallback(cut, 10) == 0  # expired once


async def test_only_submitted_rows_expire(
    store: Store, backend: Backend, clock: ManualClock
) -> None:
    """Delivered and failed rows are final; a queued or sending row is the worker's (max_age,
    the lease): none of them expires, however old."""
    delivered = await submitted_now(store, "+15550001", "sms-1")
    assert await store.fallback_receipt("smsc1", "sms-1", FallbackStatus.DELIVERED)
    failed = await submitted_now(store, "+15550002", "sms-2")
    assert await store.fallback_receipt("smsc1", "sms-2", FallbackStatus.FAILED, "UNDELIV")
    a, b = await leased(store, ["+15550003", "+15550004"])
    assert await store.fail(a, 4004, "refused") and await store.fail(b, 4004, "refused")
    (sending,) = await store.lease_fallback("fw", 1, TTL)  # the other stays queued
    assert await store.fallback_sending(sending, timedelta(days=30))
    clock.advance(timedelta(days=7))
    assert await store.expire_fallback(clock.now(), 10) == 0
    assert await status_of(store, delivered) == (FallbackStatus.DELIVERED, None)
    assert await status_of(store, failed) == (FallbackStatus.FAILED, "UNDELIV")
    statuses = sorted(r[0] for r in await backend.rows("SELECT status FROM fallback_sms"))
    assert statuses == ["delivered", "failed", "queued", "sending"]


async def test_n_bounds_the_batch_oldest_first(store: Store, clock: ManualClock) -> None:
    ids = []
    for i in range(3):
        ids.append(await submitted_now(store, f"+1555000{i}", f"sms-{i}"))
        clock.advance(timedelta(seconds=1))
    assert await store.expire_fallback(clock.now(), 2) == 2
    assert [(await status_of(store, m))[0] for m in ids] == [
        FallbackStatus.EXPIRED, FallbackStatus.EXPIRED, FallbackStatus.SUBMITTED,
    ]  # fmt: skip
    assert await store.expire_fallback(clock.now(), 2) == 1
    assert await store.expire_fallback(clock.now(), 2) == 0
    assert store.stats().fallback_sms["expired"] == 3


async def test_a_late_receipt_is_recorded_on_its_part_and_the_row_stays_expired(
    store: Store, backend: Backend, clock: ManualClock
) -> None:
    message_id = await submitted_now(store, "+15550001", "sms-1")
    clock.advance(timedelta(days=3))
    assert await store.expire_fallback(clock.now(), 10, error="no receipt") == 1
    reopened = await backend.open(clock=clock)
    assert not await reopened.fallback_receipt("smsc1", "sms-1", FallbackStatus.DELIVERED)
    assert await status_of(reopened, message_id) == (FallbackStatus.EXPIRED, "no receipt")
    assert await backend.rows("SELECT status FROM fallback_parts") == [("delivered",)]
    assert await backend.count("fallback_receipts") == 0  # not kept as early either
    assert [s for _, s in await fallback_events(reopened)] == ["queued", "submitted", "expired"]


async def test_the_expiry_and_its_event_are_one_commit(
    store: Store, backend: Backend, clock: ManualClock
) -> None:
    """The relay outbox refusing the event rolls the expiry back: the row is still submitted,
    and expires with its event once the outbox takes it."""
    message_id = await submitted_now(store, "+15550001", "sms-1")
    clock.advance(timedelta(days=3))
    if backend.name == "sqlite":
        await backend.rows(
            "CREATE TRIGGER no_relay BEFORE INSERT ON relay_outbox"
            " BEGIN SELECT RAISE(ABORT, 'relay refused'); END"
        )
    else:
        await backend.rows(
            "CREATE FUNCTION no_relay() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RAISE EXCEPTION 'relay refused'; END $$"
        )
        await backend.rows(
            "CREATE TRIGGER no_relay BEFORE INSERT ON relay_outbox"
            " FOR EACH ROW EXECUTE FUNCTION no_relay()"
        )
    with pytest.raises(Exception, match="relay refused"):
        await store.expire_fallback(clock.now(), 10)
    assert await status_of(store, message_id) == (FallbackStatus.SUBMITTED, None)
    assert "expired" not in store.stats().fallback_sms
    got = await store.get_message(message_id)
    assert got is not None and got.events[-1].status == "submitted"
    await backend.rows(
        "DROP TRIGGER no_relay" + ("" if backend.name == "sqlite" else " ON relay_outbox")
    )
    assert await store.expire_fallback(clock.now(), 10) == 1
    assert [s for _, s in await fallback_events(store)] == ["queued", "submitted", "expired"]
