"""``HttpSmsLink``: SMS through a Kannel sendsms-style HTTP gateway (a GET on a URL template),
with delivery reports coming back on a dlr-url that ``dlr_handler`` answers."""

from __future__ import annotations

import base64
import contextlib
import secrets
from urllib.parse import quote

import aiohttp
import structlog
from aiohttp import web

from mm7.service.sms.encoding import Coding, encode_gsm
from mm7.service.sms.link import (
    Receipt,
    ReceiptHandler,
    ReceiptState,
    SentSms,
    SmsRejected,
    SmsUnavailable,
)
from mm7.service.sms.settings import HttpSmsSettings
from mm7.transport.flow import TokenBucket

__all__ = ["DLR_PATH", "HttpSmsLink"]

log = structlog.get_logger("mm7.service.sms.http")

#: where the gateway's dlr-url points, under ``dlr_url_base``; Kannel substitutes %d (the type)
DLR_PATH = "/sms/dlr/{link}/{sms_id}"
#: Kannel's dlr types: 1 delivered, 2 failed on the handset side, 16 rejected by the SMSC
_DLR_TYPES = {1: ReceiptState.DELIVERED, 2: ReceiptState.UNDELIVERABLE, 16: ReceiptState.REJECTED}
_FIELDS = ("to", "from", "text", "coding", "charset", "dlr_url", "username", "password")


class HttpSmsLink:
    """An ``SmsLink`` over HTTP; ``send`` returns an id of ours (Kannel returns none), the one the
    dlr-url carries back."""

    def __init__(self, settings: HttpSmsSettings) -> None:
        self.name = settings.name
        self._s = settings
        self._bucket = TokenBucket(settings.tps, burst=1)
        self._session: aiohttp.ClientSession | None = None
        self._on_receipt: ReceiptHandler | None = None

    async def start(self, on_receipt: ReceiptHandler) -> None:
        """Open the HTTP session; receipts reach ``on_receipt`` through ``dlr_handler``."""
        self._on_receipt = on_receipt
        headers = {}
        if self._s.username and "{password}" not in self._s.url:
            secret = self._s.password.reveal() if self._s.password else ""
            raw = f"{self._s.username}:{secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=self._s.timeout)
        )

    def _url(self, to: str, sender: str, text: str, sms_id: str) -> str:
        coding = Coding.GSM if encode_gsm(text) is not None else Coding.UCS2
        dlr_url = ""
        if self._s.dlr_url_base:
            path = DLR_PATH.format(link=quote(self.name, safe=""), sms_id=sms_id)
            dlr_url = self._s.dlr_url_base.rstrip("/") + path + "?type=%d"
        values = {
            "to": to, "from": sender, "text": text, "charset": "UTF-8",
            "coding": "0" if coding is Coding.GSM else "2",  # Kannel: 0 = 7-bit, 2 = UCS-2
            "dlr_url": dlr_url, "username": self._s.username,
            "password": self._s.password.reveal() if self._s.password else "",
        }  # fmt: skip
        return self._s.url.format_map({k: quote(values[k], safe="") for k in _FIELDS})

    async def send(self, to: str, text: str, sender: str | None = None) -> SentSms:
        """One GET on the template, one part (the gateway splits a long text itself); 2xx =
        accepted, 4xx = SmsRejected, else SmsUnavailable."""
        if self._session is None:
            raise SmsUnavailable(f"sms link {self.name!r} is not started")
        if not text:
            raise ValueError("sms text is empty")
        sms_id = secrets.token_hex(16)
        url = self._url(to, sender or self._s.source_addr, text, sms_id)
        await self._bucket.acquire()
        try:
            async with self._session.get(url) as resp:
                body = (await resp.text(errors="replace"))[:200]
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            # the URL may carry a password: name the link and the error class only
            log.warning("mm7.sms.http_failed", link=self.name, error=type(exc).__name__)
            raise SmsUnavailable(f"sms link {self.name!r}: {type(exc).__name__}") from None
        if 200 <= status < 300:
            log.info("mm7.sms.submitted", link=self.name, sms_id=sms_id, parts=1)
            return SentSms((sms_id,))
        if 400 <= status < 500 and status not in (408, 429):
            raise SmsRejected(self.name, status, body.strip())
        raise SmsUnavailable(f"sms link {self.name!r}: HTTP {status} {body.strip()}")

    async def dlr_handler(self, request: web.Request) -> web.Response:
        """The dlr-url endpoint (mount at DLR_PATH with {link} and {sms_id}); intermediate types
        (buffered, smsc-accepted) are acknowledged and ignored."""
        sms_id = request.match_info["sms_id"]
        try:
            kind = int(request.query.get("type", ""))
        except ValueError:
            return web.Response(status=400, text="type: expected Kannel's dlr type, an integer")
        state = _DLR_TYPES.get(kind)
        if state is not None and self._on_receipt is not None:
            await self._on_receipt(Receipt(self.name, sms_id, state))
        return web.Response(text="ok")

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
            self._session = None
