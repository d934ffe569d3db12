"""``SmppLink``: an SMPP 3.4 transceiver bind through the smpp34 library (its Rust core does the
PDUs, the window and enquire_link); this adds TPS, long text with UDH, encoding, throttling
retries, receipts and reconnection with backoff.

Each part's receipt is handed on as it comes, under that part's SMSC id: the receiver knows every
part's id from ``send`` and combines them where it keeps them (the SMS fallback: in the store, so
the parts of one text settle it across a restart of this link)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time

import smpp34
import structlog

from mm7.service.backoff import backoff_delay
from mm7.service.sms.encoding import split_text
from mm7.service.sms.link import (
    Receipt,
    ReceiptHandler,
    SentSms,
    SmsPartlySent,
    SmsRejected,
    SmsUnavailable,
)
from mm7.service.sms.receipt import parse_receipt
from mm7.service.sms.settings import SmppSettings
from mm7.transport.flow import TokenBucket

__all__ = ["SmppLink"]

log = structlog.get_logger("mm7.service.sms.smpp")

_RETRY_LATER = {0x58, 0x14}  # ESME_RTHROTTLED, ESME_RMSGQFUL
_UDHI = 0x40


class SmppLink:
    """One SMPP transceiver bind used as an ``SmsLink``; ``send`` returns every part's SMSC
    message id, and each part's receipt is handed on under its own id."""

    def __init__(self, settings: SmppSettings) -> None:
        self.name = settings.name
        self._s = settings
        self._bucket = TokenBucket(settings.tps, burst=1)
        self._window = asyncio.Semaphore(settings.window)
        self._refs = itertools.count(random.randrange(256))
        self._smsc: smpp34.Smsc | None = None
        self._client: smpp34.Client | None = None
        self._bound = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_receipt: ReceiptHandler | None = None
        #: binds made so far (1 after the first connect); for operators and tests
        self.binds = 0

    async def start(self, on_receipt: ReceiptHandler) -> None:
        """Start binding in the background (and rebinding whenever the session ends)."""
        self._on_receipt = on_receipt
        self._task = asyncio.create_task(self._run(), name=f"smpp-{self.name}")

    async def wait_bound(self, timeout: float) -> None:
        """Wait until a bind is up; raises SmsUnavailable after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._bound.wait(), timeout)
        except TimeoutError:
            raise SmsUnavailable(
                f"sms link {self.name!r}: no SMPP bind within {timeout}s"
            ) from None

    async def _run(self) -> None:
        attempt = 0
        while True:
            s = self._s
            secret = s.password.reveal() if s.password else ""
            client = smpp34.Client(
                s.host, s.port, s.system_id, secret, bind_type="TRX",
                system_type=s.system_type, window_size=s.window,
            )  # fmt: skip
            try:
                smsc = await client.connect()
            except (smpp34.SmppError, OSError) as exc:
                attempt += 1
                delay = backoff_delay(attempt, s.reconnect_initial, s.reconnect_max)
                log.warning("mm7.sms.bind_failed", link=self.name, error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.binds += 1
            self._client, self._smsc = client, smsc
            self._bound.set()
            log.info("mm7.sms.bound", link=self.name, host=s.host, port=s.port)
            try:
                await self._read(smsc)
            finally:
                self._bound.clear()
                self._smsc = None
                with contextlib.suppress(Exception):
                    await client.stop()
            log.warning("mm7.sms.unbound", link=self.name)

    async def _read(self, smsc: smpp34.Smsc) -> None:
        while True:
            ev = await smsc.next()
            if isinstance(ev, smpp34.Disconnected):
                return
            if not ev.esm_class & 0x04:  # an MO, not a receipt: not ours to handle here
                log.info("mm7.sms.mo_ignored", link=self.name)
                continue
            parsed = parse_receipt(ev.short_message)
            if parsed is None:
                log.warning("mm7.sms.receipt_unreadable", link=self.name)
                continue
            if self._on_receipt is not None:
                receipt = Receipt(self.name, parsed.message_id, parsed.state, parsed.error)
                await self._on_receipt(receipt)

    async def send(self, to: str, text: str, sender: str | None = None) -> SentSms:
        """Submit every part of ``text``; raises SmsRejected (permanent) or SmsUnavailable for
        the first part, SmsPartlySent for a later one (the earlier ones went out)."""
        parts = split_text(text, next(self._refs))
        source = sender or self._s.source_addr
        part_ids: list[str] = []
        for part in parts:
            esm = _UDHI if part.udh else 0
            try:
                part_ids.append(await self._submit(to, source, part.payload, int(part.coding), esm))
            except (SmsRejected, SmsUnavailable) as exc:
                if not part_ids:
                    raise
                log.warning("mm7.sms.partly_sent", link=self.name, sent=len(part_ids),
                            parts=len(parts), error=str(exc))  # fmt: skip
                raise SmsPartlySent(self.name, tuple(part_ids), len(parts), exc) from exc
        sent = SentSms(tuple(part_ids))
        log.info("mm7.sms.submitted", link=self.name, sms_id=sent.sms_id, parts=len(parts))
        return sent

    async def _submit(self, to: str, sender: str, payload: bytes, coding: int, esm: int) -> str:
        deadline = time.monotonic() + self._s.send_timeout
        while True:
            await self.wait_bound(max(0.0, deadline - time.monotonic()))
            smsc = self._smsc
            if smsc is None:
                continue
            await self._bucket.acquire()
            try:
                async with self._window:
                    resp = await smsc.submit_sm(
                        to, payload, source_addr=sender, esm_class=esm, data_coding=coding,
                        source_addr_ton=self._s.source_ton, source_addr_npi=self._s.source_npi,
                        dest_addr_ton=self._s.dest_ton, dest_addr_npi=self._s.dest_npi,
                        registered_delivery=1 if self._s.receipts else 0,
                    )  # fmt: skip
            except smpp34.SmppError as exc:
                # no answer (the session broke, or the response timed out): resend on this bind
                # or the next one; an SMSC that did take it may then send it twice
                log.warning("mm7.sms.submit_broken", link=self.name, error=str(exc))
                await asyncio.sleep(self._s.throttle_delay)
            else:
                status = resp.command_status
                if status == 0 and resp.message_id:
                    return resp.message_id
                if status not in _RETRY_LATER:
                    raise SmsRejected(self.name, status)
                log.info("mm7.sms.throttled", link=self.name, status=status)
                await asyncio.sleep(self._s.throttle_delay)
            if time.monotonic() >= deadline:
                raise SmsUnavailable(
                    f"sms link {self.name!r}: not accepted within the send_timeout"
                )

    async def close(self) -> None:
        """Stop rebinding, unbind and close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.stop()
