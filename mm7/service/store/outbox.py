"""The relay's records: events waiting for an application's hook, and opt-out suppressions.

The relay outbox is a transactional outbox: an event row is committed in the same transaction
as the thing it reports (the MO stored, the recipient submitted, the delivery report recorded),
so that whatever the gateway acknowledged is also on its way to the application, even across a
crash. The relay worker leases rows (like dispatchers lease recipients), delivers them and
records the outcome; rows that keep failing past the relay's ``max_age`` become dead letters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from mm7.service.store.records import JSONObject, PartRecord


class RelayStatus(StrEnum):
    """Where a relay event stands. Only ``PENDING`` rows are leased."""

    PENDING = "pending"
    DELIVERED = "delivered"
    #: every attempt failed until ``max_age``: a dead letter (``mm7 relay list|retry|drop``)
    DEAD = "dead"
    #: an operator dropped it (it is kept, not deleted)
    DROPPED = "dropped"
    #: nowhere to send it (no callback_url and no status hook configured for its link)
    SKIPPED = "skipped"


class RelayKind(StrEnum):
    """What an event reports; the JSON body's ``type``."""

    MO = "mo"
    STATUS = "status"
    DELIVERY_REPORT = "delivery_report"
    READ_REPLY = "read_reply"
    #: a recipient's SMS fallback changed (``mm7.service.fallback``): queued, submitted...
    FALLBACK_SMS = "fallback_sms"


MediaMode = Literal["url", "inline"]


@dataclass(frozen=True, slots=True)
class MoRelay:
    """Where a stored MO is to be relayed: the route's hook, its media mode and ordering key."""

    hook: str
    route: str
    media: MediaMode
    #: the JSON body without ``id`` (the store adds the MO's id) and without media bytes/URLs
    event: JSONObject
    #: ordering key for hooks that keep order per sender (the normalised sender address)
    sender_key: str | None = None


@dataclass(frozen=True, slots=True)
class OptOut:
    """An opt-out change carried by an MO: ``stop`` suppresses ``address``, ``start`` lifts it."""

    action: Literal["stop", "start"]
    address: str
    word: str


@dataclass(frozen=True, slots=True)
class RelayItem:
    """One leased relay event: what the worker needs to build the body and deliver it."""

    id: int
    kind: RelayKind
    idempotency_key: str
    hook: str | None
    callback_url: str | None
    api_key: str | None
    link: str | None
    source_id: str | None
    media: MediaMode | None
    event: Mapping[str, Any]
    #: this attempt's number (1 for the first)
    attempt: int
    first_attempt_at: datetime | None
    owner: str
    lease_token: str
    lease_expires_at: datetime
    #: an MO's media parts (empty for other kinds)
    parts: tuple[PartRecord, ...] = ()


#: what an attempt's outcome does to its event (``Store.relay_outcome``)
Outcome = Literal["delivered", "retry", "dead", "skipped"]


@dataclass(frozen=True, slots=True)
class RelayOutcome:
    """How the attempt on a leased event ended, recorded later in a batch
    (``Store.lease_relay(finished=...)``): the arguments of ``Store.relay_outcome``."""

    item: RelayItem
    outcome: Outcome
    attempted_at: datetime | None = None
    retry_at: datetime | None = None
    http_status: int | None = None
    error: str | None = None
    hook: str | None = None

    def __post_init__(self) -> None:
        if self.outcome == "retry" and self.retry_at is None:
            raise ValueError("a retry needs retry_at")


@dataclass(frozen=True, slots=True)
class RelayRecord:
    """A relay event as stored, for listing and inspection (dead letters)."""

    id: int
    kind: RelayKind
    idempotency_key: str
    status: RelayStatus
    hook: str | None
    callback_url: str | None
    link: str | None
    source_id: str | None
    attempts: int
    next_attempt_at: datetime
    first_attempt_at: datetime | None
    last_http_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    event: Mapping[str, Any]
    #: the API key whose message the event reports (None: an MO, or a report of no message)
    api_key: str | None = None


@dataclass(frozen=True, slots=True)
class Suppression:
    """A sender who opted out: the sending API refuses them as recipients until START."""

    address: str
    word: str
    link: str | None
    mo_id: str | None
    created_at: datetime


def status_event(
    kind: RelayKind,
    *,
    message_id: str | None,
    recipient: str,
    status: str,
    at: datetime,
    link: str | None,
    mm7_message_id: str | None = None,
    status_code: int | None = None,
    status_text: str | None = None,
    mm_status: str | None = None,
    leniencies: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The JSON body of a status, delivery-report or read-reply event (one shape for all; a
    report's also lists the leniencies its reading needed, e.g. report-addresses-swapped)."""
    extra: dict[str, Any] = {"leniencies": list(leniencies)} if leniencies is not None else {}
    return {
        "type": kind.value,
        "message_id": message_id,
        "recipient": recipient,
        "status": status,
        "link": link,
        "mm7_message_id": mm7_message_id,
        "status_code": status_code,
        "status_text": status_text,
        "mm_status": mm_status,
        "at": at.isoformat().replace("+00:00", "Z"),
        **extra,
    }
