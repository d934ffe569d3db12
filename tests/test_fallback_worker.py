"""The fallback worker against a real store (SQLite) and a sendsms gateway on loopback: a worker
stopped mid-send leaves its row ``sending``; the next worker fails it as outcome unknown and
sends nothing (never twice); a row whose SMS link is not configured fails, named; a submitted
SMS whose receipt never comes expires after ``receipt_timeout`` (0: never), only where the
``fallback`` lease is held."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mm7.service.config.settings import FallbackSettings
from mm7.service.fallback.rules import OUTCOME_UNKNOWN
from mm7.service.fallback.worker import FallbackWorker
from mm7.service.hosting.links import HostedLinks
from mm7.service.sms import HttpSmsSettings
from mm7.service.sms.http import HttpSmsLink
from mm7.service.store import ManualClock, NewMessage, SqliteStore
from mm7.service.store.records import FallbackStatus
from tests.helpers.sendsms import SendSms, Server

HOSTING = HostedLinks(b"k" * 32, "http://gw.example", 86400.0)
TTL = timedelta(seconds=30)


async def failed_recipient(store: SqliteStore, sms_link: str = "sms1") -> str:
    fields: dict[str, Any] = {"text": "Hello", "fallback": {"sms_link": sms_link, "text_max": 160}}
    result = await store.enqueue_message(NewMessage(link="l", fields=fields), ["+15550001"])
    (item,) = await store.lease("l", "d", 1, TTL)
    assert await store.fail(item, 4004, "refused")
    return result.message_id


async def link_to(sms: SendSms) -> HttpSmsLink:
    return HttpSmsLink(HttpSmsSettings(name="sms1", url=sms.url, timeout=60.0))


async def test_a_stop_mid_send_is_never_sent_again(
    store: SqliteStore, clock: ManualClock, aiohttp_server: Server
) -> None:
    message_id = await failed_recipient(store)
    hanging = await SendSms(hang=True).start(aiohttp_server)
    first_link = await link_to(hanging)
    first = FallbackWorker(store, {"sms1": first_link}, HOSTING, owner="w1", lease_ttl=TTL,
                           send_ttl=TTL)  # fmt: skip
    await first_link.start(first.on_receipt)
    assert await first.run_once() == 1
    (sent,) = await hanging.wait(1)
    assert sent["to"] == "+15550001" and sent["text"].startswith("Hello http://gw.example/m/")
    await first.stop(grace=0)  # the send is on the wire, its answer never comes
    await first_link.close()
    (row,) = await store.fallback_sms(message_id)
    assert row.status is FallbackStatus.SENDING

    clock.advance(TTL + timedelta(seconds=1))
    answering = await SendSms().start(aiohttp_server)
    second_link = await link_to(answering)
    second = FallbackWorker(store, {"sms1": second_link}, HOSTING, owner="w2")
    await second_link.start(second.on_receipt)
    try:
        assert await second.run_once() == 0
    finally:
        await second_link.close()
    (row,) = await store.fallback_sms(message_id)
    assert (row.status, row.error) == (FallbackStatus.FAILED, OUTCOME_UNKNOWN)
    assert answering.sent == [] and len(hanging.sent) == 1


async def test_an_sms_link_no_longer_configured_fails_the_row_by_name(store: SqliteStore) -> None:
    message_id = await failed_recipient(store, sms_link="gone")
    worker = FallbackWorker(store, {}, HOSTING)
    assert await worker.run_once() == 1
    await worker.idle()
    (row,) = await store.fallback_sms(message_id)
    assert row.status is FallbackStatus.FAILED and "'gone'" in (row.error or "")


async def test_an_sms_whose_receipt_never_comes_expires_after_receipt_timeout(
    store: SqliteStore, clock: ManualClock, aiohttp_server: Server
) -> None:
    """The sendsms gateway takes the SMS and never reports it: the row stays ``submitted``
    until ``receipt_timeout`` after its ``submitted`` commit, then the worker's loop expires
    it at its next look (once a minute at most), counted, and wakes the relay for its event."""
    message_id = await failed_recipient(store)
    sms = await SendSms().start(aiohttp_server)
    link = await link_to(sms)
    woken: list[int] = []
    settings = FallbackSettings(receipt_timeout=3600.0)
    worker = FallbackWorker(store, {"sms1": link}, HOSTING, settings, clock=clock,
                            wake_relay=lambda: woken.append(1))  # fmt: skip
    await link.start(worker.on_receipt)
    try:
        assert await worker.run_once() == 1
        await worker.idle()
        (row,) = await store.fallback_sms(message_id)
        assert row.status is FallbackStatus.SUBMITTED
        clock.advance(timedelta(seconds=3599))
        assert await worker.run_once() == 0  # not yet: its next look is a minute later
        woken.clear()
        clock.advance(timedelta(seconds=59))
        assert await worker.run_once() == 0  # due, but the worker looks once a minute
        clock.advance(timedelta(seconds=2))
        assert await worker.run_once() == 1
        assert await worker.run_once() == 0
    finally:
        await link.close()
    (row,) = await store.fallback_sms(message_id)
    assert row.status is FallbackStatus.EXPIRED
    assert row.error == "no delivery receipt within receipt_timeout (3600s)"
    assert worker.counts["expired"] == 1 and woken == [1]
    assert len(sms.sent) == 1  # expired, never sent again


async def test_receipt_timeout_0_leaves_it_submitted(
    store: SqliteStore, clock: ManualClock, aiohttp_server: Server
) -> None:
    message_id = await failed_recipient(store)
    sms = await SendSms().start(aiohttp_server)
    link = await link_to(sms)
    worker = FallbackWorker(
        store, {"sms1": link}, HOSTING, FallbackSettings(receipt_timeout=0), clock=clock
    )
    await link.start(worker.on_receipt)
    try:
        assert await worker.run_once() == 1
        await worker.idle()
        clock.advance(timedelta(days=365))
        assert await worker.run_once() == 0
    finally:
        await link.close()
    (row,) = await store.fallback_sms(message_id)
    assert row.status is FallbackStatus.SUBMITTED and "expired" not in worker.counts


async def test_the_expiry_waits_for_the_fallback_lease(
    store: SqliteStore, clock: ManualClock
) -> None:
    """An instance that does not hold the ``fallback`` named lease expires nothing."""
    message_id = await failed_recipient(store)
    (lease,) = await store.lease_fallback("fw", 1, TTL)
    assert await store.fallback_sending(lease, TTL)
    assert await store.fallback_submitted(lease, "sms-1")
    clock.advance(timedelta(days=3))
    held = False
    worker = FallbackWorker(store, {}, HOSTING, clock=clock, may_lease=lambda: held)
    assert await worker.run_once() == 0
    assert (await store.fallback_sms(message_id))[0].status is FallbackStatus.SUBMITTED
    held = True
    assert await worker.run_once() == 1
    assert (await store.fallback_sms(message_id))[0].status is FallbackStatus.EXPIRED
