"""The HTTP SMS link against a sendsms-style gateway on loopback: the URL template filled and
URL-encoded, basic auth sent, status codes classified, and the dlr-url calling back a receipt."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mm7.service.sms import HttpSmsSettings, Receipt, ReceiptState, SmsRejected, SmsUnavailable
from mm7.service.sms.http import DLR_PATH, HttpSmsLink
from mm7.transport.link import Secret

Server = Callable[..., Awaitable[Any]]


async def _gateway(aiohttp_server: Server, status: int = 202) -> tuple[Any, list[Any]]:
    """A Kannel-like sendsms: answers ``status`` and, when a dlr-url is given, calls it with
    type=8 (SMSC accepted) then type=1 (delivered)."""
    seen: list[Any] = []

    async def sendsms(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization"), dict(request.query)))
        if status == 202 and (dlr := request.query.get("dlr-url")):

            async def report() -> None:
                async with aiohttp.ClientSession() as s:
                    for kind in (8, 1):
                        async with s.get(dlr.replace("%d", str(kind))) as r:
                            assert r.status == 200

            asyncio.get_running_loop().create_task(report())
        return web.Response(status=status, text="0: Accepted for delivery")

    app = web.Application()
    app.router.add_get("/cgi-bin/sendsms", sendsms)
    return await aiohttp_server(app), seen


async def test_send_fills_the_template_and_the_dlr_comes_back(aiohttp_server: Server) -> None:
    got: list[Receipt] = []
    arrived = asyncio.Event()

    async def on_receipt(receipt: Receipt) -> None:
        got.append(receipt)
        arrived.set()

    dlr_app = web.Application()
    link_holder: list[HttpSmsLink] = []

    async def dlr(request: web.Request) -> web.Response:
        return await link_holder[0].dlr_handler(request)

    dlr_app.router.add_get(DLR_PATH, dlr)
    dlr_server = await aiohttp_server(dlr_app)
    gateway, seen = await _gateway(aiohttp_server)
    url = (
        f"http://127.0.0.1:{gateway.port}/cgi-bin/sendsms?to={{to}}&from={{from}}&text={{text}}"
        "&coding={coding}&charset={charset}&dlr-mask=31&dlr-url={dlr_url}"
    )
    settings = HttpSmsSettings(
        name="kannel", url=url, username="gw", password=Secret("p@ss"), source_addr="MM7",
        dlr_url_base=f"http://127.0.0.1:{dlr_server.port}",
    )  # fmt: skip
    link = HttpSmsLink(settings)
    link_holder.append(link)
    await link.start(on_receipt)
    try:
        sent = await link.send("+447700900001", "Ваш MMS: https://x.example/m/abc?a=1&b=2")
        await asyncio.wait_for(arrived.wait(), 20)
    finally:
        await link.close()
    ((auth, query),) = seen
    assert auth == "Basic " + base64.b64encode(b"gw:p@ss").decode()
    assert query["to"] == "+447700900001" and query["from"] == "MM7"
    assert query["text"] == "Ваш MMS: https://x.example/m/abc?a=1&b=2"
    assert (query["coding"], query["charset"]) == ("2", "UTF-8")
    (sms_id,) = sent.part_ids  # one part: the gateway splits a long text itself
    assert query["dlr-url"].endswith(f"/sms/dlr/kannel/{sms_id}?type=%d")
    assert got == [Receipt("kannel", sms_id, ReceiptState.DELIVERED)]


@pytest.mark.parametrize(("status", "error"), [(403, SmsRejected), (503, SmsUnavailable)])
async def test_gateway_refusals_are_classified(
    aiohttp_server: Server, status: int, error: type[Exception]
) -> None:
    gateway, seen = await _gateway(aiohttp_server, status=status)
    url = f"http://127.0.0.1:{gateway.port}/cgi-bin/sendsms?to={{to}}&text={{text}}"
    link = HttpSmsLink(HttpSmsSettings(name="kannel", url=url))

    async def ignore(receipt: Receipt) -> None:
        raise AssertionError("no receipt expected")

    await link.start(ignore)
    try:
        with pytest.raises(error, match="kannel"):
            await link.send("447700900001", "plain text")
    finally:
        await link.close()
    ((auth, query),) = seen
    assert auth is None and query == {"to": "447700900001", "text": "plain text"}
