"""Duplicate detection: the in-memory store's bound and expiry, the keys, and the key locks.

(The endpoint's use of it, including "recorded only after the handler succeeded", is tested in
test_server.py against a real server.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from datetime import timedelta

import pytest

from mm7.core.model import DeliverReq, DeliveryReportReq, ReadReplyReq
from mm7.core.spec import OPERATION_BY_NAME
from mm7.core.status import MMStatus, ReadStatus
from mm7.core.versions import LATEST
from mm7.transport.dedupe import (
    DuplicateStore,
    KeyedLocks,
    MemoryDedupe,
    NoDedupe,
    any_seen,
    content_digest,
    dedupe_keys,
)
from tests.helpers.samples import full_message


class Clock:
    """A clock the test moves by hand (expiry without waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def message(op: str) -> object:
    return full_message(OPERATION_BY_NAME[op], LATEST)


async def test_memory_store_remembers_until_the_ttl() -> None:
    clock = Clock()
    store = MemoryDedupe(ttl=60, clock=clock)
    assert not await store.seen("k")
    await store.record("k")
    assert await store.seen("k")
    clock.now += 59.9
    assert await store.seen("k")
    clock.now += 0.2
    assert not await store.seen("k")
    assert len(store) == 0  # an expired key is dropped when looked at


async def test_memory_store_is_bounded_and_evicts_the_oldest() -> None:
    clock = Clock()
    store = MemoryDedupe(max_entries=3, clock=clock)
    for key in ("a", "b", "c"):
        await store.record(key)
        clock.now += 1
    await store.record("a")  # refreshed: now the newest
    await store.record("d")
    assert len(store) == 3
    assert [await store.seen(k) for k in "abcd"] == [True, False, True, True]


async def test_recording_drops_expired_keys() -> None:
    clock = Clock()
    store = MemoryDedupe(ttl=10, clock=clock)
    await store.record("old")
    clock.now += 11
    await store.record("new")
    assert len(store) == 1


def test_memory_store_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        MemoryDedupe(max_entries=0)
    with pytest.raises(ValueError):
        MemoryDedupe(ttl=0)


async def test_stores_satisfy_the_protocol() -> None:
    assert isinstance(MemoryDedupe(), DuplicateStore)
    none = NoDedupe()
    assert isinstance(none, DuplicateStore)
    await none.record("k")
    assert not await none.seen("k")


async def test_any_seen() -> None:
    store = MemoryDedupe()
    await store.record("b")
    assert await any_seen(store, ["a", "b"])
    assert not await any_seen(store, ["a", "c"])
    assert not await any_seen(store, [])


def test_a_deliver_is_keyed_by_transaction_id_sender_and_date() -> None:
    deliver = message("DeliverReq")
    assert isinstance(deliver, DeliverReq)
    (key,) = dedupe_keys("mmsc", deliver)
    assert deliver.transaction_id in key and "mmsc" in key
    assert dedupe_keys("mmsc", dataclasses.replace(deliver)) == (key,)  # a retry
    assert dedupe_keys("mmsc", dataclasses.replace(deliver, transaction_id="")) == ()
    assert dedupe_keys("other", deliver) != (key,)
    # a recycled TransactionID on another handset's message, or a later one: not a duplicate
    other = dataclasses.replace(deliver.sender, value="+15550199")
    assert dedupe_keys("mmsc", dataclasses.replace(deliver, sender=other)) != (key,)
    assert deliver.timestamp is not None
    later = dataclasses.replace(deliver, timestamp=deliver.timestamp + timedelta(minutes=5))
    assert dedupe_keys("mmsc", later) != (key,)


def test_reports_are_keyed_by_message_recipient_and_status() -> None:
    report = message("DeliveryReportReq")
    assert isinstance(report, DeliveryReportReq)
    (report_key,) = dedupe_keys("mmsc", report)
    retry = dataclasses.replace(report, transaction_id="new-tid")
    assert dedupe_keys("mmsc", retry) == (report_key,)  # same report, new TransactionID
    retrieved = dataclasses.replace(retry, mm_status=MMStatus.RETRIEVED)
    forwarded = dataclasses.replace(retry, mm_status=MMStatus.FORWARDED)
    assert dedupe_keys("mmsc", retrieved) != dedupe_keys("mmsc", forwarded)
    raw = dataclasses.replace(retry, mm_status_raw="Delivered")
    assert dedupe_keys("mmsc", raw) != (report_key,)
    other = dataclasses.replace(report, recipient=dataclasses.replace(report.recipient, value="+1"))
    assert dedupe_keys("mmsc", other) != (report_key,)
    # another report that recycles the TransactionID is not taken for this one
    recycled = dataclasses.replace(other, transaction_id=report.transaction_id)
    assert set(dedupe_keys("mmsc", recycled)).isdisjoint({report_key})


def test_read_replies_are_keyed_apart_from_reports() -> None:
    reply = message("ReadReplyReq")
    assert isinstance(reply, ReadReplyReq)
    (key,) = dedupe_keys("mmsc", reply)
    deleted = dataclasses.replace(reply, mm_status=ReadStatus.DELETED)
    assert dedupe_keys("mmsc", deleted) != (key,)
    assert dedupe_keys("mmsc", dataclasses.replace(reply, transaction_id="t2")) == (key,)


def test_other_requests_are_keyed_by_transaction_id() -> None:
    cancel = message("CancelReq")
    assert dedupe_keys("mmsc", cancel) == (f"mmsc\x1ftid\x1f{cancel.transaction_id}",)


async def test_keyed_locks_serialise_holders_of_a_shared_key_and_clean_up() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold(["a", "b"]):
            order.append("first in")
            first_in.set()
            await release.wait()
            order.append("first out")

    async def second() -> None:
        async with locks.hold(["b", "c"]):
            order.append("second in")

    t1 = asyncio.ensure_future(first())
    await first_in.wait()
    t2 = asyncio.ensure_future(second())
    while locks.users("b") < 2:
        await asyncio.sleep(0)
    assert order == ["first in"]  # second waits on the shared key "b"
    release.set()
    await asyncio.gather(t1, t2)
    assert order == ["first in", "first out", "second in"]
    assert len(locks) == 0 and locks.users("b") == 0


async def test_keyed_locks_release_on_error_and_allow_no_keys() -> None:
    locks = KeyedLocks()
    with pytest.raises(RuntimeError):
        async with locks.hold(["x"]):
            raise RuntimeError("boom")
    assert len(locks) == 0
    async with locks.hold([]):
        pass
    async with locks.hold(["x", "x"]):  # a repeated key is taken once
        assert locks.users("x") == 1


def test_content_digest_hands_out_each_leaf_digest_by_body() -> None:
    deliver = message("DeliverReq")
    assert isinstance(deliver, DeliverReq) and deliver.content is not None
    leaves: dict[int, bytes] = {}
    assert content_digest(deliver.content, leaves) == content_digest(deliver.content)
    assert dedupe_keys("mmsc", deliver, {}) == dedupe_keys("mmsc", deliver)
    bodies = [p.body for p in deliver.content.children] or [deliver.content.body]
    assert leaves and {id(b): hashlib.sha256(b).digest() for b in bodies} == leaves
