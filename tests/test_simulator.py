"""The MMSC simulator on the wire: the project's client as the VASP sending to it, a small real
aiohttp app as the VASP receiving its reports and MOs. Every persona and fault is checked on the
bytes (prefixes, CTE, Content-Type, HTTP status, fault detail shape), not only on parsed objects.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from lxml import etree
from PIL import Image

from mm7.content.builder import build_presentation, to_part
from mm7.content.parts import make_items
from mm7.core.codec import decode, encode
from mm7.core.dialect import STRICT_3GPP, Dialect, get_dialect
from mm7.core.leniency import Leniency
from mm7.core.mime import make_part
from mm7.core.model import (
    RESPONSE_FOR,
    Address,
    CancelReq,
    DeliverReq,
    DeliveryReportReq,
    Fault,
    Message,
    Recipients,
    Request,
    RSErrorRsp,
    Status,
    SubmitReq,
    SubmitRsp,
    reply_to,
)
from mm7.core.status import MMStatus
from mm7.core.versions import SOAP_ENV_NS
from mm7.simulator.app import SIMULATOR, Simulator, SimulatorConfig, create_simulator_app
from mm7.simulator.dlr import DlrPlan, RetryPolicy
from mm7.simulator.personas import Persona, load_persona
from mm7.transport.classify import Outcome
from mm7.transport.client import MM7Client
from mm7.transport.errors import MM7ClientError
from mm7.transport.link import BasicAuth, LinkConfig, Secret

Server = Callable[..., Awaitable[Any]]
FAST_RETRY = RetryPolicy(max_attempts=3, backoff=0.0, timeout=5.0)


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def submit(
    *numbers: str, report: bool = True, smil: bool = False, tid: str = "", text: str = "Hello"
) -> SubmitReq:
    if smil:
        content = to_part(build_presentation(make_items([png(), text])))
    else:
        content = make_part(text.encode(), "text/plain; charset=utf-8", content_id="text1")
    return SubmitReq(
        transaction_id=tid,
        vasp_id="vasp",
        vas_id="vas",
        sender_address=Address.guess("12345"),
        recipients=Recipients(to=tuple(Address(n) for n in numbers or ("+15551230001",))),
        delivery_report=report,
        subject="hi",
        content=content,
    )


# ---------------------------------------------------------------- a small VASP receiving reports


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    message: Message


@dataclass
class Vasp:
    """Records every request byte for byte; answers per ``mode`` (proper, blank, wrong-tid,
    status) for the first ``bad`` requests, properly after that."""

    mode: str = "proper"
    bad: int = 0
    hits: list[Hit] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/vasp", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        message = decode(body, request.headers.get("Content-Type")).message
        self.hits.append(Hit(dict(request.headers), body, message))
        self.changed.set()
        assert isinstance(message, Request)
        mode = self.mode if len(self.hits) <= self.bad else "proper"
        if mode == "blank":
            return web.Response(status=200)
        rsp = reply_to(message, RESPONSE_FOR[type(message)](status=Status.of(1000)))
        if mode == "wrong-tid":
            rsp = type(rsp)(transaction_id="not-yours", status=rsp.status)
        if mode == "status":
            rsp = reply_to(message, RESPONSE_FOR[type(message)](status=Status.of(4006)))
        encoded = encode(rsp, STRICT_3GPP)
        return web.Response(body=encoded.body, headers={"Content-Type": encoded.content_type})

    async def wait(self, count: int, timeout: float = 10.0) -> list[Hit]:
        async with asyncio.timeout(timeout):
            while len(self.hits) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.hits

    def reports(self) -> list[DeliveryReportReq]:
        return [h.message for h in self.hits if isinstance(h.message, DeliveryReportReq)]


@dataclass
class Rig:
    url: str
    base: str
    sim: Simulator
    vasp: Vasp

    def client(self, dialect: Dialect = STRICT_3GPP, **kw: Any) -> MM7Client:
        return MM7Client(LinkConfig(name="sim", url=self.url, dialect=dialect, **kw))

    async def post(self, body: bytes, content_type: str, **kw: Any) -> tuple[int, Any, bytes]:
        headers = {"Content-Type": content_type, **kw.pop("headers", {})}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=body, headers=headers, **kw) as r,
        ):
            return r.status, r.headers, await r.read()

    async def control(self, method: str, path: str, json: Any = None) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.base + "/control" + path, json=json) as r,
        ):
            if r.content_type == "application/json":
                return await r.json()
            return await r.read()


Make = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rig(aiohttp_server: Server) -> AsyncIterator[Make]:
    async def make(
        persona: str | Persona = "strict-3gpp", vasp: Vasp | None = None, **kw: Any
    ) -> Rig:
        receiver = vasp or Vasp()
        vasp_server = await aiohttp_server(receiver.app())
        p = persona if isinstance(persona, Persona) else load_persona(persona)
        kw.setdefault("dlr", DlrPlan(delay=0.0, final_delay=0.0))
        kw.setdefault("retry", FAST_RETRY)
        config = SimulatorConfig(
            persona=p, vasp_url=str(vasp_server.make_url("/vasp")), seed=7, **kw
        )
        app = create_simulator_app(config)
        server = await aiohttp_server(app, ssl=config.ssl_context())
        return Rig(
            str(server.make_url("/mm7")),
            str(server.make_url("")).rstrip("/"),
            app[SIMULATOR],
            receiver,
        )

    yield make


def fault_detail(body: bytes) -> etree._Element:
    root = etree.fromstring(body)
    detail = root.find(f".//{{{SOAP_ENV_NS}}}Fault/detail")
    assert detail is not None, body
    return detail


# ---------------------------------------------------------------- submit, echo, reports


async def test_submit_gets_a_message_id_that_the_reports_carry(rig: Make) -> None:
    r = await rig()
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


async def test_no_report_unless_requested(rig: Make) -> None:
    r = await rig()
    async with r.client() as client:
        await client.send(submit(report=False))
    await r.sim.dlr.idle()
    assert r.vasp.hits == []


async def test_response_echoes_namespace_and_version_of_the_request(rig: Make) -> None:
    r = await rig("bare-status-faults")
    dialect = get_dialect("rel5-legacy")
    async with r.client(dialect) as client:
        result = await client.send(submit(tid="tx-5", report=False))
    rsp = result.message
    assert rsp.namespace == dialect.namespace and rsp.mm7_version == "5.3.0"


async def test_cancel_known_and_unknown(rig: Make) -> None:
    r = await rig()
    async with r.client() as client:
        rsp = await client.submit(submit(report=False))
        assert rsp.message_id
        cancel = CancelReq(vasp_id="vasp", message_id=rsp.message_id)
        assert (await client.send(cancel)).status.code == 1000
        with pytest.raises(MM7ClientError) as info:
            await client.send(cancel)
    assert info.value.code == 2005


async def test_vasp_operations_sent_to_the_mmsc_are_4003(rig: Make) -> None:
    r = await rig()
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


async def test_strict_mode_answers_4004_with_the_schema_reason(rig: Make) -> None:
    r = await rig()
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


async def test_lenient_mode_accepts_and_records_leniencies(rig: Make) -> None:
    r = await rig(strict=False)
    encoded = encode(submit(tid="tx-len"))
    status, headers, body = await r.post(with_bogus_element(encoded.body), encoded.content_type)
    assert status == 200
    assert decode(body, headers["Content-Type"]).message.OPERATION == "SubmitRsp"
    received = r.sim.store.messages[-1]
    assert Leniency.UNKNOWN_ELEMENT in received.leniencies
    listed = await r.control("GET", "/messages")
    assert "unknown-element" in listed["messages"][-1]["leniencies"]


async def test_broken_soap_is_2007(rig: Make) -> None:
    r = await rig()
    status, headers, body = await r.post(b"<env:Envelope><oops", "text/xml; charset=utf-8")
    message = decode(body, headers["Content-Type"]).message
    assert status == 500 and isinstance(message, Fault) and message.status is not None
    assert message.status.code == 2007 and message.status.details


# ---------------------------------------------------------------- personas on the bytes


async def test_nokia_prefix_and_base64_in_what_it_sends(rig: Make) -> None:
    r = await rig("nokia")
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


async def test_nokia_responses_use_its_prefix(rig: Make) -> None:
    r = await rig("nokia")
    encoded = encode(submit(report=False))
    status, _, body = await r.post(encoded.body, encoded.content_type)
    assert status == 200 and b"<mm7p6a0:SubmitRsp" in body


async def test_aggregator_wants_smil_and_answers_application_xml(rig: Make) -> None:
    r = await rig("aggregator")
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


async def test_aggregator_refuses_chunked_with_411(rig: Make) -> None:
    r = await rig("aggregator")
    chunked = Dialect.from_mapping({"chunked": True}, base=STRICT_3GPP)
    async with r.client(chunked) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.send(submit(report=False, smil=True))
    assert info.value.http_status == 411
    async with r.client() as client:
        assert (await client.send(submit(report=False, smil=True))).status.code == 1000


async def test_bare_status_fault_detail(rig: Make) -> None:
    r = await rig("bare-status-faults")
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


async def test_carrier_codes_and_http_200_faults(rig: Make) -> None:
    r = await rig("carrier-codes")
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
async def test_fault_http_status(rig: Make, http: int) -> None:
    r = await rig()
    error = await fault_error(r, {"kind": "http", "http_status": http})
    assert error.http_status == http and error.outcome is Outcome.HTTP_STATUS and error.transient
    async with r.client() as client:  # one-shot: the next request is fine
        assert (await client.send(submit(report=False))).status.code == 1000


async def test_fault_reset(rig: Make) -> None:
    r = await rig()
    error = await fault_error(r, {"kind": "reset"})
    assert error.outcome is Outcome.CONNECTION_RESET and error.transient


async def test_fault_truncated_body(rig: Make) -> None:
    r = await rig()
    error = await fault_error(r, {"kind": "truncate"})
    assert error.outcome is Outcome.CONNECTION_RESET and error.transient


async def test_fault_malformed_xml(rig: Make) -> None:
    r = await rig()
    error = await fault_error(r, {"kind": "malformed-xml"})
    assert error.outcome is Outcome.MALFORMED and error.http_status == 200


async def test_fault_latency(rig: Make) -> None:
    r = await rig()
    error = await fault_error(r, {"kind": "latency", "delay": 1.0}, request_timeout=0.2)
    assert error.outcome is Outcome.TIMEOUT


@pytest.mark.parametrize(("code", "transient"), [(4008, False), (3001, False), (4006, True)])
async def test_fault_any_status(rig: Make, code: int, transient: bool) -> None:
    r = await rig()
    error = await fault_error(r, {"kind": "status", "code": code, "details": "injected"})
    assert error.code == code and error.details is not None and "injected" in error.details
    assert error.http_status == 500


async def test_fault_rate(rig: Make) -> None:
    r = await rig()
    await r.control("POST", "/faults", {"rates": [{"kind": "http", "http_status": 503, "rate": 1}]})
    async with r.client() as client:
        for _ in range(2):
            with pytest.raises(MM7ClientError):
                await client.send(submit(report=False))
    await r.control("DELETE", "/faults")
    async with r.client() as client:
        assert (await client.send(submit(report=False))).status.code == 1000


async def test_tps_limit_answers_4006(rig: Make) -> None:
    r = await rig(clock=lambda: 100.0, faults={"tps": 2})
    async with r.client() as client:
        await client.send(submit(report=False))
        await client.send(submit(report=False))
        with pytest.raises(MM7ClientError) as info:
            await client.send(submit(report=False))
    assert info.value.code == 4006 and info.value.transient


async def test_size_limit_answers_2004(rig: Make) -> None:
    r = await rig()
    await r.control("POST", "/faults", {"max_bytes": 300})
    encoded = encode(submit(report=False))
    status, headers, body = await r.post(encoded.body, encoded.content_type)
    message = decode(body, headers["Content-Type"]).message
    assert status == 500 and isinstance(message, Fault) and message.error is not None
    assert message.error.status.code == 2004 and "300" in (message.error.status.details or "")


async def test_basic_auth_required(rig: Make) -> None:
    r = await rig(faults={"basic_auth": {"user": "vasp", "password": "pw-123"}})
    encoded = encode(submit(report=False))
    status, headers, body = await r.post(encoded.body, encoded.content_type)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    message = decode(body, headers["Content-Type"]).message
    assert isinstance(message, Fault) and message.error is not None
    assert message.error.status.code == 4001
    auth = BasicAuth("vasp", Secret("pw-123"))
    async with r.client(auth=auth) as client:
        assert (await client.send(submit(report=False))).status.code == 1000


async def test_bad_fault_config_is_400(rig: Make) -> None:
    r = await rig()
    answer = await r.control("POST", "/faults", {"once": [{"kind": "explode"}]})
    assert "explode" in answer["error"]


# ---------------------------------------------------------------- report retries and mixes


@pytest.mark.parametrize("mode", ["blank", "wrong-tid", "status"])
async def test_strict_retry_until_proper_answer(rig: Make, mode: str) -> None:
    r = await rig(vasp=Vasp(mode=mode, bad=2))
    async with r.client() as client:
        await client.send(submit())
    await r.sim.dlr.idle()
    attempts = [e for e in r.sim.store.exchanges if e.direction == "out"]
    assert [e.attempt for e in attempts] == [1, 2, 3]
    assert attempts[0].problems and attempts[-1].problems == ()
    assert len({h.message.transaction_id for h in r.vasp.hits}) == 1  # a retry reuses it
    assert r.sim.dlr.deliveries[-1].ok


async def test_lax_takes_a_blank_200(rig: Make) -> None:
    r = await rig(vasp=Vasp(mode="blank", bad=99), retry=RetryPolicy(mode="lax", backoff=0))
    async with r.client() as client:
        await client.send(submit())
    await r.sim.dlr.idle()
    assert len(r.vasp.hits) == 1 and r.sim.dlr.deliveries[0].ok


async def test_retries_are_bounded(rig: Make) -> None:
    r = await rig(vasp=Vasp(mode="blank", bad=99))
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
async def test_report_mixes(rig: Make, plan: DlrPlan, expected: list[str]) -> None:
    r = await rig(dlr=plan)
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


async def test_control_lists_parts_and_slides_and_serves_bytes(rig: Make) -> None:
    r = await rig()
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


async def test_control_report_and_reset(rig: Make) -> None:
    r = await rig()
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


async def test_errors_inside_the_normal_response(rig: Make) -> None:
    persona = Persona(name="in-rsp", dialect=STRICT_3GPP, fault_shape="in-response")
    r = await rig(persona)
    await r.control("POST", "/faults", {"once": [{"kind": "status", "code": 2002}]})
    encoded = encode(submit(tid="tx-i"))
    status, headers, body = await r.post(encoded.body, encoded.content_type)
    message = decode(body, headers["Content-Type"]).message
    assert status == 200 and b"Fault" not in body
    assert isinstance(message, SubmitRsp) and message.transaction_id == "tx-i"
    assert message.status.code == 2002


async def test_store_is_bounded_and_wakes_waiters(rig: Make) -> None:
    r = await rig(max_messages=2, max_exchanges=3)
    async with r.client() as client:
        waiter = asyncio.create_task(r.sim.store.wait_for(lambda: len(r.sim.store.messages) == 2))
        for _ in range(4):
            await client.send(submit(report=False))
        await waiter
    assert len(r.sim.store.messages) == 2 and len(r.sim.store.exchanges) == 3
    ids = [m["id"] for m in (await r.control("GET", "/messages"))["messages"]]
    assert ids == sorted(ids) and len(ids) == 2


async def test_web_page_shows_slides_with_image_and_text(rig: Make) -> None:
    r = await rig()
    async with r.client() as client:
        await client.send(submit(report=False, smil=True, text="Hi <there> & you"))
    async with aiohttp.ClientSession() as session, session.get(r.base + "/ui") as page:
        html = await page.text()
        assert page.content_type == "text/html"
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert 'data-slide="1"' in html and "Hi &lt;there&gt; &amp; you" in html
    src = html.split('<img src="', 1)[1].split('"', 1)[0]
    async with aiohttp.ClientSession() as session, session.get(r.base + src) as image:
        assert await image.read() == png() and image.content_type == "image/png"
        assert image.headers["X-Content-Type-Options"] == "nosniff"


async def test_replace_and_extended_variants(rig: Make) -> None:
    from mm7.core.model import ExtendedCancelReq, ExtendedReplaceReq, ReplaceReq

    r = await rig()
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


async def test_broken_mime_is_2007_with_the_reason(rig: Make) -> None:
    r = await rig()
    body = b"--b1\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--b1--\r\n"
    status, headers, answer = await r.post(body, 'multipart/related; boundary="b1"')
    message = decode(answer, headers["Content-Type"]).message
    assert status == 500 and isinstance(message, Fault) and message.error is not None
    assert message.error.status.code == 2007 and message.error.status.details


async def test_carrier_codes_replace_throttling(rig: Make) -> None:
    r = await rig("carrier-codes", clock=lambda: 5.0, faults={"tps": 1})
    async with r.client() as client:
        await client.send(submit(report=False))
        with pytest.raises(MM7ClientError) as info:
            await client.send(submit(report=False))
    assert info.value.code == 4101 and info.value.text == "System under maintenance"


async def test_aggregator_sends_reports_in_its_dialect(rig: Make) -> None:
    r = await rig("aggregator")
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


async def test_traffic_keeps_wire_bytes_with_secrets_masked(rig: Make) -> None:
    r = await rig(faults={"basic_auth": {"user": "vasp", "password": "pw-secret-9"}})
    async with r.client(auth=BasicAuth("vasp", Secret("pw-secret-9"))) as client:
        await client.send(submit(report=False, tid="tx-w"))
    listed = (await r.control("GET", "/traffic"))["exchanges"]
    entry = await r.control("GET", f"/traffic/{listed[-1]['id']}")
    assert entry["transaction_id"] == "tx-w" and "SubmitReq" in entry["request_body"]
    assert "SubmitRsp" in entry["response_body"] and entry["request_size"] > 0
    headers = dict(entry["request_headers"])
    assert "pw-secret-9" not in str(entry) and "Authorization" in headers


async def test_aggregator_takes_one_recipient_per_submit(rig: Make) -> None:
    r = await rig("aggregator")
    async with r.client() as client:
        with pytest.raises(MM7ClientError) as info:
            await client.send(submit("+15551230001", "+15551230002", smil=True))
    assert info.value.code == 3003 and "at most 1" in (info.value.details or "")


async def test_persona_version_list_answers_4002(rig: Make) -> None:
    persona = Persona(name="rel6-only", dialect=STRICT_3GPP, versions=("REL-6-MM7-1-4",))
    r = await rig(persona)
    async with r.client(get_dialect("rel5-legacy")) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.send(submit(report=False))
    assert info.value.code == 4002 and "REL-5-MM7-1-2" in (info.value.details or "")
    async with r.client() as client:
        assert (await client.send(submit(report=False))).status.code == 1000
