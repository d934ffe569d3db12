"""What only the PostgreSQL store has: several instances on one database.

Each test gets a fresh database on the test server (tests/helpers/stores.py; skipped, saying
why, when none can be reached) and opens two or more stores on it, each with its own pool, as
two gateway instances would: leasing one link at once, waking each other with NOTIFY, sharing
media, named leases and inbound request keys. Waits are bounded by counts of polls (never a
timed assertion).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mm7.core.status import MMStatus
from mm7.service.errors import StoreUnavailableError
from mm7.service.store import ManualClock, MediaPart, MoRelay, NewMessage, NewMo, RecipientStatus
from tests.helpers.stores import ADMIN_DSN, pg_database

LINK = "mmsc1"
TTL = timedelta(seconds=30)
JPEG = b"\xff\xd8\xff\xe0" + os.urandom(20_000)
REPO = Path(__file__).resolve().parent.parent

pytest.importorskip("asyncpg", reason="the PostgreSQL store needs asyncpg (pip install '.[test]')")

from mm7.service.store.postgres import PostgresStore  # noqa: E402


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async with pg_database() as made:
        yield made


@pytest.fixture
async def two(dsn: str, clock: ManualClock) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two instances on one database: two stores, two pools, one clock."""
    a = await PostgresStore.open(dsn, clock=clock)
    b = await PostgresStore.open(dsn, clock=clock)
    yield a, b
    await a.close()
    await b.close()


async def raw(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def until(check: Callable[[], bool], polls: int = 1000) -> None:
    """Wait until ``check()`` holds, polling every 10 ms at most ``polls`` times."""
    for _ in range(polls):
        if check():
            return
        await asyncio.sleep(0.01)
    assert check()


def message(link: str = LINK, **kwargs: Any) -> NewMessage:
    return NewMessage(link=link, fields={"from": "12345", "api_key": "dev"}, **kwargs)


async def test_two_instances_leasing_one_link_never_get_the_same_item(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    await asyncio.gather(
        *(a.enqueue_message(message(), [f"+1555{i:04d}{j}" for j in range(3)]) for i in range(100))
    )
    taken: dict[int, str] = {}

    async def drain(store: PostgresStore, owner: str) -> None:
        while items := await store.lease(LINK, owner, 7, TTL):
            for item in items:
                assert item.recipient_id not in taken, (item.recipient_id, owner)
                taken[item.recipient_id] = owner
                assert await store.complete(item, f"M-{item.recipient_id}", 1000)

    await asyncio.gather(
        *(drain(store, f"{name}{n}") for n in range(3) for name, store in (("a", a), ("b", b)))
    )
    assert len(taken) == 300
    assert {owner[0] for owner in taken.values()} == {"a", "b"}  # both instances took some
    assert await a.queue_depth(LINK) == 0
    counts = await raw(
        a._dsn, "SELECT status, count(*), sum(submitted_count) FROM messages GROUP BY status"
    )
    assert counts == [("submitted", 100, 300)]


async def test_a_lease_taken_over_by_another_instance_fences_the_first(
    two: tuple[PostgresStore, PostgresStore], clock: ManualClock
) -> None:
    a, b = two
    made = await a.enqueue_message(message(), ["+15550001"])
    (first,) = await a.lease(LINK, "instance-a", 1, TTL)
    clock.advance(TTL + timedelta(seconds=1))
    (second,) = await b.lease(LINK, "instance-b", 1, TTL)
    assert second.recipient_id == first.recipient_id and second.lease_token != first.lease_token
    results = await asyncio.gather(a.complete(first, "OLD", 1000), b.complete(second, "NEW", 1000))
    assert results == [False, True]
    got = await b.get_message(made.message_id)
    assert got is not None and got.recipients[0].mm7_message_id == "NEW"
    kinds = [e.kind for e in got.events]
    # the two outcomes ran at once: their events in either order
    assert kinds[:2] == ["queued", "lease_expired"]
    assert sorted(kinds[2:]) == ["stale_result", "submitted"]
    assert got.events[1].details == {"previous_owner": "instance-a", "new_owner": "instance-b"}


async def test_notify_wakes_the_other_instance(two: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = two
    links: list[str] = []
    relays: list[None] = []
    b.watch(on_mt=links.append, on_relay=lambda: relays.append(None))
    assert b._listener is not None
    await b._listener.listening()
    await a.enqueue_message(message("far-link"), ["+15550001"])
    await until(lambda: "far-link" in links)
    relay = MoRelay(hook="app", route="r", media="url", event={"type": "mo"})
    await a.store_mo(NewMo(LINK, "t1", "M1", {}, relay=relay))
    await until(lambda: len(relays) >= 1)
    # a retry makes the link's work due again: its dispatchers hear of it too
    (item,) = await a.lease("far-link", "w", 1, TTL)
    links.clear()
    assert await a.retry_later(item, a._clock.now() + timedelta(seconds=5), 4006, "busy")
    await until(lambda: "far-link" in links)


async def test_the_listener_reconnects_and_then_wakes_everyone(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    await a.enqueue_message(message("queued-link"), ["+15550001"])
    links: list[str] = []
    relays: list[None] = []
    b.watch(on_mt=links.append, on_relay=lambda: relays.append(None))
    listener = b._listener
    assert listener is not None
    await listener.listening()
    conn = listener._conn
    assert conn is not None and listener.connections == 1
    await raw(ADMIN_DSN, "SELECT pg_terminate_backend($1)", conn.get_server_pid())
    await until(lambda: listener.connections == 2)
    # work may have arrived while it was down: every callback once, each queued link
    await until(lambda: "queued-link" in links and len(relays) >= 1)
    links.clear()
    await a.enqueue_message(message("after"), ["+15550002"])
    await until(lambda: "after" in links)


async def test_media_is_stored_once_across_instances(
    two: tuple[PostgresStore, PostgresStore], dsn: str
) -> None:
    a, b = two
    made = await asyncio.gather(
        *(
            store.enqueue_message(
                message(), [f"+1555{n:04d}"], [MediaPart("image/jpeg", data=JPEG)]
            )
            for n in range(10)
            for store in (a, b)
        ),
        a.store_mo(NewMo(LINK, "t1", "M1", {}, [MediaPart("image/jpeg", data=JPEG)])),
        b.put_media(JPEG, "image/jpeg"),
    )
    assert len(made) == 22
    assert await raw(dsn, "SELECT count(*), sum(length(data)) FROM media") == [(1, len(JPEG))]
    assert await raw(dsn, "SELECT count(*) FROM message_media") == [(20,)]
    blob = await b.get_media(made[-1])
    assert blob is not None and blob.data == JPEG


async def test_a_report_racing_itself_on_two_instances_counts_once(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    made = await a.enqueue_message(message(), ["+15550001", "+15550002"])
    for item in await a.lease(LINK, "w", 2, TTL):
        assert await a.complete(item, "M-1", 1000)
    results = await asyncio.gather(
        *(
            store.record_delivery_report(LINK, "M-1", "+15550001", MMStatus.RETRIEVED)
            for _ in range(5)
            for store in (a, b)
        )
    )
    assert {r.recipient_status for r in results} == {RecipientStatus.DELIVERED}
    counts = await raw(a._dsn, "SELECT delivered_count, status FROM messages")
    assert counts == [(1, "submitted")]  # the other handset has no final report yet
    got = await b.get_message(made.message_id)
    assert got is not None
    assert len([e for e in got.events if e.kind == "delivery_report"]) == 10


async def test_relay_events_are_written_with_what_they_report(dsn: str, clock: ManualClock) -> None:
    store = await PostgresStore.open(dsn, clock=clock)
    try:
        made = await store.enqueue_message(
            message(callback_url="https://app.example/cb"), ["+15550001"]
        )
        (item,) = await store.lease(LINK, "w", 1, TTL)
        assert await store.complete(item, "M-1", 1000, "Success")
        await store.record_delivery_report(LINK, "M-1", "+15550001", MMStatus.RETRIEVED)
        await store.record_read_reply(LINK, "M-1", "+15550001", "Read")
        relay = MoRelay(hook="app", route="r", media="url", event={"type": "mo"}, sender_key="1")
        mo = await store.store_mo(NewMo(LINK, "t1", None, {"text": "hi"}, relay=relay))
        rows = await raw(
            dsn,
            "SELECT kind, idempotency_key, hook, callback_url, api_key, link, source_id,"
            " sender_key, event, status FROM relay_outbox ORDER BY id",
        )
    finally:
        await store.close()
    mid = made.message_id
    cb = "https://app.example/cb"
    assert [r[:8] for r in rows] == [
        ("status", f"status:{mid}:{item.recipient_id}:submitted", None, cb, "dev", LINK, mid,
         None),
        ("delivery_report", f"dlr:{LINK}:M-1:15550001:Retrieved", None, cb, "dev", LINK, mid,
         None),
        ("read_reply", f"rr:{LINK}:M-1:15550001:Read", None, cb, "dev", LINK, mid, None),
        ("mo", f"mo:{mo.mo_id}", "app", None, None, LINK, mo.mo_id, "1"),
    ]  # fmt: skip
    assert {r[9] for r in rows} == {"pending"}
    bodies = [json.loads(r[8]) for r in rows]
    assert [b.get("status") for b in bodies[:3]] == ["submitted", "delivered", "read"]
    assert bodies[3] == {"type": "mo", "id": mo.mo_id}


async def test_named_leases_change_hands_with_a_new_token(dsn: str, clock: ManualClock) -> None:
    a = await PostgresStore.open(dsn, clock=clock)
    b = await PostgresStore.open(dsn, clock=clock)
    try:
        ttl = timedelta(seconds=10)
        assert await a.claim("link:mmsc1", "a", ttl) == 1
        assert await b.claim("link:mmsc1", "b", ttl) is None  # held
        clock.advance(timedelta(seconds=5))
        assert await a.claim("link:mmsc1", "a", ttl) == 1  # renewed: same token
        clock.advance(timedelta(seconds=9))
        assert await b.claim("link:mmsc1", "b", ttl) is None  # renewal counted from then
        clock.advance(timedelta(seconds=1))
        assert await b.claim("link:mmsc1", "b", ttl) == 2  # expired: changes hands
        assert await a.claim("link:mmsc1", "a", ttl) is None
        await a.give_up("link:mmsc1", "a")  # not a's to give: nothing happens
        assert await a.claim("link:mmsc1", "a", ttl) is None
        await b.give_up("link:mmsc1", "b")
        assert await a.claim("link:mmsc1", "a", ttl) == 3  # at once, the token still grows
        assert await b.claim("housekeeping", "b", ttl) == 1  # names are independent
        # instances racing for a free lease: exactly one gets it
        clock.advance(timedelta(seconds=11))
        won = await asyncio.gather(
            *(s.claim("link:mmsc1", n, ttl) for s, n in ((a, "x"), (b, "y")))
        )
        assert sorted(won, key=lambda token: token is None) == [4, None]
    finally:
        await a.close()
        await b.close()


async def test_request_keys_are_seen_by_every_instance_until_they_expire(
    two: tuple[PostgresStore, PostgresStore], clock: ManualClock
) -> None:
    a, b = two
    assert not await b.seen_request("mmsc1:T1")
    await a.record_request("mmsc1:T1", timedelta(hours=24))
    assert await b.seen_request("mmsc1:T1")
    clock.advance(timedelta(hours=23))
    await b.record_request("mmsc1:T1", timedelta(hours=24))  # again: the expiry moves
    clock.advance(timedelta(hours=2))
    assert await a.seen_request("mmsc1:T1")
    clock.advance(timedelta(hours=23))
    assert not await a.seen_request("mmsc1:T1")


async def test_a_server_that_refuses_is_reported_and_recovered_from(
    dsn: str, clock: ManualClock
) -> None:
    store = await PostgresStore.open(dsn, clock=clock, probe_interval=0.0)
    database = dsn.rsplit("/", 1)[1]
    try:
        assert await store.writable() is None
        await raw(ADMIN_DSN, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await raw(
            ADMIN_DSN,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            database,
        )
        with pytest.raises(StoreUnavailableError, match="the store cannot commit"):
            await store.enqueue_message(message(), ["+15550001"])
        reason = await store.writable()
        assert reason is not None and reason.startswith("cannot commit:")
        assert "password" not in reason
        await raw(ADMIN_DSN, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        assert await store.writable() is None  # the probe commits again
        made = await store.enqueue_message(message(), ["+15550001"])
        assert made.created
    finally:
        await raw(ADMIN_DSN, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await store.close()


async def test_an_unreachable_server_is_refused_at_open_by_name() -> None:
    # a port nothing listens on (the server's port + 1 on loopback is free on the test machine;
    # if not, the error is another refusal, still named)
    with pytest.raises(
        StoreUnavailableError, match=r"postgresql://127\.0\.0\.1:1/x: cannot connect"
    ):
        await PostgresStore.open("postgresql://u:secret@127.0.0.1:1/x")


def test_without_the_driver_the_backend_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['asyncpg'] = None\n"
        "from mm7.service.errors import ConfigError\n"
        "try:\n"
        "    import mm7.service.store.postgres\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert "pip install 'mm7[postgresql]'" in out.stdout
    assert 'store.backend = "postgresql"' in out.stdout
