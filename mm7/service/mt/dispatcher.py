"""Per-link dispatch of MT messages: lease due recipients, submit, record the outcome.

    async with Dispatcher(store, config.link("carrier-a"), clock=store_clock) as dispatcher:
        ...                                        # runs until the block ends (graceful stop)

The loop (one per link, ``Dispatcher.run``):

1. Lease up to ``free`` due recipients (``free`` = concurrency minus items in flight), with a
   lease TTL longer than the worst time an item can take (waiting for a TPS token behind the
   other in-flight items, connect, request timeout, plus a margin). The store hands out only
   due recipients (``next_attempt_at``, which is the earliest delivery time for scheduled
   messages) and marks those whose message expired on the way.
2. Each leased item runs as its own task: build the SubmitReq (``mm7.service.mt.submit_build``:
   fields + parts -> presentation -> fit to the link's profile -> ``to_part``; cached by
   content, so that a message's recipients, and messages with the same parts and presentation
   (one request per recipient of a campaign), share one build and one read of the media; when
   the link's profile says ``too_big = "link"`` and nothing fits, the message's text and its
   hosted page's URL, ``mm7.service.hosting``, recorded as ``link_fallback`` in the event),
   send it through the link's ``MM7Client`` (which enforces TPS, the in-flight bound and the
   circuit breaker), and record the step that
   ``mm7.service.mt.outcome.next_step`` chooses for the answer: ``Submitted`` (1000/1100 ->
   ``complete`` with the MM7 MessageID), ``Failed`` (a permanent error, a 1100 whose Details
   name the recipient, content that cannot be built -> ``fail``), ``Retry`` (a transient error
   -> ``retry_later`` with exponential backoff and full jitter, at least the peer's Retry-After
   or the breaker's cool-down) or ``Expired`` (the next attempt would fall after the message's
   expiry or, without one, the link's ``retry.max_age`` after its creation -> ``expire``).
3. With nothing due, wait for ``wake()`` (the API calls it after an enqueue), an item finishing,
   or ``poll_interval`` seconds.

Senders over their rate (``sender_tps``, ``mm7.service.mt.senders``): each leased recipient of
a limited sender gets its sender's next turn. A turn due now is sent at once; one within the
limits' ``hold`` (a second) is waited for in memory without counting as in flight, so it takes no
place from other senders' recipients; a later one goes back to the store due at that turn
(``Store.defer``: the attempt not counted, a ``throttled`` event), so the loop leases past a
slow sender's backlog to the others' recipients. While a round deferred recipients, the next
leases up to twice as many more (at most ``WALK_MAX`` beyond the free places), and deferrals are
written while the next lease runs, so a long backlog is walked past quickly; what such a lease
returns beyond the free places that could go at once is given back due now (``release``). The
link's flow control asks the sender's ``admit`` right before each send, so a request leaves only
a full ``1/rate`` after the sender's previous one; a refusal waits in memory and tries again.

Several instances on one store (``mm7.service.cluster``): ``may_lease`` says whether this
instance owns the link now (it holds the lease ``link:<name>``). The loop leases nothing while it
does not, and what a lease call returns after the ownership ended is released unattempted, so
the link's TPS, in-flight bound and breaker hold for the cluster: one instance sends on it at a
time. Items already in flight when the ownership ends finish (their own leases and fencing tokens
keep the store right).

One recipient per SubmitReq (the decision on fan-out): the store leases recipients one by one,
each with its own stable TransactionID (``<message_id>.<index>``), which is the idempotency key
the MMSC drops duplicate resends by. A request carrying several recipients would need one
TransactionID for a group whose composition changes between retries (some accepted, some
retried), and its 1100 partial success names failed recipients only in free text. One recipient
a request keeps retries exact, the outcome per recipient unambiguous and never exceeds any
link's ``max_recipients``; the cost is one request (and one TPS token) per recipient.

Shutdown (``stop``): stop leasing, give the in-flight items ``grace`` seconds to finish, then
cancel the rest and ``release`` their leases (due again at once, the attempt not counted; one
already on the wire may reach the MMSC twice, with the same TransactionID), close the client
when the dispatcher opened it. Cancelling the task of ``run`` itself (a crash, as tests do)
releases nothing: the leases expire and another dispatcher takes the items.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import random
import secrets
import socket
import time
from collections.abc import Callable, Coroutine, Hashable
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal

import structlog
from structlog.stdlib import BoundLogger

from mm7.core.model import SubmitRsp
from mm7.service.config.settings import LinkSettings
from mm7.service.errors import BuildError
from mm7.service.hosting.links import HostedLinks
from mm7.service.mt.outcome import (
    Expired,
    Failed,
    Retry,
    Step,
    Submitted,
    after_transient,
    next_step,
)
from mm7.service.mt.senders import SenderLimits
from mm7.service.mt.submit_build import (
    BuiltContent,
    MessageFields,
    build_content,
    build_submit,
    read_fields,
    sender_of,
)
from mm7.service.ops.metrics import GatewayMetrics
from mm7.service.store.base import Clock, Store, SystemClock
from mm7.service.store.limits import Deferral
from mm7.service.store.records import WorkItem
from mm7.transport.classify import Verdict
from mm7.transport.client import MM7Client
from mm7.transport.errors import MM7ClientError
from mm7.transport.flow import NotAdmitted

__all__ = ["Dispatcher"]

log = structlog.get_logger("mm7.service.mt.dispatcher")

#: added to the worst case an item can take, for the lease TTL
LEASE_MARGIN = 30.0
#: recipients leased at most beyond the free places while walking past a slow sender's backlog
WALK_MAX = 250

#: what ``Dispatcher._place`` did with a leased item (or the Deferral it asks for)
Placed = Literal["started", "held", "no_room"]


class Dispatcher:
    """The dispatcher of one link (module docstring).

    ``client``: share the link's MM7Client (its flow control then covers every user); None:
    the dispatcher opens one on ``start`` and closes it on ``stop``. ``concurrency``: items in
    progress at once (default: the link's ``max_in_flight``). ``clock``: the store's clock (retry
    times and expiry are compared with the store's "now"). ``rng``: the jitter's randomness.
    ``sender_hold``: how far ahead (seconds) a sender's turn is waited for in memory rather than
    in the store; ``max_held``: recipients waiting in memory at most (default: 8 x concurrency,
    at least 64; beyond, turns are waited for in the store).
    """

    def __init__(
        self,
        store: Store,
        settings: LinkSettings,
        *,
        client: MM7Client | None = None,
        owner: str | None = None,
        concurrency: int | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        poll_interval: float = 1.0,
        lease_ttl: timedelta | None = None,
        wake_relay: Callable[[], None] | None = None,
        content_cache: int = 32,
        metrics: GatewayMetrics | None = None,
        may_lease: Callable[[], bool] | None = None,
        sender_hold: float = 1.0,
        max_held: int | None = None,
        hosting: HostedLinks | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.link = settings.name
        self.client = client
        self._own_client = client is None
        self.owner = owner or f"{socket.gethostname()}:{self.link}:{secrets.token_hex(4)}"
        self.concurrency = concurrency or settings.link.max_in_flight
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.poll_interval = poll_interval
        self.lease_ttl = lease_ttl or self.default_lease_ttl(settings, self.concurrency)
        #: called after a final status was recorded for a message with a callback_url or an SMS
        #: fallback (the store queued a relay event or a fallback row in the same commit):
        #: wakes the relay and the fallback worker
        self.wake_relay = wake_relay
        self.metrics = metrics
        #: whether this instance owns the link now (None: always; module docstring)
        self.may_lease = may_lease
        #: the hosted pages' links: a message too big for the link's profile goes as its text
        #: and its page's URL when the profile says too_big = "link" (None: hosting is off)
        self.hosting = hosting
        self._cache: collections.OrderedDict[Hashable, BuiltContent] = collections.OrderedDict()
        self._cache_size = content_cache
        self._building: dict[Hashable, asyncio.Future[BuiltContent]] = {}
        self._inflight: dict[asyncio.Task[None], WorkItem] = {}
        #: store writes the loop did not wait for (deferrals, give-backs): ``stop`` waits
        self._writes: set[asyncio.Task[None]] = set()
        #: the per-sender limits (None: the link has no sender_tps)
        self.senders = (
            SenderLimits(settings.sender_tps, link_tps=settings.link.tps, hold=sender_hold)
            if settings.sender_tps
            else None
        )
        #: tasks of _inflight waiting in memory for their sender's turn, and how many others wait
        #: again after their sender's admit refused them (neither counted as in flight)
        self._holding: set[asyncio.Task[None]] = set()
        self._readmitting = 0
        self.max_held = max_held if max_held is not None else max(64, 8 * self.concurrency)
        #: recipient id -> the newest lease this dispatcher holds on it (see _current)
        self._latest: dict[int, WorkItem] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._releasing = False
        self.task: asyncio.Task[None] | None = None
        self.log = log.bind(link=self.link, owner=self.owner)
        #: counters (metrics and tests)
        self.counts: collections.Counter[str] = collections.Counter()

    @staticmethod
    def default_lease_ttl(settings: LinkSettings, concurrency: int) -> timedelta:
        """Longer than an item can take: its wait for a TPS token behind the other in-flight
        items, connect and the whole request, plus ``LEASE_MARGIN``."""
        link = settings.link
        token_wait = concurrency / link.tps if link.tps else 0.0
        return timedelta(
            seconds=token_wait + link.connect_timeout + link.request_timeout + LEASE_MARGIN
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the client (when not given) and start the loop as ``self.task``."""
        if self.task is not None:
            return
        if self.client is None:
            self.client = MM7Client(self.settings.link)
        await self.client.start()
        if self.metrics is not None:
            self.metrics.track_link(self.link, self.client)
        self._stopping = False
        self._releasing = False
        self.task = asyncio.create_task(self.run(), name=f"mm7-dispatch-{self.link}")

    async def stop(self, grace: float = 10.0) -> None:
        """Graceful shutdown: no new leases; in-flight items get ``grace`` seconds, then are
        cancelled and released; the client is closed when the dispatcher opened it."""
        self._stopping = True
        self._wake.set()
        if self.task is not None:
            # the loop ends after its current lease or idle wait; what it leased is in flight
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self._inflight:
            _, late = await asyncio.wait(list(self._inflight), timeout=grace)
            if late:
                self._releasing = True
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        if self._own_client and self.client is not None:
            await self.client.close()
            self.client = None
        self.log.info("mm7.dispatch.stopped", **dict(self.counts))

    async def __aenter__(self) -> Dispatcher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def wake(self) -> None:
        """Look for due work now (after an enqueue, or after moving a test clock)."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        """Items being built, sent or recorded (not those waiting for their sender's turn)."""
        return len(self._inflight) - self.held

    @property
    def held(self) -> int:
        """Items waiting in memory for their sender's turn."""
        return len(self._holding) + self._readmitting

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Lease and dispatch until stopped. Cancelled: the in-flight items are cancelled too,
        without releasing their leases (they expire: a crash as far as the store can tell)."""
        self.log.info("mm7.dispatch.started", concurrency=self.concurrency)
        try:
            walked = 0  # recipients the previous lease round deferred
            while not self._stopping:
                # cleared before looking: a wake() or a finished item from now on ends the idle
                self._wake.clear()
                free = self.concurrency - self.in_flight
                # past a slow sender's backlog (its recipients deferred), lease more at a time
                want = free + min(2 * walked, WALK_MAX) if free > 0 else 0
                walked = 0
                leased: list[WorkItem] = []
                deferred: list[Deferral] = []
                no_room: list[WorkItem] = []
                if free > 0 and self._owns_link():
                    try:
                        leased = await self.store.lease(self.link, self.owner, want, self.lease_ttl)
                    except Exception:
                        self.log.exception("mm7.dispatch.lease_failed")
                    if leased and not self._owns_link():
                        await self._give_back(leased)
                        leased = []
                    for item in leased:
                        if item.recipient_id in self._latest:
                            # our own lease ran out while the item was still on its way (a slow
                            # MMSC, a long wait for a TPS slot) and we took it again: keep the
                            # newer lease for the task already sending it, never send it twice
                            self._latest[item.recipient_id] = item
                            self.counts["re_leased_in_flight"] += 1
                            self.log.warning(
                                "mm7.dispatch.lease_expired_in_flight",
                                transaction_id=item.transaction_id,
                                lease_ttl_s=self.lease_ttl.total_seconds(),
                            )
                            continue
                        placed = self._place(item, room=free > 0)
                        if isinstance(placed, Deferral):
                            deferred.append(placed)
                        elif placed == "started":
                            free -= 1
                        elif placed == "no_room":
                            no_room.append(item)
                # written while the next lease runs (they commit together); what they give
                # back is still leased until then, so that lease cannot return it again
                if deferred:
                    self._background(self._defer(deferred))
                if no_room:
                    self._background(self._release_now(no_room))
                walked = len(deferred)
                if leased and len(leased) == want:
                    continue  # maybe more is due
                await self._idle()
        except asyncio.CancelledError:
            tasks = list(self._inflight)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def _owns_link(self) -> bool:
        return self.may_lease is None or self.may_lease()

    async def _give_back(self, items: list[WorkItem]) -> None:
        """The ownership ended while leasing: release what came back, unattempted."""
        self.log.info("mm7.dispatch.not_owner", released=len(items))
        for item in items:
            try:
                await self.store.release(item)
            except Exception:
                self.log.exception(
                    "mm7.dispatch.release_failed", transaction_id=item.transaction_id
                )
            # counted once given back, so that a reader of the count sees the store released
            self.counts["released_not_owner"] += 1

    async def _idle(self) -> None:
        timeout = self.poll_interval
        if self.senders is not None and (kept := self.senders.next_kept()) is not None:
            timeout = min(timeout, kept + 0.01)  # a deferred recipient's turn comes
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _place(self, item: WorkItem, *, room: bool) -> Deferral | Placed:
        """Start ``item`` now ("started"; with no ``room`` left in flight: "no_room", to be given
        back due now), hold it in memory for its sender's turn ("held"), or (a turn beyond
        ``hold``, or too many held) the deferral that gives it back to the store until then."""
        sender: str | None = None
        turn = None
        if self.senders is not None:
            sender = sender_of(item.fields, self.settings)
            turn = self.senders.turn(sender, item.recipient_id)
        if turn is None or turn.delay <= 0:
            if not room:
                if turn is not None and self.senders is not None:
                    self.senders.keep(item.recipient_id, turn)  # its turn stays its own
                return "no_room"
            self._spawn(item, sender=sender if turn is not None else None)
            return "started"
        assert self.senders is not None and sender is not None
        if turn.delay <= self.senders.hold and self.held < self.max_held:
            self._spawn(item, sender=sender, hold=turn.delay)
            if self.metrics is not None:
                self.metrics.observe_sender_wait(self.link, "held")
            return "held"
        self.senders.keep(item.recipient_id, turn)
        at = self.clock.now() + timedelta(seconds=turn.delay)
        if item.expires_at is not None and at > item.expires_at:
            at = item.expires_at  # leased then, it expires: never scheduled past the expiry
        details = {"sender": sender, "sender_tps": turn.rate, "owner": self.owner}
        return Deferral(item, at, details)

    def _background(self, write: Coroutine[Any, Any, None]) -> None:
        """Run a store write of the loop's without waiting for it (``stop`` waits)."""
        task = asyncio.create_task(write)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _release_now(self, items: list[WorkItem]) -> None:
        """Give back, due now, what a lease returned beyond the room in flight."""
        self.counts["released_no_room"] += len(items)
        results = await asyncio.gather(
            *(self.store.release(item) for item in items), return_exceptions=True
        )
        for item, result in zip(items, results, strict=True):
            if isinstance(result, BaseException):
                self.log.error(
                    "mm7.dispatch.release_failed", transaction_id=item.transaction_id,
                    error=repr(result),
                )  # fmt: skip

    async def _defer(self, deferred: list[Deferral]) -> None:
        """Give the leases of recipients whose turn is further ahead back to the store."""
        try:
            done = await self.store.defer(deferred)
        except Exception:
            # their leases expire and they come back then: late, never lost
            self.log.exception("mm7.dispatch.defer_failed", recipients=len(deferred))
            return
        self.counts["deferred"] += done
        if self.metrics is not None:
            self.metrics.observe_sender_wait(self.link, "deferred", done)
        senders = collections.Counter(str(d.details["sender"]) for d in deferred)
        self.log.debug(
            "mm7.dispatch.sender_deferred", recipients=done, senders=dict(senders.most_common(5))
        )

    def _spawn(self, item: WorkItem, *, sender: str | None = None, hold: float = 0.0) -> None:
        """Run ``item`` as its own task; ``sender``: a limited sender, ``hold``: seconds to its
        turn (counted as held, not in flight, until then)."""
        task = asyncio.create_task(
            self._process(item, sender, hold), name=f"mm7-submit-{item.transaction_id}"
        )
        if hold > 0:
            self._holding.add(task)
        self._inflight[task] = item
        self._latest[item.recipient_id] = item
        task.add_done_callback(self._done)

    async def _readmit(self, seconds: float) -> None:
        """Wait ``seconds`` (counted as held) before trying a send the sender's admit refused."""
        self._readmitting += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            self._readmitting -= 1

    def _done(self, task: asyncio.Task[None]) -> None:
        item = self._inflight.pop(task, None)
        self._holding.discard(task)  # cancelled before its turn came
        if item is not None:
            self._latest.pop(item.recipient_id, None)
        self._wake.set()

    def _current(self, item: WorkItem) -> WorkItem:
        """The newest lease held on ``item``'s recipient: outcomes are recorded under it."""
        return self._latest.get(item.recipient_id, item)

    # -- one item ------------------------------------------------------------------------------

    async def _process(self, item: WorkItem, sender: str | None = None, hold: float = 0.0) -> None:
        bound = self.log.bind(
            message_id=item.message_id, transaction_id=item.transaction_id, attempt=item.attempts
        )
        try:
            if hold > 0:
                try:
                    await asyncio.sleep(hold)
                finally:
                    self._holding.discard(asyncio.current_task())
            await self._attempt(item, bound, sender)
        except asyncio.CancelledError:
            if self._releasing:
                await self._release(item, bound)
            raise
        except Exception as exc:
            # a bug or a store outage: never spin on it; the lease expires if this fails too
            bound.exception("mm7.dispatch.internal_error")
            try:
                step = after_transient(
                    self._current(item), self.clock.now(), self.settings.retry,
                    code=None, text=None, rng=self.rng,
                )  # fmt: skip
                await self._record(item, step, {"error": f"internal: {exc!r}"[:300]}, bound)
            except Exception:
                bound.exception("mm7.dispatch.record_failed")

    async def _release(self, item: WorkItem, bound: BoundLogger) -> None:
        item = self._current(item)
        try:
            released = await asyncio.shield(self.store.release(item))
        except Exception:
            bound.exception("mm7.dispatch.release_failed")
            return
        self.counts["released"] += 1
        bound.info("mm7.dispatch.released", released=released)

    async def _attempt(self, item: WorkItem, bound: BoundLogger, sender: str | None) -> None:
        """Build, submit (``sender``: passing its limit right before the send), and record the
        step ``next_step`` chooses for the answer."""
        try:
            fields = read_fields(item.fields)
            content = await self._content(item, fields)
            request = build_submit(item, fields, content, self.settings)
        except BuildError as exc:
            # the same bytes would fail again: permanent
            await self._record(item, Failed(code=None, text=str(exc)), {"error": "content"}, bound)
            return
        assert self.client is not None
        details: dict[str, Any] = {"owner": self.owner}
        if content.changes:
            details["fitted"] = content.describe_changes()
        if content.link_fallback is not None:
            details["link_fallback"] = content.link_fallback
            bound.info("mm7.dispatch.link_fallback")  # the URL opens the content: not logged
        admit = None
        if sender is not None and self.senders is not None:
            admit = functools.partial(self.senders.admit, sender)
        result: SubmitRsp | MM7ClientError
        verdict: Verdict | str
        while True:
            started = time.monotonic()
            try:
                result = await self.client.submit(request, admit=admit)
            except NotAdmitted as refused:
                await self._readmit(refused.retry_after)  # the sender's previous one left late
                continue
            except MM7ClientError as exc:
                result = exc
            break
        if isinstance(result, MM7ClientError):
            details |= {"outcome": result.outcome.value, "http_status": result.http_status}
            if result.details:
                details["details"] = result.details
            verdict, code = result.verdict, result.code
        else:
            if result.status.details:
                details["details"] = result.status.details
            verdict = "partial" if result.status.code == 1100 else "success"
            code = result.status.code
        if self.metrics is not None:
            self.metrics.observe_submit(self.link, verdict, code, time.monotonic() - started)
        step = next_step(
            result, self._current(item), self.clock.now(), self.settings.retry, self.rng
        )
        await self._record(item, step, details, bound)

    async def _record(
        self, item: WorkItem, step: Step, details: dict[str, Any], bound: BoundLogger
    ) -> None:
        """Record ``step`` under the newest lease of ``item``'s recipient; wake the relay when
        the recipient reached a final status and its message has a callback_url or asked for an
        SMS fallback (``_notify``)."""
        item = self._current(item)
        match step:
            case Submitted(message_id=mm7_id, code=code, text=text):
                ok = await self.store.complete(item, mm7_id, code, text, details)
                self.counts["submitted" if ok else "lease_lost"] += 1
                bound.info("mm7.dispatch.submitted", mm7_message_id=mm7_id, recorded=ok)
                if mm7_id is None:
                    # accepted, but its delivery reports will not find it
                    bound.warning("mm7.dispatch.submitted_without_message_id", status=code)
            case Failed(code=code, text=text):
                ok = await self.store.fail(item, code, text, details)
                self.counts["failed" if ok else "lease_lost"] += 1
                bound.warning("mm7.dispatch.failed", status=code, reason=text, recorded=ok)
            case Retry(at=at, delay=delay, code=code, text=text):
                ok = await self.store.retry_later(item, at, code, text, details)
                if self.metrics is not None:
                    self.metrics.observe_retry(self.link)
                self.counts["retry" if ok else "lease_lost"] += 1
                bound.info(
                    "mm7.dispatch.retry", status=code, reason=text, delay_s=round(delay, 3),
                    recorded=ok,
                )  # fmt: skip
                return  # not final: nothing to relay yet
            case Expired(by_max_age=by_max_age, code=code, text=text):
                if by_max_age:
                    details = {**details, "max_age_s": self.settings.retry.max_age}
                ok = await self.store.expire(item, code, text, details)
                self.counts["expired" if ok else "lease_lost"] += 1
                bound.info("mm7.dispatch.expired", status=code, reason=text, recorded=ok)
        if ok:
            self._notify(item)

    async def _content(self, item: WorkItem, fields: MessageFields) -> BuiltContent:
        """The message's content for this link, built once per content (LRU of recent ones,
        ``content_key``); concurrent recipients of one content wait for the same build."""
        url = None
        if self.hosting is not None and self.settings.profile is not None:
            url = self.hosting.page_url(item.message_id, item.created_at)
        key = content_key(item, fields, url)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        pending = self._building.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[BuiltContent] = asyncio.get_running_loop().create_future()
        self._building[key] = future
        try:
            built = await build_content(
                self.store, fields, item.parts, self.settings, fallback_url=url
            )
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            else:
                future.cancel()
            raise
        else:
            future.set_result(built)
            self._cache[key] = built
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return built
        finally:
            self._building.pop(key, None)

    def _notify(self, item: WorkItem) -> None:
        """After a final outcome's commit: it queued a relay event when the message has a
        callback_url, and may have queued an SMS fallback when it asked for one (a failure, or
        a report kept from before the submit committed and applied by it): ``wake_relay``
        wakes the relay and the fallback worker."""
        if self.wake_relay is not None and (
            item.callback_url or item.fields.get("fallback") is not None
        ):
            self.wake_relay()


def content_key(item: WorkItem, fields: MessageFields, fallback_url: str | None) -> Hashable:
    """What a message's built content depends on (``build_content``'s inputs besides the link):
    its parts (by hash, type, Content-ID, Content-Location, position), text and presentation;
    the message itself only when its hosted page's URL may go into the content (the link's
    profile falls back to a link)."""
    if fallback_url is not None:
        return ("message", item.message_id)
    return ("content", item.parts, fields.text, fields.slides, fields.smil, fields.layout)
