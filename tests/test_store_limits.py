"""The store's half of the sender limits and the API keys' quotas, on each backend.

Deferrals give a leased recipient back to a later time without counting the attempt; quotas
count recipients per UTC day and per second, refuse naming the quota, and hold across a reopen
of the store and between two stores on one database. Real databases (tests/helpers/stores.py),
a ManualClock moved instead of sleeping.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from mm7.service.store import ManualClock, MessageStatus, NewMessage, Store
from mm7.service.store.limits import (
    Deferral,
    QuotaLimits,
    QuotaRefused,
    QuotaTaken,
    bucket_level,
    bucket_wait,
    until_next_day,
)
from tests.helpers.stores import Backend

TTL = timedelta(seconds=60)
LINK = "mmsc1"


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


async def three_leased(store: Store) -> list:  # type: ignore[type-arg]
    await store.enqueue_message(
        NewMessage(LINK, {"from": "12345"}), ["+15550001", "+15550002", "+15550003"]
    )
    items = await store.lease(LINK, "gw-1", 10, TTL)
    assert len(items) == 3
    return sorted(items, key=lambda i: i.address)


# -- deferrals --------------------------------------------------------------------------------


async def test_a_deferred_recipient_waits_unattempted_until_its_time(
    store: Store, clock: ManualClock
) -> None:
    first, second, third = await three_leased(store)
    later = clock.now() + timedelta(seconds=30)
    details = {"sender": "12345", "sender_tps": 1.0}
    done = await store.defer(
        [Deferral(first, later, details), Deferral(second, later + timedelta(seconds=1), details)]
    )
    assert done == 2
    # the third is still leased; the deferred two are not due yet
    assert await store.lease(LINK, "gw-1", 10, TTL) == []
    record = await store.get_message(first.message_id)
    assert record is not None and record.status is MessageStatus.SENDING
    by_address = {r.address: r for r in record.recipients}
    assert by_address["+15550001"].attempts == 0  # the lease was not an attempt
    assert by_address["+15550001"].next_attempt_at == later
    throttled = [e for e in record.events if e.kind == "throttled"]
    assert [(e.status, e.details["sender"], e.details["until"]) for e in throttled] == [
        ("queued", "12345", later.isoformat()),
        ("queued", "12345", (later + timedelta(seconds=1)).isoformat()),
    ]
    clock.advance(timedelta(seconds=30))
    again = await store.lease(LINK, "gw-2", 10, TTL)
    assert [i.address for i in again] == ["+15550001"]
    assert again[0].attempts == 1
    clock.advance(timedelta(seconds=1))
    assert [i.address for i in await store.lease(LINK, "gw-2", 10, TTL)] == ["+15550002"]
    # the third's lease, untouched, can still complete
    assert await store.complete(third, "mid-3", 1000)


async def test_a_deferral_with_a_lost_lease_changes_nothing(
    store: Store, clock: ManualClock
) -> None:
    first, *_ = await three_leased(store)
    clock.advance(TTL + timedelta(seconds=1))  # the lease expired: another worker takes it
    taken = await store.lease(LINK, "gw-2", 1, TTL)
    assert [i.address for i in taken] == ["+15550001"]
    assert await store.defer([Deferral(first, clock.now() + timedelta(hours=1), {})]) == 0
    assert await store.defer([]) == 0
    # the new holder's lease stands: it completes, and no throttled event was written
    assert await store.complete(taken[0], "mid-1", 1000)
    record = await store.get_message(first.message_id)
    assert record is not None
    assert not [e for e in record.events if e.kind == "throttled"]


# -- quotas -----------------------------------------------------------------------------------


async def test_the_day_quota_counts_recipients_and_refuses_past_it(
    store: Store, clock: ManualClock
) -> None:
    day = QuotaLimits(per_day=5)
    taken = await store.take_quota("app", 3, day)
    assert isinstance(taken, QuotaTaken) and taken.day == "2026-01-01" and taken.count == 3
    clock.advance(timedelta(hours=23))
    refused = await store.take_quota("app", 3, day)
    assert refused == QuotaRefused("max_per_day", 5, 3600.0)  # until the next UTC midnight
    # the refusal counted nothing: two more still fit, then none
    assert isinstance(await store.take_quota("app", 2, day), QuotaTaken)
    assert isinstance(await store.take_quota("app", 1, day), QuotaRefused)
    # other keys count apart
    assert isinstance(await store.take_quota("other", 5, day), QuotaTaken)
    clock.advance(timedelta(hours=1))  # 2026-01-02 00:00 UTC: a new day
    renewed = await store.take_quota("app", 5, day)
    assert isinstance(renewed, QuotaTaken) and renewed.day == "2026-01-02"


async def test_given_back_recipients_count_no_more(store: Store, backend: Backend) -> None:
    both = QuotaLimits(per_second=4, per_day=5)
    taken = await store.take_quota("app", 4, both)
    assert isinstance(taken, QuotaTaken)
    assert isinstance(await store.take_quota("app", 1, both), QuotaRefused)  # bucket empty
    await store.give_back_quota(taken, 3)
    await store.give_back_quota(taken, 0)
    assert await backend.rows("SELECT used FROM api_day_counts WHERE api_key = ?", "app") == [(1,)]
    # the bucket got its three tokens back, the day its three recipients
    assert isinstance(await store.take_quota("app", 3, both), QuotaTaken)
    assert isinstance(await store.take_quota("app", 1, both), QuotaRefused)


async def test_the_per_second_quota_is_a_bucket_of_one_second(
    store: Store, clock: ManualClock
) -> None:
    rate = QuotaLimits(per_second=4)
    for _ in range(4):
        assert isinstance(await store.take_quota("app", 1, rate), QuotaTaken)
    refused = await store.take_quota("app", 1, rate)
    assert isinstance(refused, QuotaRefused)
    assert (refused.quota, refused.limit) == ("max_per_second", 4)
    assert refused.retry_after == pytest.approx(0.25)
    clock.advance(timedelta(milliseconds=500))
    assert isinstance(await store.take_quota("app", 2, rate), QuotaTaken)
    assert isinstance(await store.take_quota("app", 1, rate), QuotaRefused)
    # a message larger than the bucket passes when it is full, and leaves it in debt
    clock.advance(timedelta(seconds=5))
    assert isinstance(await store.take_quota("app", 10, rate), QuotaTaken)
    debt = await store.take_quota("app", 1, rate)
    assert isinstance(debt, QuotaRefused) and debt.retry_after == pytest.approx(1.75)


async def test_a_refusal_by_one_quota_counts_nothing_on_the_other(
    store: Store, backend: Backend
) -> None:
    both = QuotaLimits(per_second=10, per_day=3)
    assert isinstance(await store.take_quota("app", 3, both), QuotaTaken)
    refused = await store.take_quota("app", 2, both)
    assert isinstance(refused, QuotaRefused) and refused.quota == "max_per_day"
    rows = await backend.rows("SELECT tokens FROM api_rate_buckets WHERE api_key = ?", "app")
    assert [round(r[0], 6) for r in rows] == [7.0]  # only the first request's three


async def test_counts_hold_across_a_reopen_and_between_two_stores(
    store: Store, backend: Backend, clock: ManualClock
) -> None:
    day = QuotaLimits(per_day=40)
    assert isinstance(await store.take_quota("app", 10, day), QuotaTaken)
    await store.close()
    backend.stores.remove(store)
    reopened = await backend.open(clock=clock)
    others = [reopened] if backend.name == "sqlite" else [reopened, await backend.open(clock=clock)]
    # 60 one-recipient requests at once over the stores: exactly the 30 left pass
    results = await asyncio.gather(
        *(others[n % len(others)].take_quota("app", 1, day) for n in range(60))
    )
    assert sum(isinstance(r, QuotaTaken) for r in results) == 30
    assert await backend.rows("SELECT used FROM api_day_counts WHERE api_key = ?", "app") == [(40,)]


# -- the arithmetic, as both backends use it --------------------------------------------------


def test_bucket_arithmetic() -> None:
    assert bucket_level(None, None, 5_000, 4) == 4.0  # a new bucket is full
    assert bucket_level(0.0, 1_000, 1_500, 4) == 2.0  # half a second refills half of it
    assert bucket_level(-6.0, 1_000, 10_000, 4) == 4.0  # never above a second's worth
    assert bucket_level(1.0, 2_000, 1_000, 4) == 1.0  # a stamp ahead (another host's clock)
    assert bucket_wait(4.0, 4, 10) == 0.0
    assert bucket_wait(3.0, 4, 10) == pytest.approx(0.25)
    assert bucket_wait(0.5, 4, 1) == pytest.approx(0.125)
    assert until_next_day(datetime(2026, 3, 1, 23, 59, 30, tzinfo=UTC)) == 30.0
