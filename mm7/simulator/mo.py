"""Requests the simulated MMSC originates on command: a mobile-originated DeliverReq with text
and media (slides built by the content package), a ReadReplyReq, a DeliveryReportReq."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from mm7.content.builder import build_presentation, to_part
from mm7.content.parts import Source, make_items, text_source
from mm7.core.model import (
    Address,
    DeliverReq,
    DeliveryReportReq,
    ReadReplyReq,
    Recipients,
)
from mm7.core.status import MMStatus, ReadStatus
from mm7.transport.client import new_transaction_id


def deliver_req(
    *,
    to: Sequence[str],
    sender: str,
    text: str | None = None,
    media: Sequence[Source] = (),
    subject: str | None = None,
    linked_id: str | None = None,
    relay_server_id: str | None = None,
    now: datetime | None = None,
) -> DeliverReq:
    """A DeliverReq from handset ``sender`` to the VASP's ``to`` addresses (short codes...).

    Text comes first, then media in order; the content is a SMIL presentation (one slide per
    visual) as a real handset's MMS would be. ContentError for unusable media.
    """
    sources: list[Source] = []
    if text:
        sources.append(text_source(text))
    sources.extend(media)
    content = to_part(build_presentation(make_items(sources))) if sources else None
    return DeliverReq(
        transaction_id=new_transaction_id(),
        mms_relay_server_id=relay_server_id,
        linked_id=linked_id,
        sender=Address.guess(sender),
        recipients=Recipients(to=tuple(Address.guess(a) for a in to)),
        timestamp=(now or datetime.now(UTC)).replace(microsecond=0),
        subject=subject,
        content=content,
    )


def read_reply_req(
    *,
    message_id: str,
    recipient: str,
    sender: str,
    status: ReadStatus = ReadStatus.READ,
    now: datetime | None = None,
) -> ReadReplyReq:
    """A ReadReplyReq: handset ``recipient`` read (or deleted) message ``message_id``."""
    return ReadReplyReq(
        transaction_id=new_transaction_id(),
        message_id=message_id,
        recipient=Address.guess(recipient),
        sender=Address.guess(sender),
        timestamp=(now or datetime.now(UTC)).replace(microsecond=0),
        mm_status=status,
    )


def delivery_report_req(
    *,
    message_id: str,
    recipient: str,
    sender: str,
    status: MMStatus = MMStatus.RETRIEVED,
    status_text: str | None = None,
    now: datetime | None = None,
) -> DeliveryReportReq:
    """A DeliveryReportReq for ``message_id`` to ``recipient``, on command."""
    return DeliveryReportReq(
        transaction_id=new_transaction_id(),
        message_id=message_id,
        recipient=Address.guess(recipient),
        sender=Address.guess(sender),
        date=(now or datetime.now(UTC)).replace(microsecond=0),
        mm_status=status,
        status_text=status_text,
    )
