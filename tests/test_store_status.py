"""A message's status rolls up from its recipients (rules in mm7.service.store.records).

On each backend (tests/helpers/stores.py); every path that moves a recipient is driven through
the store: dispatch
outcomes (complete, fail, expire, retry past the expiry, expiry at lease), a STOP that
suppresses a queued recipient, delivery reports in every order, and the migration that gives
messages finished before it their rolled-up status.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mm7.core.status import MMStatus
from mm7.service.store import (
    ManualClock,
    MessageRecord,
    MessageStatus,
    NewMessage,
    NewMo,
    OptOut,
    RecipientCounts,
    RecipientStatus,
    SqliteStore,
    Store,
    WorkItem,
)
from mm7.service.store.sqlite.migrations import migrate
from tests.helpers.stores import Backend

LINK = "mmsc1"
TTL = timedelta(seconds=30)


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


async def enqueue(store: Any, *to: str, expires: timedelta | None = None) -> str:
    clock_now = store._clock.now()
    result = await store.enqueue_message(
        NewMessage(
            link=LINK,
            fields={"api_key": "dev"},
            expires_at=clock_now + expires if expires is not None else None,
        ),
        list(to),
    )
    return result.message_id


async def lease_all(store: Store) -> dict[str, WorkItem]:
    return {i.address: i for i in await store.lease(LINK, "w", 100, TTL)}


def counted(record: MessageRecord) -> RecipientCounts:
    """The counts recomputed from the recipients themselves (not the store's counters)."""
    by = Counter(r.status for r in record.recipients)
    return RecipientCounts(
        queued=by[RecipientStatus.QUEUED],
        submitted=by[RecipientStatus.SUBMITTED] + by[RecipientStatus.INDETERMINATE],
        delivered=by[RecipientStatus.DELIVERED],
        undelivered=by[RecipientStatus.UNDELIVERED],
        failed=by[RecipientStatus.FAILED],
        expired=by[RecipientStatus.EXPIRED],
        suppressed=by[RecipientStatus.SUPPRESSED],
    )


async def status(store: Store, message_id: str) -> MessageStatus:
    """The stored status, checked against the rules applied to the recipients as they are."""
    record = await store.get_message(message_id)
    assert record is not None
    leased = record.status is not MessageStatus.QUEUED
    assert record.status is counted(record).status(leased=leased)
    return record.status


async def submitted(store: Store, *to: str) -> str:
    """A message whose recipients were all accepted, recipient ``n`` with MessageID ``M-n``."""
    mid = await enqueue(store, *to)
    items = await lease_all(store)
    for n, address in enumerate(to):
        assert await store.complete(items[address], f"{mid}-{n}", 1000)
    return mid


async def report(store: Store, mid: str, n: int, address: str, mm: MMStatus) -> None:
    await store.record_delivery_report(LINK, f"{mid}-{n}", address, mm)


async def test_the_in_between_states(store: Store) -> None:
    mid = await enqueue(store, "+1555001", "+1555002")
    assert await status(store, mid) is MessageStatus.QUEUED
    items = await lease_all(store)
    assert await status(store, mid) is MessageStatus.SENDING
    assert await store.complete(items["+1555001"], "M-1", 1000)
    assert await status(store, mid) is MessageStatus.SENDING  # one still in flight
    assert await store.complete(items["+1555002"], "M-2", 1000)
    assert await status(store, mid) is MessageStatus.SUBMITTED
    await store.record_delivery_report(LINK, "M-1", "+1555001", MMStatus.RETRIEVED)
    # one handset got it, the other has no final report yet
    assert await status(store, mid) is MessageStatus.SUBMITTED
    await store.record_delivery_report(LINK, "M-2", "+1555002", MMStatus.FORWARDED)
    assert await status(store, mid) is MessageStatus.SUBMITTED
    await store.record_delivery_report(LINK, "M-2", "+1555002", MMStatus.RETRIEVED)
    assert await status(store, mid) is MessageStatus.DELIVERED


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ((MMStatus.RETRIEVED,), MessageStatus.DELIVERED),
        ((MMStatus.RETRIEVED, MMStatus.RETRIEVED), MessageStatus.DELIVERED),
        ((MMStatus.RETRIEVED, MMStatus.REJECTED), MessageStatus.PARTIALLY_DELIVERED),
        ((MMStatus.EXPIRED, MMStatus.REJECTED), MessageStatus.FAILED),
        ((MMStatus.RETRIEVED, MMStatus.INDETERMINATE), MessageStatus.SUBMITTED),
        ((MMStatus.INDETERMINATE,), MessageStatus.SUBMITTED),
    ],
)
async def test_final_reports_roll_up(
    store: Store, outcomes: tuple[MMStatus, ...], expected: MessageStatus
) -> None:
    to = [f"+155510{n}" for n in range(len(outcomes))]
    mid = await submitted(store, *to)
    for n, (address, mm) in enumerate(zip(to, outcomes, strict=True)):
        await report(store, mid, n, address, mm)
    assert await status(store, mid) is expected


async def test_reports_in_any_order_give_the_same_status(backend: Backend) -> None:
    """Every order of Forwarded/Indeterminate/Retrieved/Rejected reports for two handsets, a
    late or repeated one included: the status is what the final reports say."""
    reports = [
        (0, MMStatus.FORWARDED),
        (0, MMStatus.RETRIEVED),
        (1, MMStatus.INDETERMINATE),
        (1, MMStatus.REJECTED),
        (0, MMStatus.REJECTED),  # a late contradiction of a final report changes nothing
    ]
    seen: set[MessageStatus] = set()
    store = await backend.open(clock=ManualClock())
    for order in itertools.permutations(reports):
        to = ("+1555201", "+1555202")
        mid = await submitted(store, *to)
        for n, mm in order:
            await report(store, mid, n, to[n], mm)
            await status(store, mid)  # consistent with the recipients after each one
        record = await store.get_message(mid)
        assert record is not None
        # the first final report of each handset decides (Forwarded and Indeterminate are
        # not final); handset 1's is always Rejected
        final = (MMStatus.RETRIEVED, MMStatus.REJECTED)
        decided = next(mm for n, mm in order if n == 0 and mm in final)
        want = (
            MessageStatus.PARTIALLY_DELIVERED
            if decided is MMStatus.RETRIEVED
            else MessageStatus.FAILED
        )
        assert record.status is want, order
        seen.add(record.status)
    assert seen == {MessageStatus.PARTIALLY_DELIVERED, MessageStatus.FAILED}


async def test_dispatch_outcomes_roll_up(store: Store, clock: ManualClock) -> None:
    # refused at submit and delivered: partially delivered
    mid = await enqueue(store, "+1555301", "+1555302")
    items = await lease_all(store)
    assert await store.fail(items["+1555301"], 2001, "bad address")
    assert await store.complete(items["+1555302"], f"{mid}-1", 1000)
    assert await status(store, mid) is MessageStatus.SUBMITTED
    await report(store, mid, 1, "+1555302", MMStatus.RETRIEVED)
    assert await status(store, mid) is MessageStatus.PARTIALLY_DELIVERED

    # every recipient expired (retrying stopped at the deadline): expired
    mid = await enqueue(store, "+1555311", "+1555312", expires=timedelta(minutes=5))
    items = await lease_all(store)
    assert await store.expire(items["+1555311"], 4006, "busy")
    # a retry scheduled past the expiry expires the recipient instead
    assert await store.retry_later(items["+1555312"], clock.now() + timedelta(minutes=6))
    assert await status(store, mid) is MessageStatus.EXPIRED

    # expired and failed: failed
    mid = await enqueue(store, "+1555321", "+1555322")
    items = await lease_all(store)
    assert await store.expire(items["+1555321"])
    assert await store.fail(items["+1555322"], 3001, "refused")
    assert await status(store, mid) is MessageStatus.FAILED

    # expired before it was ever leased: expired at lease
    mid = await enqueue(store, "+1555331", expires=timedelta(seconds=5))
    clock.advance(timedelta(seconds=6))
    assert await lease_all(store) == {}
    assert await status(store, mid) is MessageStatus.EXPIRED


async def test_suppressed_recipients_do_not_count(store: Store) -> None:
    # one opted out before the message: the other delivered makes it delivered
    await store.store_mo(NewMo(link=LINK, transaction_id="t1", mm7_message_id="mo-1",
                               fields={}, opt_out=OptOut("stop", "+1555401", "STOP")))  # fmt: skip
    mid = await submitted(store, "+1555402")
    both = await store.enqueue_message(
        NewMessage(link=LINK, fields={"api_key": "dev"}), ["+1555401", "+1555403"]
    )
    assert both.suppressed == ("+1555401",)
    [item] = (await lease_all(store)).values()
    assert await store.complete(item, "M-403", 1000)
    await store.record_delivery_report(LINK, "M-403", "+1555403", MMStatus.RETRIEVED)
    assert await status(store, both.message_id) is MessageStatus.DELIVERED

    # a STOP while every recipient is still queued: nothing is sent, the message failed
    queued = await enqueue(store, "+1555404")
    await store.store_mo(NewMo(link=LINK, transaction_id="t2", mm7_message_id="mo-2",
                               fields={}, opt_out=OptOut("stop", "+1555404", "STOP")))  # fmt: skip
    record = await store.get_message(queued)
    assert record is not None and record.recipients[0].status is RecipientStatus.SUPPRESSED
    assert await status(store, queued) is MessageStatus.FAILED
    assert await status(store, mid) is MessageStatus.SUBMITTED


async def test_a_version_3_database_gets_rolled_up_statuses(tmp_path: Path) -> None:
    """Messages finished before migration 4 get the status their recipients say."""
    db = tmp_path / "v3.db"
    conn = sqlite3.connect(db, isolation_level=None)
    assert migrate(conn, 0, target=3) == 3
    cases = {
        "all-delivered": (["delivered", "delivered"], 0, 2),
        "half": (["delivered", "undelivered"], 0, 2),
        "waiting": (["delivered", "submitted"], 0, 2),
        "expired": (["expired", "suppressed"], 0, 0),
        "failed": (["failed", "expired"], 0, 0),
        "in-flight": (["queued", "delivered"], 1, 1),
    }
    for mid, (statuses, queued, submitted_count) in cases.items():
        conn.execute(
            "INSERT INTO messages (id, link, fields, status, recipient_count, queued_count,"
            " submitted_count, created_at, updated_at) VALUES (?,?,?,?,?,?,?,0,0)",
            (mid, LINK, '{"api_key": "dev"}', "sending" if queued else "submitted",
             len(statuses), queued, submitted_count),
        )  # fmt: skip
        for n, state in enumerate(statuses):
            conn.execute(
                "INSERT INTO recipients (message_id, link, address, address_key, status,"
                " transaction_id, next_attempt_at, updated_at) VALUES (?,?,?,?,?,?,0,0)",
                (mid, LINK, f"+1{n}", f"1{n}", state, f"{mid}.{n}"),
            )
    conn.close()
    store = await SqliteStore.open(db, clock=ManualClock())
    try:
        got = {mid: await status(store, mid) for mid in cases}
    finally:
        await store.close()
    assert got == {
        "all-delivered": MessageStatus.DELIVERED,
        "half": MessageStatus.PARTIALLY_DELIVERED,
        "waiting": MessageStatus.SUBMITTED,
        "expired": MessageStatus.EXPIRED,
        "failed": MessageStatus.FAILED,
        "in-flight": MessageStatus.SENDING,
    }
