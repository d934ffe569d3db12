"""The SMS fallback's decisions, pure (no store, no clock, no network): what triggers it, what
the SMS says, what a receipt means, and what follows a send that could not go out.

Triggers (a recipient's MMS failed for good; the store writes the fallback row in the same
transaction as the failure, ``mm7.service.store``):

- the dispatcher's ``Failed`` step (``mm7.service.mt.outcome``): a permanent MM7 status per
  ``mm7.transport.classify``, a 1100 naming the recipient, or content that cannot be built or
  fitted (``BuildError``); ``FAILED_TRIGGER``;
- a delivery report whose MMStatus says the handset cannot take the MMS: ``REPORT_TRIGGERS``.

Never on ``Expired`` (the MMS ran out of time, not of capability), on transient errors (they are
retried), nor on an ``Indeterminate`` report (the outcome is unknown: it may have arrived).

A submitted SMS whose final receipt never comes (the SMSC sends none, or the link asks for none)
is ``expired`` once ``[fallback] receipt_timeout`` has passed since its ``submitted`` commit
(``expiry_cutoff``, ``no_receipt_error``); 0 keeps it waiting.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from mm7.service.backoff import backoff_delay
from mm7.service.sms.link import ReceiptState
from mm7.service.store.records import (
    FALLBACK_FAILED,
    FALLBACK_REPORTS,
    NO_RECEIPT,
    OUTCOME_UNKNOWN,
    FallbackStatus,
    report_trigger,
)

__all__ = [
    "FAILED_TRIGGER",
    "OUTCOME_UNKNOWN",
    "REPORT_TRIGGERS",
    "expiry_cutoff",
    "next_attempt",
    "no_receipt_error",
    "receipt_status",
    "report_trigger",
    "sms_text",
]

#: the trigger of a recipient the dispatcher failed (a permanent error, content that cannot fit)
FAILED_TRIGGER = FALLBACK_FAILED

#: delivery reports after which the recipient gets the SMS. ``Rejected``: the MMSC or the handset
#: refused it (vendors' ``NotSupported`` -- the handset or its plan has no MMS -- and
#: ``Unreachable`` read as Rejected, ``mm7.core.status``); ``Unrecognised`` (and the US spelling
#: ``Unrecognized``): the MMSC does not know the handset as an MMS client;
#: ``DeliveryConditionNotMet`` (Rel-6): the handset does not meet the submit's delivery condition
#: (e.g. MMS-capable handsets only). Not ``Expired``, ``Indeterminate``, ``Forwarded`` or
#: ``Deferred``. (Declared with the store's records, which write the rows in the report's
#: transaction.)
REPORT_TRIGGERS = FALLBACK_REPORTS

#: three dots, not "…": that one is outside GSM 03.38 and would make the whole SMS UCS-2
_ELLIPSIS = "..."


def sms_text(text: str | None, subject: str | None, url: str, limit: int) -> str:
    """The SMS: the message's text (else its subject), whitespace folded, trimmed with an
    ellipsis so that text, a space and ``url`` fit in ``limit`` characters; the URL is never
    cut (alone when no text fits beside it)."""
    body = " ".join((text or subject or "").split())
    room = limit - len(url) - 1
    if not body or room <= 0:
        return url
    if len(body) > room:
        cut = room - len(_ELLIPSIS)
        body = body[:cut].rstrip() + _ELLIPSIS if cut > 0 else ""
    return f"{body} {url}" if body else url


def receipt_status(state: ReceiptState) -> FallbackStatus | None:
    """What an SMS receipt makes of a submitted fallback: delivered, failed, or None (an
    intermediate state, ``ACCEPTED``: wait for the next)."""
    if state is ReceiptState.DELIVERED:
        return FallbackStatus.DELIVERED
    if state is ReceiptState.ACCEPTED:
        return None
    return FallbackStatus.FAILED


def next_attempt(
    attempts: int,
    created_at: datetime,
    now: datetime,
    *,
    initial: float,
    maximum: float,
    max_age: float,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try again a send the SMS link could not take (``SmsUnavailable``): backed off
    (``mm7.service.backoff``), or None when that falls past ``created_at + max_age`` (give up)."""
    at = now + timedelta(seconds=backoff_delay(attempts, initial, maximum, rng))
    if at >= created_at + timedelta(seconds=max_age):
        return None
    return at


def expiry_cutoff(now: datetime, receipt_timeout: float) -> datetime | None:
    """The ``submitted`` commit time before which a fallback still waiting for its receipts
    expires (``[fallback] receipt_timeout`` seconds before ``now``), or None when
    ``receipt_timeout`` is 0 (never: it waits for them until retention deletes its message)."""
    if receipt_timeout <= 0:
        return None
    return now - timedelta(seconds=receipt_timeout)


def no_receipt_error(receipt_timeout: float) -> str:
    """The error of a fallback expired for want of a final receipt."""
    seconds = receipt_timeout
    shown = str(int(seconds)) if seconds == int(seconds) else str(seconds)
    return f"{NO_RECEIPT} ({shown}s)"
