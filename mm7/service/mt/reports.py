"""Delivery reports from the MMSC, and status notifications to the application's callback_url.

``DeliveryReports`` gives the inbound endpoint (``mm7.transport.server``) its
``on_delivery_report`` and ``on_read_reply`` handlers:

    reports = DeliveryReports(store, link_for_peer=config.peer_link, wake_relay=worker.wake)
    app = create_inbound_app(config.inbound_config(), reports.handlers(on_deliver=relay_handler))

Delivery reports are recorded with ``Store.record_delivery_report`` correlated by (link,
MessageID, handset), the link being the one the calling peer belongs to
(``[inbound.peers.NAME] link``), then the peer's other links (``links = [...]``, and every link
submitting to the same MMSC): one MMSC reports for every VASP account it serves through one peer,
and a report for a message the gateway did send is never relayed as unknown.

The handset is the report's Recipient, except that some MMSCs (Mbuni) put the handset in Sender
and the VASP's own short code in Recipient: when Recipient is one of the link's own addresses
(its ``sender_address``) and Sender is not, or when Sender and not Recipient is a recipient of the
stored message, the Sender is the handset (``Leniency.REPORT_ADDRESSES_SWAPPED``, kept in the
report's details). The stored report, the relayed event and its Idempotency-Key all name the
handset. A report without Date or Sender is recorded all the same.

Every report is recorded (Forwarded, then the final one; reports arriving days later), and the
MMSC is answered 1000 only once the report is committed. A
MessageID we do not know is answered 1000 too and kept for inspection
(``Store.delivery_reports(unknown_only=True)``): a 2005 would make carriers retry it forever. A
store failure is answered 4006 (service unavailable: the MMSC retries later). A duplicate (the
endpoint's dedupe saw the same report answered before: ``ctx.duplicate``) is answered 1000 and
not recorded again.

Read replies are recorded as events of the message they answer (``Store.record_read_reply``)
and answered 1000 once committed (4006 when the store fails).

Status notifications to the application (the message's callback_url, or the link's status
hook) are not sent from here: the store queues a relay event in the same transaction as the
report (``mm7.service.store.outbox``), and the relay worker delivers it, signed, retried until
``max_age``. ``wake_relay`` (the relay worker's ``wake``) is called after each commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import structlog

from mm7.core.leniency import Leniency
from mm7.core.model import Address, AddressKind, DeliverReq, DeliveryReportReq, ReadReplyReq, Status
from mm7.service.ops.metrics import GatewayMetrics
from mm7.service.store.base import Clock, Store, SystemClock
from mm7.service.store.records import normalize_address
from mm7.transport.errors import HandlerError
from mm7.transport.server import Handler, InboundContext, InboundHandlers

__all__ = ["DeliveryReports"]

log = structlog.get_logger("mm7.service.mt.reports")

#: bytes of the SOAP part kept with a report (for inspection of odd ones)
RAW_KEEP = 16 * 1024

Sleep = Callable[[float], Awaitable[None]]


class DeliveryReports:
    """The inbound handlers for DeliveryReportReq and ReadReplyReq (module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        link_for_peer: Callable[[str], str] | None = None,
        links_for_peer: Callable[[str], Sequence[str]] | None = None,
        own_addresses: Callable[[str], Collection[str]] | None = None,
        wake_relay: Callable[[], None] | None = None,
        clock: Clock | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.store = store
        self._link_for_peer = link_for_peer
        self._links_for_peer = links_for_peer
        self._own_addresses = own_addresses
        self.wake_relay = wake_relay
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

    def other_links(self, peer: str, link: str) -> tuple[str, ...]:
        """The links besides ``link`` whose messages ``peer`` reports on."""
        if self._links_for_peer is None:
            return ()
        try:
            return tuple(ln for ln in self._links_for_peer(peer) if ln != link)
        except KeyError:
            return ()

    def addresses(
        self, links: Sequence[str], recipient: Address | None, sender: Address | None
    ) -> tuple[str, str | None, bool]:
        """(handset, other address, swapped) of a report, before the store has a say.

        The Sender is the handset when the Recipient is one of the own addresses of ``links``
        (their ``sender_address``) and the Sender is not, or, when neither is known, when the
        Recipient is a ShortCode and the Sender a Number (a handset has no short code). A report
        whose only address is an own one or a ShortCode names no handset (""): the store then
        takes the message's only recipient, when it has one."""
        own: set[str] = set()
        if self._own_addresses is not None:
            for link in links:
                try:
                    own |= {normalize_address(a) for a in self._own_addresses(link)}
                except KeyError:
                    continue
        if recipient is None:
            if sender is None or normalize_address(sender.value) in own:
                return "", None, False
            if sender.kind is AddressKind.SHORT_CODE:
                return "", None, False
            return sender.value, None, False
        if sender is None:
            return recipient.value, None, False
        recipient_own = normalize_address(recipient.value) in own
        sender_own = normalize_address(sender.value) in own
        if recipient_own and not sender_own:
            return sender.value, recipient.value, True
        if (
            not recipient_own
            and not sender_own
            and recipient.kind is AddressKind.SHORT_CODE
            and sender.kind is AddressKind.NUMBER
        ):
            return sender.value, recipient.value, True
        return recipient.value, sender.value, False

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
        others = self.other_links(ctx.peer.name, link)
        handset, other, swapped = self.addresses((link, *others), report.recipient, report.sender)
        details = _details(ctx, swapped)
        details["transaction_id"] = report.transaction_id
        details["date"] = report.date.isoformat() if report.date is not None else None
        if report.mm_status_extension is not None:
            details["mm_status_extension"] = str(report.mm_status_extension)
        try:
            result = await self.store.record_delivery_report(
                link,
                report.message_id,
                handset,
                report.mm_status,
                raw_status=report.mm_status_raw,
                status_text=report.status_text,
                raw=ctx.decoded.soap[:RAW_KEEP].decode("utf-8", "replace"),
                details=details,
                alternate=other,
                other_links=others,
            )
        except Exception:
            bound.exception("mm7.report.record_failed")
            raise HandlerError(4006, "the report could not be recorded now; retry later") from None
        if self.metrics is not None:
            self.metrics.observe_report(link, report.mm_status)
        if self.wake_relay is not None:
            self.wake_relay()
        if result.message_id is None:
            bound.warning("mm7.report.unknown_message", report_id=result.report_id)
            return Status.of(1000)
        bound.info(
            "mm7.report.recorded",
            message_id=result.message_id,
            recipient_status=result.recipient_status,
            correlated=result.recipient_id is not None,
            recorded_link=result.link,
            swapped=swapped or result.alternate_matched,
        )
        return Status.of(1000)

    async def on_read_reply(self, ctx: InboundContext[ReadReplyReq]) -> Status:
        reply = ctx.message
        link = self.link_of(ctx.peer.name)
        bound = log.bind(
            link=link,
            mm7_message_id=reply.message_id,
            read_status=reply.mm_status_raw or str(reply.mm_status),
        )
        if ctx.duplicate:
            bound.info("mm7.read_reply.duplicate")
            return Status.of(1000)
        others = self.other_links(ctx.peer.name, link)
        handset, other, swapped = self.addresses((link, *others), reply.recipient, reply.sender)
        details = _details(ctx, swapped)
        try:
            message_id = await self.store.record_read_reply(
                link,
                reply.message_id,
                handset,
                str(reply.mm_status),
                status_text=reply.status_text,
                details=details,
                alternate=other,
                other_links=others,
            )
        except Exception:
            bound.exception("mm7.read_reply.record_failed")
            raise HandlerError(4006, "the reply could not be recorded now; retry later") from None
        bound.info("mm7.read_reply.recorded", message_id=message_id)
        if self.wake_relay is not None:
            self.wake_relay()
        return Status.of(1000)


def _details(ctx: InboundContext[DeliveryReportReq] | InboundContext[ReadReplyReq], swapped: bool
             ) -> dict[str, Any]:  # fmt: skip
    """What a report or read reply keeps besides its status: the peer, both addresses as sent,
    the leniencies its reading needed (the swap included) and what the MMSC left out."""
    message = ctx.message
    details: dict[str, Any] = {
        "peer": ctx.peer.name,
        "sender": message.sender.value if message.sender is not None else None,
        "recipient": message.recipient.value if message.recipient is not None else None,
    }
    leniencies = [str(x) for x in ctx.leniencies]
    if swapped:
        leniencies.append(Leniency.REPORT_ADDRESSES_SWAPPED.value)
    if leniencies:
        details["leniencies"] = leniencies
    if ctx.decoded.missing:
        details["missing"] = list(ctx.decoded.missing)
    return details
