"""The relay outbox on PostgreSQL (issue 14): what only several instances on one database show.

test_store_relay.py runs the relay's behaviours on both backends; here, on a fresh PostgreSQL
database (tests/helpers/stores.py; skipped, saying why, without a server): two stores (two
pools, as two instances) leasing at once never get the same event, never two events of one
ordered sender, and deliver each ordered sender's events in order; a row locked by another
transaction is skipped, not waited for; releases, requeues and queued fallback SMS wake every
instance; instances starting together share one secret.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mm7.core.status import MMStatus
from mm7.service.store import ManualClock, NewMessage, RelayItem, Store
from tests.helpers.stores import Backend, PostgresBackend, backend_of
from tests.test_store_relay import TTL, mo, sources


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh PostgreSQL database, dropped after the test."""
    async with backend_of("postgresql", tmp_path) as made:
        yield made


@pytest.fixture
async def store(pg: Backend, clock: ManualClock) -> Store:
    return await pg.open(clock=clock)


# -- what only a shared database shows --------------------------------------------------------


async def test_own_secret_is_made_once_for_every_instance(pg: Backend, clock: ManualClock) -> None:
    one, two = await pg.open(clock=clock), await pg.open(clock=clock)
    # two instances starting together: both get the one that was committed
    first, second = await asyncio.gather(one.own_secret("media_url"), two.own_secret("media_url"))
    assert len(first) == 64 and first == second
    assert await one.own_secret("other") != first
    await one.close()
    again = await pg.open(clock=clock)
    assert await again.own_secret("media_url") == first
    assert await pg.rows("SELECT COUNT(*) FROM store_secrets") == [(2,)]


async def test_release_and_requeue_wake_the_relay_workers_of_every_instance(
    pg: Backend, store: Store, clock: ManualClock
) -> None:
    other = await pg.open(clock=clock)
    woken: asyncio.Queue[str] = asyncio.Queue()
    other.watch(on_mt=lambda link: None, on_relay=lambda: woken.put_nowait("relay"))
    await other._listener.listening()
    await mo(store, "+15550001")
    assert await asyncio.wait_for(woken.get(), 30) == "relay"  # a bound, not a timing
    [item] = await store.lease_relay("w", 1, TTL)
    assert await store.release_relay(item)
    assert await asyncio.wait_for(woken.get(), 30) == "relay"
    [item] = await other.lease_relay("w2", 1, TTL)
    assert await other.relay_outcome(item, "dead", error="HTTP 500")
    assert woken.empty()  # a dead letter is nobody's work
    assert await store.requeue_relay() == 1
    assert await asyncio.wait_for(woken.get(), 30) == "relay"


async def test_a_queued_fallback_sms_wakes_every_instance_without_a_callback_url(
    pg: Backend, store: Store, clock: ManualClock
) -> None:
    """No relay event (no callback_url), yet a fallback row to send: the failure's and the
    Rejected report's commits notify, so the instance holding the ``fallback`` lease sends it
    now, not at its next poll."""
    other = await pg.open(clock=clock)
    woken: asyncio.Queue[str] = asyncio.Queue()
    other.watch(on_mt=lambda link: None, on_relay=lambda: woken.put_nowait("relay"))
    await other._listener.listening()
    fields = {"from": "12345", "text": "hi", "fallback": {"sms_link": "smsc1", "text_max": 160}}
    await store.enqueue_message(NewMessage(link="mmsc1", fields=fields), ["+15550001", "+15550002"])
    failed, reported = sorted(await store.lease("mmsc1", "w", 2, TTL), key=lambda i: i.address)
    assert await store.fail(failed, 2002, "address error")
    assert await asyncio.wait_for(woken.get(), 30) == "relay"  # a bound, not a timing
    assert await store.complete(reported, "M-2", 1000, "ok")
    await store.record_delivery_report("mmsc1", "M-2", "+15550002", MMStatus.REJECTED)
    assert await asyncio.wait_for(woken.get(), 30) == "relay"
    assert len(await store.lease_fallback("fw", 5, TTL)) == 2


async def test_an_event_locked_by_another_transaction_is_skipped_not_waited_for(
    pg: Backend, store: Store
) -> None:
    import asyncpg

    ids = [await mo(store, f"+1555000{i}") for i in range(3)]
    assert isinstance(pg, PostgresBackend)
    conn = await asyncpg.connect(pg.dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM relay_outbox WHERE source_id = $1 FOR UPDATE", ids[0])
            # a bound against a hang, not a timing: a lease that waited would never return
            got = await asyncio.wait_for(store.lease_relay("w", 10, TTL), 30)
            assert sources(got) == ids[1:]
        [late] = await store.lease_relay("w", 10, TTL)
        assert late.source_id == ids[0] and late.attempt == 1
    finally:
        await conn.close()


async def test_two_instances_leasing_at_once_share_out_the_events(
    pg: Backend, clock: ManualClock
) -> None:
    """Two stores (two pools), four leasing workers each, over ordered and unordered events:
    every event is leased once (one attempt each), never two events of one ordered sender at
    once, and each ordered sender's events are delivered in the order they were queued."""
    one = await pg.open(clock=clock, max_connections=4)
    two = await pg.open(clock=clock, max_connections=4)
    senders = [f"+155501{i:02d}" for i in range(6)]
    order: dict[str, list[str]] = {s: [] for s in senders}
    for round_ in range(5):
        for sender in senders:
            order[sender].append(await mo(one, sender, ordered=True, text=f"{round_}"))
    loose = [await mo(two, f"+155502{i:02d}", hook="other") for i in range(30)]
    total = sum(len(v) for v in order.values()) + len(loose)

    in_flight: dict[str, int] = {}  # ordered sender -> the event it has out
    delivered: dict[str, list[str]] = {s: [] for s in senders}
    seen: list[int] = []
    leased_by: dict[str, int] = {"a": 0, "b": 0}
    sender_of = {mo_id: s for s, ids in order.items() for mo_id in ids}
    rng = random.Random(14)

    async def worker(store: Store, name: str) -> None:
        idle = 0
        while len(seen) < total and idle < 200:
            items: list[RelayItem] = await store.lease_relay(name, 3, TTL, ordered_hooks={"app"})
            if not items:
                idle += 1
                await asyncio.sleep(0)
                continue
            idle = 0
            leased_by[name[0]] += len(items)
            for item in items:
                seen.append(item.id)
                sender = sender_of.get(str(item.source_id))
                if sender is not None:
                    assert sender not in in_flight, (sender, in_flight[sender], item.id)
                    in_flight[sender] = item.id
            for item in items:
                await asyncio.sleep(rng.random() / 1000)  # interleave with the other workers
                sender = sender_of.get(str(item.source_id))
                if sender is not None:
                    delivered[sender].append(str(item.source_id))
                    del in_flight[sender]  # before the commit that frees the next one
                assert await store.relay_outcome(item, "delivered", http_status=200)

    await asyncio.gather(*(worker(s, f"{s_name}-{k}") for s, s_name in ((one, "a"), (two, "b"))
                           for k in range(4)))  # fmt: skip
    assert sorted(seen) == sorted(set(seen)) and len(seen) == total
    assert delivered == order
    assert leased_by["a"] > 0 and leased_by["b"] > 0  # both instances took part
    assert await one.relay_counts() == {"delivered": total}
    assert await pg.rows("SELECT DISTINCT attempts FROM relay_outbox") == [(1,)]
    assert await pg.rows("SELECT COUNT(*) FROM relay_outbox WHERE lease_token IS NOT NULL") == [
        (0,)
    ]
