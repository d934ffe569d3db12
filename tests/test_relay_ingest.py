"""MOs through the real inbound endpoint into a real SQLite store (mm7.service.relay.ingest).

The project's MM7Client plays the MMSC and sends DeliverReqs to ``create_inbound_app`` served
on loopback; content is a SMIL presentation with a JPEG and a PNG made by Pillow and a text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from mm7.core.codec import encode
from mm7.core.dialect import STRICT_3GPP
from mm7.core.mime import Part, make_multipart, make_part
from mm7.core.model import Address, AddressKind, DeliverReq, Priority, Recipients
from mm7.service.config.settings import RelayHook, RelayRoute, RelaySettings, RouteMatch
from mm7.service.errors import AllSuppressedError
from mm7.service.mt.reports import DeliveryReports
from mm7.service.relay.ingest import MoIngest
from mm7.service.store import (
    ManualClock,
    MoResult,
    NewMessage,
    NewMo,
    RecipientStatus,
    RelayKind,
    SqliteStore,
    Store,
)
from mm7.transport.client import MM7Client
from mm7.transport.errors import MM7ClientError
from mm7.transport.link import LinkConfig, Secret
from mm7.transport.server import InboundConfig, Peer, create_inbound_app

Server = Callable[..., Awaitable[Any]]
LINK = "carrier"
SENDER = "+15550001"
WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def image(fmt: str, color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


JPEG = image("JPEG", (200, 30, 30))
PNG = image("PNG", (30, 30, 200), (16, 16))
SMIL = (
    b'<smil><head><layout><root-layout width="320" height="480"/>'
    b'<region id="Image" top="0" left="0" height="70%" width="100%"/>'
    b'<region id="Text" top="70%" left="0" height="30%" width="100%"/></layout></head><body>'
    b'<par dur="4000ms"><img src="cid:photo" region="Image"/>'
    b'<text src="cid:caption" region="Text"/></par>'
    b'<par dur="2500ms"><img src="cid:logo" region="Image"/></par>'
    b"</body></smil>"
)
TEXT = "Promo: look at this, ünïcode"


def content(text: str = TEXT) -> Part:
    return make_multipart(
        [
            make_part(SMIL, "application/smil", content_id="smil", content_location="mms.smil"),
            make_part(JPEG, "image/jpeg", content_id="photo", content_location="photo.jpg"),
            make_part(
                text.encode(),
                "text/plain; charset=utf-8",
                content_id="caption",
                content_location="caption.txt",
            ),
            make_part(PNG, "image/png", content_id="logo", content_location="logo.png"),
        ],
        "related",
        params={"type": "application/smil", "start": "<smil>"},
    )


def deliver(
    tid: str,
    text: str = TEXT,
    *,
    sender: str = SENDER,
    to: str = "12345",
    full: bool = False,
) -> DeliverReq:
    kind = AddressKind.SHORT_CODE if len(to) < 7 else AddressKind.NUMBER
    extra: dict[str, Any] = {}
    if full:
        extra = {
            "linked_id": "linked-7",
            "applic_id": "com.example.app",
            "reply_applic_id": "com.example.reply",
            "aux_applic_info": "aux-1",
            "priority": Priority.HIGH,
            "timestamp": WHEN,
            "mms_relay_server_id": "mmsc-01",
            "subject": "Holiday ☀",
        }
    return DeliverReq(
        transaction_id=tid,
        sender=Address(sender),
        recipients=Recipients(to=(Address(to, kind),), cc=(Address("+15559990000"),)),
        content=content(text),
        **extra,
    )


class FlakyStore:
    """The real store, except that ``store_mo`` can fail or wait at a gate."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.fail = False
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def store_mo(self, mo: NewMo) -> MoResult:
        self.calls += 1
        self.entered.set()
        if self.fail:
            raise sqlite3.OperationalError("disk I/O error")
        if self.gate is not None:
            await self.gate.wait()
        return await self.inner.store_mo(mo)


@dataclass
class Rig:
    store: SqliteStore
    flaky: FlakyStore
    db: Path
    mmsc: MM7Client
    url: str
    ingest: MoIngest
    inbound_app: Callable[[], web.Application]
    wakes: list[int] = field(default_factory=list)

    async def send(self, req: DeliverReq) -> int:
        return (await self.mmsc.send(req)).status.code

    def count(self, table: str) -> int:
        """Rows committed to ``table``, read through a connection of its own."""
        conn = sqlite3.connect(self.db)
        try:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        finally:
            conn.close()

    async def mo_events(self) -> list[dict[str, Any]]:
        return [dict(r.event) for r in await self.store.relay_events(kind=RelayKind.MO)]


SETTINGS = RelaySettings(
    hooks=(
        RelayHook(name="app", url="http://127.0.0.1:9/app", secret=Secret("s"), ordered=True),
        RelayHook(name="svc", url="http://127.0.0.1:9/svc", secret=Secret("s")),
    ),
    routes=(
        RelayRoute(name="services", hook="svc", match=RouteMatch(service_codes=("svc-9",))),
        RelayRoute(name="shortcode", hook="app", match=RouteMatch(short_codes=("12345",))),
    ),
)
HEADERS = (
    ("X-Carrier-Id", "310-260"),
    ("X-Trace-Id", "abc-123"),
    ("Via-Proxy", "p1"),
    ("X-Api-Key", "not-for-the-app"),
)


@pytest.fixture
async def rig(aiohttp_server: Server, tmp_path: Path) -> AsyncIterator[Rig]:
    clock = ManualClock(WHEN)
    db = tmp_path / "gw.db"
    store = await SqliteStore.open(db, clock=clock)
    flaky = FlakyStore(store)
    wakes: list[int] = []
    reports = DeliveryReports(store, link_for_peer={"mmsc": LINK}.__getitem__, clock=clock)
    ingest = MoIngest(
        cast(Store, flaky),
        SETTINGS,
        link_of=reports.link_of,
        wake_relay=lambda: wakes.append(1),
        clock=clock,
    )

    def inbound_app() -> web.Application:
        return create_inbound_app(
            InboundConfig(peers=(Peer("mmsc"),)), reports.handlers(on_deliver=ingest.on_deliver)
        )

    server = await aiohttp_server(inbound_app())
    url = str(server.make_url("/mm7"))
    dialect = dataclasses.replace(STRICT_3GPP, extra_headers=HEADERS)
    mmsc = MM7Client(LinkConfig(name="mmsc", url=url, dialect=dialect))
    async with mmsc:
        yield Rig(store, flaky, db, mmsc, url, ingest, inbound_app, wakes)
    await store.close()


async def test_an_mo_is_stored_with_every_part_and_its_event(rig: Rig) -> None:
    assert await rig.send(deliver("tx-1", full=True)) == 1000
    assert rig.wakes == [1]
    [record] = await rig.store.relay_events(kind=RelayKind.MO)
    assert record.hook == "app" and record.link == LINK
    mo = await rig.store.get_mo(str(record.source_id))
    assert mo is not None and mo.status == "pending" and mo.link == LINK
    assert mo.transaction_id == "tx-1"
    # every part but the SMIL, in presentation order, with its exact bytes
    assert [(p.position, p.content_type, p.content_id) for p in mo.parts] == [
        (0, "image/jpeg", "photo"),
        (1, "text/plain; charset=utf-8", "caption"),
        (2, "image/png", "logo"),
    ]
    blobs = [await rig.store.get_media(p.sha256) for p in mo.parts]
    assert [b.data if b else None for b in blobs] == [JPEG, TEXT.encode(), PNG]
    # stored under their own SHA-256 (hashed once, by the endpoint's duplicate detection)
    assert [p.sha256 for p in mo.parts] == [
        hashlib.sha256(data).hexdigest() for data in (JPEG, TEXT.encode(), PNG)
    ]

    event = dict(record.event)
    assert event["id"] == mo.id and event["type"] == "mo" and event["route"] == "shortcode"
    assert event["link"] == LINK and event["received_at"] == "2026-03-01T12:00:00Z"
    assert event["from"] == SENDER and event["to"] == ["12345"]
    assert event["cc"] == ["+15559990000"] and event["bcc"] == []
    assert event["subject"] == "Holiday ☀"
    assert event["text"] == TEXT and event["keyword"] == "PROMO" and event["opt_out"] is None
    assert event["slides"] == [
        {"duration_ms": 4000, "visual": "photo", "text": "caption", "audio": None, "refs": []},
        {"duration_ms": 2500, "visual": "logo", "text": None, "audio": None, "refs": []},
    ]
    assert "media" not in event  # added at delivery
    mm7 = event["mm7"]
    assert mm7["namespace"] == (
        "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-6-MM7-1-4"
    )
    assert mm7["version"] == "REL-6-MM7-1-4" and mm7["mm7_version"] == "6.8.0"
    assert mm7["transaction_id"] == "tx-1" and mm7["linked_id"] == "linked-7"
    assert mm7["applic_id"] == "com.example.app"
    assert mm7["reply_applic_id"] == "com.example.reply"
    assert mm7["aux_applic_info"] == "aux-1" and mm7["priority"] == "High"
    assert mm7["date"] == "2026-03-01T12:00:00Z" and mm7["mms_relay_server_id"] == "mmsc-01"
    assert mm7["message_id"] is None and mm7["service_code"] is None
    assert event["carrier_id"] == "310-260"
    headers = event["headers"]
    assert headers["X-Carrier-Id"] == "310-260" and headers["X-Trace-Id"] == "abc-123"
    assert all(name.lower().startswith("x-") for name in headers)
    assert "Via-Proxy" not in headers and "X-Api-Key" not in headers  # a secret: removed
    [item] = await rig.store.lease_relay("t", 1, timedelta(seconds=60), ordered_hooks={"app"})
    assert item.media == "url" and len(item.parts) == 3
    # the hook is ordered: the sender's normalised address orders its events
    conn = sqlite3.connect(rig.db)
    try:
        assert conn.execute("SELECT sender_key FROM relay_outbox").fetchall() == [("15550001",)]
    finally:
        conn.close()


async def test_answered_1000_only_after_the_commit(rig: Rig) -> None:
    rig.flaky.gate = asyncio.Event()
    sending = asyncio.create_task(rig.send(deliver("tx-gate")))
    await asyncio.wait_for(rig.flaky.entered.wait(), 10)
    await asyncio.sleep(0)
    assert not sending.done()
    assert rig.count("mo_messages") == 0
    rig.flaky.gate.set()
    assert await asyncio.wait_for(sending, 10) == 1000
    # committed: another connection sees the MO, its parts and its relay event
    assert rig.count("mo_messages") == 1
    assert rig.count("mo_media") == 3
    assert rig.count("relay_outbox") == 1


async def test_a_store_failure_answers_4006_and_stores_nothing(rig: Rig) -> None:
    rig.flaky.fail = True
    with pytest.raises(MM7ClientError) as info:
        await rig.send(deliver("tx-fail"))
    assert info.value.code == 4006 and info.value.transient
    assert rig.count("mo_messages") == 0 and rig.count("relay_outbox") == 0
    assert rig.count("media") == 0 and rig.wakes == []
    # the MMSC retries the same request once the store is back: stored then
    rig.flaky.fail = False
    assert await rig.send(deliver("tx-fail")) == 1000
    assert rig.count("mo_messages") == 1 and rig.count("relay_outbox") == 1


async def test_a_retried_deliver_req_is_answered_1000_and_relayed_once(
    rig: Rig, aiohttp_server: Server
) -> None:
    assert await rig.send(deliver("tx-dup")) == 1000
    assert await rig.send(deliver("tx-dup")) == 1000  # the endpoint saw it answered
    assert rig.flaky.calls == 1
    # a restarted endpoint (no memory of it): the store recognises the TransactionID
    server = await aiohttp_server(rig.inbound_app())
    other = MM7Client(LinkConfig(name="mmsc", url=str(server.make_url("/mm7"))))
    async with other:
        assert (await other.send(deliver("tx-dup"))).status.code == 1000
    assert rig.flaky.calls == 2
    assert rig.count("mo_messages") == 1 and rig.count("relay_outbox") == 1
    assert rig.wakes == [1]


async def test_a_recycled_transaction_id_from_another_handset_is_a_new_mo(
    rig: Rig, aiohttp_server: Server
) -> None:
    assert await rig.send(deliver("tx-7", "first", sender="+15550101")) == 1000
    assert await rig.send(deliver("tx-7", "second", sender="+15550102")) == 1000
    # and through a restarted endpoint, where only the store can tell
    server = await aiohttp_server(rig.inbound_app())
    other = MM7Client(LinkConfig(name="mmsc", url=str(server.make_url("/mm7"))))
    async with other:
        third = (await other.send(deliver("tx-7", "third", sender="+15550103"))).status.code
    assert third == 1000
    texts = sorted(e["text"] for e in await rig.mo_events())
    assert texts == ["first", "second", "third"]
    assert rig.count("mo_messages") == 3


async def test_same_handset_same_recycled_transaction_id_other_content_is_new(
    rig: Rig, aiohttp_server: Server
) -> None:
    """No Date, no Subject (both optional): the content tells a new MO from a retry."""
    first = deliver("tx-8", "one")
    assert first.timestamp is None and first.subject is None
    assert await rig.send(first) == 1000
    assert await rig.send(deliver("tx-8", "two")) == 1000
    assert await rig.send(deliver("tx-8", "one")) == 1000  # a retry of the first
    server = await aiohttp_server(rig.inbound_app())  # a restarted endpoint: the store decides
    other = MM7Client(LinkConfig(name="mmsc", url=str(server.make_url("/mm7"))))
    async with other:
        assert (await other.send(deliver("tx-8", "three"))).status.code == 1000
        assert (await other.send(deliver("tx-8", "two"))).status.code == 1000
    assert sorted(e["text"] for e in await rig.mo_events()) == ["one", "three", "two"]


async def test_stop_suppresses_the_sender_and_start_lifts_it(rig: Rig) -> None:
    sender = "+15550002"
    assert await rig.send(deliver("tx-stop", " Stop. ", sender=sender)) == 1000
    assert await rig.store.suppressed(["15550002", sender]) == {"15550002", sender}
    [event] = await rig.mo_events()
    assert event["opt_out"] == "stop" and event["from"] == sender
    [entry] = await rig.store.suppressions()
    assert entry.word == "STOP" and entry.link == LINK and entry.mo_id == event["id"]

    result = await rig.store.enqueue_message(
        NewMessage(link=LINK, fields={}), ["15550002", "+15550003"]
    )
    assert result.suppressed == ("15550002",)
    record = await rig.store.get_message(result.message_id)
    assert record is not None
    assert [r.status for r in record.recipients] == [
        RecipientStatus.SUPPRESSED,
        RecipientStatus.QUEUED,
    ]
    with pytest.raises(AllSuppressedError):
        await rig.store.enqueue_message(NewMessage(link=LINK, fields={}), [sender])

    # "STOP please" is a message, not an opt-out; "start" lifts it
    assert await rig.send(deliver("tx-msg", "STOP please", sender=sender)) == 1000
    assert await rig.store.suppressed([sender]) == {sender}
    assert await rig.send(deliver("tx-start", "start", sender=sender)) == 1000
    assert await rig.store.suppressed([sender]) == set()
    assert [e["opt_out"] for e in await rig.mo_events()] == ["stop", None, "start"]
    sent = await rig.store.enqueue_message(NewMessage(link=LINK, fields={}), [sender])
    assert sent.created and sent.suppressed == ()


async def test_an_unrouted_mo_is_stored_and_answered_1000(rig: Rig) -> None:
    assert await rig.send(deliver("tx-lost", "hello", to="+15557770000")) == 1000
    assert await rig.mo_events() == []
    assert rig.count("relay_outbox") == 0 and rig.wakes == []
    conn = sqlite3.connect(rig.db)
    try:
        [(mo_id, status)] = conn.execute("SELECT id, status FROM mo_messages").fetchall()
    finally:
        conn.close()
    assert status == "unrouted"
    mo = await rig.store.get_mo(mo_id)
    assert mo is not None and len(mo.parts) == 3


def with_vendor_elements(req: DeliverReq, elements: str) -> tuple[str, bytes]:
    """``req`` as bare SOAP with vendor elements some MMSCs add at the end of DeliverReq."""
    encoded = encode(dataclasses.replace(req, content=None))
    body = encoded.body.replace(b"</mm7:DeliverReq>", elements.encode() + b"</mm7:DeliverReq>")
    assert body != encoded.body
    return encoded.content_type, body


async def test_vendor_service_code_routes_and_vendor_message_id_detects_retries(
    rig: Rig,
) -> None:
    req = DeliverReq(transaction_id="tx-v1", sender=Address(SENDER), subject="hi",
                     recipients=Recipients(to=(Address("+15557770000"),)))  # fmt: skip
    vendor = "<mm7:ServiceCode>svc-9</mm7:ServiceCode><mm7:MessageID>vendor-42</mm7:MessageID>"
    content_type, body = with_vendor_elements(req, vendor)
    async with aiohttp.ClientSession() as session:
        async with session.post(rig.url, data=body, headers={"Content-Type": content_type}) as r:
            assert r.status == 200 and b"1000" in await r.read()
        # the same MessageID under another TransactionID: a retry of the same MO
        _, again = with_vendor_elements(dataclasses.replace(req, transaction_id="tx-v2"), vendor)
        async with session.post(rig.url, data=again, headers={"Content-Type": content_type}) as r:
            assert r.status == 200 and b"1000" in await r.read()
    [record] = await rig.store.relay_events(kind=RelayKind.MO)
    assert record.hook == "svc" and record.event["route"] == "services"
    mm7 = record.event["mm7"]
    assert mm7["service_code"] == "svc-9" and mm7["message_id"] == "vendor-42"
    assert "unknown-element" in mm7["leniencies"]
    assert rig.count("mo_messages") == 1


@pytest.mark.parametrize("charset", ["unknown-8bit", "hex", "idna"])
async def test_a_text_in_an_undecodable_charset_is_stored_not_refused(
    rig: Rig, charset: str
) -> None:
    """A label no text codec handles must not lose the MO (it was answered 3000, not stored)."""
    parts = make_multipart(
        [
            make_part(b"Caf\xe9 PROMO", f"text/plain; charset={charset}", content_id="t"),
            make_part(JPEG, "image/jpeg", content_id="p"),
        ],
        "mixed",
    )
    req = dataclasses.replace(deliver("tx-charset"), content=parts)
    assert await rig.send(req) == 1000
    [event] = await rig.mo_events()
    assert event["text"] == "Caf\ufffd PROMO" and event["keyword"] == "CAF\ufffd"
    mo = await rig.store.get_mo(event["id"])
    assert mo is not None and [p.content_type for p in mo.parts] == [
        f"text/plain; charset={charset}",
        "image/jpeg",
    ]
    blob = await rig.store.get_media(mo.parts[0].sha256)
    assert blob is not None and blob.data == b"Caf\xe9 PROMO"


async def test_an_mo_without_content_is_stored_and_relayed(rig: Rig) -> None:
    req = DeliverReq(
        transaction_id="tx-bare",
        sender=Address(SENDER),
        recipients=Recipients(to=(Address("12345", AddressKind.SHORT_CODE),)),
        subject="only a subject",
    )
    assert await rig.send(req) == 1000
    [event] = await rig.mo_events()
    assert event["subject"] == "only a subject"
    assert event["text"] is None and event["keyword"] is None and event["slides"] == []
    mo = await rig.store.get_mo(event["id"])
    assert mo is not None and mo.parts == ()


async def test_several_text_parts_are_joined_in_order(rig: Rig) -> None:
    parts = make_multipart(
        [
            make_part(b"STOP", "text/plain; charset=utf-8", content_id="a"),
            make_part(b"zwei", "text/plain; charset=utf-8", content_id="b"),
        ],
        "mixed",
    )
    assert await rig.send(dataclasses.replace(deliver("tx-two"), content=parts)) == 1000
    [event] = await rig.mo_events()
    assert event["text"] == "STOP\nzwei" and event["keyword"] == "STOP"
    # not the whole text: no opt-out
    assert event["opt_out"] is None and await rig.store.suppressed([SENDER]) == set()
