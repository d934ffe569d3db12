"""The MMSC simulator on loopback for tests: ``start_rig`` serves a simulator with a small VASP
(``Vasp``) receiving its reports and MOs, and ``Rig`` posts to it, drives its control API and
makes clients; plus a SubmitReq maker and the fault detail reader."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from lxml import etree
from PIL import Image

from mm7.content.builder import build_presentation, to_part
from mm7.content.parts import make_items
from mm7.core.codec import decode, encode
from mm7.core.dialect import STRICT_3GPP, Dialect
from mm7.core.mime import make_part
from mm7.core.model import (
    RESPONSE_FOR,
    Address,
    DeliveryReportReq,
    Message,
    Recipients,
    Request,
    Status,
    SubmitReq,
    reply_to,
)
from mm7.core.versions import SOAP_ENV_NS
from mm7.simulator.app import SIMULATOR, Simulator, SimulatorConfig, create_simulator_app
from mm7.simulator.dlr import DlrPlan, RetryPolicy
from mm7.simulator.personas import Persona, load_persona
from mm7.transport.client import MM7Client
from mm7.transport.link import LinkConfig

Server = Callable[..., Awaitable[Any]]
FAST_RETRY = RetryPolicy(max_attempts=3, backoff=0.0, timeout=5.0)


def png() -> bytes:
    """A tiny real PNG (8x6, Pillow)."""
    out = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def submit(
    *numbers: str, report: bool = True, smil: bool = False, tid: str = "", text: str = "Hello"
) -> SubmitReq:
    """A SubmitReq to ``numbers``: one text part, or a SMIL slide with a PNG and the text."""
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
    """A running simulator: its MM7 URL, its base URL (control API, UI), the app's Simulator
    and the VASP it reports to."""

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


async def start_rig(
    aiohttp_server: Server,
    persona: str | Persona = "strict-3gpp",
    vasp: Vasp | None = None,
    **kw: Any,
) -> Rig:
    """A simulator of ``persona`` on loopback reporting to ``vasp`` (a new ``Vasp``), also on
    loopback; ``kw`` sets other SimulatorConfig fields (reports come at once unless ``dlr``)."""
    receiver = vasp or Vasp()
    vasp_server = await aiohttp_server(receiver.app())
    p = persona if isinstance(persona, Persona) else load_persona(persona)
    kw.setdefault("dlr", DlrPlan(delay=0.0, final_delay=0.0))
    kw.setdefault("retry", FAST_RETRY)
    config = SimulatorConfig(persona=p, vasp_url=str(vasp_server.make_url("/vasp")), seed=7, **kw)
    app = create_simulator_app(config)
    server = await aiohttp_server(app, ssl=config.ssl_context())
    return Rig(
        str(server.make_url("/mm7")),
        str(server.make_url("")).rstrip("/"),
        app[SIMULATOR],
        receiver,
    )


def fault_detail(body: bytes) -> etree._Element:
    """The ``detail`` element of the SOAP Fault in ``body`` (asserting there is one)."""
    root = etree.fromstring(body)
    detail = root.find(f".//{{{SOAP_ENV_NS}}}Fault/detail")
    assert detail is not None, body
    return detail
