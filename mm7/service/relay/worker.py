"""The relay worker: leases events from the store's outbox and delivers them to hooks.

    worker = RelayWorker(store, config.relay, api_key_secret=config.api.key_secret,
                         media_urls=urls)
    await worker.start()       # then worker.wake() after each commit that queued an event
    ...
    await worker.stop(grace=10)

Each leased event goes to:

- its hook (``[relay.hooks.NAME]``) when it has one: MOs, routed at ingest;
- else the message's ``callback_url`` (a caller's URL: through the URL guard unless the API key
  that sent it may reach private addresses, ``allows_private``), signed with the secret of the
  API key that sent the message (the application already holds it, so it can verify without
  another secret), always with ``X-MM7-Signature``: an API key is a bearer credential, not
  the ``whsec_`` secret the Standard Webhooks scheme needs (a route's ``status_hook`` can use
  that scheme instead);
- else the status hook of the message's link (``routing.status_hook_for``);
- else nowhere: recorded ``skipped``.

An MO's media are added to the body at delivery: signed expiring URLs (``media_urls``), or
inline base64 for routes with ``media = "inline"``. One attempt per lease
(``HookSender.deliver``); the outcome is written back with the lease token, so a worker that
lost its lease cannot overwrite the new holder's result. Delivered, retry at a time (exponential
backoff with jitter) or dead after ``max_age``: dead letters wait for ``mm7 relay retry|drop``.

One write per round: a lease starts ``gather`` seconds after the commit that woke the worker
(the commits of the next few milliseconds share it), and outcomes wait in memory for the
worker's next lease and are recorded in its transaction (``Store.lease_relay(finished=...)``),
at most ``outcome_delay`` seconds after the attempt ended (the next MO's wake-up usually comes
first), and at once when they could hold work back (the worker or the hook was full, or the
hook is ordered). A crash in between sends those events again (at least once, the same
Idempotency-Key), as a crash during a POST does.

At most ``max_in_flight`` events are leased at once (default: the hooks' concurrency added up,
plus ``callback_concurrency``), and per hook no more than its free slots (``quotas``): what is
leased starts at once, nothing waits leased behind a slow hook's limit (where it could outlive
its lease and be taken by another process too). Ordered hooks get one event per sender at a
time, oldest first (the store's lease query).

Several instances on one store (``mm7.service.cluster``): ``may_lease`` says whether this
instance is the cluster's relay now (it holds the lease ``relay``). Only then does it lease
events (and purge old ones); events leased just as it stopped being the relay are released
unattempted. So hook concurrency and ``ordered`` delivery hold across instances unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from yarl import URL

from mm7.service.config.settings import RelayHook, RelaySettings
from mm7.service.relay.hooks import HookSender, RetryAt, after_failure
from mm7.service.relay.kannel import report as kannel_report
from mm7.service.relay.media_urls import MediaUrls
from mm7.service.relay.routing import status_hook_for
from mm7.service.store.base import Store
from mm7.service.store.outbox import Outcome, RelayItem, RelayKind, RelayOutcome
from mm7.transport.link import Secret
from mm7.transport.logs import LazyLog

__all__ = ["RelayWorker"]

log = structlog.get_logger("mm7.service.relay.worker")

#: the name of a target made from a caller's URL (callback_url, dlr-url, rr-url): "callback:HOST"
CALLBACK = "callback:"

#: what an attempt ended as, for metrics: delivered, retry, dead, skipped
OutcomeHook = Callable[[str, str], None]


class RelayWorker:
    """Delivers the store's relay outbox to hooks (module docstring)."""

    def __init__(
        self,
        store: Store,
        settings: RelaySettings,
        *,
        api_key_secret: Callable[[str], Secret | None] = lambda name: None,
        allows_private: Callable[[str | None], bool] = lambda name: False,
        media_urls: MediaUrls | None = None,
        sender: HookSender | None = None,
        owner: str | None = None,
        max_in_flight: int | None = None,
        callback_concurrency: int = 8,
        callback_timeout: float = 10.0,
        poll_interval: float = 1.0,
        lease_ttl: timedelta | None = None,
        on_outcome: OutcomeHook | None = None,
        purge_interval: float = 3600.0,
        may_lease: Callable[[], bool] | None = None,
        outcome_delay: float = 0.05,
        gather: float = 0.01,
    ) -> None:
        self.store = store
        self.settings = settings
        self._api_key_secret = api_key_secret
        self._allows_private = allows_private
        self.media_urls = media_urls
        self.sender = sender if sender is not None else HookSender(settings=settings)
        self._own_sender = sender is None
        self.owner = owner or f"relay-{secrets.token_hex(4)}"
        self.max_in_flight = max_in_flight or (
            sum(max(1, h.concurrency) for h in settings.hooks) + callback_concurrency
        )
        self.callback_concurrency = callback_concurrency
        self.callback_timeout = callback_timeout
        self.poll_interval = poll_interval
        self.lease_ttl = lease_ttl or self.default_lease_ttl(settings)
        self._on_outcome = on_outcome
        self.purge_interval = purge_interval
        #: whether this instance is the cluster's relay now (None: always; module docstring)
        self.may_lease = may_lease
        self._next_purge = 0.0
        #: seconds between two looks for events of hooks removed from the configuration
        self.others_interval = 30.0
        self._next_others = 0.0
        self._ordered = frozenset(h.name for h in settings.hooks if h.ordered)
        routes = (*settings.routes, settings.default_route)
        self._status_hooks = frozenset(r.status_hook for r in routes if r and r.status_hook)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._in_flight: dict[int, tuple[asyncio.Task[None], RelayItem]] = {}
        #: outcomes not recorded yet (module docstring), and when they must be at the latest
        self.outcome_delay = outcome_delay
        self._finished: list[RelayOutcome] = []
        self._flush_at = 0.0
        #: the last lease filled the free slots of the worker or of a hook: a freed slot may
        #: let more be leased at once
        self._saturated = False
        #: seconds a lease waits after a commit woke the worker, so that the commits following
        #: it closely share its transaction (one lease for several MOs at a steady rate)
        self.gather = gather
        self._committed = False

    @staticmethod
    def default_lease_ttl(settings: RelaySettings) -> timedelta:
        """Long enough for the slowest hook's timeout a few times over (a minute at least):
        a lease must outlive its attempt, and a crashed worker's leases come back after it."""
        slowest = max((h.timeout for h in settings.hooks), default=10.0)
        return timedelta(seconds=max(60.0, 3 * slowest))

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the leasing loop in the background."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"mm7-relay-{self.owner}")

    def wake(self) -> None:
        """Look for due events now (after a commit that queued one): after ``gather``."""
        self._committed = True
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop leasing; in-flight deliveries get ``grace`` seconds, the rest give leases back."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        in_flight = dict(self._in_flight)
        late: set[asyncio.Task[None]] = set()
        if in_flight:
            _, late = await asyncio.wait([t for t, _ in in_flight.values()], timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        # a cancelled delivery may have reached the hook: released, it is sent again under the
        # same Idempotency-Key (at least once), due now rather than after its lease expires
        for task, item in in_flight.values():
            if task in late:
                with contextlib.suppress(Exception):
                    await self.store.release_relay(item)
        self._in_flight.clear()
        try:
            await self._flush()
        except Exception:
            log.exception("mm7.relay.outcomes_failed", outcomes=len(self._finished))
        if self._own_sender:
            await self.sender.close()

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until nothing is in flight and every outcome is recorded (tests and tools)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (self._in_flight or self._finished) and loop.time() < deadline:
            if not self._in_flight and self._task is None:
                with contextlib.suppress(Exception):
                    await self._flush()
            await asyncio.sleep(0.01)

    # -- the loop --------------------------------------------------------------------------

    async def purge(self) -> int:
        """Delete finished events older than the relay's ``retain`` (pending and dead stay)."""
        before = self.sender.clock.now() - timedelta(seconds=self.settings.retain)
        count = await self.store.purge_relay(before)
        if count:
            log.info("mm7.relay.purged", events=count, before=before.isoformat())
        return count

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if loop.time() >= self._next_purge and self._is_relay():
                self._next_purge = loop.time() + self.purge_interval
                try:
                    await self.purge()
                except Exception:
                    log.exception("mm7.relay.purge_failed")
            if self._committed and self.gather > 0 and not self._saturated:
                await asyncio.sleep(self.gather)
                if self._stopping:
                    break
            # cleared before the lease: a commit waking the worker while it leases is not lost
            self._committed = False
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:
                log.exception("mm7.relay.lease_failed")
            if self._stopping:
                break
            # A lease takes everything due up to the free slots (``_saturated`` when it filled
            # them): leasing again finds more only after a commit, a freed slot or a retry
            # coming due, which wake the worker or fall within the poll interval.
            wait = self.poll_interval
            if self._finished:
                wait = max(0.0, min(wait, self._flush_at - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _flush(self) -> None:
        """Record the outcomes waiting in memory now (one write), without leasing."""
        if self._finished:
            finished, self._finished = self._finished, []
            try:
                await self.store.lease_relay(self.owner, 0, self.lease_ttl, finished=finished)
            except BaseException:
                self._keep(finished)
                raise

    def _keep(self, finished: list[RelayOutcome]) -> None:
        """Outcomes whose write failed: kept for the next write, tried again after a poll
        interval (recording one twice is harmless: the second finds its lease gone)."""
        self._finished[:0] = finished
        if self._finished:
            self._flush_at = asyncio.get_running_loop().time() + self.poll_interval

    async def run_once(self) -> int:
        """Record the outcomes waiting, lease what is due (up to the free slots) and start
        delivering it; how many were leased."""
        free = self.max_in_flight - len(self._in_flight)
        if free <= 0 or not self._is_relay():
            self._saturated = free <= 0
            await self._flush()
            return 0
        # events of hooks no longer configured: looked for now and then (a slow query)
        now = asyncio.get_running_loop().time()
        others = now >= self._next_others
        if others:
            self._next_others = now + self.others_interval
        quotas = self.quotas()
        finished, self._finished = self._finished, []
        try:
            items = await self.store.lease_relay(
                self.owner,
                free,
                self.lease_ttl,
                ordered_hooks=self._ordered,
                quotas=quotas,
                others=others,
                finished=finished,
            )
        except BaseException:
            self._keep(finished)
            raise
        leased: dict[str | None, int] = {}
        for item in items:
            leased[item.hook] = leased.get(item.hook, 0) + 1
        self._saturated = len(items) >= free or any(
            0 < quota <= leased.get(hook, 0) for hook, quota in quotas.items()
        )
        if items and not self._is_relay():
            log.info("mm7.relay.not_owner", released=len(items))
            for item in items:
                with contextlib.suppress(Exception):
                    await self.store.release_relay(item)
            return 0
        for item in items:
            previous = self._in_flight.get(item.id)
            if previous is not None:
                # our earlier lease of it expired before that delivery ended (it waited behind
                # the hook's concurrency limit): the new lease wins. The old attempt could only
                # record a stale outcome, and sent as well it would be a duplicate.
                previous[0].cancel()
            task = asyncio.create_task(self._handle(item))
            self._in_flight[item.id] = (task, item)
            task.add_done_callback(functools.partial(self._done, item.id))
        return len(items)

    def _is_relay(self) -> bool:
        return self.may_lease is None or self.may_lease()

    def quotas(self) -> dict[str | None, int]:
        """Free slots per configured hook (key None: callbacks and status-hook events), so that
        what is leased can start at once instead of waiting, leased, for the hook's limit."""
        busy: dict[str | None, int] = {}
        for _, item in self._in_flight.values():
            busy[item.hook] = busy.get(item.hook, 0) + 1
        quotas: dict[str | None, int] = {
            h.name: max(1, h.concurrency) - busy.get(h.name, 0) for h in self.settings.hooks
        }
        # Events without a hook go to a callback URL or to a link's status hook, which is only
        # known at delivery: lease no more of them than the narrowest of those can take.
        limits = [self.callback_concurrency]
        for name in self._status_hooks:
            limits.append(max(1, self.settings.hook(name).concurrency))
        quotas[None] = min(limits) - busy.get(None, 0)
        return quotas

    def _done(self, key: int, task: asyncio.Task[None]) -> None:
        entry = self._in_flight.get(key)
        if entry is not None and entry[0] is task:  # not the delivery that replaced it
            del self._in_flight[key]
        # a slot is free (and an ordered sender's next event due once this outcome is
        # recorded): lease again now when that can matter, else let the outcome wait for the
        # next lease, at most outcome_delay
        hook = entry[1].hook if entry is not None else None
        if self._saturated or self._stopping or hook in self._ordered:
            self._wake.set()

    # -- one event -------------------------------------------------------------------------

    def _target(self, item: RelayItem) -> RelayHook | str | None:
        """The hook to POST to, an error text (retried), or None (nowhere to send).

        Only an MO's hook is chosen when it is stored; a status event's ``hook`` records where
        an earlier attempt went, and each attempt decides again from the configuration."""
        if item.hook is not None and item.kind is RelayKind.MO:
            try:
                return self.settings.hook(item.hook)
            except KeyError:
                return f"no hook named {item.hook!r} in the configuration"
        if item.callback_url is not None and "kannel" in item.event:
            # a sendmms dlr-url / rr-url: a GET, not signed (Kannel and Mbuni sign nothing)
            host = URL(item.callback_url).host or "callback"
            return RelayHook(
                name=f"{CALLBACK}{host}",
                url=item.callback_url,
                secret=Secret(""),
                concurrency=self.callback_concurrency,
                timeout=self.callback_timeout,
            )
        if item.callback_url is not None:
            secret = self._api_key_secret(item.api_key) if item.api_key else None
            if secret is None:
                return f"API key {item.api_key!r} is not configured: cannot sign the callback"
            host = URL(item.callback_url).host or "callback"
            return RelayHook(
                name=f"{CALLBACK}{host}",
                url=item.callback_url,
                secret=secret,
                concurrency=self.callback_concurrency,
                timeout=self.callback_timeout,
            )
        name = status_hook_for(self.settings, item.link)
        if name is None:
            return None
        try:
            return self.settings.hook(name)
        except KeyError:
            return f"no hook named {name!r} in the configuration"

    async def _body(self, item: RelayItem, inline: bool) -> dict[str, Any]:
        body = dict(item.event)
        if item.kind is not RelayKind.MO:
            return body
        media: list[dict[str, Any]] = []
        blobs = await self.store.get_media_many([p.sha256 for p in item.parts]) if inline else {}
        for part in item.parts:
            entry: dict[str, Any] = {
                "index": part.position,
                "content_type": part.content_type,
                "content_id": part.content_id,
                "filename": part.content_location,
                "size": part.size,
                "sha256": part.sha256,
            }
            if inline:
                blob = blobs.get(part.sha256)
                if blob is None:
                    raise LookupError(f"media {part.sha256} of MO {item.source_id} is missing")
                entry["data_base64"] = base64.b64encode(blob.data).decode("ascii")
            elif self.media_urls is not None and item.source_id is not None:
                entry["url"] = self.media_urls.url(item.source_id, part.position)
            media.append(entry)
        body["media"] = media
        return body

    async def _handle(self, item: RelayItem) -> None:
        bound = LazyLog(
            "mm7.service.relay.worker", relay_id=item.id, kind=item.kind.value,
            key=item.idempotency_key,
        )  # fmt: skip
        try:
            target = self._target(item)
            if target is None:
                self._finish(item, "skipped", error="no callback_url or hook")
                self._count("none", "skipped")
                return
            if isinstance(target, str):
                self._failed_without_attempt(item, target)
                return
            get = kannel_report(item.event) if "kannel" in item.event else None
            if "kannel" in item.event and get is None:
                self._finish(item, "skipped", error="not a report Mbuni makes")
                self._count(target.name, "skipped")
                return
            body = await self._body(item, inline=item.media == "inline")
            body.pop("kannel", None)
            outcome = await self.sender.deliver(
                target,
                body,
                idempotency_key=item.idempotency_key,
                attempt=item.attempt,
                first_attempt_at=item.first_attempt_at,
                get_url=get.url if get is not None else None,
                get_headers=get.headers if get is not None else None,
                # a caller's URL (not a configured hook) reaches private addresses only when
                # its API key may
                guarded=target.name.startswith(CALLBACK) and not self._allows_private(item.api_key),
            )
            step = outcome.step
            result = step.outcome
            retry_at = step.at if isinstance(step, RetryAt) else None
            self._finish(
                item, result, attempted_at=outcome.at, retry_at=retry_at,
                http_status=outcome.status, error=outcome.error,
                hook=None if item.callback_url is not None else target.name,
            )  # fmt: skip
            self._count(target.name, result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            bound.exception("mm7.relay.handle_failed")
            with contextlib.suppress(Exception):
                self._failed_without_attempt(item, f"{type(exc).__name__}: {exc}"[:300])

    def _finish(
        self,
        item: RelayItem,
        outcome: Outcome,
        *,
        attempted_at: datetime | None = None,
        retry_at: datetime | None = None,
        http_status: int | None = None,
        error: str | None = None,
        hook: str | None = None,
    ) -> None:
        """Keep an attempt's outcome for the worker's next write (module docstring)."""
        if not self._finished:
            loop = asyncio.get_running_loop()
            self._flush_at = loop.time() + self.outcome_delay
            # the loop may be asleep for a whole poll interval: wake it to write the outcome
            # (and lease what this freed slot lets in) by then
            loop.call_at(self._flush_at, self._flush_due)
        self._finished.append(
            RelayOutcome(
                item,
                outcome,
                attempted_at=attempted_at,
                retry_at=retry_at,
                http_status=http_status,
                error=error,
                hook=hook,
            )  # fmt: skip
        )

    def _flush_due(self) -> None:
        """``outcome_delay`` after an outcome was kept: wake the loop if it still waits (a lease
        since may have recorded it; outcomes kept after that have a timer of their own)."""
        if self._finished and asyncio.get_running_loop().time() >= self._flush_at:
            self._wake.set()

    def _failed_without_attempt(self, item: RelayItem, error: str) -> None:
        """A failure before any POST (configuration, missing media): retried like a failed POST."""
        now = self.sender.clock.now()
        first = item.first_attempt_at or now
        step = after_failure(first, item.attempt, now, self.settings)
        result = step.outcome
        retry_at = step.at if isinstance(step, RetryAt) else None
        log.warning("mm7.relay.not_sent", relay_id=item.id, error=error)
        self._finish(item, result, attempted_at=now, retry_at=retry_at, error=error)
        self._count("none", result)

    def _count(self, hook: str, outcome: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(hook, outcome)
