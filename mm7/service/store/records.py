"""The immutable records that cross the ``Store`` protocol, shared by every backend.

Statuses of messages and recipients, what the API hands in (``NewMessage``, ``NewMo``), what
dispatchers lease (``WorkItem``) and what readers get back (``MessageRecord``, ``MoRecord`` ...).
Backends build these from their rows; callers never see SQL, rows or dicts other than the JSON
``fields`` payloads, which the store keeps opaque.

How a message's status rolls up from its recipients
---------------------------------------------------
A message's ``MessageStatus`` is a function of how many of its recipients stand where; every
backend recomputes it in the same transaction as each recipient change (a dispatch outcome, an
expiry, a STOP that suppresses a queued recipient, a delivery report), so it never lags behind
its recipients and reports arriving in any order give the same answer. Suppressed recipients
(opted out, never sent) do not count: the rest are "the counted recipients". First rule that
applies:

1. ``queued``: no recipient leased yet (the status as enqueued);
2. ``sending``: some recipient is still ``queued`` (waiting, retrying or in flight) after one
   was leased or finished;
3. ``submitted``: none queued, and some recipient was accepted by the MMSC and has no final
   delivery report yet (``submitted``, or ``indeterminate``, which a later report may still
   resolve). A message sent without ``delivery_report`` stays here: the MMSC will not say more;
4. ``failed``: every recipient is suppressed (they all opted out after it was queued);
5. ``delivered``: every counted recipient is ``delivered``;
6. ``partially_delivered``: some are ``delivered`` and every other one is final (undelivered,
   failed or expired);
7. ``expired``: every counted recipient is ``expired`` (the expiry passed before it could be
   submitted);
8. ``failed``: otherwise, i.e. nothing was delivered and every counted recipient is final
   (failed at submit, reported undelivered, or a mix with expired ones).

``delivered``, ``partially_delivered``, ``expired`` and ``failed`` are final; a ``submitted``
message may still move to one of them. A final recipient never regresses (a late or repeated
report of a delivered handset changes nothing), hence neither does a final message. Retention
deletes whole messages (recipients, events and all), so it never leaves a message whose status
disagrees with its recipients.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from mm7.core.status import MMStatus

if TYPE_CHECKING:
    from mm7.service.store.outbox import MoRelay, OptOut

JSONObject = Mapping[str, Any]
"""A JSON-serialisable mapping, stored verbatim (the store does not interpret it)."""


class RecipientStatus(StrEnum):
    """Where one recipient of an MT message stands.

    ``QUEUED`` is the only state dispatchers lease from. ``SUBMITTED`` means the MMSC accepted the
    SubmitReq; delivery reports then move it to ``DELIVERED``, ``UNDELIVERED`` or
    ``INDETERMINATE`` (final reports never regress to an earlier state). ``FAILED`` is a permanent
    submit error and ``EXPIRED`` a message whose expiry passed before it could be submitted.
    ``SUPPRESSED`` recipients opted out and are never sent.
    """

    QUEUED = "queued"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    INDETERMINATE = "indeterminate"
    FAILED = "failed"
    EXPIRED = "expired"
    #: the recipient opted out (sent a stop word) before the message was queued: never sent
    SUPPRESSED = "suppressed"


class MessageStatus(StrEnum):
    """The overall state of an MT message, rolled up from its recipients (module docstring)."""

    QUEUED = "queued"
    SENDING = "sending"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    PARTIALLY_DELIVERED = "partially_delivered"
    EXPIRED = "expired"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        """Whether nothing can change this status any more."""
        return self in _FINAL_MESSAGE


_FINAL_MESSAGE = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.PARTIALLY_DELIVERED,
        MessageStatus.EXPIRED,
        MessageStatus.FAILED,
    }
)


@dataclass(frozen=True, slots=True)
class RecipientCounts:
    """How many recipients of a message stand where; the message's status follows from these.

    ``submitted`` counts those accepted by the MMSC without a final report yet (recipient
    status ``submitted`` or ``indeterminate``); ``failed`` those refused at submit.
    """

    queued: int = 0
    submitted: int = 0
    delivered: int = 0
    undelivered: int = 0
    failed: int = 0
    expired: int = 0
    suppressed: int = 0

    @property
    def total(self) -> int:
        """Every recipient of the message."""
        return (
            self.queued + self.submitted + self.delivered + self.undelivered + self.failed
            + self.expired + self.suppressed
        )  # fmt: skip

    def status(self, *, leased: bool = True) -> MessageStatus:
        """The message status these counts roll up to (the rules of the module docstring);
        ``leased=False``: no recipient was leased yet."""
        counted = self.total - self.suppressed
        if self.queued > 0:
            return MessageStatus.SENDING if leased else MessageStatus.QUEUED
        if self.submitted > 0:
            return MessageStatus.SUBMITTED
        if counted <= 0:
            return MessageStatus.FAILED
        if self.delivered >= counted:
            return MessageStatus.DELIVERED
        if self.delivered > 0:
            return MessageStatus.PARTIALLY_DELIVERED
        if self.expired >= counted:
            return MessageStatus.EXPIRED
        return MessageStatus.FAILED


# What a delivery report's MMStatus does to a recipient. Forwarded and Deferred are not final
# (another report follows) and leave the status as it is; they are still recorded as events.
DLR_RECIPIENT_STATUS: Mapping[MMStatus, RecipientStatus] = {
    MMStatus.RETRIEVED: RecipientStatus.DELIVERED,
    MMStatus.EXPIRED: RecipientStatus.UNDELIVERED,
    MMStatus.REJECTED: RecipientStatus.UNDELIVERED,
    MMStatus.UNRECOGNISED: RecipientStatus.UNDELIVERED,
    MMStatus.DELIVERY_CONDITION_NOT_MET: RecipientStatus.UNDELIVERED,
    MMStatus.INDETERMINATE: RecipientStatus.INDETERMINATE,
}

_ADDRESS_SUFFIX = re.compile(r"/TYPE=[^/]*$", re.IGNORECASE)
_NUMBER = re.compile(r"^\+?[0-9][0-9 ().-]*$")


def normalize_address(address: str) -> str:
    """The key an address is matched on when correlating delivery reports.

    MMSCs echo recipients in another spelling than we sent (``+4917..`` vs ``4917..``,
    ``/TYPE=PLMN`` suffixes, ``tel:`` prefixes, e-mail case): strip those so that the report of
    a recipient finds it. Numbers keep their digits only; anything else is casefolded.
    """
    text = _ADDRESS_SUFFIX.sub("", address.strip())
    if text.lower().startswith("tel:"):
        text = text[4:]
    if _NUMBER.match(text):
        return re.sub(r"[^0-9]", "", text)
    return text.casefold()


@dataclass(frozen=True, slots=True)
class MediaPart:
    """One part of a message as given to ``enqueue_message`` or ``store_mo``.

    Exactly one of ``data`` (stored now, once by hash) and ``sha256`` (media already stored with
    ``put_media``) is set. ``content_id``/``content_location`` are per message, not per media,
    because two messages may name the same image differently.
    """

    content_type: str
    data: bytes | None = None
    sha256: str | None = None
    content_id: str | None = None
    content_location: str | None = None
    #: the SHA-256 (hex) of ``data`` when the caller computed it already (not hashed again)
    digest: str | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.sha256 is None):
            raise ValueError("a MediaPart needs exactly one of data and sha256")
        if self.digest is not None and self.data is None:
            raise ValueError("a MediaPart's digest goes with its data")


@dataclass(frozen=True, slots=True)
class PartRecord:
    """A stored part of a message, in order, without its bytes (fetch with ``get_media``)."""

    position: int
    sha256: str
    content_type: str
    size: int
    content_id: str | None
    content_location: str | None


@dataclass(frozen=True, slots=True)
class MediaBlob:
    """Stored media with its bytes."""

    sha256: str
    content_type: str
    size: int
    data: bytes


@dataclass(frozen=True, slots=True)
class NewMessage:
    """An MT message to enqueue.

    ``fields`` is the API's validated request (from, subject, text, priority, delivery_report,
    ...) as JSON; the dispatcher turns it into a SubmitReq. ``idempotency_key`` makes a repeated
    submission return the original id; ``request_digest`` (the SHA-256 of the request it was
    made from) makes a repeat with another request an ``IdempotencyConflictError`` (None on
    either side: not compared). ``not_before`` is the earliest delivery time.
    """

    link: str
    fields: JSONObject
    idempotency_key: str | None = None
    expires_at: datetime | None = None
    not_before: datetime | None = None
    callback_url: str | None = None
    #: send even to recipients on the suppression list: only for the confirmation of an
    #: opt-out (a reply to the STOP message itself, see mm7.service.api.relay_ops)
    allow_suppressed: bool = False
    #: what a repeat under the same ``idempotency_key`` must match (None: not compared)
    request_digest: str | None = None


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """The id of the message and whether this call created it (False: idempotent repeat)."""

    message_id: str
    created: bool
    #: recipients not sent to because they opted out (stored as ``suppressed``)
    suppressed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One leased recipient: everything a dispatcher needs to build and send its SubmitReq.

    ``lease_token`` identifies this lease; the outcome calls check it so that a worker whose
    lease expired and was taken over cannot overwrite the new holder's result. ``attempts``
    counts this attempt. ``transaction_id`` is stable across retries so that the MMSC can drop
    duplicates of an at-least-once resend.
    """

    recipient_id: int
    message_id: str
    link: str
    address: str
    transaction_id: str
    attempts: int
    owner: str
    lease_token: str
    lease_expires_at: datetime
    fields: JSONObject
    parts: tuple[PartRecord, ...]
    idempotency_key: str | None
    expires_at: datetime | None
    callback_url: str | None
    #: when the message was accepted (retries stop ``retry.max_age`` after it, without expiry)
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One entry of a message's history (queued, leased, submitted, retry, failed, report...)."""

    id: int
    message_id: str
    recipient: str | None
    kind: str
    status: str | None
    details: JSONObject
    at: datetime


@dataclass(frozen=True, slots=True)
class RecipientRecord:
    """One recipient of a message as stored."""

    id: int
    address: str
    status: RecipientStatus
    mm7_message_id: str | None
    transaction_id: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_status_text: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """An MT message with its recipients, parts and the history of events."""

    id: str
    link: str
    idempotency_key: str | None
    status: MessageStatus
    fields: JSONObject
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    not_before: datetime | None
    callback_url: str | None
    recipients: tuple[RecipientRecord, ...]
    parts: tuple[PartRecord, ...]
    events: tuple[EventRecord, ...]


@dataclass(frozen=True, slots=True)
class MessageContent:
    """What an MT message says, without its recipients or events (``Store.message_content``):
    one row and the parts, however many recipients the message has."""

    id: str
    link: str
    fields: JSONObject
    created_at: datetime
    parts: tuple[PartRecord, ...]


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """A message as listed (``Store.list_messages``): no recipients, parts or events, but how
    many recipients stand where."""

    id: str
    link: str
    status: MessageStatus
    fields: JSONObject
    created_at: datetime
    updated_at: datetime
    counts: RecipientCounts


@dataclass(frozen=True, slots=True)
class MessageCursor:
    """Where a listing page ended: the last message listed (the order is newest first, by
    ``created_at`` then ``id``, both descending)."""

    created_at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """What ``Store.list_messages`` lists: the messages of one API key, narrowed by the rest.

    ``to`` is matched on its normalised form (``normalize_address``) against every recipient;
    ``since`` keeps messages created at or after it.
    """

    api_key: str
    status: MessageStatus | None = None
    to: str | None = None
    since: datetime | None = None
    link: str | None = None


@dataclass(frozen=True, slots=True)
class MessagePage:
    """One page of a listing; ``next`` is set when more may follow (pass it as ``after``)."""

    messages: tuple[MessageSummary, ...]
    next: MessageCursor | None


@dataclass(frozen=True, slots=True)
class DeliveryReportResult:
    """What a recorded delivery report was correlated to (``None``s: unknown, kept anyway)."""

    report_id: int
    message_id: str | None
    recipient_id: int | None
    recipient_status: RecipientStatus | None
    #: the link the report was recorded under (the one that sent the message, when known)
    link: str | None = None
    #: the handset the report is about, as recorded and relayed
    recipient: str | None = None
    #: the handset was the report's other address (Sender), not the one given first
    alternate_matched: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryReportRecord:
    """A stored delivery report, correlated or not."""

    id: int
    link: str
    mm7_message_id: str
    recipient: str
    mm_status: MMStatus
    raw_status: str
    status_text: str | None
    raw: str | None
    message_id: str | None
    recipient_id: int | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class NewMo:
    """An MO message (DeliverReq) to store before answering DeliverRsp 1000.

    ``transaction_id`` and ``mm7_message_id`` detect MMSC retries: either one seen before from
    the same link makes this a duplicate.
    """

    link: str
    transaction_id: str | None
    mm7_message_id: str | None
    fields: JSONObject
    parts: Sequence[MediaPart] = ()
    #: what a retry repeats besides the TransactionID (sender, date, subject); None: the
    #: TransactionID alone decides
    fingerprint: str | None = None
    #: the route's hook to relay it to (None: no route matched; kept as ``unrouted``)
    relay: MoRelay | None = None
    #: a stop/start word's effect on the suppression list
    opt_out: OptOut | None = None


@dataclass(frozen=True, slots=True)
class MoResult:
    """The id of the stored MO and whether it was a duplicate of an earlier one."""

    mo_id: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class MoRecord:
    """A stored MO message."""

    id: str
    link: str
    transaction_id: str | None
    mm7_message_id: str | None
    fields: JSONObject
    status: str
    received_at: datetime
    parts: tuple[PartRecord, ...]


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Writer counters: ``commits`` transactions carried ``writes`` operations (group commit);
    ``fallback_sms``: SMS fallback rows this store handle moved to each status (queued,
    submitted, delivered, failed), counted once committed (``mm7.service.store.tally``)."""

    commits: int
    writes: int
    failed_writes: int = 0
    largest_batch: int = 0
    fallback_sms: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PurgeStats:
    """How much one purge (retention) removed."""

    messages: int = 0
    mo_messages: int = 0
    delivery_reports: int = 0
    media: int = 0
    orphan_files: int = 0
    #: inbound request keys (duplicate detection) whose time was up
    request_keys: int = 0


#: the trigger of a recipient the dispatcher failed (``mm7.service.fallback.rules`` says why)
FALLBACK_FAILED = "failed"
#: delivery reports after which the recipient gets the SMS fallback: the handset cannot take
#: the MMS (``mm7.service.fallback.rules`` says why these and not the others)
FALLBACK_REPORTS: frozenset[MMStatus] = frozenset(
    {MMStatus.REJECTED, MMStatus.UNRECOGNISED, MMStatus.DELIVERY_CONDITION_NOT_MET}
)
#: the error of a fallback found ``sending`` after its lease expired (never sent again)
OUTCOME_UNKNOWN = "outcome unknown: the sender stopped while sending (not sent again)"
#: the error of a fallback expired for want of a final receipt (the worker's says how long:
#: ``mm7.service.fallback.rules.no_receipt_error``)
NO_RECEIPT = "no delivery receipt within receipt_timeout"


def report_trigger(mm_status: MMStatus) -> str | None:
    """The fallback trigger a delivery report with ``mm_status`` records, or None (none)."""
    return f"report:{mm_status.value}" if mm_status in FALLBACK_REPORTS else None


class FallbackStatus(StrEnum):
    """Where a recipient's SMS fallback stands (``mm7.service.fallback``).

    ``QUEUED`` rows are leased by the fallback worker; ``SENDING`` is committed right before the
    SMS goes out, so a row found ``SENDING`` after its lease expired (a crash mid-send) is failed
    with "outcome unknown", never sent again; ``SUBMITTED`` carries the SMS link's ``sms_id``
    (its first part's; every part's id is in ``fallback_parts``), which its parts' receipts
    move to ``DELIVERED`` (all delivered) or ``FAILED`` (at the first that is not); one left
    ``SUBMITTED`` past ``[fallback] receipt_timeout`` (no final receipt came: an SMSC that sends
    none, an SMPP link with ``receipts = false``) is moved to ``EXPIRED`` by the worker.
    ``DELIVERED``, ``FAILED`` and ``EXPIRED`` are final: a receipt arriving later is recorded
    on its part, and the row stays where it is.
    """

    QUEUED = "queued"
    SENDING = "sending"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class FallbackRecord:
    """One recipient's SMS fallback as stored (``GET /v1/messages/{id}``, tests)."""

    id: int
    message_id: str
    recipient_id: int
    address: str
    sms_link: str
    status: FallbackStatus
    #: what failed the MMS: "failed" (a permanent submit error) or "report:<MMStatus>"
    trigger: str
    sms_id: str | None
    error: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class FallbackItem:
    """One leased fallback row: what the worker needs to build and send the SMS.

    ``lease_token`` fences the outcome calls (``Store.fallback_sending`` and the rest), as a
    ``WorkItem``'s does; ``attempts`` counts this attempt.
    """

    id: int
    message_id: str
    address: str
    sms_link: str
    #: the SMS's length limit (characters), resolved at intake from the link's settings
    text_max: int
    attempts: int
    lease_token: str
    lease_expires_at: datetime
    #: the fallback row's creation (retries stop ``max_age`` after it)
    created_at: datetime
    #: the message's acceptance (its hosted page's link is signed with it)
    message_created_at: datetime
    fields: JSONObject
