"""A Kannel-style sendsms gateway for the SMS fallback tests, on loopback: records each SMS
(its query), answers with the status the test scripts (202 by default; ``answers`` first), and
calls an SMS's dlr-url when the test says so (``report``), as Kannel's smsbox does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

Server = Callable[..., Awaitable[Any]]
URL_TEMPLATE = "/cgi-bin/sendsms?to={to}&from={from}&text={text}&coding={coding}&dlr-url={dlr_url}"


class SendSms:
    """The gateway's state: the SMS received, the statuses still to answer with."""

    def __init__(self, answers: list[int] | None = None, *, hang: bool = False) -> None:
        self.sent: list[dict[str, str]] = []
        self.answers = list(answers or [])
        self.hang = hang
        self.arrived = asyncio.Event()
        self.server: Any = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/sendsms", self._sendsms)
        return app

    async def start(self, aiohttp_server: Server) -> SendSms:
        self.server = await aiohttp_server(self.app())
        return self

    @property
    def url(self) -> str:
        """The ``url`` of an ``[sms_links.NAME]`` type = "http" pointing here."""
        return f"http://127.0.0.1:{self.server.port}{URL_TEMPLATE}"

    async def _sendsms(self, request: web.Request) -> web.Response:
        self.sent.append(dict(request.query))
        self.arrived.set()
        if self.hang:
            await asyncio.Event().wait()  # never answers (a send that never comes back)
        status = self.answers.pop(0) if self.answers else 202
        return web.Response(status=status, text="0: Accepted for delivery")

    async def wait(self, count: int) -> list[dict[str, str]]:
        """The SMS received once there are ``count`` of them."""
        async with asyncio.timeout(20):
            while len(self.sent) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.sent

    async def report(self, index: int, kind: int = 1) -> int:
        """Call the dlr-url of SMS ``index`` with Kannel's dlr type ``kind`` (1 delivered, 2
        failed, 16 rejected); the HTTP status the gateway answered."""
        url = self.sent[index]["dlr-url"].replace("%d", str(kind))
        async with aiohttp.ClientSession() as http, http.get(url) as rsp:
            return rsp.status
