"""Delivery reports through the real inbound app into a real SQLite store, sent by the project's
client in the MMSC's role; status events relayed by the real relay worker to a small real
application on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mm7.core.model import Address, DeliveryReportReq, ReadReplyReq
from mm7.core.status import MMStatus, ReadStatus
from mm7.service.config.settings import RelaySettings
from mm7.service.mt.reports import DeliveryReports
from mm7.service.relay.signing import verify
from mm7.service.relay.worker import RelayWorker
from mm7.service.store.base import ManualClock
from mm7.service.store.records import NewMessage, RecipientStatus
from mm7.service.store.sqlite.store import SqliteStore
from mm7.transport.client import MM7Client
from mm7.transport.errors import MM7ClientError
from mm7.transport.link import LinkConfig, Secret
from mm7.transport.server import InboundConfig, Peer, create_inbound_app

Server = Callable[..., Awaitable[Any]]
LINK = "carrier"


@dataclass
class App:
    """The application's status hook: answers ``fail_first`` requests 503, then 200."""

    fail_first: int = 0
    hits: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/status", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append((dict(request.headers), await request.json()))
        if len(self.hits) <= self.fail_first:
            return web.Response(status=503)
        return web.Response(status=204)


API_SECRET = "app-key-secret"


@dataclass
class Rig:
    store: SqliteStore
    clock: ManualClock
    mmsc: MM7Client
    relay: RelayWorker
    hook: App
    hook_url: str

    async def submitted(self, mm7_id: str, *recipients: str, callback: bool = False) -> str:
        """A message whose recipients the MMSC accepted under MessageID ``mm7_id``."""
        result = await self.store.enqueue_message(
            NewMessage(
                link=LINK,
                fields={"subject": "hi", "api_key": "dev"},
                callback_url=self.hook_url if callback else None,
            ),
            list(recipients or ("+15551230001",)),
        )
        for item in await self.store.lease(LINK, "test", 10, timedelta(seconds=60)):
            assert await self.store.complete(item, mm7_id, 1000, "Success")
        return result.message_id

    async def report(
        self, mm7_id: str, status: MMStatus, recipient: str = "+15551230001", tid: str = ""
    ) -> int:
        req = DeliveryReportReq(
            transaction_id=tid,
            message_id=mm7_id,
            recipient=Address(recipient),
            sender=Address.guess("12345"),
            date=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
            mm_status=status,
        )
        return (await self.mmsc.send(req)).status.code

    async def relay_due(self) -> int:
        """One pass of the relay worker over what is due now; how many it sent."""
        count = await self.relay.run_once()
        await self.relay.idle()
        return count


@pytest.fixture
async def rig(aiohttp_server: Server, tmp_path: Path) -> AsyncIterator[Rig]:
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    store = await SqliteStore.open(tmp_path / "gw.db", clock=clock)
    hook = App()
    hook_server = await aiohttp_server(hook.app())
    relay = RelayWorker(
        store,
        RelaySettings(),
        api_key_secret={"dev": Secret(API_SECRET)}.get,
        allows_private=lambda name: True,  # the callback listens on 127.0.0.1
    )
    relay.sender.clock = clock
    reports = DeliveryReports(store, link_for_peer={"mmsc": LINK}.__getitem__, clock=clock)
    inbound = await aiohttp_server(
        create_inbound_app(InboundConfig(peers=(Peer("mmsc"),)), reports.handlers())
    )
    mmsc = MM7Client(LinkConfig(name="mmsc", url=str(inbound.make_url("/mm7"))))
    async with mmsc:
        yield Rig(store, clock, mmsc, relay, hook, str(hook_server.make_url("/status")))
        await relay.stop()
    await store.close()


async def test_forwarded_then_final_are_both_recorded(rig: Rig) -> None:
    mid = await rig.submitted("mm7-1")
    assert await rig.report("mm7-1", MMStatus.FORWARDED) == 1000
    record = await rig.store.get_message(mid)
    assert record is not None and record.recipients[0].status is RecipientStatus.SUBMITTED
    assert await rig.report("mm7-1", MMStatus.RETRIEVED) == 1000
    record = await rig.store.get_message(mid)
    assert record is not None and record.recipients[0].status is RecipientStatus.DELIVERED
    reports = await rig.store.delivery_reports(message_id=mid)
    assert [r.mm_status for r in reports] == [MMStatus.FORWARDED, MMStatus.RETRIEVED]
    assert all(r.link == LINK and r.recipient_id == record.recipients[0].id for r in reports)
    assert reports[0].raw and "DeliveryReportReq" in reports[0].raw


async def test_reports_correlate_by_recipient_within_one_message_id(rig: Rig) -> None:
    mid = await rig.submitted("mm7-2", "+15551230001", "+15551230002")
    # the MMSC spells the number without '+' and with a /TYPE suffix
    assert await rig.report("mm7-2", MMStatus.REJECTED, "15551230002/TYPE=PLMN") == 1000
    record = await rig.store.get_message(mid)
    assert record is not None
    assert [r.status for r in record.recipients] == [
        RecipientStatus.SUBMITTED,
        RecipientStatus.UNDELIVERED,
    ]


async def test_unknown_message_id_is_answered_1000_and_kept(rig: Rig) -> None:
    assert await rig.report("never-sent", MMStatus.RETRIEVED) == 1000
    (kept,) = await rig.store.delivery_reports(unknown_only=True)
    assert kept.mm7_message_id == "never-sent" and kept.message_id is None
    assert kept.link == LINK


async def test_duplicate_report_is_answered_1000_and_recorded_once(rig: Rig) -> None:
    mid = await rig.submitted("mm7-3")
    assert await rig.report("mm7-3", MMStatus.RETRIEVED, tid="dlr-1") == 1000
    assert await rig.report("mm7-3", MMStatus.RETRIEVED, tid="dlr-1") == 1000
    assert len(await rig.store.delivery_reports(message_id=mid)) == 1


async def test_store_outage_is_answered_4006_so_the_mmsc_retries(rig: Rig) -> None:
    await rig.submitted("mm7-4")
    await rig.store.close()
    with pytest.raises(MM7ClientError) as info:
        await rig.report("mm7-4", MMStatus.RETRIEVED)
    assert info.value.code == 4006 and info.value.transient


async def test_read_reply_is_answered_1000(rig: Rig) -> None:
    req = ReadReplyReq(
        message_id="mm7-5",
        recipient=Address("+15551230001"),
        sender=Address.guess("12345"),
        timestamp=datetime(2026, 3, 1, tzinfo=UTC),
        mm_status=ReadStatus.READ,
    )
    assert (await rig.mmsc.send(req)).status.code == 1000


async def test_report_is_relayed_to_the_callback_url_signed_and_retried(rig: Rig) -> None:
    rig.hook.fail_first = 1
    mid = await rig.submitted("mm7-6", callback=True)
    assert await rig.relay_due() == 1  # the "submitted" status event
    assert await rig.report("mm7-6", MMStatus.RETRIEVED) == 1000
    assert await rig.relay_due() == 1
    assert len(rig.hook.hits) == 2  # the submitted event got the 503
    rig.clock.advance(timedelta(hours=1))
    assert await rig.relay_due() == 1  # retried from the store, not from memory
    assert await rig.relay_due() == 0
    assert len(rig.hook.hits) == 3
    kinds = [body["type"] for _, body in rig.hook.hits]
    assert sorted(set(kinds)) == ["delivery_report", "status"]
    headers, body = next(h for h in rig.hook.hits if h[1]["type"] == "delivery_report")
    assert body["message_id"] == mid and body["status"] == "delivered"
    assert body["mm_status"] == "Retrieved" and body["mm7_message_id"] == "mm7-6"
    assert body["recipient"] == "+15551230001"
    assert headers["Idempotency-Key"] == f"dlr:{LINK}:mm7-6:15551230001:Retrieved"
    submitted = [h for h in rig.hook.hits if h[1]["type"] == "status"]
    assert len(submitted) == 2
    assert submitted[0][0]["Idempotency-Key"] == submitted[1][0]["Idempotency-Key"]
    # the retry was signed anew at its own time, with the API key's secret
    headers, body = submitted[1]
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    now = rig.clock.now().timestamp()
    assert verify(API_SECRET.encode(), headers["X-MM7-Signature"], raw, now=now)
    assert not verify(b"another key", headers["X-MM7-Signature"], raw, now=now)


async def test_a_duplicate_report_is_relayed_once(rig: Rig) -> None:
    await rig.submitted("mm7-8", callback=True)
    assert await rig.report("mm7-8", MMStatus.RETRIEVED, tid="t1") == 1000
    assert await rig.report("mm7-8", MMStatus.RETRIEVED, tid="t2") == 1000  # an MMSC retry
    while await rig.relay_due():
        pass
    reports = [b for _, b in rig.hook.hits if b["type"] == "delivery_report"]
    assert len(reports) == 1


async def test_reports_without_a_callback_queue_nothing(rig: Rig) -> None:
    await rig.submitted("mm7-9")
    assert await rig.report("mm7-9", MMStatus.RETRIEVED) == 1000
    assert await rig.relay_due() == 0 and rig.hook.hits == []
