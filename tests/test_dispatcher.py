"""The per-link dispatcher against the real MMSC simulator (strict persona, reports on), on real
SQLite files: messages enqueued in the store are submitted, retried, failed, expired; the
simulator's delivery reports come back through the inbound app and are correlated.

Nothing here is timed: the store runs on a ManualClock that the tests move, the dispatcher is
woken explicitly, the TPS test runs the link's token bucket and the simulator's TPS window on one
virtual clock, and every wait is for a condition (with a generous guard).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from mm7.content.builder import build_presentation, from_part
from mm7.content.parts import make_items, text_source
from mm7.content.profile import load_profile
from mm7.core.codec import decode, encode
from mm7.core.model import Address, Priority, Recipients, Request, SubmitReq, SubmitRsp, reply_to
from mm7.core.status import MMStatus
from mm7.service.backoff import backoff_delay
from mm7.service.config.settings import LinkSettings, RelaySettings, RetrySettings, SenderRates
from mm7.service.errors import BuildError
from mm7.service.mt.dispatcher import Dispatcher
from mm7.service.mt.reports import DeliveryReports
from mm7.service.mt.submit_build import read_fields
from mm7.service.relay.worker import RelayWorker
from mm7.service.store.base import ManualClock
from mm7.service.store.records import (
    MediaPart,
    MessageRecord,
    MessageStatus,
    NewMessage,
    RecipientStatus,
)
from mm7.service.store.sqlite.store import SqliteStore
from mm7.simulator.app import SIMULATOR, Simulator, SimulatorConfig, create_simulator_app
from mm7.simulator.dlr import DlrPlan, RetryPolicy
from mm7.simulator.personas import load_persona
from mm7.transport.client import MM7Client
from mm7.transport.errors import MM7ClientError
from mm7.transport.link import LinkConfig, Secret
from mm7.transport.server import InboundConfig, Peer, create_inbound_app

Server = Callable[..., Awaitable[Any]]
LINK = "sim"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


class MaxJitter(random.Random):
    """Jitter that always takes the whole backoff (the retry time is then known)."""

    def uniform(self, a: float, b: float) -> float:
        return b


class VirtualTime:
    """One clock for the link's token bucket and the simulator's TPS window: sleeping moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += max(0.0, delay)
        await asyncio.sleep(0)


async def until(predicate: Callable[[], Awaitable[bool]], guard: float = 20.0) -> None:
    """Wait for a condition (the guard only stops a broken test from hanging)."""
    async with asyncio.timeout(guard):
        while not await predicate():
            await asyncio.sleep(0.005)


@dataclass
class BlackHole:
    """An MMSC that takes requests and never answers (until ``gate`` is set)."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[Request] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/mm7", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        message = decode(body, request.headers.get("Content-Type")).message
        assert isinstance(message, Request)
        self.requests.append(message)
        await self.gate.wait()
        return web.Response(status=503)


@dataclass
class Rig:
    store: SqliteStore
    clock: ManualClock
    sim: Simulator
    sim_url: str
    reports: DeliveryReports
    server: Server
    dispatchers: list[Dispatcher] = field(default_factory=list)
    holes: list[BlackHole] = field(default_factory=list)

    def settings(
        self, url: str | None = None, retry: RetrySettings | None = None, **link: Any
    ) -> LinkSettings:
        return LinkSettings(
            name=LINK,
            link=LinkConfig(name=LINK, url=url or self.sim_url, **link),
            vasp_id="vasp",
            vas_id="vas",
            sender_address="12345",
            retry=retry or RetrySettings(initial_backoff=10.0, max_backoff=60.0, max_age=3600.0),
        )

    async def dispatcher(
        self, settings: LinkSettings | None = None, *, start: bool = True, **kw: Any
    ) -> Dispatcher:
        kw.setdefault("rng", MaxJitter())
        kw.setdefault("poll_interval", 0.05)
        d = Dispatcher(self.store, settings or self.settings(), clock=self.clock, **kw)
        self.dispatchers.append(d)
        if start:
            await d.start()
        return d

    async def black_hole(self) -> str:
        hole = BlackHole()
        self.holes.append(hole)
        server = await self.server(hole.app())
        return str(server.make_url("/mm7"))

    async def enqueue(
        self,
        *recipients: str,
        fields: dict[str, Any] | None = None,
        parts: tuple[MediaPart, ...] = (),
        **kw: Any,
    ) -> str:
        result = await self.store.enqueue_message(
            NewMessage(
                link=LINK,
                fields=fields if fields is not None else {"subject": "hi", "text": "Hello"},
                **kw,
            ),
            list(recipients or ("+15551230001",)),
            parts,
        )
        return result.message_id

    async def message(self, message_id: str) -> MessageRecord:
        record = await self.store.get_message(message_id)
        assert record is not None
        return record

    async def status(self, message_id: str, index: int = 0) -> RecipientStatus:
        return (await self.message(message_id)).recipients[index].status

    async def wait_status(self, message_id: str, *wanted: RecipientStatus) -> MessageRecord:
        async def reached() -> bool:
            return await self.status(message_id) in wanted

        await until(reached)
        return await self.message(message_id)

    def submits(self) -> list[Any]:
        """The SubmitReqs the simulator answered, in order."""
        return [
            e
            for e in self.sim.store.exchanges
            if e.direction == "in" and e.operation == "SubmitReq"
        ]


@pytest.fixture
async def rig(aiohttp_server: Server, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Rig] = []

    async def make(**sim: Any) -> Rig:
        clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
        store = await SqliteStore.open(tmp_path / "gw.db", clock=clock)
        reports = DeliveryReports(store, link_for_peer=lambda peer: LINK, clock=clock)
        inbound = await aiohttp_server(
            create_inbound_app(InboundConfig(peers=(Peer("sim"),)), reports.handlers())
        )
        sim.setdefault("dlr", DlrPlan(delay=0.0, final_delay=0.0))
        config = SimulatorConfig(
            persona=load_persona("strict-3gpp"),
            vasp_url=str(inbound.make_url("/mm7")),
            retry=RetryPolicy(max_attempts=3, backoff=0.0, timeout=5.0),
            seed=7,
            **sim,
        )
        app = create_simulator_app(config)
        server = await aiohttp_server(app)
        r = Rig(store, clock, app[SIMULATOR], str(server.make_url("/mm7")), reports, aiohttp_server)
        made.append(r)
        return r

    yield make
    for r in made:
        for hole in r.holes:
            hole.gate.set()
        for d in r.dispatchers:
            await d.stop(grace=5.0)
        await r.sim.dlr.idle()
        await r.store.close()


Make = Callable[..., Awaitable[Rig]]


# ---------------------------------------------------------------- the whole MT path


async def test_enqueued_message_is_submitted_and_its_report_correlated(rig: Make) -> None:
    r = await rig()
    mid = await r.enqueue(
        "+15551230001",
        fields={"from": "12345", "subject": "photo", "text": "Hello", "delivery_report": True},
        parts=(MediaPart("image/png", data=png(), content_id="<img>"),),
    )
    await r.dispatcher()
    record = await r.wait_status(mid, RecipientStatus.DELIVERED)
    recipient = record.recipients[0]
    assert recipient.mm7_message_id and recipient.mm7_message_id.startswith("sim-")
    assert record.status is MessageStatus.DELIVERED
    # what the simulator got: one SubmitReq with the recipient's stable TransactionID
    (exchange,) = r.submits()
    assert exchange.status_code == 1000 and exchange.message_id == recipient.mm7_message_id
    assert exchange.transaction_id == recipient.transaction_id
    submitted = r.sim.submitted[recipient.mm7_message_id]
    assert [a.value for a in submitted.recipients.to] == ["+15551230001"]
    assert submitted.vasp_id == "vasp" and submitted.subject == "photo"
    assert submitted.content is not None and submitted.content.is_multipart
    types = [c.content_type.mime_type for c in submitted.content.children]
    assert types == ["application/smil", "image/png", "text/plain"]
    # the report came back through the inbound app and was correlated
    (report,) = await r.store.delivery_reports(message_id=mid)
    assert report.mm_status is MMStatus.RETRIEVED
    assert report.mm7_message_id == recipient.mm7_message_id
    assert report.recipient_id == recipient.id
    kinds = [e.kind for e in record.events]
    assert kinds.index("submitted") < kinds.index("delivery_report")


async def test_several_recipients_one_request_each(rig: Make) -> None:
    r = await rig()
    mid = await r.enqueue("+15551230001", "+15551230002", "+15551230003")
    await r.dispatcher(r.settings(max_recipients=2))

    async def all_submitted() -> bool:
        m = await r.message(mid)
        return all(x.status is RecipientStatus.SUBMITTED for x in m.recipients)

    await until(all_submitted)
    record = await r.message(mid)
    exchanges = r.submits()
    assert sorted(e.transaction_id for e in exchanges) == sorted(
        x.transaction_id for x in record.recipients
    )
    for x in record.recipients:
        assert [a.value for a in r.sim.submitted[x.mm7_message_id or ""].recipients.to] == [
            x.address
        ]


# ---------------------------------------------------------------- faults


async def test_transient_4006_is_retried_after_the_backoff_then_accepted(rig: Make) -> None:
    r = await rig()
    r.sim.faults.configure({"once": [{"kind": "status", "code": 4006}]})
    mid = await r.enqueue()
    d = await r.dispatcher()

    async def retried() -> bool:
        return any(e.kind == "retry" for e in (await r.message(mid)).events)

    await until(retried)
    record = await r.message(mid)
    recipient = record.recipients[0]
    assert recipient.status is RecipientStatus.QUEUED and recipient.last_status_code == 4006
    # first attempt: full jitter over initial_backoff (10 s), MaxJitter takes all of it
    assert recipient.next_attempt_at == r.clock.now() + timedelta(seconds=10)
    assert len(r.submits()) == 1
    d.wake()  # not due yet: nothing is sent
    r.clock.advance(timedelta(seconds=10))
    d.wake()
    record = await r.wait_status(mid, RecipientStatus.SUBMITTED)
    first, second = r.submits()
    assert (first.status_code, second.status_code) == (4006, 1000)
    assert first.transaction_id == second.transaction_id == record.recipients[0].transaction_id
    assert record.recipients[0].attempts == 2
    assert d.counts["retry"] == 1 and d.counts["submitted"] == 1


async def test_permanent_2002_fails_and_is_not_retried(rig: Make) -> None:
    r = await rig()
    r.sim.faults.configure({"once": [{"kind": "status", "code": 2002, "details": "no such"}]})
    mid = await r.enqueue()
    d = await r.dispatcher()
    record = await r.wait_status(mid, RecipientStatus.FAILED)
    recipient = record.recipients[0]
    assert recipient.last_status_code == 2002
    assert record.status is MessageStatus.FAILED
    failed = [e for e in record.events if e.kind == "failed"]
    assert failed and failed[0].details["details"] == "no such"
    r.clock.advance(timedelta(days=1))
    d.wake()
    assert await r.store.queue_depth(LINK) == 0
    assert await r.store.lease(LINK, "probe", 10, timedelta(seconds=60)) == []
    assert len(r.submits()) == 1


async def test_tps_limit_is_never_exceeded_at_the_simulator(rig: Make) -> None:
    vt = VirtualTime()
    r = await rig(clock=vt, faults={"tps": 5})
    count = 12
    mids = [await r.enqueue(f"+1555123{i:04d}") for i in range(count)]
    settings = r.settings(tps=5, burst=1, max_in_flight=1)
    client = MM7Client(settings.link, clock=vt, sleep=vt.sleep)
    async with client:
        d = await r.dispatcher(settings, client=client, concurrency=4)

        async def all_submitted() -> bool:
            states = [await r.status(m) for m in mids]
            return all(s is RecipientStatus.SUBMITTED for s in states)

        started = vt.now
        await until(all_submitted)
        await d.stop()
        # counted at the simulator: every request accepted at once, none over its TPS window
        codes = [e.status_code for e in r.submits()]
        assert codes == [1000] * count
        assert vt.now - started >= (count - 1) / 5
        # the simulator's limit was live: a burst without the link's bucket is refused
        unlimited = MM7Client(LinkConfig(name="raw", url=r.sim_url))
        async with unlimited:
            burst = await asyncio.gather(
                *(unlimited.submit(_raw_submit(f"+1555999{i:04d}")) for i in range(8)),
                return_exceptions=True,
            )
        refused = [x for x in burst if isinstance(x, MM7ClientError) and x.code == 4006]
        assert refused


def _raw_submit(number: str) -> SubmitReq:
    return SubmitReq(
        vasp_id="vasp",
        vas_id="vas",
        sender_address=Address.guess("12345"),
        recipients=Recipients(to=(Address(number),)),
        subject="burst",
    )


# ---------------------------------------------------------------- leases, shutdown, schedule


async def test_killed_dispatcher_leaves_its_lease_to_expire_and_another_completes(
    rig: Make,
) -> None:
    r = await rig()
    mid = await r.enqueue()
    hole_url = await r.black_hole()
    a = await r.dispatcher(r.settings(url=hole_url), owner="worker-a")

    async def in_flight() -> bool:
        return len(r.holes[0].requests) == 1

    await until(in_flight)
    assert a.task is not None and a.client is not None
    a.task.cancel()  # a crash: no release
    await asyncio.gather(a.task, return_exceptions=True)
    await a.client.close()
    r.dispatchers.remove(a)
    record = await r.message(mid)
    assert record.recipients[0].status is RecipientStatus.QUEUED
    assert record.recipients[0].attempts == 1
    # the lease still holds: nobody else gets the item
    assert await r.store.lease(LINK, "probe", 1, timedelta(seconds=60)) == []

    b = await r.dispatcher(owner="worker-b")
    r.clock.advance(a.lease_ttl + timedelta(seconds=1))
    b.wake()
    record = await r.wait_status(mid, RecipientStatus.SUBMITTED, RecipientStatus.DELIVERED)
    expired = [e for e in record.events if e.kind == "lease_expired"]
    assert expired and expired[0].details["previous_owner"] == "worker-a"
    assert expired[0].details["new_owner"] == "worker-b"
    # at-least-once with the same key: both attempts carried the recipient's TransactionID
    (exchange,) = r.submits()
    tid = record.recipients[0].transaction_id
    assert r.holes[0].requests[0].transaction_id == exchange.transaction_id == tid
    assert record.recipients[0].attempts == 2


async def test_graceful_stop_releases_in_flight_items_and_concurrency_is_bounded(
    rig: Make,
) -> None:
    r = await rig()
    mids = [await r.enqueue(f"+155512300{i}") for i in range(5)]
    hole_url = await r.black_hole()
    d = await r.dispatcher(r.settings(url=hole_url), concurrency=2)

    async def two_in_flight() -> bool:
        return len(r.holes[0].requests) == 2

    await until(two_in_flight)
    assert d.in_flight == 2
    # the other three are still due and unleased: the loop leases only what it can run
    probe = await r.store.lease(LINK, "probe", 10, timedelta(seconds=60))
    assert len(probe) == 3
    for item in probe:
        assert await r.store.release(item)
    await d.stop(grace=0)
    assert d.client is None and d.in_flight == 0 and d.counts["released"] == 2
    for mid in mids:
        recipient = (await r.message(mid)).recipients[0]
        assert recipient.status is RecipientStatus.QUEUED and recipient.attempts == 0
    again = await r.store.lease(LINK, "probe", 10, timedelta(seconds=60))
    assert len(again) == 5


async def test_graceful_stop_releases_items_leased_but_not_yet_started(rig: Make) -> None:
    """Items leased and waiting for their sender's turn (held, not sending yet) and one on the
    wire: a graceful stop gives all of them back due at once, so another dispatcher leases them
    without waiting for the lease TTL."""
    r = await rig()
    hole_url = await r.black_hole()
    mids = [await r.enqueue(f"+1201555010{i}") for i in range(2)]
    settings = dataclasses.replace(
        r.settings(url=hole_url), sender_tps=SenderRates(rates=(("12345", 1.0),))
    )
    d = await r.dispatcher(settings, concurrency=4, sender_hold=60.0)

    async def one_sending_one_held() -> bool:
        return len(r.holes[0].requests) == 1 and d.held == 1

    await until(one_sending_one_held)
    assert await r.store.lease(LINK, "probe", 10, timedelta(seconds=60)) == []  # both leased
    await d.stop(grace=0)
    assert d.counts["released"] == 2 and d.in_flight == 0 and d.held == 0
    # due again at once: the lease TTL has not passed (the clock has not moved)
    again = await r.store.lease(LINK, "other", 10, timedelta(seconds=60))
    assert sorted(item.message_id for item in again) == sorted(mids)
    assert all(item.attempts == 1 for item in again)  # the released attempt was not counted


async def test_scheduled_message_is_not_sent_before_its_time(rig: Make) -> None:
    r = await rig()
    later = await r.enqueue("+15551230001", not_before=r.clock.now() + timedelta(minutes=5))
    now = await r.enqueue("+15551230002")
    d = await r.dispatcher()
    await r.wait_status(now, RecipientStatus.SUBMITTED, RecipientStatus.DELIVERED)
    scheduled = (await r.message(later)).recipients[0]
    assert scheduled.status is RecipientStatus.QUEUED and scheduled.attempts == 0
    assert len(r.submits()) == 1
    r.clock.advance(timedelta(minutes=5))
    d.wake()
    await r.wait_status(later, RecipientStatus.SUBMITTED, RecipientStatus.DELIVERED)
    assert len(r.submits()) == 2


# ---------------------------------------------------------------- expiry


async def test_message_expired_before_it_is_leased_is_never_sent(rig: Make) -> None:
    r = await rig()
    mid = await r.enqueue(expires_at=r.clock.now() + timedelta(seconds=30))
    r.clock.advance(timedelta(seconds=31))
    await r.dispatcher()
    record = await r.wait_status(mid, RecipientStatus.EXPIRED)
    assert record.recipients[0].attempts == 0
    assert r.submits() == []


async def test_transient_failure_past_the_expiry_expires_the_recipient(rig: Make) -> None:
    r = await rig()
    r.sim.faults.configure({"once": [{"kind": "status", "code": 4006}]})
    mid = await r.enqueue(expires_at=r.clock.now() + timedelta(seconds=5))
    d = await r.dispatcher()  # the retry would be 10 s later: past the expiry
    record = await r.wait_status(mid, RecipientStatus.EXPIRED)
    assert record.recipients[0].last_status_code == 4006
    assert d.counts["expired"] == 1 and len(r.submits()) == 1


async def test_transient_failures_stop_at_the_links_max_age(rig: Make) -> None:
    r = await rig()
    r.sim.faults.configure({"rates": [{"kind": "status", "code": 4006, "rate": 1.0}]})
    mid = await r.enqueue()
    retry = RetrySettings(initial_backoff=10.0, max_backoff=10.0, max_age=25.0)
    d = await r.dispatcher(r.settings(retry=retry))
    for attempt in (1, 2):

        async def retried(n: int = attempt) -> bool:
            return sum(e.kind == "retry" for e in (await r.message(mid)).events) == n

        await until(retried)
        r.clock.advance(timedelta(seconds=10))
        d.wake()
    # third failure at +20 s: its retry at +30 s is past max_age (25 s)
    record = await r.wait_status(mid, RecipientStatus.EXPIRED)
    assert len(r.submits()) == 3
    expired = [e for e in record.events if e.kind == "expired"]
    assert expired and expired[0].details["max_age_s"] == 25.0


# ---------------------------------------------------------------- content


async def test_bad_fields_fail_permanently_without_a_request(rig: Make) -> None:
    r = await rig()
    mid = await r.enqueue(fields={"subject": "x", "priority": "urgent"})
    await r.dispatcher()
    record = await r.wait_status(mid, RecipientStatus.FAILED)
    assert "priority" in (record.recipients[0].last_status_text or "")
    assert r.submits() == []
    with pytest.raises(BuildError, match="fields.delivery_report"):
        read_fields({"delivery_report": "yes"})


def test_backoff_is_exponential_with_full_jitter() -> None:
    top = MaxJitter()
    assert [backoff_delay(n, 1.0, 300.0, top) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_delay(20, 1.0, 300.0, top) == 300.0
    rng = random.Random(3)
    samples = [backoff_delay(3, 1.0, 300.0, rng) for _ in range(200)]
    assert all(0.0 <= s <= 4.0 for s in samples) and min(samples) < 1.0 < max(samples)


def test_encode_of_a_built_request_is_valid() -> None:
    # the TransactionID format the store gives (<message_id>.<index>) is a valid NMTOKEN
    req = dataclasses.replace(_raw_submit("+15551230001"), transaction_id="01JABCDEF.0")
    encoded = encode(req)
    assert decode(encoded.body, encoded.content_type).message.transaction_id == "01JABCDEF.0"


async def test_content_is_fitted_to_the_links_profile(rig: Make) -> None:
    r = await rig()
    big = io.BytesIO()
    Image.new("RGB", (2000, 1500), (20, 120, 220)).save(big, "PNG")
    mid = await r.enqueue(parts=(MediaPart("image/png", data=big.getvalue()),))
    settings = dataclasses.replace(r.settings(), profile=load_profile("mms-300k"))
    await r.dispatcher(settings)
    record = await r.wait_status(mid, RecipientStatus.SUBMITTED, RecipientStatus.DELIVERED)
    submitted = r.sim.submitted[record.recipients[0].mm7_message_id or ""]
    assert submitted.content is not None
    (image,) = [
        c for c in submitted.content.children if c.content_type.mime_type.startswith("image/")
    ]
    with Image.open(io.BytesIO(image.body)) as shown:
        assert shown.width <= 1600 and shown.height <= 1200
    (event,) = [e for e in record.events if e.kind == "submitted"]
    assert any("resize" in line for line in event.details["fitted"])


async def test_messages_with_the_same_content_share_one_build(rig: Make) -> None:
    # one request per recipient (a campaign sent message by message): the content is read from
    # the store and built once for all the messages that have the same parts and text
    r = await rig()
    reads: list[tuple[str, ...]] = []
    read_media = r.store.get_media_many

    async def counted(hashes: Any) -> Any:
        reads.append(tuple(hashes))
        return await read_media(hashes)

    r.store.get_media_many = counted  # type: ignore[method-assign]
    image = (MediaPart("image/png", data=png(), content_id="<img>"),)
    texts = ["Hello", "Hello", "Other", "Hello"]
    mids = [
        await r.enqueue(f"+1555123000{n}", fields={"text": text}, parts=image)
        for n, text in enumerate(texts)
    ]
    await r.dispatcher()
    sent = []
    for mid in mids:
        record = await r.wait_status(mid, RecipientStatus.SUBMITTED, RecipientStatus.DELIVERED)
        submitted = r.sim.submitted[record.recipients[0].mm7_message_id or ""]
        assert submitted.content is not None
        (text,) = [
            c for c in submitted.content.children if c.content_type.mime_type == "text/plain"
        ]
        sent.append(text.body.decode())
    assert sent == texts
    assert len(reads) == 2  # "Hello" once, "Other" once


async def test_status_changes_are_relayed_to_the_callback_url(rig: Make) -> None:
    r = await rig()
    hits: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/status", hook)
    server = await r.server(app)
    relay = RelayWorker(
        r.store,
        RelaySettings(),
        api_key_secret={"dev": Secret("k")}.get,
        allows_private=lambda name: True,  # the callback listens on 127.0.0.1
        poll_interval=0.05,
    )
    await relay.start()
    r.reports.wake_relay = relay.wake
    mid = await r.enqueue(
        fields={"text": "hi", "delivery_report": True, "api_key": "dev"},
        callback_url=str(server.make_url("/status")),
    )
    await r.dispatcher(wake_relay=relay.wake)
    await r.wait_status(mid, RecipientStatus.DELIVERED)

    async def both() -> bool:
        return len(hits) == 2

    await until(both)
    await relay.stop()
    assert sorted((h["type"], h["status"]) for h in hits) == [
        ("delivery_report", "delivered"),
        ("status", "submitted"),
    ]
    assert {h["message_id"] for h in hits} == {mid}


async def test_message_in_the_api_shape_is_sent_as_stored(rig: Make) -> None:
    """fields + parts exactly as mm7.service.api.app stores them (shape v1): the text is a part as
    well as a field (sent once), slides name Content-IDs, expiry is an xsd duration."""
    r = await rig()
    items = make_items([png(), text_source("Hello", filename="text.txt")])
    presentation = build_presentation(items)
    fields = {
        "v": 1,
        "source": "api",
        "api_key": "dev",
        "to": ["+15551230001"],
        "from": None,
        "subject": "api",
        "text": "Hello",
        "delivery_report": True,
        "read_reply": None,
        "priority": "High",
        "expiry": "P1D",
        "earliest_delivery": None,
        "service_code": None,
        "linked_id": "lnk-1",
        "presentation": {
            "layout": presentation.layout.value,
            "slides": [
                {
                    "duration_ms": s.duration_ms,
                    "visual": s.visual,
                    "text": s.text,
                    "audio": s.audio,
                    "refs": list(s.refs),
                }
                for s in presentation.slides
            ],
            "smil": None,
        },
    }
    parts = tuple(
        MediaPart(
            item.media_type + (f"; charset={item.charset}" if item.charset else ""),
            data=item.data,
            content_id=item.content_id,
            content_location=item.content_location,
        )
        for item in presentation.items
    )
    mid = await r.enqueue(fields=fields, parts=parts, expires_at=r.clock.now() + timedelta(days=1))
    await r.dispatcher()
    record = await r.wait_status(mid, RecipientStatus.DELIVERED)
    submitted = r.sim.submitted[record.recipients[0].mm7_message_id or ""]
    assert submitted.priority is Priority.HIGH and submitted.linked_id == "lnk-1"
    assert submitted.sender_address == Address.guess("12345")  # the link's sender
    assert submitted.expiry_date == r.clock.now() + timedelta(days=1)  # the absolute one
    assert submitted.content is not None
    children = submitted.content.children
    assert [c.content_type.mime_type for c in children] == [
        "application/smil",
        "image/png",
        "text/plain",
    ]
    assert [c.content_id for c in children[1:]] == [it.content_id for it in items]
    assert from_part(submitted.content).slides == presentation.slides


async def test_with_30_percent_transient_faults_everything_is_eventually_accepted(
    rig: Make,
) -> None:
    r = await rig()
    r.sim.faults.configure({"rates": [{"kind": "status", "code": 4006, "rate": 0.3}]})
    mids = [await r.enqueue(f"+1555200{i:04d}") for i in range(40)]
    d = await r.dispatcher(concurrency=8, rng=random.Random(5))

    async def settled() -> bool:
        states = [await r.status(m) for m in mids]
        if all(s in (RecipientStatus.SUBMITTED, RecipientStatus.DELIVERED) for s in states):
            return True
        if d.in_flight == 0:  # everything due was tried: move time to the next retries
            r.clock.advance(timedelta(seconds=60))
            d.wake()
        return False

    await until(settled, guard=60.0)
    exchanges = r.submits()
    refused = [e for e in exchanges if e.status_code == 4006]
    assert refused and len(exchanges) == len(mids) + len(refused)
    assert d.counts["retry"] == len(refused) and d.counts["failed"] == 0
    # every recipient accepted exactly once, under its own TransactionID
    accepted = sorted(e.transaction_id for e in exchanges if e.status_code == 1000)
    records = [await r.message(m) for m in mids]
    assert accepted == sorted(x.recipients[0].transaction_id for x in records)


@dataclass
class SlowMMSC:
    """An MMSC that accepts every SubmitReq, but only once ``gate`` is set."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[Request] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/mm7", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        message = decode(await request.read(), request.headers.get("Content-Type")).message
        assert isinstance(message, Request)
        self.requests.append(message)
        await self.gate.wait()
        wire = encode(reply_to(message, SubmitRsp(message_id="slow-1")))
        return web.Response(body=wire.body, content_type="text/xml")


async def test_an_item_re_leased_while_still_in_flight_here_is_not_sent_twice(
    rig: Make,
) -> None:
    """Our own lease expires while the MMSC is slow; the same dispatcher takes the item again:
    it must not send it a second time, and the answer must be recorded under the new lease."""
    r = await rig()
    mid = await r.enqueue()
    slow = SlowMMSC()
    server = await r.server(slow.app())
    d = await r.dispatcher(
        r.settings(url=str(server.make_url("/mm7"))), owner="w", lease_ttl=timedelta(seconds=5)
    )

    async def sent_once() -> bool:
        return len(slow.requests) == 1

    await until(sent_once)
    r.clock.advance(timedelta(seconds=10))  # the lease runs out while the request is on its way
    d.wake()

    async def re_leased() -> bool:
        return d.counts["re_leased_in_flight"] >= 1

    await until(re_leased)
    slow.gate.set()
    record = await r.wait_status(mid, RecipientStatus.SUBMITTED, RecipientStatus.DELIVERED)
    assert len(slow.requests) == 1  # never sent twice
    assert record.recipients[0].mm7_message_id == "slow-1"
    assert not [e for e in record.events if e.kind == "stale_result"]


# ---------------------------------------------------------------- link ownership (cluster)


class Ownership:
    """``may_lease`` as the runtime wires it: answers ``owns``, counting the questions."""

    def __init__(self, owns: bool) -> None:
        self.owns = owns
        self.asked = 0
        #: after this many questions the ownership ends (None: never)
        self.lose_after: int | None = None

    def __call__(self) -> bool:
        self.asked += 1
        if self.lose_after is not None and self.asked > self.lose_after:
            self.owns = False
        return self.owns


async def test_an_instance_that_does_not_own_the_link_submits_nothing(rig: Make) -> None:
    r = await rig()
    mid = await r.enqueue()
    owner = Ownership(owns=False)
    d = await r.dispatcher(may_lease=owner)

    async def asked_thrice() -> bool:
        d.wake()
        return owner.asked >= 3

    await until(asked_thrice)
    recipient = (await r.message(mid)).recipients[0]
    assert recipient.status is RecipientStatus.QUEUED and recipient.attempts == 0
    assert r.submits() == [] and d.in_flight == 0
    # another instance (the owner) could lease it: nothing of it is held here
    assert len(await r.store.lease(LINK, "owner", 10, timedelta(seconds=60))) == 1


async def test_the_link_taken_over_here_is_dispatched(rig: Make) -> None:
    r = await rig()
    mid = await r.enqueue()
    owner = Ownership(owns=False)
    d = await r.dispatcher(may_lease=owner)

    async def asked() -> bool:
        return owner.asked >= 1

    await until(asked)
    owner.owns = True
    d.wake()  # what the ownership's on_acquired does
    await r.wait_status(mid, RecipientStatus.SUBMITTED, RecipientStatus.DELIVERED)
    assert len(r.submits()) == 1


async def test_work_leased_as_the_ownership_ends_is_released_unattempted(rig: Make) -> None:
    r = await rig()
    mid = await r.enqueue()
    owner = Ownership(owns=True)
    owner.lose_after = 1  # owned when the lease call starts, not when it returns
    d = await r.dispatcher(may_lease=owner)

    async def released() -> bool:
        return d.counts["released_not_owner"] == 1

    await until(released)
    recipient = (await r.message(mid)).recipients[0]
    assert recipient.status is RecipientStatus.QUEUED and recipient.attempts == 0
    assert r.submits() == [] and d.in_flight == 0
    # due again at once for the new owner
    (item,) = await r.store.lease(LINK, "new-owner", 10, timedelta(seconds=60))
    assert item.recipient_id == recipient.id
