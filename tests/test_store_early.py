"""Early reports, on each backend: a delivery report or read reply that arrives before the
completion that records its MessageID is kept, and applied by that completion
(``mm7.service.store.early``).

Real databases (an SQLite file, a fresh PostgreSQL database: tests/helpers/stores.py), the
ManualClock. The PostgreSQL tests at the end hold one side of the MessageID's lock on a
connection of their own, to show that a report and a completion racing each other meet: each
waits for the other's commit, observed in ``pg_locks``, never by sleeping.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from mm7.core.status import MMStatus
from mm7.service.store import (
    ManualClock,
    MessageStatus,
    NewMessage,
    RecipientStatus,
    RelayKind,
    RelayStatus,
    Store,
    WorkItem,
)
from mm7.service.store.early import CORRELATED_SUFFIX, PG_LOCK_CLASS
from tests.helpers.stores import Backend, PostgresBackend

CALLBACK = "http://app.example/status"
TTL = timedelta(seconds=30)


def message(link: str = "mmsc1", callback_url: str | None = CALLBACK) -> NewMessage:
    return NewMessage(link=link, fields={"from": "12345"}, callback_url=callback_url)


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


async def leased(store: Store, link: str, recipients: list[str], **options: Any) -> list[WorkItem]:
    """A message to ``recipients`` enqueued and every recipient leased, in address order."""
    await store.enqueue_message(message(link, **options), recipients)
    items = await store.lease(link, "w", len(recipients), TTL)
    return sorted(items, key=lambda i: recipients.index(i.address))


async def relayed(store: Store, kind: RelayKind) -> list[Any]:
    return [e for e in await store.relay_events(limit=1000) if e.kind is kind]


async def test_a_report_before_the_completion_is_applied_by_it(
    store: Store, backend: Backend, clock: ManualClock
) -> None:
    (item,) = await leased(store, "mmsc1", ["+15550001"])
    early = await store.record_delivery_report(
        "mmsc1", "M-1", "+15550001", MMStatus.RETRIEVED, status_text="ok", raw="<soap/>",
        details={"peer": "simulator"},
    )  # fmt: skip
    assert early.message_id is None and early.recipient_status is None
    assert [r.id for r in await store.delivery_reports(unknown_only=True)] == [early.report_id]
    clock.advance(timedelta(seconds=1))
    assert await store.complete(item, "M-1", 1000, "Success")
    got = await store.get_message(item.message_id)
    assert got is not None
    assert got.recipients[0].status is RecipientStatus.DELIVERED
    assert got.status is MessageStatus.DELIVERED
    # the submission first, then the report: each once
    assert [(e.kind, e.status) for e in got.events] == [
        ("queued", "queued"),
        ("submitted", "submitted"),
        ("delivery_report", "Retrieved"),
    ]
    report_event = got.events[-1]
    assert report_event.recipient == "+15550001"
    assert report_event.details["report_id"] == early.report_id
    assert report_event.details["peer"] == "simulator"
    assert report_event.details["received_at"] == "2026-01-01T00:00:00+00:00"
    # the kept report is a correlated one now, and nothing is kept early any more
    assert await store.delivery_reports(unknown_only=True) == []
    (kept,) = await store.delivery_reports(message_id=item.message_id)
    assert (kept.id, kept.recipient_id, kept.raw) == (early.report_id, item.recipient_id, "<soap/>")
    assert await backend.count("early_reports") == 0
    statuses = await relayed(store, RelayKind.STATUS)
    assert [e.event["status"] for e in statuses] == ["submitted"]
    (report,) = await relayed(store, RelayKind.DELIVERY_REPORT)
    assert report.event["message_id"] == item.message_id
    assert report.event["status"] == "delivered" and report.callback_url == CALLBACK
    assert report.source_id == item.message_id
    # a later report of the same handset is recorded as usual and changes nothing more
    again = await store.record_delivery_report("mmsc1", "M-1", "+15550001", MMStatus.REJECTED)
    assert again.recipient_status is RecipientStatus.DELIVERED


async def test_stages_out_of_order_apply_in_arrival_order_and_never_go_back(
    store: Store,
) -> None:
    one, two, three = await leased(store, "mmsc1", ["+15550001", "+15550002", "+15550003"])
    reports = [
        ("M-1", "+15550001", MMStatus.RETRIEVED),  # final first, then Forwarded: delivered
        ("M-1", "+15550001", MMStatus.FORWARDED),
        ("M-2", "+15550002", MMStatus.FORWARDED),  # Forwarded, then Expired: undelivered
        ("M-2", "+15550002", MMStatus.EXPIRED),
        ("M-3", "+15550003", MMStatus.RETRIEVED),  # two finals: the first stands
        ("M-3", "+15550003", MMStatus.EXPIRED),
    ]
    for mid, address, status in reports:
        kept = await store.record_delivery_report("mmsc1", mid, address, status)
        assert kept.message_id is None
    got = await store.get_message(one.message_id)
    assert got is not None and all(r.status is RecipientStatus.QUEUED for r in got.recipients)
    assert await store.complete(two, "M-2")
    got = await store.get_message(one.message_id)
    assert got is not None and got.status is MessageStatus.SENDING
    assert await store.complete(three, "M-3")
    assert await store.complete(one, "M-1")
    got = await store.get_message(one.message_id)
    assert got is not None
    assert [r.status for r in got.recipients] == [
        RecipientStatus.DELIVERED,
        RecipientStatus.UNDELIVERED,
        RecipientStatus.DELIVERED,
    ]
    assert got.status is MessageStatus.PARTIALLY_DELIVERED
    by_recipient = {
        address: [(e.kind, e.status) for e in got.events if e.recipient == address]
        for address in ("+15550001", "+15550002", "+15550003")
    }
    assert by_recipient == {
        "+15550001": [
            ("submitted", "submitted"),
            ("delivery_report", "Retrieved"),
            ("delivery_report", "Forwarded"),
        ],
        "+15550002": [
            ("submitted", "submitted"),
            ("delivery_report", "Forwarded"),
            ("delivery_report", "Expired"),
        ],
        "+15550003": [
            ("submitted", "submitted"),
            ("delivery_report", "Retrieved"),
            ("delivery_report", "Expired"),
        ],
    }
    assert await store.delivery_reports(unknown_only=True) == []


async def test_a_read_reply_before_the_completion_is_applied_by_it(
    store: Store, backend: Backend
) -> None:
    (item,) = await leased(store, "mmsc1", ["+15550001"])
    early = await store.record_read_reply(
        "mmsc1", "M-1", "+15550001", "Read", status_text="seen", details={"peer": "simulator"}
    )
    assert early is None
    assert await backend.count("early_reports") == 1
    assert await store.complete(item, "M-1")
    got = await store.get_message(item.message_id)
    assert got is not None
    assert [(e.kind, e.status) for e in got.events][-2:] == [
        ("submitted", "submitted"),
        ("read_reply", "Read"),
    ]
    assert got.events[-1].recipient == "+15550001"
    assert got.events[-1].details["status_text"] == "seen"
    assert got.recipients[0].status is RecipientStatus.SUBMITTED  # a read reply moves nothing
    (reply,) = await relayed(store, RelayKind.READ_REPLY)
    assert reply.event["message_id"] == item.message_id and reply.event["status"] == "read"
    assert reply.callback_url == CALLBACK
    assert await backend.count("early_reports") == 0


async def test_a_report_for_another_recipient_waits_for_that_ones_completion(
    store: Store,
) -> None:
    first, second = await leased(store, "mmsc1", ["+15550001", "+15550002"])
    early = await store.record_delivery_report("mmsc1", "M-1", "+15550002", MMStatus.RETRIEVED)
    assert early.message_id is None
    # one MessageID for both: the report names the second recipient, not the first one
    # (which the MessageID alone, naming one recipient so far, would have matched)
    assert await store.complete(first, "M-1")
    got = await store.get_message(first.message_id)
    assert got is not None
    assert [r.status for r in got.recipients] == [RecipientStatus.SUBMITTED, RecipientStatus.QUEUED]
    assert len(await store.delivery_reports(unknown_only=True)) == 1
    assert await store.complete(second, "M-1")
    got = await store.get_message(first.message_id)
    assert got is not None
    assert [r.status for r in got.recipients] == [
        RecipientStatus.SUBMITTED,
        RecipientStatus.DELIVERED,
    ]
    assert await store.delivery_reports(unknown_only=True) == []


async def test_a_report_spelling_the_address_its_own_way_matches_the_only_recipient(
    store: Store,
) -> None:
    (item,) = await leased(store, "mmsc1", ["+15550001"])
    await store.record_delivery_report("mmsc1", "M-1", "", MMStatus.RETRIEVED)  # no handset
    assert await store.complete(item, "M-1")
    got = await store.get_message(item.message_id)
    assert got is not None and got.recipients[0].status is RecipientStatus.DELIVERED
    (kept,) = await store.delivery_reports(message_id=item.message_id)
    assert kept.recipient == "+15550001"  # recorded under the stored address, as live


async def test_early_reports_correlate_by_the_other_address_and_on_the_other_links(
    store: Store,
) -> None:
    (swapped,) = await leased(store, "a", ["+15550003"])
    (moved,) = await leased(store, "a", ["+15550004"])
    (stranger,) = await leased(store, "a", ["+15550005"])
    # the MMSC put the handset in Sender: the report's other address
    await store.record_delivery_report(
        "a", "M-3", "12345", MMStatus.RETRIEVED, alternate="+15550003",
        details={"leniencies": ["some-leniency"]},
    )  # fmt: skip
    # a report reaching the peer of link b, which also reports for link a
    await store.record_delivery_report(
        "b", "M-4", "+15550004", MMStatus.RETRIEVED, other_links=("c", "a")
    )
    # a report reaching a peer that does not report for link a
    await store.record_delivery_report("b", "M-5", "+15550005", MMStatus.RETRIEVED)
    assert len(await store.delivery_reports(unknown_only=True)) == 3
    for item, mid in ((swapped, "M-3"), (moved, "M-4"), (stranger, "M-5")):
        assert await store.complete(item, mid)
    got = await store.get_message(swapped.message_id)
    assert got is not None and got.recipients[0].status is RecipientStatus.DELIVERED
    assert got.events[-1].details["leniencies"] == ["some-leniency", "report-addresses-swapped"]
    (report,) = await store.delivery_reports(message_id=swapped.message_id)
    assert report.recipient == "+15550003"
    got = await store.get_message(moved.message_id)
    assert got is not None and got.recipients[0].status is RecipientStatus.DELIVERED
    (report,) = await store.delivery_reports(message_id=moved.message_id)
    assert report.link == "a"  # recorded under the link that sent it, as live
    got = await store.get_message(stranger.message_id)
    assert got is not None and got.recipients[0].status is RecipientStatus.SUBMITTED
    (unknown,) = await store.delivery_reports(unknown_only=True)
    assert (unknown.link, unknown.mm7_message_id) == ("b", "M-5")


async def test_a_report_that_never_matches_stays_unknown_until_retention(
    store: Store, backend: Backend, clock: ManualClock
) -> None:
    first, second = await leased(store, "mmsc1", ["+15550001", "+15550002"])
    early = await store.record_delivery_report("mmsc1", "M-X", "+15550001", MMStatus.RETRIEVED)
    assert await store.complete(first, "M-1")  # another MessageID
    assert await store.complete(second, None)  # none at all
    got = await store.get_message(first.message_id)
    assert got is not None
    assert [r.status for r in got.recipients] == [RecipientStatus.SUBMITTED] * 2
    assert [r.id for r in await store.delivery_reports(unknown_only=True)] == [early.report_id]
    assert await backend.count("early_reports") == 1
    clock.advance(timedelta(days=31))
    stats = await store.purge(clock.now() - timedelta(days=30))
    assert stats.delivery_reports == 1
    assert await backend.count("early_reports") == 0
    assert await store.delivery_reports(unknown_only=True) == []


async def test_a_completion_whose_lease_was_lost_applies_nothing(
    store: Store, clock: ManualClock
) -> None:
    (stale,) = await leased(store, "mmsc1", ["+15550001"])
    await store.record_delivery_report("mmsc1", "M-1", "+15550001", MMStatus.RETRIEVED)
    clock.advance(TTL * 2)
    (fresh,) = await store.lease("mmsc1", "w2", 1, TTL)
    assert not await store.complete(stale, "M-1")
    assert len(await store.delivery_reports(unknown_only=True)) == 1
    assert await store.complete(fresh, "M-1")
    got = await store.get_message(fresh.message_id)
    assert got is not None and got.recipients[0].status is RecipientStatus.DELIVERED
    assert [e.kind for e in got.events].count("delivery_report") == 1


async def test_with_status_hooks_the_unknown_reports_event_becomes_the_correlated_one(
    backend: Backend, clock: ManualClock
) -> None:
    store = await backend.open(clock=clock, relay_all_statuses=True)
    first, second = await leased(store, "mmsc1", ["+15550001", "+15550002"], callback_url=None)
    await store.record_delivery_report("mmsc1", "M-1", "+15550001", MMStatus.RETRIEVED)
    await store.record_delivery_report("mmsc1", "M-2", "+15550002", MMStatus.RETRIEVED)
    unknown = await relayed(store, RelayKind.DELIVERY_REPORT)
    assert [e.event["message_id"] for e in unknown] == [None, None]
    assert [e.event["status"] for e in unknown] == ["unknown", "unknown"]
    # the second one's unknown event is on its way to the link's status hook already
    (taken,) = await store.lease_relay("relay", 1, TTL)
    assert taken.id == unknown[0].id
    assert await store.complete(second, "M-2")  # its unknown event waits: it becomes this one
    assert await store.complete(first, "M-1")  # its unknown event is leased: another follows
    events = await relayed(store, RelayKind.DELIVERY_REPORT)
    assert [(e.id, e.event["message_id"], e.event["status"]) for e in events] == [
        (unknown[0].id, None, "unknown"),
        (unknown[1].id, first.message_id, "delivered"),
        (events[2].id, first.message_id, "delivered"),
    ]
    assert events[1].event["recipient"] == "+15550002"
    assert events[2].event["recipient"] == "+15550001"
    assert events[2].idempotency_key == unknown[0].idempotency_key + CORRELATED_SUFFIX
    assert events[1].status is RelayStatus.PENDING and events[1].source_id == first.message_id


# --------------------------------------------------------------------------- PostgreSQL races


async def _waiting_for_the_lock(backend: PostgresBackend) -> None:
    """Return once a connection waits for an advisory lock of the early-report class (a
    deadline guards against a hang only: a side that never waits fails the test)."""
    async with asyncio.timeout(30):
        await _lock_awaited(backend)


async def _lock_awaited(backend: PostgresBackend) -> None:
    while True:
        rows = await backend.rows(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND classid = ?::oid",
            PG_LOCK_CLASS,
        )
        if rows[0][0]:
            return
        await asyncio.sleep(0.01)


async def test_postgresql_a_completion_sees_a_report_committed_while_it_waited(
    backend: Backend, clock: ManualClock
) -> None:
    if not isinstance(backend, PostgresBackend):
        pytest.skip("SQLite runs every write on one thread: reports and completions never race")
    import asyncpg

    store = await backend.open(clock=clock)
    (item,) = await leased(store, "mmsc1", ["+15550001"])
    # a report of the unknown MessageID in its transaction, after correlating again under the
    # lock: it keeps itself, and commits only once the completion is waiting for the lock
    conn = await asyncpg.connect(backend.dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))",
                               PG_LOCK_CLASS, "M-1")  # fmt: skip
            report_id = await conn.fetchval(
                "INSERT INTO delivery_reports (link, mm7_message_id, recipient, mm_status,"
                " raw_status, received_at) VALUES ('mmsc1', 'M-1', '+15550001', 'Retrieved',"
                " 'Retrieved', 0) RETURNING id"
            )
            await conn.execute(
                "INSERT INTO early_reports (kind, report_id, link, other_links, mm7_message_id,"
                " recipient, status, details, received_at) VALUES ('delivery_report', $1,"
                " 'mmsc1', '[]', 'M-1', '+15550001', 'Retrieved', $2, 0)",
                report_id, '{"raw_status": "Retrieved", "status_text": null}',
            )  # fmt: skip
            completing = asyncio.create_task(store.complete(item, "M-1"))
            await _waiting_for_the_lock(backend)
        assert await completing
    finally:
        await conn.close()
    got = await store.get_message(item.message_id)
    assert got is not None and got.recipients[0].status is RecipientStatus.DELIVERED
    assert await store.delivery_reports(unknown_only=True) == []


async def test_postgresql_a_report_waits_for_a_completion_in_flight(
    backend: Backend, clock: ManualClock
) -> None:
    if not isinstance(backend, PostgresBackend):
        pytest.skip("SQLite runs every write on one thread: reports and completions never race")
    import asyncpg

    store = await backend.open(clock=clock)
    (item,) = await leased(store, "mmsc1", ["+15550001"])
    # a completion in its statement: the MessageID's lock (shared) and the MessageID recorded,
    # not committed yet when the report arrives
    conn = await asyncpg.connect(backend.dsn)
    try:
        async with conn.transaction():
            assert await conn.fetchval("SELECT mm7_early_reports('M-1')") is False
            await conn.execute(
                "UPDATE recipients SET status = 'submitted', mm7_message_id = 'M-1' WHERE id = $1",
                item.recipient_id,
            )
            reporting = asyncio.create_task(
                store.record_delivery_report("mmsc1", "M-1", "+15550001", MMStatus.RETRIEVED)
            )
            await _waiting_for_the_lock(backend)
        result = await reporting
    finally:
        await conn.close()
    assert result.message_id == item.message_id
    assert result.recipient_status is RecipientStatus.DELIVERED
    assert await backend.count("early_reports") == 0
