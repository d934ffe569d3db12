"""What real MMSCs send, through the real gateway (``Gateway`` from a TOML file: the inbound
endpoint, the store on SQLite, the relay to an application's hook on loopback): MOs read though
their schema's "required" elements are missing, delivery reports with Sender and Recipient
swapped, reports for a second link through one peer. The fixtures are in tests/fixtures/soap."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from lxml import etree

from mm7.core.capture import read_capture
from mm7.core.codec import decode, encode
from mm7.core.model import (
    Address,
    AddressKind,
    DeliverRsp,
    DeliveryReportReq,
    DeliveryReportRsp,
    Fault,
    ReadReplyReq,
    ReadReplyRsp,
)
from mm7.core.status import MMStatus, ReadStatus
from mm7.core.validate import validate_envelope
from mm7.core.versions import NAMESPACE_BASE
from mm7.service.config.loader import load_config
from mm7.service.runtime import Gateway
from mm7.service.store.records import NewMessage, RecipientStatus

FIXTURES = Path(__file__).parent / "fixtures" / "soap"
HOOK_SECRET = "hook-secret-0123456789"

CONFIG = """
[links.a]
url = "http://127.0.0.1:9/mm7/account-a"
default = true
sender_address = "12345"
[links.b]
url = "http://127.0.0.1:9/mm7/account-b"
prefixes = ["+44"]
sender_address = "12345"
[links.elsewhere]
url = "http://127.0.0.2:9/mm7"
prefixes = ["+33"]

[inbound]
listen = "127.0.0.1:0"
[inbound.peers.mbuni]
link = "a"
basic = {{ username = "mbuni", password = "mbuni-pw" }}
[inbound.peers.strict]
link = "a"
strict = true
basic = {{ username = "strict", password = "strict-pw" }}

[api]
listen = "127.0.0.1:0"
[[api.keys]]
name = "app"
key = "interop-api-key-0123456789"

[store]
path = "{db}"

[relay]
initial_backoff = "0.05s"
max_backoff = "0.1s"
[relay.hooks.app]
url = "{hook}"
secret = "{secret}"
[relay.default_route]
hook = "app"
status_hook = "app"

[logging]
level = "warning"
"""


@dataclass
class Hook:
    """The application: records every event the relay POSTs."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.events.append((request.headers["Idempotency-Key"], await request.json()))
        return web.Response(status=204)

    async def wait(self, n: int, kind: str) -> list[tuple[str, dict[str, Any]]]:
        for _ in range(500):
            found = [e for e in self.events if e[1]["type"] == kind]
            if len(found) >= n:
                return found
            await asyncio.sleep(0.01)
        raise AssertionError(f"{n} {kind} events expected, got {self.events}")


@dataclass
class Rig:
    gateway: Gateway
    hook: Hook
    session: aiohttp.ClientSession

    last_answer: bytes = b""

    async def post(self, fixture: str, peer: str = "mbuni") -> tuple[int, Any]:
        """POST a fixture as the given peer; the HTTP status and the decoded answer."""
        data = (FIXTURES / fixture).read_bytes()
        capture = read_capture(data)
        return await self.post_body(capture.body, capture.content_type or "text/xml", peer)

    async def post_body(
        self, body: bytes, content_type: str, peer: str = "mbuni"
    ) -> tuple[int, Any]:
        credentials = base64.b64encode(f"{peer}:{peer}-pw".encode()).decode()
        headers = {"Content-Type": content_type, "Authorization": f"Basic {credentials}"}
        assert self.gateway.inbound_url is not None
        async with self.session.post(self.gateway.inbound_url, data=body, headers=headers) as rsp:
            self.last_answer = await rsp.read()
            answer = decode(self.last_answer, rsp.headers.get("Content-Type"))
            return rsp.status, answer.message

    async def sent(self, link: str, mm7_id: str, *recipients: str) -> str:
        """A message of ``link`` whose recipients the MMSC accepted under ``mm7_id``."""
        store = self.gateway.store
        assert store is not None
        result = await store.enqueue_message(
            NewMessage(link=link, fields={"subject": "hi"}), list(recipients)
        )
        for item in await store.lease(link, "test", 10, timedelta(seconds=60)):
            assert await store.complete(item, mm7_id, 1000, "Success")
        return result.message_id


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    hook = Hook()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    path = tmp_path / "gateway.toml"
    path.write_text(
        CONFIG.format(
            db=(tmp_path / "mm7.sqlite").as_posix(),
            hook=server.make_url("/hook"),
            secret=HOOK_SECRET,
        )
    )
    gateway = Gateway(
        load_config(path, env={}), configure_logs=False, poll_interval=3600, announce=lambda x: None
    )
    await gateway.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Rig(gateway, hook, session)
    finally:
        await gateway.stop()
        await server.close()


# ---------------------------------------------------------------- MOs


@pytest.mark.parametrize(
    ("version", "fixture"),
    [
        ("REL-5-MM7-1-0", "mbuni-deliverreq-no-replychargingid-rel5-1-0.xml"),
        ("REL-5-MM7-1-1", "mbuni-deliverreq-no-replychargingid-rel5-1-1.xml"),
    ],
)
async def test_mbuni_mo_without_replychargingid_is_answered_stored_and_relayed_once(
    rig: Rig, version: str, fixture: str
) -> None:
    status, answer = await rig.post(fixture)
    assert status == 200 and isinstance(answer, DeliverRsp) and answer.status.code == 1000
    # answered in the request's own namespace and MM7Version, valid in that schema
    assert answer.namespace == NAMESPACE_BASE + version and answer.mm7_version == "5.3.0"
    assert validate_envelope(etree.fromstring(rig.last_answer)).errors == ()
    status, again = await rig.post(fixture)  # the MMSC's retry
    assert status == 200 and isinstance(again, DeliverRsp) and again.status.code == 1000
    [(_, event)] = await rig.hook.wait(1, "mo")
    await asyncio.sleep(0.1)
    assert len([e for e in rig.hook.events if e[1]["type"] == "mo"]) == 1
    assert event["from"] == "15551230007" and event["subject"] == "Hello from Mbuni"
    assert "required-element-missing" in event["mm7"]["leniencies"]
    assert event["mm7"]["missing"] == ["ReplyChargingID"]


async def test_a_strict_peer_is_still_refused_what_its_schema_requires(rig: Rig) -> None:
    status, answer = await rig.post(
        "mbuni-deliverreq-no-replychargingid-rel5-1-0.xml", peer="strict"
    )
    assert status == 500 and isinstance(answer, Fault)
    assert answer.error is not None and answer.error.status.code == 4004
    assert "ReplyChargingID" in (answer.error.status.details or "")
    await asyncio.sleep(0.1)
    assert rig.hook.events == []


async def test_mo_without_sender_is_relayed_with_from_null(rig: Rig) -> None:
    status, answer = await rig.post("deliverreq-version-and-content-only.http")
    assert status == 200 and isinstance(answer, DeliverRsp) and answer.status.code == 1000
    [(_, event)] = await rig.hook.wait(1, "mo")
    assert event["from"] is None and event["opt_out"] is None
    assert event["text"] == "just the text, no sender"
    assert event["mm7"]["missing"] == ["Sender"]


# ---------------------------------------------------------------- delivery reports


async def test_swapped_reports_of_two_handsets_are_both_recorded_each_naming_its_handset(
    rig: Rig,
) -> None:
    # one MessageID for two handsets (a SubmitReq with two recipients)
    message_id = await rig.sent("a", "mbuni-msg-77", "+15551230001", "+15551230002")
    for fixture in ("mbuni-dlr-swapped-handset-a.xml", "mbuni-dlr-swapped-handset-b.xml"):
        status, answer = await rig.post(fixture)
        assert status == 200 and isinstance(answer, DeliveryReportRsp)
        assert answer.status.code == 1000
    store = rig.gateway.store
    assert store is not None
    record = await store.get_message(message_id)
    assert record is not None
    assert {r.address: r.status for r in record.recipients} == {
        "+15551230001": RecipientStatus.DELIVERED,
        "+15551230002": RecipientStatus.DELIVERED,
    }
    reports = await store.delivery_reports(message_id=message_id)
    assert sorted(r.recipient for r in reports) == ["15551230001", "15551230002"]
    events = await rig.hook.wait(2, "delivery_report")
    assert sorted(e["recipient"] for _, e in events) == ["15551230001", "15551230002"]
    keys = {key for key, _ in events}
    assert len(keys) == 2 and not any("12345" in key for key in keys)
    report_events = [e for e in record.events if e.kind == "delivery_report"]
    assert all("report-addresses-swapped" in e.details.get("leniencies", []) for e in report_events)


async def test_a_report_for_the_other_link_of_the_same_mmsc_is_correlated(rig: Rig) -> None:
    message_id = await rig.sent("b", "mbuni-msg-77", "+15551230001")
    status, _ = await rig.post("mbuni-dlr-swapped-handset-a.xml")  # through peer mbuni (link a)
    assert status == 200
    store = rig.gateway.store
    assert store is not None
    [report] = await store.delivery_reports(message_id=message_id)
    assert report.link == "b" and report.message_id == message_id
    assert await store.delivery_reports(unknown_only=True) == []
    [(_, event)] = await rig.hook.wait(1, "delivery_report")
    assert event["message_id"] == message_id and event["link"] == "b"


async def test_a_report_for_a_link_of_another_mmsc_stays_unknown(rig: Rig) -> None:
    await rig.sent("elsewhere", "mbuni-msg-77", "+15551230001")
    status, _ = await rig.post("mbuni-dlr-swapped-handset-a.xml")
    assert status == 200
    store = rig.gateway.store
    assert store is not None
    [unknown] = await store.delivery_reports(unknown_only=True)
    assert unknown.link == "a" and unknown.recipient == "15551230001"


async def test_a_report_without_sender_and_date_is_recorded(rig: Rig) -> None:
    message_id = await rig.sent("a", "nsd-msg-1", "+15551230001")
    status, answer = await rig.post("dlr-no-sender-no-date.xml")
    assert status == 200 and isinstance(answer, DeliveryReportRsp)
    assert answer.status.code == 1000
    store = rig.gateway.store
    assert store is not None
    record = await store.get_message(message_id)
    assert record is not None and record.recipients[0].status is RecipientStatus.DELIVERED
    [(_, event)] = await rig.hook.wait(1, "delivery_report")
    assert event["recipient"] == "+15551230001"


async def test_a_swapped_read_reply_is_recorded_on_its_message_naming_the_handset(
    rig: Rig,
) -> None:
    message_id = await rig.sent("a", "mbuni-msg-88", "+15551230001", "+15551230002")
    reply = ReadReplyReq(
        transaction_id="mbuni-rr-1",
        namespace=NAMESPACE_BASE + "REL-5-MM7-1-0",
        mm7_version="5.3.0",
        message_id="mbuni-msg-88",
        recipient=Address("12345", AddressKind.SHORT_CODE),  # the VASP's own short code
        sender=Address("15551230002"),  # the handset that read it
        timestamp=datetime(2026, 11, 30, 10, 20, tzinfo=UTC),
        mm_status=ReadStatus.READ,
    )
    encoded = encode(reply)
    status, answer = await rig.post_body(encoded.body, encoded.content_type)
    assert status == 200 and isinstance(answer, ReadReplyRsp) and answer.status.code == 1000
    store = rig.gateway.store
    assert store is not None
    record = await store.get_message(message_id)
    assert record is not None
    [event] = [e for e in record.events if e.kind == "read_reply"]
    assert event.details["leniencies"] == ["report-addresses-swapped"]
    [(key, relayed)] = await rig.hook.wait(1, "read_reply")
    assert relayed["recipient"] == "15551230002" and "12345" not in key


def dlr(message_id: str, recipient: Address | None, sender: Address | None, tid: str) -> bytes:
    """A REL-5-MM7-1-0 DeliveryReportReq as the core writes it, lenient about what is absent."""
    body = encode(
        DeliveryReportReq(
            transaction_id=tid,
            namespace=NAMESPACE_BASE + "REL-5-MM7-1-0",
            mm7_version="5.3.0",
            message_id=message_id,
            recipient=recipient if recipient is not None else Address("0"),
            sender=sender if sender is not None else Address("0"),
            date=datetime(2026, 11, 30, 10, 20, tzinfo=UTC),
            mm_status=MMStatus.RETRIEVED,
        )
    ).body
    # drop an address the MMSC left out (the core never writes a report without both)
    if recipient is None:
        body = body.replace(b"<mm7:Recipient><mm7:Number>0</mm7:Number></mm7:Recipient>", b"")
    if sender is None:
        body = body.replace(b"<mm7:Sender><mm7:Number>0</mm7:Number></mm7:Sender>", b"")
    return body


async def test_another_link_s_message_needs_a_matching_address(rig: Rig) -> None:
    # link b (same MMSC) sent MessageID 77 to a UK handset; a report for 77 about another
    # handset is not that message's: MessageIDs are unique per MMSC, not across the ones a host
    # may front, and the one-recipient fallback applies to the peer's own link only
    message_id = await rig.sent("b", "77", "+447700900001")
    body = dlr("77", Address("15551230009"), Address("12345", AddressKind.SHORT_CODE), "x-1")
    status, _ = await rig.post_body(body, "text/xml")
    assert status == 200
    store = rig.gateway.store
    assert store is not None
    record = await store.get_message(message_id)
    assert record is not None and record.recipients[0].status is RecipientStatus.SUBMITTED
    [unknown] = await store.delivery_reports(unknown_only=True)
    assert unknown.link == "a" and unknown.recipient == "15551230009"


async def test_a_report_naming_only_the_short_code_is_recorded_for_the_only_recipient(
    rig: Rig,
) -> None:
    message_id = await rig.sent("a", "m-sc", "+15551230001")
    body = dlr("m-sc", None, Address("12345", AddressKind.SHORT_CODE), "sc-1")
    status, _ = await rig.post_body(body, "text/xml")
    assert status == 200
    store = rig.gateway.store
    assert store is not None
    [report] = await store.delivery_reports(message_id=message_id)
    assert report.recipient == "+15551230001"  # the stored recipient, not the short code
    [(key, event)] = await rig.hook.wait(1, "delivery_report")
    assert event["recipient"] == "+15551230001" and "12345" not in key
    assert "required-element-missing" in event["leniencies"]


async def test_swapped_reports_of_an_unknown_message_from_another_short_code_stay_apart(
    rig: Rig,
) -> None:
    # no link has 777 as its address: the ShortCode in Recipient and the Number in Sender tell
    for index, handset in enumerate(("15551230001", "15551230002")):
        body = dlr("nope", Address("777", AddressKind.SHORT_CODE), Address(handset), f"u-{index}")
        status, _ = await rig.post_body(body, "text/xml")
        assert status == 200
    store = rig.gateway.store
    assert store is not None
    unknown = await store.delivery_reports(unknown_only=True)
    assert sorted(r.recipient for r in unknown) == ["15551230001", "15551230002"]
    events = await rig.hook.wait(2, "delivery_report")
    assert sorted(e["recipient"] for _, e in events) == ["15551230001", "15551230002"]
    assert all(e["leniencies"] == ["report-addresses-swapped"] for _, e in events)


async def test_a_swap_only_the_store_can_see_is_named_too(rig: Rig) -> None:
    # Recipient holds a number that is no link's address: only the stored message tells that
    # the Sender is the handset
    message_id = await rig.sent("a", "m-77", "+15551230001", "+15551230002")
    body = dlr("m-77", Address("4477"), Address("15551230002"), "st-1")
    status, _ = await rig.post_body(body, "text/xml")
    assert status == 200
    store = rig.gateway.store
    assert store is not None
    record = await store.get_message(message_id)
    assert record is not None
    statuses = {r.address: r.status for r in record.recipients}
    assert statuses["+15551230002"] is RecipientStatus.DELIVERED
    assert statuses["+15551230001"] is RecipientStatus.SUBMITTED
    [event] = [e for e in record.events if e.kind == "delivery_report"]
    assert "report-addresses-swapped" in event.details["leniencies"]
    [(_, relayed)] = await rig.hook.wait(1, "delivery_report")
    assert relayed["recipient"] == "15551230002"
    assert relayed["leniencies"] == ["report-addresses-swapped"]
