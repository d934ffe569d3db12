"""The MMSC simulator on the wire: the project's client as the VASP sending to it, a small real
aiohttp app as the VASP receiving its reports and MOs. Every persona and fault is checked on the
bytes (prefixes, CTE, Content-Type, HTTP status, fault detail shape), not only on parsed objects.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from lxml import etree

import mm7.simulator.app as sim_app
import mm7.transport.decode_off_loop as off_loop
from mm7.core.codec import decode, encode
from mm7.core.dialect import STRICT_3GPP, Dialect, get_dialect
from mm7.core.leniency import Leniency
from mm7.core.mime import make_part
from mm7.core.model import (
    Address,
    CancelReq,
    DeliverReq,
    DeliveryReportReq,
    Fault,
    RSErrorRsp,
    Status,
    SubmitRsp,
)
from mm7.core.status import MMStatus
from mm7.core.validate import validate_envelope
from mm7.core.xmlsafe import parse_xml
from mm7.simulator.app import SIMULATOR, SimulatorConfig, create_simulator_app
from mm7.simulator.dlr import DlrPlan, RetryPolicy
from mm7.simulator.personas import Persona
from mm7.transport.classify import Outcome
from mm7.transport.client import MM7Client
from mm7.transport.errors import MM7ClientError
from mm7.transport.link import BasicAuth, LinkConfig, Secret
from tests.helpers.simulator import FAST_RETRY, Make, Rig, Vasp, fault_detail, png, submit

Server = Callable[..., Awaitable[Any]]


# ---------------------------------------------------------------- submit, echo, reports


async def test_submit_gets_a_message_id_that_the_reports_carry(sim_rig: Make) -> None:
    r = await sim_rig()
    async with r.client() as client:
        result = await client.send(submit("+15551230001", "+15551230002", tid="tx-1"))
    rsp = result.message
    assert result.http_status == 200 and rsp.transaction_id == "tx-1"
    message_id = getattr(rsp, "message_id", None)
    assert message_id and message_id.startswith("sim-")
    hits = await r.vasp.wait(2)
    reports = r.vasp.reports()
    assert {x.message_id for x in reports} == {message_id}
    assert {x.recipient.value for x in reports} == {"+15551230001", "+15551230002"}
    assert all(x.mm_status is MMStatus.RETRIEVED for x in reports)
    assert all(h.message.namespace == STRICT_3GPP.namespace for h in hits)
    await r.sim.dlr.idle()
    out = [e for e in r.sim.store.exchanges if e.direction == "out"]
    assert len(out) == 2 and all(e.status_code == 1000 and e.attempt == 1 for e in out)
    # outbound traffic keeps the bytes on the wire too: the report sent, the VASP's answer
    for exchange in out:
        assert b"DeliveryReportReq" in exchange.request_body
        assert message_id.encode() in exchange.request_body
        assert exchange.request_size == len(exchange.request_body)
        assert b"DeliveryReportRsp" in exchange.response_body


async def test_no_report_unless_requested(sim_rig: Make) -> None:
    r = await sim_rig()
    async with r.client() as client:
        await client.send(submit(report=False))
    await r.sim.dlr.idle()
    assert r.vasp.hits == []


async def test_response_echoes_namespace_and_version_of_the_request(sim_rig: Make) -> None:
    r = await sim_rig("bare-status-faults")
    dialect = get_dialect("rel5-legacy")
    async with r.client(dialect) as client:
        result = await client.send(submit(tid="tx-5", report=False))
    rsp = result.message
    assert rsp.namespace == dialect.namespace and rsp.mm7_version == "5.3.0"


async def test_cancel_known_and_unknown(sim_rig: Make) -> None:
    r = await sim_rig()
    async with r.client() as client:
        rsp = await client.submit(submit(report=False))
        assert rsp.message_id
        cancel = CancelReq(vasp_id="vasp", message_id=rsp.message_id)
        assert (await client.send(cancel)).status.code == 1000
        with pytest.raises(MM7ClientError) as info:
            await client.send(cancel)
    assert info.value.code == 2005


async def test_vasp_operations_sent_to_the_mmsc_are_4003(sim_rig: Make) -> None:
    r = await sim_rig()
    deliver = DeliverReq(transaction_id="mo-1", sender=Address("+15551230009"))
    encoded = encode(deliver)
    status, headers, body = await r.post(encoded.body, encoded.content_type)
    message = decode(body, headers["Content-Type"]).message
    assert status == 500 and isinstance(message, Fault)
    assert isinstance(message.error, RSErrorRsp) and message.error.status.code == 4003
    assert message.transaction_id == "mo-1" and "DeliverReq" in (message.error.status.details or "")


# ---------------------------------------------------------------- strict and lenient validation


def with_bogus_element(body: bytes) -> bytes:
    return body.replace(b"<mm7:Recipients>", b"<mm7:Bogus>x</mm7:Bogus><mm7:Recipients>", 1)


async def test_strict_mode_answers_4004_with_the_schema_reason(sim_rig: Make) -> None:
    r = await sim_rig()
    encoded = encode(submit(tid="tx-bad"))
    status, headers, body = await r.post(with_bogus_element(encoded.body), encoded.content_type)
    assert status == 500
    message = decode(body, headers["Content-Type"]).message
    assert isinstance(message, Fault) and message.transaction_id == "tx-bad"
    assert message.faultcode.endswith("Client")
    error = message.error
    assert error is not None and error.status.code == 4004
    assert "Bogus" in (error.status.details or "")
    assert r.sim.store.messages == type(r.sim.store.messages)()


@pytest.mark.parametrize("bogus", [False, True], ids=["valid", "invalid"])
def test_decode_hands_out_the_soap_tree_it_read_for_the_strict_check(bogus: bool) -> None:
    """The strict check validates the tree decode parsed instead of parsing the SOAP part
    again: that tree is the SOAP part's, and it validates as a fresh parse of it does."""
    encoded = encode(submit(tid="tx-root", smil=True))
    body = with_bogus_element(encoded.body) if bogus else encoded.body
    decoded = decode(body, encoded.content_type)
    assert decoded.root is not None
    fresh = parse_xml(decoded.soap)
    assert etree.tostring(decoded.root) == etree.tostring(fresh)
    report = validate_envelope(decoded.root)
    assert report == validate_envelope(fresh)
    assert report.valid is not bogus


async def test_lenient_mode_accepts_and_records_leniencies(sim_rig: Make) -> None:
    r = await sim_rig(strict=False)
    encoded = encode(submit(tid="tx-len"))
    status, headers, body = await r.post(with_bogus_element(encoded.body), encoded.content_type)
    assert status == 200
    assert decode(body, headers["Content-Type"]).message.OPERATION == "SubmitRsp"
    received = r.sim.store.messages[-1]
    assert Leniency.UNKNOWN_ELEMENT in received.leniencies
    listed = await r.control("GET", "/messages")
    assert "unknown-element" in listed["messages"][-1]["leniencies"]


async def test_broken_soap_is_2007(sim_rig: Make) -> None:
    r = await sim_rig()
    status, headers, body = await r.post(b"<env:Envelope><oops", "text/xml; charset=utf-8")
    message = decode(body, headers["Content-Type"]).message
    assert status == 500 and isinstance(message, Fault) and message.status is not None
    assert message.status.code == 2007 and message.status.details


def decoding_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The threads the simulator decodes requests in, one entry per decode, from now on."""
    threads: list[int] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return decode(*args, **kwargs)

    monkeypatch.setattr(off_loop, "decode", spy)
    monkeypatch.setattr(sim_app, "decode", spy)
    return threads


async def test_a_large_request_is_decoded_off_the_event_loop(
    sim_rig: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body of DECODE_OFF_LOOP_BYTES or more is decoded once, in a worker thread (a hostile
    one would otherwise hold every other connection); a small one on the loop."""
    threads = decoding_threads(monkeypatch)
    r = await sim_rig()
    loop_thread = threading.get_ident()
    # a hostile Subject: 8,000 encoded words, about 140 KB of SOAP
    large = dataclasses.replace(
        submit("+12015550123", tid="tx-large"), subject="=?utf-8?B?w6k=?=" * 8_000
    )
    assert len(encode(large).body) >= off_loop.DECODE_OFF_LOOP_BYTES
    async with r.client() as client:
        small_result = await client.send(submit("+12015550123", tid="tx-small"))
        assert threads == [loop_thread]  # cheaper to decode than to hand over
        threads.clear()
        large_result = await client.send(large)
    assert small_result.http_status == large_result.http_status == 200
    message_id = getattr(large_result.message, "message_id", None)
    assert message_id is not None and r.sim.submitted[message_id].subject == "é" * 8_000
    assert len(threads) == 1 and threads[0] != loop_thread

    threads.clear()  # unreadable and large: refused with what the thread read, not decoded again
    junk = b"<env:Envelope><oops" + b"\n" * off_loop.DECODE_OFF_LOOP_BYTES
    status, headers, body = await r.post(junk, "text/xml; charset=utf-8")
    message = decode(body, headers["Content-Type"]).message
    assert status == 500 and isinstance(message, Fault) and message.status is not None
    assert message.status.code == 2007
    assert len(threads) == 1 and threads[0] != loop_thread


async def test_a_large_light_submit_is_decoded_on_the_loop(
    sim_rig: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SubmitReq carrying a 64 KB attachment of plain bytes costs little to decode: on the
    loop, without a thread hand-over per request (off_loop.on_loop)."""
    threads = decoding_threads(monkeypatch)
    r = await sim_rig()
    plain = bytes(b for b in range(256) if b not in b"\n\r<;=") * 300
    photo = dataclasses.replace(
        submit("+12015550123", tid="tx-photo"),
        content=make_part(plain, "image/jpeg", content_id="photo"),
    )
    assert len(encode(photo).body) >= off_loop.DECODE_OFF_LOOP_BYTES
    async with r.client() as client:
        result = await client.send(photo)
    assert result.http_status == 200
    assert threads and set(threads) == {threading.get_ident()}


# ---------------------------------------------------------------- personas on the bytes


async def test_nokia_prefix_and_base64_in_what_it_sends(sim_rig: Make) -> None:
    r = await sim_rig("nokia")
    async with r.client() as client:
        result = await client.send(submit(report=False))
    assert result.http_status == 200
    mo = await r.control(
        "POST",
        "/mo",
        {
            "to": "12345",
            "from": "+15551230009",
            "text": "hi there",
            "media": [{"data": base64.b64encode(png()).decode(), "filename": "a.png"}],
        },
    )
    assert mo["ok"] is True and mo["attempts"] == 1
    hit = r.vasp.hits[-1]
    assert b"<mm7p6a0:DeliverReq" in hit.body and b'xmlns:mm7p6a0="' in hit.body
    assert b"Content-Transfer-Encoding: base64" in hit.body
    assert b"\x89PNG" not in hit.body  # the image went base64, not binary
    assert isinstance(hit.message, DeliverReq) and hit.message.content is not None


async def test_nokia_responses_use_its_prefix(sim_rig: Make) -> None:
    r = await sim_rig("nokia")
    encoded = encode(submit(report=False))
    status, _, body = await r.post(encoded.body, encoded.content_type)
    assert status == 200 and b"<mm7p6a0:SubmitRsp" in body


async def test_aggregator_wants_smil_and_answers_application_xml(sim_rig: Make) -> None:
    r = await sim_rig("aggregator")
    encoded = encode(submit(report=False))
    status, headers, body = await r.post(encoded.body, encoded.content_type)
    assert headers["Content-Type"].startswith("application/xml")
    error = decode(body, headers["Content-Type"]).message
    assert isinstance(error, Fault) and error.error is not None
    assert error.error.status.code == 2004 and "SMIL" in (error.error.status.details or "")
    ok = encode(submit(report=False, smil=True))
    status, headers, body = await r.post(ok.body, ok.content_type)
    assert status == 200 and headers["Content-Type"].startswith("application/xml")
    assert b"<SubmitRsp" in body  # default namespace, no prefix


async def test_aggregator_refuses_chunked_with_411(sim_rig: Make) -> None:
    r = await sim_rig("aggregator")
    chunked = Dialect.from_mapping({"chunked": True}, base=STRICT_3GPP)
    async with r.client(chunked) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.send(submit(report=False, smil=True))
    assert info.value.http_status == 411
    async with r.client() as client:
        assert (await client.send(submit(report=False, smil=True))).status.code == 1000


async def test_bare_status_fault_detail(sim_rig: Make) -> None:
    r = await sim_rig("bare-status-faults")
    await r.control("POST", "/faults", {"once": [{"kind": "status", "code": 2002}]})
    encoded = encode(submit(tid="tx-b"))
    status, headers, body = await r.post(encoded.body, encoded.content_type)
    assert status == 500
    detail = fault_detail(body)
    assert [etree.QName(c).localname for c in detail] == ["Status"]
    decoded = decode(body, headers["Content-Type"])
    assert Leniency.FAULT_BARE_STATUS in decoded.leniencies
    assert isinstance(decoded.message, Fault) and decoded.message.status is not None
    assert decoded.message.status.code == 2002


async def test_carrier_codes_and_http_200_faults(sim_rig: Make) -> None:
    r = await sim_rig("carrier-codes")
    await r.control("POST", "/faults", {"max_bytes": 200})
    async with r.client() as client:
        with pytest.raises(MM7ClientError) as info:
            await client.send(submit(report=False))
    assert info.value.code == 2103 and info.value.http_status == 200
    assert info.value.text == "Content size or type not allowed"


# ---------------------------------------------------------------- faults


async def fault_error(r: Rig, spec: dict[str, Any], **link: Any) -> MM7ClientError:
    await r.control("POST", "/faults", {"once": [spec]})
    async with r.client(**link) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.send(submit(report=False))
    return info.value


@pytest.mark.parametrize("http", [500, 503])
async def test_fault_http_status(sim_rig: Make, http: int) -> None:
    r = await sim_rig()
    error = await fault_error(r, {"kind": "http", "http_status": http})
    assert error.http_status == http and error.outcome is Outcome.HTTP_STATUS and error.transient
    async with r.client() as client:  # one-shot: the next request is fine
        assert (await client.send(submit(report=False))).status.code == 1000


async def test_fault_reset(sim_rig: Make) -> None:
    r = await sim_rig()
    error = await fault_error(r, {"kind": "reset"})
    assert error.outcome is Outcome.CONNECTION_RESET and error.transient


async def test_fault_truncated_body(sim_rig: Make) -> None:
    r = await sim_rig()
    error = await fault_error(r, {"kind": "truncate"})
    assert error.outcome is Outcome.CONNECTION_RESET and error.transient


async def test_fault_malformed_xml(sim_rig: Make) -> None:
    r = await sim_rig()
    error = await fault_error(r, {"kind": "malformed-xml"})
    assert error.outcome is Outcome.MALFORMED and error.http_status == 200


async def test_fault_latency(sim_rig: Make) -> None:
    r = await sim_rig()
    error = await fault_error(r, {"kind": "latency", "delay": 1.0}, request_timeout=0.2)
    assert error.outcome is Outcome.TIMEOUT


@pytest.mark.parametrize(("code", "transient"), [(4008, False), (3001, False), (4006, True)])
async def test_fault_any_status(sim_rig: Make, code: int, transient: bool) -> None:
    r = await sim_rig()
    error = await fault_error(r, {"kind": "status", "code": code, "details": "injected"})
    assert error.code == code and error.details is not None and "injected" in error.details
    assert error.http_status == 500


async def test_fault_rate(sim_rig: Make) -> None:
    r = await sim_rig()
    await r.control("POST", "/faults", {"rates": [{"kind": "http", "http_status": 503, "rate": 1}]})
    async with r.client() as client:
        for _ in range(2):
            with pytest.raises(MM7ClientError):
                await client.send(submit(report=False))
    await r.control("DELETE", "/faults")
    async with r.client() as client:
        assert (await client.send(submit(report=False))).status.code == 1000


async def test_tps_limit_answers_4006(sim_rig: Make) -> None:
    r = await sim_rig(clock=lambda: 100.0, faults={"tps": 2})
    async with r.client() as client:
        await client.send(submit(report=False))
        await client.send(submit(report=False))
        with pytest.raises(MM7ClientError) as info:
            await client.send(submit(report=False))
    assert info.value.code == 4006 and info.value.transient


async def test_size_limit_answers_2004(sim_rig: Make) -> None:
    r = await sim_rig()
    await r.control("POST", "/faults", {"max_bytes": 300})
    encoded = encode(submit(report=False))
    status, headers, body = await r.post(encoded.body, encoded.content_type)
    message = decode(body, headers["Content-Type"]).message
    assert status == 500 and isinstance(message, Fault) and message.error is not None
    assert message.error.status.code == 2004 and "300" in (message.error.status.details or "")


async def test_basic_auth_required(sim_rig: Make) -> None:
    r = await sim_rig(faults={"basic_auth": {"user": "vasp", "password": "pw-123"}})
    encoded = encode(submit(report=False))
    status, headers, body = await r.post(encoded.body, encoded.content_type)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    message = decode(body, headers["Content-Type"]).message
    assert isinstance(message, Fault) and message.error is not None
    assert message.error.status.code == 4001
    auth = BasicAuth("vasp", Secret("pw-123"))
    async with r.client(auth=auth) as client:
        assert (await client.send(submit(report=False))).status.code == 1000


async def test_bad_fault_config_is_400(sim_rig: Make) -> None:
    r = await sim_rig()
    answer = await r.control("POST", "/faults", {"once": [{"kind": "explode"}]})
    assert "explode" in answer["error"]


# ---------------------------------------------------------------- report retries and mixes


@pytest.mark.parametrize("mode", ["blank", "wrong-tid", "status"])
async def test_strict_retry_until_proper_answer(sim_rig: Make, mode: str) -> None:
    r = await sim_rig(vasp=Vasp(mode=mode, bad=2))
    async with r.client() as client:
        await client.send(submit())
    await r.sim.dlr.idle()
    attempts = [e for e in r.sim.store.exchanges if e.direction == "out"]
    assert [e.attempt for e in attempts] == [1, 2, 3]
    assert attempts[0].problems and attempts[-1].problems == ()
    assert len({h.message.transaction_id for h in r.vasp.hits}) == 1  # a retry reuses it
    assert r.sim.dlr.deliveries[-1].ok


async def test_lax_takes_a_blank_200(sim_rig: Make) -> None:
    r = await sim_rig(vasp=Vasp(mode="blank", bad=99), retry=RetryPolicy(mode="lax", backoff=0))
    async with r.client() as client:
        await client.send(submit())
    await r.sim.dlr.idle()
    assert len(r.vasp.hits) == 1 and r.sim.dlr.deliveries[0].ok


async def test_retries_are_bounded(sim_rig: Make) -> None:
    r = await sim_rig(vasp=Vasp(mode="blank", bad=99))
    async with r.client() as client:
        await client.send(submit())
    await r.sim.dlr.idle()
    assert len(r.vasp.hits) == 3 and not r.sim.dlr.deliveries[0].ok


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        (DlrPlan(delay=0, final_delay=0, forwarded=1), ["Forwarded", "Retrieved"]),
        (
            DlrPlan(delay=0, final_delay=0, forwarded=1, out_of_order=1, retrieved=0, expired=1),
            ["Expired", "Forwarded"],
        ),
        (DlrPlan(delay=0, retrieved=0, rejected=1, duplicate=1), ["Rejected", "Rejected"]),
    ],
)
async def test_report_mixes(sim_rig: Make, plan: DlrPlan, expected: list[str]) -> None:
    r = await sim_rig(dlr=plan)
    async with r.client() as client:
        await client.send(submit())
    await r.sim.dlr.idle()
    reports = r.vasp.reports()
    assert [str(x.mm_status) for x in reports] == expected
    assert len({x.transaction_id for x in reports}) == len(reports)


async def test_reports_reach_the_projects_inbound_server(aiohttp_server: Server) -> None:
    from mm7.transport.server import InboundContext, InboundHandlers, create_inbound_app

    seen: list[DeliveryReportReq] = []
    done = asyncio.Event()

    async def on_report(ctx: InboundContext[DeliveryReportReq]) -> Status:
        seen.append(ctx.message)
        done.set()
        return Status.of(1000)

    vasp = await aiohttp_server(
        create_inbound_app(handlers=InboundHandlers(on_delivery_report=on_report))
    )
    config = SimulatorConfig(
        vasp_url=str(vasp.make_url("/mm7")), dlr=DlrPlan(delay=0), retry=FAST_RETRY
    )
    sim = await aiohttp_server(create_simulator_app(config))
    async with MM7Client(LinkConfig(name="s", url=str(sim.make_url("/mm7")))) as client:
        rsp = await client.submit(submit())
    async with asyncio.timeout(10):
        await done.wait()
    assert seen[0].message_id == rsp.message_id
    await sim.app[SIMULATOR].dlr.idle()
    assert sim.app[SIMULATOR].dlr.deliveries[0].ok


# ---------------------------------------------------------------- control API


async def test_control_lists_parts_and_slides_and_serves_bytes(sim_rig: Make) -> None:
    r = await sim_rig()
    async with r.client() as client:
        await client.send(submit(report=False, smil=True, text="Look at this"))
    listed = await r.control("GET", "/messages")
    message = listed["messages"][0]
    assert message["operation"] == "SubmitReq" and message["message_id"].startswith("sim-")
    types = [p["content_type"] for p in message["parts"]]
    assert types == ["application/smil", "image/png", "text/plain"]
    assert all(p["content_id"] and p["size"] > 0 for p in message["parts"])
    slide = message["slides"][0]
    assert slide["image"]["part"] == 1 and slide["text"]["text"] == "Look at this"
    image = await r.control("GET", f"/messages/{message['id']}/parts/1")
    assert image == png()
    detail = await r.control("GET", f"/messages/{message['id']}")
    assert detail["fields"]["subject"] == "hi"


async def test_control_report_and_reset(sim_rig: Make) -> None:
    r = await sim_rig()
    async with r.client() as client:
        rsp = await client.submit(submit(report=False))
    answer = await r.control(
        "POST",
        "/report",
        {"message_id": rsp.message_id, "recipient": "+15551230001", "status": "Expired"},
    )
    assert answer["ok"] and r.vasp.reports()[0].mm_status is MMStatus.EXPIRED
    assert r.vasp.reports()[0].sender.value == "12345"
    read = await r.control(
        "POST", "/read-reply", {"message_id": rsp.message_id, "recipient": "+15551230001"}
    )
    assert read["ok"] and r.vasp.hits[-1].message.OPERATION == "ReadReplyReq"
    traffic = await r.control("GET", "/traffic")
    assert {e["direction"] for e in traffic["exchanges"]} == {"in", "out"}
    await r.control("POST", "/reset")
    assert (await r.control("GET", "/messages"))["messages"] == []
    assert (await r.control("GET", "/traffic"))["exchanges"] == []


async def test_errors_inside_the_normal_response(sim_rig: Make) -> None:
    persona = Persona(name="in-rsp", dialect=STRICT_3GPP, fault_shape="in-response")
    r = await sim_rig(persona)
    await r.control("POST", "/faults", {"once": [{"kind": "status", "code": 2002}]})
    encoded = encode(submit(tid="tx-i"))
    status, headers, body = await r.post(encoded.body, encoded.content_type)
    message = decode(body, headers["Content-Type"]).message
    assert status == 200 and b"Fault" not in body
    assert isinstance(message, SubmitRsp) and message.transaction_id == "tx-i"
    assert message.status.code == 2002


async def test_store_is_bounded_and_wakes_waiters(sim_rig: Make) -> None:
    r = await sim_rig(max_messages=2, max_exchanges=3)
    async with r.client() as client:
        waiter = asyncio.create_task(r.sim.store.wait_for(lambda: len(r.sim.store.messages) == 2))
        for _ in range(4):
            await client.send(submit(report=False))
        await waiter
    assert len(r.sim.store.messages) == 2 and len(r.sim.store.exchanges) == 3
    ids = [m["id"] for m in (await r.control("GET", "/messages"))["messages"]]
    assert ids == sorted(ids) and len(ids) == 2


async def test_web_page_shows_slides_with_image_and_text(sim_rig: Make) -> None:
    r = await sim_rig()
    async with r.client() as client:
        await client.send(submit(report=False, smil=True, text="Hi <there> & you"))
    async with aiohttp.ClientSession() as session, session.get(r.base + "/ui/messages") as page:
        html = await page.text()
        assert page.content_type == "text/html"
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert 'data-slide="1"' in html and "Hi &lt;there&gt; &amp; you" in html
    src = html.split('<img src="', 1)[1].split('"', 1)[0]
    async with aiohttp.ClientSession() as session, session.get(r.base + src) as image:
        assert await image.read() == png() and image.content_type == "image/png"
        assert image.headers["X-Content-Type-Options"] == "nosniff"


async def test_replace_and_extended_variants(sim_rig: Make) -> None:
    from mm7.core.model import ExtendedCancelReq, ExtendedReplaceReq, ReplaceReq

    r = await sim_rig()
    new_content = make_part(b"Updated", "text/plain; charset=utf-8", content_id="t2")
    async with r.client() as client:
        first = await client.submit(submit(report=False))
        assert first.message_id
        replaced = await client.replace(
            ReplaceReq(vasp_id="vasp", message_id=first.message_id, content=new_content)
        )
        assert replaced.status.code == 1000
        extended = await client.extended_replace(
            ExtendedReplaceReq(vasp_id="vasp", replace_id=first.message_id, content=new_content)
        )
        assert extended.message_id and extended.message_id != first.message_id
        cancelled = await client.extended_cancel(
            ExtendedCancelReq(vasp_id="vasp", cancel_id=extended.message_id)
        )
        assert cancelled.status.code == 1000
        with pytest.raises(MM7ClientError) as info:
            await client.replace(ReplaceReq(vasp_id="vasp", message_id="sim-nope"))
    assert info.value.code == 2005
    operations = [m.operation for m in r.sim.store.messages]
    assert operations == ["SubmitReq", "ReplaceReq", "extendedReplaceReq", "extendedCancelReq"]


async def test_broken_mime_is_2007_with_the_reason(sim_rig: Make) -> None:
    r = await sim_rig()
    body = b"--b1\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--b1--\r\n"
    status, headers, answer = await r.post(body, 'multipart/related; boundary="b1"')
    message = decode(answer, headers["Content-Type"]).message
    assert status == 500 and isinstance(message, Fault) and message.error is not None
    assert message.error.status.code == 2007 and message.error.status.details


async def test_carrier_codes_replace_throttling(sim_rig: Make) -> None:
    r = await sim_rig("carrier-codes", clock=lambda: 5.0, faults={"tps": 1})
    async with r.client() as client:
        await client.send(submit(report=False))
        with pytest.raises(MM7ClientError) as info:
            await client.send(submit(report=False))
    assert info.value.code == 4101 and info.value.text == "System under maintenance"


async def test_aggregator_sends_reports_in_its_dialect(sim_rig: Make) -> None:
    r = await sim_rig("aggregator")
    async with r.client() as client:
        await client.send(submit("+15551230001", smil=True))
    hit = (await r.vasp.wait(1))[0]
    assert b"<DeliveryReportReq" in hit.body and b"<Number>15551230001</Number>" in hit.body
    assert hit.headers["SOAPAction"] == f'"{STRICT_3GPP.namespace}"'


def test_persona_file_errors_name_the_key(tmp_path: Any) -> None:
    from mm7.simulator.personas import PersonaError, load_persona_file

    bad = tmp_path / "odd.toml"
    bad.write_text('[reply]\nfault_shape = "sideways"\n')
    with pytest.raises(PersonaError, match="sideways"):
        load_persona_file(bad)
    bad.write_text("[accept]\nrequire_xml = true\n")
    with pytest.raises(PersonaError, match="require_xml"):
        load_persona_file(bad)
    bad.write_text('[dialect]\nmm7_prefix = "1bad"\n')
    with pytest.raises(PersonaError, match="mm7_prefix"):
        load_persona_file(bad)


async def test_traffic_keeps_wire_bytes_with_secrets_masked(sim_rig: Make) -> None:
    r = await sim_rig(faults={"basic_auth": {"user": "vasp", "password": "pw-secret-9"}})
    async with r.client(auth=BasicAuth("vasp", Secret("pw-secret-9"))) as client:
        await client.send(submit(report=False, tid="tx-w"))
    listed = (await r.control("GET", "/traffic"))["exchanges"]
    entry = await r.control("GET", f"/traffic/{listed[-1]['id']}")
    assert entry["transaction_id"] == "tx-w" and "SubmitReq" in entry["request_body"]
    assert "SubmitRsp" in entry["response_body"] and entry["request_size"] > 0
    headers = dict(entry["request_headers"])
    assert "pw-secret-9" not in str(entry) and "Authorization" in headers


async def test_aggregator_takes_one_recipient_per_submit(sim_rig: Make) -> None:
    r = await sim_rig("aggregator")
    async with r.client() as client:
        with pytest.raises(MM7ClientError) as info:
            await client.send(submit("+15551230001", "+15551230002", smil=True))
    assert info.value.code == 3003 and "at most 1" in (info.value.details or "")


async def test_persona_version_list_answers_4002(sim_rig: Make) -> None:
    persona = Persona(name="rel6-only", dialect=STRICT_3GPP, versions=("REL-6-MM7-1-4",))
    r = await sim_rig(persona)
    async with r.client(get_dialect("rel5-legacy")) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.send(submit(report=False))
    assert info.value.code == 4002 and "REL-5-MM7-1-2" in (info.value.details or "")
    async with r.client() as client:
        assert (await client.send(submit(report=False))).status.code == 1000
