"""Delivery reports from the MMSC, and status notifications to the application's callback_url.

``DeliveryReports`` gives the inbound endpoint (``mm7.transport.server``) its
``on_delivery_report`` and ``on_read_reply`` handlers:

    reports = DeliveryReports(store, link_for_peer=config.peer_link, notifier=notifier)
    app = create_inbound_app(config.inbound_config(), reports.handlers(on_deliver=relay_handler))

Delivery reports are recorded with ``Store.record_delivery_report`` correlated by (link,
MessageID, recipient), the link being the one the calling peer belongs to
(``[inbound.peers.NAME] link``). Every report is recorded (Forwarded, then the final one; reports
arriving days later), and the MMSC is answered 1000 only once the report is committed. A
MessageID we do not know is answered 1000 too and kept for inspection
(``Store.delivery_reports(unknown_only=True)``): a 2005 would make carriers retry it forever. A
store failure is answered 4006 (service unavailable: the MMSC retries later). A duplicate (the
endpoint's dedupe saw the same report answered before: ``ctx.duplicate``) is answered 1000 and
not recorded again.

Read replies are answered 1000 and logged; the store has no table for them yet (TODO: record
them as events once the store grows ``record_read_reply``).

Status notifications (``StatusNotifier``): every status change of a recipient (submitted,
failed, expired from the dispatcher; delivered/undelivered/indeterminate/forwarded from reports)
is POSTed as JSON to the message's callback_url, in the background, with a few bounded retries
(exponential backoff) and a log line when they all fail. This is best effort and not durable: a
crash loses pending notifications. TODO(issue 7): route them through the relay's durable outbox
(signed, leased, retried until max_age) and drop the direct POST here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import aiohttp
import structlog

from mm7.core.model import DeliverReq, DeliveryReportReq, ReadReplyReq, Status
from mm7.service.metrics import GatewayMetrics
from mm7.service.store.base import Clock, Store, SystemClock
from mm7.transport.server import Handler, HandlerError, InboundContext, InboundHandlers

__all__ = ["DeliveryReports", "StatusNotifier", "notification"]

log = structlog.get_logger("mm7.service.reports")

#: bytes of the SOAP part kept with a report (for inspection of odd ones)
RAW_KEEP = 16 * 1024

Sleep = Callable[[float], Awaitable[None]]


def notification(
    *,
    message_id: str,
    recipient: str,
    status: str,
    at: datetime,
    mm7_message_id: str | None = None,
    status_code: int | None = None,
    status_text: str | None = None,
    mm_status: str | None = None,
) -> dict[str, Any]:
    """The JSON body of one status notification (one shape for dispatcher and reports)."""
    return {
        "message_id": message_id,
        "recipient": recipient,
        "status": status,
        "mm7_message_id": mm7_message_id,
        "status_code": status_code,
        "status_text": status_text,
        "mm_status": mm_status,
        "at": at.isoformat(),
    }


class StatusNotifier:
    """POSTs status notifications to callback URLs in the background (best effort, bounded).

    ``attempts`` tries in all per notification, waiting ``backoff`` x 2^n between them. Each POST
    carries ``Idempotency-Key: <message_id>:<recipient>:<status>`` so the application can drop
    the repeats of an at-least-once delivery. ``close()`` waits up to ``grace`` seconds for the
    pending ones, then cancels the rest (logged).
    """

    def __init__(
        self,
        *,
        attempts: int = 3,
        backoff: float = 1.0,
        timeout: float = 10.0,
        sleep: Sleep = asyncio.sleep,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self._sleep = sleep
        self._session = session
        self._own_session = session is None
        self._tasks: set[asyncio.Task[bool]] = set()
        #: outcomes, for tests and metrics
        self.sent = 0
        self.failed = 0

    def notify(self, url: str, body: Mapping[str, Any]) -> asyncio.Task[bool]:
        """Send ``body`` to ``url`` in the background; the task's result says if it arrived."""
        task = asyncio.create_task(self._deliver(url, dict(body)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def idle(self) -> None:
        """Wait until no notification is pending."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, grace: float = 5.0) -> None:
        pending = list(self._tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                log.warning("mm7.notify.dropped_at_shutdown", count=len(late))
                await asyncio.gather(*late, return_exceptions=True)
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout), trust_env=False
            )
            self._own_session = True
        return self._session

    async def _deliver(self, url: str, body: dict[str, Any]) -> bool:
        key = f"{body.get('message_id')}:{body.get('recipient')}:{body.get('status')}"
        bound = log.bind(message_id=body.get("message_id"), status=body.get("status"))
        problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                async with self._client().post(
                    url, json=body, headers={"Idempotency-Key": key}, allow_redirects=False
                ) as rsp:
                    await rsp.read()
                    if 200 <= rsp.status < 300:
                        self.sent += 1
                        return True
                    problem = f"HTTP {rsp.status}"
                    if 400 <= rsp.status < 500 and rsp.status not in (408, 425, 429):
                        break  # the application refuses it: repeating will not help
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"[:300]
            if attempt < self.attempts:
                await self._sleep(self.backoff * 2 ** (attempt - 1))
        self.failed += 1
        bound.warning("mm7.notify.failed", attempts=self.attempts, problem=problem)
        return False


class DeliveryReports:
    """The inbound handlers for DeliveryReportReq and ReadReplyReq (module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        link_for_peer: Callable[[str], str] | None = None,
        notifier: StatusNotifier | None = None,
        clock: Clock | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.store = store
        self._link_for_peer = link_for_peer
        self.notifier = notifier
        self.metrics = metrics
        self._clock = clock or SystemClock()

    def handlers(self, on_deliver: Handler[DeliverReq] | None = None) -> InboundHandlers:
        """The InboundHandlers of the endpoint: these two plus the relay's ``on_deliver``."""
        return InboundHandlers(
            on_deliver=on_deliver,
            on_delivery_report=self.on_delivery_report,
            on_read_reply=self.on_read_reply,
        )

    def link_of(self, peer: str) -> str:
        """The link a peer's reports belong to (the peer's name when it is not configured)."""
        if self._link_for_peer is None:
            return peer
        try:
            return self._link_for_peer(peer)
        except KeyError:
            return peer

    async def on_delivery_report(self, ctx: InboundContext[DeliveryReportReq]) -> Status:
        report = ctx.message
        link = self.link_of(ctx.peer.name)
        bound = log.bind(
            link=link,
            mm7_message_id=report.message_id,
            transaction_id=report.transaction_id,
            mm_status=report.mm_status.value,
        )
        if ctx.duplicate:
            bound.info("mm7.report.duplicate")
            return Status.of(1000)
        details: dict[str, Any] = {
            "peer": ctx.peer.name,
            "transaction_id": report.transaction_id,
            "sender": report.sender.value,
            "date": report.date.isoformat(),
        }
        if report.mm_status_extension is not None:
            details["mm_status_extension"] = str(report.mm_status_extension)
        if ctx.leniencies:
            details["leniencies"] = [str(x) for x in ctx.leniencies]
        try:
            result = await self.store.record_delivery_report(
                link,
                report.message_id,
                report.recipient.value,
                report.mm_status,
                raw_status=report.mm_status_raw,
                status_text=report.status_text,
                raw=ctx.decoded.soap[:RAW_KEEP].decode("utf-8", "replace"),
                details=details,
            )
        except Exception:
            bound.exception("mm7.report.record_failed")
            raise HandlerError(4006, "the report could not be recorded now; retry later") from None
        if self.metrics is not None:
            self.metrics.observe_report(link, report.mm_status)
        if result.message_id is None:
            bound.warning("mm7.report.unknown_message", report_id=result.report_id)
            return Status.of(1000)
        bound.info(
            "mm7.report.recorded",
            message_id=result.message_id,
            recipient_status=result.recipient_status,
            correlated=result.recipient_id is not None,
        )
        await self._notify(
            result.message_id,
            report.recipient.value,
            report.mm_status.value,
            mm7_message_id=report.message_id,
            status_text=report.status_text,
        )
        return Status.of(1000)

    async def on_read_reply(self, ctx: InboundContext[ReadReplyReq]) -> Status:
        reply = ctx.message
        log.info(
            "mm7.read_reply",
            link=self.link_of(ctx.peer.name),
            mm7_message_id=reply.message_id,
            recipient=reply.recipient.value,
            read_status=str(reply.mm_status),
            duplicate=ctx.duplicate,
        )
        return Status.of(1000)

    async def _notify(
        self,
        message_id: str,
        recipient: str,
        mm_status: str,
        *,
        mm7_message_id: str,
        status_text: str | None,
    ) -> None:
        if self.notifier is None:
            return
        try:
            message = await self.store.get_message(message_id)
        except Exception:
            log.exception("mm7.notify.lookup_failed", message_id=message_id)
            return
        if message is None or not message.callback_url:
            return
        self.notifier.notify(
            message.callback_url,
            notification(
                message_id=message_id,
                recipient=recipient,
                status=f"report:{mm_status.lower()}",
                at=self._clock.now(),
                mm7_message_id=mm7_message_id,
                status_text=status_text,
                mm_status=mm_status,
            ),
        )
