"""The ``Store`` protocol: what the API, dispatchers, inbound endpoint and relay need from it.

Every gateway path goes through this interface: the API enqueues (and answers 202 only after the
awaited call returns, i.e. after the commit), dispatchers lease recipients and record outcomes,
the inbound endpoint records delivery reports and MO messages. Backends (``sqlite/`` now,
PostgreSQL later) implement ``Store``; the records that cross it are in ``records``, the relay's
in ``outbox``.

Times are timezone-aware UTC ``datetime`` values taken from an injectable ``Clock`` so that tests
can move time (lease expiry, retry schedules, message expiry) without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from mm7.core.status import MMStatus
from mm7.service.store.limits import LimitOps
from mm7.service.store.records import (
    NO_RECEIPT,
    DeliveryReportRecord,
    DeliveryReportResult,
    EnqueueResult,
    FallbackItem,
    FallbackRecord,
    FallbackStatus,
    JSONObject,
    MediaBlob,
    MediaPart,
    MessageContent,
    MessageCursor,
    MessageFilter,
    MessagePage,
    MessageRecord,
    MoRecord,
    MoResult,
    NewMessage,
    NewMo,
    PurgeStats,
    StoreStats,
    WorkItem,
)

if TYPE_CHECKING:
    from collections.abc import Collection

    from mm7.service.store.outbox import (
        RelayItem,
        RelayKind,
        RelayOutcome,
        RelayRecord,
        RelayStatus,
        Suppression,
    )


class Clock(Protocol):
    """Where the store takes "now" from: injectable so tests control time."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        """``datetime.now(UTC)``."""
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to, for tests and simulations."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start if start is not None else datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        """The time last set."""
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta``."""
        self._now += delta

    def set(self, when: datetime) -> None:
        """Jump to ``when``."""
        self._now = when


class FallbackOps(Protocol):
    """The SMS fallback's rows (``mm7.service.fallback``): queued by ``fail`` and by delivery
    reports in their own transactions, then leased, sent and settled through these. Every
    outcome call is fenced by the item's lease token (False: the lease was lost), and queues the
    change's ``fallback_sms`` event in the same commit."""

    async def lease_fallback(self, owner: str, n: int, ttl: timedelta) -> list[FallbackItem]:
        """Fail the rows found ``sending`` past their lease ("outcome unknown": never sent
        twice), then lease up to ``n`` due ``queued`` rows."""
        ...

    async def fallback_sending(self, item: FallbackItem, ttl: timedelta) -> bool:
        """Commit ``sending`` (the lease ``ttl`` from now) before the SMS goes out."""
        ...

    async def fallback_submitted(
        self, item: FallbackItem, sms_id: str, part_ids: Sequence[str] = ()
    ) -> bool:
        """``submitted`` with the link's ``sms_id`` and every part's id (``part_ids``,
        ``sms_id`` first; none: one part); receipts kept early are applied."""
        ...

    async def fallback_retry(self, item: FallbackItem, at: datetime, error: str) -> bool:
        """``queued`` again, due at ``at`` (the link could not take it now)."""
        ...

    async def fallback_failed(self, item: FallbackItem, error: str) -> bool:
        """``failed`` with ``error`` (refused for good, or past the max age)."""
        ...

    async def fallback_receipt(
        self, sms_link: str, sms_id: str, status: FallbackStatus, error: str = ""
    ) -> bool:
        """Record the receipt of the part (``sms_link``, ``sms_id``) and settle its submitted
        row once its parts decide it: failed at the first failed part, delivered when all are
        (True: recorded on a submitted row); one for no part yet is kept until that send's
        ``submitted`` commit applies it. A row already final (delivered, failed, expired)
        keeps its status: the receipt is recorded on its part only (False)."""
        ...

    async def expire_fallback(self, before: datetime, n: int, *, error: str = NO_RECEIPT) -> int:
        """Move up to ``n`` rows still ``submitted`` since before ``before`` (no final receipt
        since their ``submitted`` commit: ``[fallback] receipt_timeout``) to ``expired`` with
        ``error``, oldest first, each with its ``fallback_sms`` event; how many. Not fenced by a
        lease: the worker calls it under the ``fallback`` named lease, and a row a receipt is
        settling at the same moment is left to that receipt."""
        ...

    async def fallback_sms(self, message_id: str) -> list[FallbackRecord]:
        """The fallback rows of ``message_id``."""
        ...


@runtime_checkable
class Store(LimitOps, FallbackOps, Protocol):
    """What the gateway needs from persistence. Every write returns only once it is durable.
    (``LimitOps``: deferrals of senders over their rate, API keys' quotas.)"""

    async def close(self) -> None:
        """Finish queued writes, then release connections and threads."""
        ...

    def stats(self) -> StoreStats:
        """Writer counters (for metrics and the group-commit test)."""
        ...

    async def put_media(self, data: bytes, content_type: str) -> str:
        """Store media once by content hash; return its sha256 (hex)."""
        ...

    async def get_media(self, sha256: str) -> MediaBlob | None:
        """Stored media with its bytes, or None."""
        ...

    async def get_media_many(self, hashes: Sequence[str]) -> dict[str, MediaBlob]:
        """Several media with their bytes in one read; those not stored are left out."""
        ...

    async def enqueue_message(
        self, message: NewMessage, recipients: Sequence[str], parts: Sequence[MediaPart] = ()
    ) -> EnqueueResult:
        """Commit a message, its recipients and parts; idempotent on ``idempotency_key``."""
        ...

    async def get_message(self, message_id: str) -> MessageRecord | None:
        """A message with recipients, parts and events, or None."""
        ...

    async def message_content(self, message_id: str) -> MessageContent | None:
        """A message's fields and parts without its recipients and events (the hosted page
        reads it on every view, also of a campaign's message), or None."""
        ...

    async def list_messages(
        self, where: MessageFilter, *, limit: int = 50, after: MessageCursor | None = None
    ) -> MessagePage:
        """Messages matching ``where``, newest first (``created_at`` then ``id``, descending: a
        stable order), at most ``limit``, starting after ``after`` (the previous page's
        ``next``). Messages created while paging appear only on a listing started anew."""
        ...

    async def message_for_key(
        self, idempotency_key: str, request_digest: str | None = None
    ) -> str | None:
        """The id of the message stored under ``idempotency_key``, or None;
        ``IdempotencyConflictError`` when both digests are known and differ."""
        ...

    async def lease(self, link: str, owner: str, n: int, ttl: timedelta) -> list[WorkItem]:
        """Lease up to ``n`` due, unexpired, unleased queued recipients of ``link``."""
        ...

    async def complete(
        self,
        item: WorkItem,
        mm7_message_id: str | None,
        status_code: int | None = None,
        status_text: str | None = None,
        details: JSONObject | None = None,
    ) -> bool:
        """Record the MMSC's acceptance and release the lease; False if the lease was lost."""
        ...

    async def fail(
        self,
        item: WorkItem,
        status_code: int | None,
        status_text: str | None,
        details: JSONObject | None = None,
    ) -> bool:
        """Fail the recipient permanently and release the lease; False if the lease was lost."""
        ...

    async def retry_later(
        self,
        item: WorkItem,
        at: datetime,
        status_code: int | None = None,
        status_text: str | None = None,
        details: JSONObject | None = None,
    ) -> bool:
        """Schedule another attempt at ``at``; False if the lease was lost. An ``at`` at or
        after the item's expiry expires it instead (the store never schedules past it)."""
        ...

    async def expire(
        self,
        item: WorkItem,
        status_code: int | None = None,
        status_text: str | None = None,
        details: JSONObject | None = None,
    ) -> bool:
        """Retrying stopped at its deadline (``mm7.service.mt.outcome``): the recipient is
        expired with the last status; False if the lease was lost."""
        ...

    async def release(self, item: WorkItem) -> bool:
        """Give a lease back unattempted (graceful shutdown); False if the lease was lost."""
        ...

    async def record_delivery_report(
        self,
        link: str,
        mm7_message_id: str,
        recipient: str,
        mm_status: MMStatus,
        raw_status: str | None = None,
        status_text: str | None = None,
        raw: str | None = None,
        details: JSONObject | None = None,
        *,
        alternate: str | None = None,
        other_links: Sequence[str] = (),
    ) -> DeliveryReportResult:
        """Record a report, correlated by (link, MessageID, recipient); unknown ones are kept.

        ``alternate``: the report's other address, taken as the handset when it, not
        ``recipient``, is a recipient of the message (an MMSC that swaps Sender and Recipient).
        ``other_links``: links to look in, in order, when ``link`` did not send the MessageID
        (one MMSC serving several links).
        """
        ...

    async def delivery_reports(
        self, *, message_id: str | None = None, unknown_only: bool = False, limit: int = 100
    ) -> list[DeliveryReportRecord]:
        """Reports of one message, or the uncorrelated ones kept for inspection."""
        ...

    async def store_mo(self, mo: NewMo) -> MoResult:
        """Commit an MO message with its media; a retry of one already stored is a duplicate."""
        ...

    async def get_mo(self, mo_id: str) -> MoRecord | None:
        """A stored MO message, or None."""
        ...

    async def queue_depth(self, link: str | None = None) -> int:
        """How many recipients are queued (optionally on one link), for metrics."""
        ...

    async def record_read_reply(
        self,
        link: str,
        mm7_message_id: str,
        recipient: str,
        read_status: str,
        status_text: str | None = None,
        details: JSONObject | None = None,
        *,
        alternate: str | None = None,
        other_links: Sequence[str] = (),
    ) -> str | None:
        """Record a read reply on the message it answers (its id, or None) and relay it;
        ``alternate`` and ``other_links`` as for ``record_delivery_report``."""
        ...

    # -- the relay outbox (mm7.service.store.outbox)

    async def lease_relay(
        self,
        owner: str,
        n: int,
        ttl: timedelta,
        *,
        ordered_hooks: Collection[str] = (),
        quotas: Mapping[str | None, int] | None = None,
        others: bool = True,
        finished: Sequence[RelayOutcome] = (),
    ) -> list[RelayItem]:
        """Lease up to ``n`` due relay events (the oldest per sender for ordered hooks; at
        most ``quotas[hook]`` per hook, key None for events without a hook). ``finished``:
        outcomes of earlier attempts (as ``relay_outcome``) recorded first, in the same
        transaction: the worker's one write per round."""
        ...

    async def relay_outcome(
        self,
        item: RelayItem,
        outcome: Literal["delivered", "retry", "dead", "skipped"],
        *,
        attempted_at: datetime | None = None,
        retry_at: datetime | None = None,
        http_status: int | None = None,
        error: str | None = None,
        hook: str | None = None,
    ) -> bool:
        """Record an attempt's outcome and release the lease; False if the lease was lost.
        ``hook``: the hook an event without one went to (a link's status hook), recorded."""
        ...

    async def release_relay(self, item: RelayItem) -> bool:
        """Give a relay lease back unattempted (shutdown)."""
        ...

    async def relay_events(
        self,
        *,
        status: RelayStatus | None = None,
        hook: str | None = None,
        kind: RelayKind | None = None,
        after_id: int = 0,
        limit: int = 100,
        api_key: str | None = None,
    ) -> list[RelayRecord]:
        """Relay events by id, filtered, paged with ``after_id``."""
        ...

    async def get_relay_event(self, event_id: int) -> RelayRecord | None:
        """One relay event, or None."""
        ...

    async def relay_counts(self, api_key: str | None = None) -> dict[str, int]:
        """Relay events per status (``api_key``: of that key's messages only)."""
        ...

    async def requeue_relay(
        self, ids: Sequence[int] | None = None, *, api_key: str | None = None
    ) -> int:
        """Dead (or dropped) events pending again, with a fresh max_age; how many. ``ids``
        None: every dead event (``api_key``: every dead event of that key's messages)."""
        ...

    async def drop_relay(self, ids: Sequence[int]) -> int:
        """Stop relaying these dead or pending events (kept as dropped); how many."""
        ...

    async def purge(self, before: datetime) -> PurgeStats:
        """Delete finished messages, MOs, reports and unused media older than ``before``, and
        the inbound request keys whose time is up (``record_request``)."""
        ...

    async def purge_relay(self, before: datetime) -> int:
        """Delete delivered, skipped and dropped events last changed before ``before``."""
        ...

    async def suppressed(self, addresses: Sequence[str]) -> set[str]:
        """Which of ``addresses`` opted out."""
        ...

    async def suppressions(self, *, limit: int = 1000) -> list[Suppression]:
        """The suppression list, newest first."""
        ...

    async def own_secret(self, name: str) -> str:
        """A random secret made once and kept in the store."""
        ...

    # -- the cluster (mm7.service.cluster): named leases, shared duplicate detection, wakes

    async def claim(self, name: str, owner: str, ttl: timedelta) -> int | None:
        """Take or renew the named lease ``name`` for ``owner`` until now + ``ttl`` (store
        clock); its fencing token (unchanged on renewal, +1 each time the lease changes hands),
        or None while another owner holds it unexpired."""
        ...

    async def give_up(self, name: str, owner: str) -> None:
        """Release the named lease if ``owner`` holds it (graceful stop: others take it at
        their next claim instead of after its TTL)."""
        ...

    async def seen_request(self, key: str) -> bool:
        """Whether ``key`` (an inbound request's dedupe key) was recorded and has not expired."""
        ...

    async def record_request(self, key: str, ttl: timedelta) -> None:
        """Remember ``key`` until now + ``ttl`` (refreshing the expiry of a key recorded
        before); ``purge`` removes expired keys."""
        ...

    def watch(self, *, on_mt: Callable[[str], None], on_relay: Callable[[], None]) -> None:
        """Call ``on_mt(link)`` when another process commits MT work for ``link`` and
        ``on_relay()`` when it queues relay events (a shared store's notifications; a store only
        one process uses calls nothing)."""
        ...
