"""The SMS fallback worker: leases the store's due fallback rows, sends each SMS through its SMS
link, records the outcome; and the receipt handler the runtime gives the SMS links.

    worker = FallbackWorker(store, sms_links, hosting, config.fallback, wake_relay=relay.wake)
    await worker.start()          # then worker.wake() after a commit that may have queued one
    await link.start(worker.on_receipt)
    ...
    await worker.stop(grace=10)

One row, at most one SMS (never twice beats at-least-once for a text to a handset):

1. ``lease_fallback``: the store first fails every row found ``sending`` past its lease (the
   process stopped mid-send: the SMS may have gone out) with ``OUTCOME_UNKNOWN``, then leases
   due ``queued`` rows;
2. the text: the message's text (else its subject) trimmed so that it and the hosted page's
   link fit in the link's ``fallback_text_max`` (``rules.sms_text``);
3. ``fallback_sending`` commits ``sending`` BEFORE the send (a lost lease: nothing is sent);
4. ``SmsLink.send``; then ``submitted`` with the link's ``sms_id`` and every part's id (a long
   text over SMPP is several SMS, each with its own id and receipt), or for ``SmsRejected``
   ``failed``, or for ``SmsUnavailable`` (down, throttled past its timeout) ``queued`` again at a
   backed-off time until ``[fallback] max_age`` (then ``failed``). ``SmsPartlySent`` (a long
   text's later part failing after earlier ones went out) is ``failed``: a retry would send those
   parts twice. Anything else the send raises leaves the outcome unknown: ``failed``, not
   retried.

Receipts (``on_receipt``), one per part, are correlated in the store by (SMS link, part id), so
they land after a restart too; the row settles there once its parts decide it (failed at the
first failed part, delivered when every part is). One that beats its send's ``submitted`` commit
is kept until that commit. A row whose final receipts do not come (an SMSC that sends none, an
SMPP link with ``receipts = false``) is ``expired`` by the loop (``expire_fallback``, before each
lease) once ``[fallback] receipt_timeout`` has passed since its ``submitted`` commit (0: never);
a receipt after that is recorded on its part, the row stays ``expired``. Each
change queues its ``fallback_sms`` event in the same commit; ``wake_relay`` is called after.

Several instances on one store: the worker leases only while ``may_lease`` says this instance
holds the named lease ``fallback`` (``FALLBACK``), like the relay; PostgreSQL's row leases also
use ``SKIP LOCKED``. Every instance's SMS links take receipts (the store correlates them).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta

import structlog

from mm7.service.config.settings import FallbackSettings
from mm7.service.fallback.rules import (
    expiry_cutoff,
    next_attempt,
    no_receipt_error,
    receipt_status,
    sms_text,
)
from mm7.service.hosting.links import HostedLinks
from mm7.service.sms.link import Receipt, SmsLink, SmsPartlySent, SmsRejected, SmsUnavailable
from mm7.service.store.base import Clock, Store, SystemClock
from mm7.service.store.records import FallbackItem

__all__ = ["FALLBACK", "FallbackWorker"]

log = structlog.get_logger("mm7.service.fallback.worker")

#: the named lease (``mm7.service.cluster.ownership``) whose holder sends the fallback SMS
FALLBACK = "fallback"
#: rows expired per store transaction (``FallbackWorker.expire``)
EXPIRE_BATCH = 100
#: seconds between two looks for rows to expire at most (and a tenth of ``receipt_timeout``
#: when that is less): the loop wakes at every commit that may queue an SMS, and a look is a
#: store transaction
EXPIRE_EVERY = 60.0


class FallbackWorker:
    """Sends the store's queued fallback SMS (module docstring)."""

    def __init__(
        self,
        store: Store,
        links: Mapping[str, SmsLink],
        hosting: HostedLinks | None,
        settings: FallbackSettings | None = None,
        *,
        owner: str = "fallback",
        may_lease: Callable[[], bool] | None = None,
        wake_relay: Callable[[], None] | None = None,
        poll_interval: float = 1.0,
        lease_ttl: timedelta = timedelta(seconds=60),
        send_ttl: timedelta = timedelta(seconds=150),
        no_plus: Collection[str] = (),
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``send_ttl``: how long a ``sending`` row stays leased (longer than a send can take:
        past it, the row is failed as outcome unknown). ``no_plus``: SMS links whose
        destinations go without the leading '+' (SMPP with an international TON)."""
        self.store = store
        self.links = links
        self.hosting = hosting
        self.settings = settings or FallbackSettings()
        self.owner = owner
        self.may_lease = may_lease
        self.wake_relay = wake_relay
        self.poll_interval = poll_interval
        self.lease_ttl = lease_ttl
        self.send_ttl = send_ttl
        self.no_plus = frozenset(no_plus)
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = False
        #: when ``expire`` looks next (this worker's clock)
        self._next_expiry: datetime | None = None
        #: outcomes so far (tests, logs): submitted, failed, retry, lost, receipts, expired
        self.counts: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the leasing loop in the background."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"mm7-fallback-{self.owner}")

    def wake(self) -> None:
        """Look for due rows now (a commit may have queued one)."""
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop leasing; sends in flight get ``grace`` seconds, then are cancelled (a row left
        ``sending`` is failed as outcome unknown once its lease expires: never sent twice)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._in_flight:
            _, late = await asyncio.wait(list(self._in_flight), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            leased = 0
            try:
                leased = await self.run_once()
            except Exception:
                log.exception("mm7.fallback.lease_failed")
            if leased:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def run_once(self) -> int:
        """Expire what waited too long for its receipts, lease what is due (up to the free
        places) and start sending it; how many rows it moved (expired and leased)."""
        if self.may_lease is not None and not self.may_lease():
            return 0
        try:
            expired = await self.expire()
        except Exception:
            # the sends must not wait on the expiry: it is tried again at the next poll
            log.exception("mm7.fallback.expire_failed")
            expired = 0
        free = self.settings.concurrency - len(self._in_flight)
        if free <= 0:
            return expired
        items = await self.store.lease_fallback(self.owner, free, self.lease_ttl)
        for item in items:
            task = asyncio.create_task(self._guarded(item), name=f"mm7-fallback-{item.id}")
            self._in_flight.add(task)
            task.add_done_callback(self._done)
        return expired + len(items)

    async def expire(self) -> int:
        """Move the rows still ``submitted`` ``receipt_timeout`` after their ``submitted``
        commit to ``expired`` (a batch of ``EXPIRE_BATCH``: the loop comes back at once for
        the rest); how many. Nothing when ``receipt_timeout`` is 0; it looks at most every
        ``EXPIRE_EVERY`` seconds or a tenth of ``receipt_timeout``, so a row expires that much
        late at most."""
        timeout = self.settings.receipt_timeout
        now = self.clock.now()
        before = expiry_cutoff(now, timeout)
        if before is None or (self._next_expiry is not None and now < self._next_expiry):
            return 0
        error = no_receipt_error(timeout)
        expired = await self.store.expire_fallback(before, EXPIRE_BATCH, error=error)
        if expired < EXPIRE_BATCH:
            self._next_expiry = now + timedelta(seconds=min(EXPIRE_EVERY, timeout / 10))
        if expired:
            self.counts["expired"] = self.counts.get("expired", 0) + expired
            log.info("mm7.fallback.expired", count=expired, receipt_timeout=timeout)
            if self.wake_relay is not None:
                self.wake_relay()
        return expired

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()

    async def idle(self) -> None:
        """Wait until the sends in flight have finished (tests)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    # -- one row -----------------------------------------------------------------------------

    async def _guarded(self, item: FallbackItem) -> None:
        bound = log.bind(message_id=item.message_id, fallback_id=item.id, sms_link=item.sms_link)
        try:
            await self.send(item, bound)
        except asyncio.CancelledError:
            raise
        except Exception:
            # a store outage: the row's lease expires (queued: leased again; sending: failed)
            bound.exception("mm7.fallback.internal_error")
        finally:
            if self.wake_relay is not None:
                self.wake_relay()

    async def send(self, item: FallbackItem, bound: structlog.typing.FilteringBoundLogger) -> None:
        """Build, commit ``sending``, send, record (module docstring)."""
        link = self.links.get(item.sms_link)
        if link is None:
            await self._failed(item, f"no SMS link named {item.sms_link!r} is configured", bound)
            return
        if self.hosting is None:
            await self._failed(item, "hosting is off: no page link to send", bound)
            return
        url = self.hosting.page_url(item.message_id, item.message_created_at)
        fields = item.fields
        text = sms_text(_str(fields.get("text")), _str(fields.get("subject")), url, item.text_max)
        if not await self.store.fallback_sending(item, self.send_ttl):
            self._count("lost")
            bound.info("mm7.fallback.lease_lost")
            return
        to = item.address.split("/", 1)[0]
        if item.sms_link in self.no_plus:
            to = to.removeprefix("+")
        try:
            sent = await link.send(to, text)
        except (SmsRejected, SmsPartlySent) as exc:
            await self._failed(item, str(exc), bound)
        except SmsUnavailable as exc:
            at = next_attempt(
                item.attempts, item.created_at, self.clock.now(),
                initial=self.settings.initial_backoff, maximum=self.settings.max_backoff,
                max_age=self.settings.max_age, rng=self.rng,
            )  # fmt: skip
            if at is None:
                await self._failed(item, f"{exc} (retried until max_age)", bound)
                return
            self._count("retry")
            await self.store.fallback_retry(item, at, str(exc))
            bound.info("mm7.fallback.retry", error=str(exc), at=at.isoformat())
        except Exception as exc:
            # it may have gone out: failed, never sent again
            await self._failed(item, f"outcome unknown: {type(exc).__name__}", bound)
        else:
            recorded = await self.store.fallback_submitted(item, sent.sms_id, sent.part_ids)
            self._count("submitted" if recorded else "lost")
            bound.info("mm7.fallback.submitted", sms_id=sent.sms_id, parts=len(sent.part_ids),
                       recorded=recorded)  # fmt: skip

    async def _failed(
        self, item: FallbackItem, error: str, bound: structlog.typing.FilteringBoundLogger
    ) -> None:
        recorded = await self.store.fallback_failed(item, error)
        self._count("failed" if recorded else "lost")
        bound.warning("mm7.fallback.failed", error=error, recorded=recorded)

    # -- receipts ----------------------------------------------------------------------------

    async def on_receipt(self, receipt: Receipt) -> None:
        """An SMS link's receipt of one part: recorded on that part in the store, which settles
        the row once its parts decide it (kept there until its send's commit when it came
        first)."""
        status = receipt_status(receipt.state)
        if status is None:
            return
        try:
            applied = await self.store.fallback_receipt(
                receipt.link, receipt.sms_id, status, receipt.error or receipt.state.value
            )
        except Exception:
            log.exception("mm7.fallback.receipt_failed", sms_link=receipt.link)
            return
        self._count("receipts")
        log.info("mm7.fallback.receipt", sms_link=receipt.link, sms_id=receipt.sms_id,
                 status=status.value, applied=applied)  # fmt: skip
        if applied and self.wake_relay is not None:
            self.wake_relay()


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
