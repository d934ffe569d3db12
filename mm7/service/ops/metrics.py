"""Prometheus metrics of the gateway, served at ``/metrics`` (prometheus-client).

Every ``GatewayMetrics`` has its own ``CollectorRegistry`` (never the process-wide default), so
several gateways in one process, and tests, never share series. The dispatcher, the API and the
inbound endpoint report through plain methods; link and store state is read when scraped.

Series (``link`` is the configured link name):

=============================================  =========  =======================================
``mm7_submits_total``                          counter    link, outcome (success, partial,
                                                          transient, permanent)
``mm7_submit_status_total``                    counter    link, status_code (the MM7 status, e.g.
                                                          "1000", "3001"; "none" when the answer
                                                          carried none: timeout, reset, HTTP error)
``mm7_submit_duration_seconds``                histogram  link (SubmitReq round trip)
``mm7_retries_total``                          counter    link (a recipient scheduled for retry)
``mm7_delivery_reports_total``                 counter    link, mm_status (Retrieved, Forwarded...)
``mm7_inbound_requests_total``                 counter    operation (DeliverReq...), status_code
``mm7_mo_total``                               counter    link, outcome (stored, duplicate)
``mm7_relay_attempts_total``                   counter    hook, outcome (delivered, retry, dead,
                                                          skipped; hook "none" when not sent)
``mm7_sender_waits_total``                     counter    link, how (held, deferred: recipients
                                                          made to wait for their sender_tps)
``mm7_api_quota_refusals_total``               counter    api_key, quota (API requests refused
                                                          429 by max_per_second, max_per_day)
``mm7_queue_depth``                            gauge      link (recipients queued, read at scrape)
``mm7_link_breaker_state``                     gauge      link (0 closed, 1 half-open, 2 open)
``mm7_link_in_flight``                         gauge      link (requests on the wire now)
``mm7_store_up``                               gauge      (1 when the store answered the scrape)
``mm7_relay_events``                           gauge      status (relay events by status: pending,
                                                          delivered, dead, dropped, skipped)
``mm7_cluster_lease_held``                     gauge      lease (1 while this instance holds the
                                                          named lease: link:<name>, relay,
                                                          retention; 0 while another does)
``mm7_store_commits_total``                    counter    (store transactions committed)
``mm7_store_writes_total``                     counter    (write operations they carried)
``mm7_store_failed_writes_total``              counter    (write operations that failed)
``mm7_fallback_sms_total``                     counter    outcome (the SMS fallback's rows this
                                                          instance's commits moved: queued,
                                                          submitted, delivered, failed,
                                                          expired)
``mm7_listener_connections_open``              gauge      listener (api, inbound, metrics:
                                                          connections counted against
                                                          max_connections now)
``mm7_listener_connections_accepted_total``    counter    listener (connections admitted)
``mm7_listener_connections_evicted_total``     counter    listener (closed to make room at
                                                          max_connections)
``mm7_listener_connections_refused_total``     counter    listener (closed at once at the limit:
                                                          every request in its handler)
``mm7_listener_timeouts_total``                counter    listener, timeout (header, body,
                                                          keepalive: connections closed by it)
``process_cpu_seconds_total``, ...             (process)  prometheus-client's ``ProcessCollector``:
                                                          CPU seconds, resident and virtual memory,
                                                          open and max fds, start time (Linux)
=============================================  =========  =======================================

Counters and histograms have no ``_created`` series (``disable_created_metrics``: a
process-wide switch of prometheus-client, thrown when a ``GatewayMetrics`` is made): the start
time of each series is noise on a dashboard and doubles the series a scrape carries.

With a ``token`` (``[metrics] token``), ``/metrics`` answers 401 unless the scrape presents
``Authorization: Bearer <token>``: for metrics served on the API's listener, where a separate
``[metrics] listen`` on a private address is not an option.

Usage::

    metrics = GatewayMetrics()
    metrics.track_store(store, [link.name for link in config.links])
    metrics.track_link("carrier-a", client)            # an MM7Client, LinkFlow or breaker
    metrics.track_listener("api", listener)            # an mm7.transport.listener.Listener
    metrics.add_to(app, "/metrics", token=None)         # or metrics.application() alone
    ...
    metrics.observe_submit("carrier-a", result.verdict, result.status.code, elapsed)
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import disable_created_metrics
from prometheus_client.registry import Collector

from mm7.core.status import MMStatus
from mm7.service.ops.health import LinkLike, breaker_of
from mm7.service.store.records import FallbackStatus, StoreStats
from mm7.transport.classify import Verdict
from mm7.transport.flow import BreakerState, LinkFlow
from mm7.transport.link import Secret
from mm7.transport.listener import TIMEOUT_KINDS, ListenerCounts

__all__ = [
    "BREAKER_VALUES",
    "FALLBACK_OUTCOMES",
    "LATENCY_BUCKETS",
    "OUTCOMES",
    "GatewayMetrics",
]

log = structlog.get_logger("mm7.service.ops.metrics")

#: the submit outcomes counted (``mm7.transport.classify.Verdict`` values)
OUTCOMES: tuple[str, ...] = tuple(v.value for v in Verdict)
#: ``mm7_fallback_sms_total`` outcomes: the statuses a fallback row reaches (``FallbackStatus``
#: but ``sending``, which is the worker's own step before the send)
FALLBACK_OUTCOMES: tuple[str, ...] = tuple(
    s.value for s in FallbackStatus if s is not FallbackStatus.SENDING
)
#: ``mm7_link_breaker_state`` values
BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
#: submit round-trip buckets, seconds: MMSCs answer in tens of milliseconds to tens of seconds
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_NO_STATUS = "none"
_OTHER = "other"
_MM_STATUS = {s.value.lower(): s.value for s in MMStatus}


class _ListenerLike(Protocol):
    """What the metrics read from a listener (``mm7.transport.listener.Listener`` has it)."""

    def counts(self) -> ListenerCounts: ...


class _StoreLike(Protocol):
    """What the metrics read from a store (``mm7.service.store.Store`` has both)."""

    def stats(self) -> StoreStats: ...

    async def queue_depth(self, link: str | None = None) -> int: ...

    async def relay_counts(self) -> dict[str, int]: ...


def _code_label(code: int | None) -> str:
    """A status code as a label; anything not a plausible MM7/HTTP code is "other" (bounded)."""
    if code is None:
        return _NO_STATUS
    if isinstance(code, int) and 0 <= code <= 9999:
        return str(code)
    return _OTHER


def _mm_status_label(status: MMStatus | str) -> str:
    if isinstance(status, MMStatus):
        return status.value
    return _MM_STATUS.get(str(status).strip().lower(), _OTHER)


def _operation_label(operation: str) -> str:
    """An MM7 operation name (``DeliverReq``) as a label; free text is cut to stay bounded."""
    text = str(operation).strip()
    if not text or len(text) > 40 or not text.replace("_", "").replace("-", "").isalnum():
        return _OTHER
    return text


@dataclass(slots=True)
class _TrackedStore:
    store: _StoreLike
    links: tuple[str, ...]
    depths: dict[str, int]
    up: bool | None = None
    relay: dict[str, int] | None = None


class _StateCollector(Collector):
    """Reads link and store state when scraped (queue depths from the last ``refresh``)."""

    def __init__(self, owner: GatewayMetrics) -> None:
        self._owner = owner

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on what is tracked; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        owner = self._owner
        breaker = GaugeMetricFamily(
            "mm7_link_breaker_state",
            "Circuit breaker of the link: 0 closed, 1 half-open, 2 open.",
            labels=["link"],
        )
        in_flight = GaugeMetricFamily(
            "mm7_link_in_flight", "Requests to the link's MMSC on the wire now.", labels=["link"]
        )
        for name, link in sorted(owner._links.items()):
            breaker.add_metric([name], BREAKER_VALUES[breaker_of(link).state])
            flow = link if isinstance(link, LinkFlow) else getattr(link, "flow", None)
            if isinstance(flow, LinkFlow):
                in_flight.add_metric([name], flow.in_flight)
        yield breaker
        yield in_flight
        if owner._leases is not None:
            held = GaugeMetricFamily(
                "mm7_cluster_lease_held",
                "1 while this instance holds the named lease (link:<name>, relay, retention).",
                labels=["lease"],
            )
            for name, is_held in sorted(owner._leases().items()):
                held.add_metric([name], 1 if is_held else 0)
            yield held
        yield from _listener_families(owner._listeners)

        depth = GaugeMetricFamily(
            "mm7_queue_depth", "Recipients queued for the link (due or scheduled).", labels=["link"]
        )
        up = GaugeMetricFamily("mm7_store_up", "1 when the store answered the last scrape.")
        commits = CounterMetricFamily("mm7_store_commits", "Store transactions committed.")
        writes = CounterMetricFamily("mm7_store_writes", "Store write operations committed.")
        failed = CounterMetricFamily("mm7_store_failed_writes", "Store write operations failed.")
        fallback = CounterMetricFamily(
            "mm7_fallback_sms",
            "SMS fallback rows this instance's commits moved to queued, submitted, delivered or "
            "failed (a row reaches each status once).",
            labels=["outcome"],
        )
        fallback_counts: dict[str, int] = dict.fromkeys(FALLBACK_OUTCOMES, 0)
        relay = GaugeMetricFamily(
            "mm7_relay_events",
            "Relay events to applications by status (pending, delivered, dead, ...).",
            labels=["status"],
        )
        for tracked in owner._stores:
            for name, value in sorted(tracked.depths.items()):
                depth.add_metric([name], value)
            if tracked.up is not None:
                up.add_metric([], 1 if tracked.up else 0)
            for status, count in sorted((tracked.relay or {}).items()):
                relay.add_metric([status], count)
            try:
                stats = tracked.store.stats()
            except Exception as exc:  # a scrape never fails on a store error
                log.warning("mm7.metrics.store_stats_failed", error=repr(exc))
                continue
            commits.add_metric([], stats.commits)
            writes.add_metric([], stats.writes)
            failed.add_metric([], stats.failed_writes)
            for outcome in FALLBACK_OUTCOMES:
                fallback_counts[outcome] += stats.fallback_sms.get(outcome, 0)
        if owner._stores:
            yield depth
            yield up
            yield commits
            yield writes
            yield failed
            yield relay
            for outcome, count in fallback_counts.items():
                fallback.add_metric([outcome], count)
            yield fallback


def _listener_families(listeners: dict[str, _ListenerLike]) -> Iterator[Metric]:
    """The ``mm7_listener_*`` families from each tracked listener's counts (none: no family)."""
    if not listeners:
        return
    labels = ["listener"]
    open_ = GaugeMetricFamily(
        "mm7_listener_connections_open",
        "Connections open on the listener now (counted against max_connections).",
        labels=labels,
    )
    accepted = CounterMetricFamily(
        "mm7_listener_connections_accepted", "Connections the listener admitted.", labels=labels
    )
    evicted = CounterMetricFamily(
        "mm7_listener_connections_evicted",
        "Connections closed to make room for a new one at max_connections (the one waiting "
        "longest on its peer).",
        labels=labels,
    )
    refused = CounterMetricFamily(
        "mm7_listener_connections_refused",
        "New connections closed at once at max_connections: every request was in its handler.",
        labels=labels,
    )
    timeouts = CounterMetricFamily(
        "mm7_listener_timeouts",
        "Connections the listener closed by a timeout: header (request line and headers, or "
        "TLS handshake), body (request body or response reading idle), keepalive.",
        labels=["listener", "timeout"],
    )
    for name, listener in sorted(listeners.items()):
        counts = listener.counts()
        open_.add_metric([name], counts.open)
        accepted.add_metric([name], counts.accepted)
        evicted.add_metric([name], counts.evicted)
        refused.add_metric([name], counts.refused)
        for kind in TIMEOUT_KINDS:
            timeouts.add_metric([name, kind], counts.timeouts.get(kind, 0))
    yield from (open_, accepted, evicted, refused, timeouts)


class GatewayMetrics:
    """The gateway's metrics on a registry of its own (``self.registry``)."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        latency_buckets: Sequence[float] = LATENCY_BUCKETS,
        refresh_timeout: float = 5.0,
        process: bool = True,
    ) -> None:
        """``process``: also export this process's CPU, memory and fds (``ProcessCollector``)."""
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        if process:
            ProcessCollector(registry=self.registry)
        #: how long a scrape waits for the store's queue depths before answering without them
        self.refresh_timeout = refresh_timeout
        self._links: dict[str, LinkLike] = {}
        self._stores: list[_TrackedStore] = []
        self._leases: Callable[[], dict[str, bool]] | None = None
        self._listeners: dict[str, _ListenerLike] = {}
        self.submits = Counter(
            "mm7_submits",
            "SubmitReq outcomes per link (success, partial, transient, permanent).",
            ["link", "outcome"],
            registry=self.registry,
        )
        self.submit_statuses = Counter(
            "mm7_submit_status",
            'SubmitReq answers per link by MM7 status code ("none": no status, e.g. timeout).',
            ["link", "status_code"],
            registry=self.registry,
        )
        self.submit_seconds = Histogram(
            "mm7_submit_duration_seconds",
            "SubmitReq round trip per link, seconds.",
            ["link"],
            buckets=tuple(latency_buckets),
            registry=self.registry,
        )
        self.retries = Counter(
            "mm7_retries",
            "Recipients scheduled for a retry, per link.",
            ["link"],
            registry=self.registry,
        )
        self.reports = Counter(
            "mm7_delivery_reports",
            "Delivery reports received per link by MMStatus.",
            ["link", "mm_status"],
            registry=self.registry,
        )
        self.inbound = Counter(
            "mm7_inbound_requests",
            "Inbound MM7 requests by operation and the status code answered.",
            ["operation", "status_code"],
            registry=self.registry,
        )
        self.mo = Counter(
            "mm7_mo",
            "MO messages (DeliverReq) stored, or recognised as duplicates, per link.",
            ["link", "outcome"],
            registry=self.registry,
        )
        self.relay = Counter(
            "mm7_relay_attempts",
            "Relay attempts to applications' hooks by outcome.",
            ["hook", "outcome"],
            registry=self.registry,
        )
        self.sender_waits = Counter(
            "mm7_sender_waits",
            "Recipients made to wait for their sender's rate (sender_tps) per link: held in "
            "memory for a turn within a second, or deferred in the store to a later one.",
            ["link", "how"],
            registry=self.registry,
        )
        self.quota_refusals = Counter(
            "mm7_api_quota_refusals",
            "API requests refused 429 by an API key's quota (max_per_second, max_per_day).",
            ["api_key", "quota"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(self))

    # -- what the dispatcher, the API and the inbound endpoint call ----------------------------

    def observe_submit(
        self, link: str, outcome: Verdict | str, status_code: int | None, seconds: float | None
    ) -> None:
        """One SubmitReq ended: its verdict, MM7 status code (None: none) and round trip."""
        value = outcome.value if isinstance(outcome, Verdict) else str(outcome).strip().lower()
        if value not in OUTCOMES:
            raise ValueError(f"unknown submit outcome {outcome!r}; expected one of {OUTCOMES}")
        verdict = Verdict(value)
        self.submits.labels(link=link, outcome=verdict.value).inc()
        self.submit_statuses.labels(link=link, status_code=_code_label(status_code)).inc()
        if seconds is not None and seconds >= 0:
            self.submit_seconds.labels(link=link).observe(seconds)

    def observe_mo(self, link: str, duplicate: bool) -> None:
        """An MO was stored (or recognised as a duplicate)."""
        self.mo.labels(link=link, outcome="duplicate" if duplicate else "stored").inc()

    def observe_relay(self, hook: str, outcome: str) -> None:
        """A relay attempt ended (delivered, retry, dead, skipped)."""
        label = hook.split(":", 1)[0] if hook.startswith("callback:") else hook
        self.relay.labels(hook=label, outcome=outcome).inc()

    def observe_retry(self, link: str) -> None:
        """A recipient on ``link`` was scheduled for another attempt."""
        self.retries.labels(link=link).inc()

    def observe_sender_wait(self, link: str, how: str, count: int = 1) -> None:
        """``count`` recipients on ``link`` waited for their sender's rate: "held" or "deferred"."""
        self.sender_waits.labels(link=link, how=how).inc(count)

    def observe_quota_refusal(self, api_key: str, quota: str) -> None:
        """A request of the API key named ``api_key`` was refused by its ``quota``."""
        self.quota_refusals.labels(api_key=api_key, quota=quota).inc()

    def observe_report(self, link: str, mm_status: MMStatus | str) -> None:
        """A delivery report arrived on ``link`` with this MMStatus (unknown values: "other")."""
        self.reports.labels(link=link, mm_status=_mm_status_label(mm_status)).inc()

    def observe_inbound(self, operation: str, status_code: int | None) -> None:
        """An inbound MM7 request (``DeliverReq``, ``DeliveryReportReq``...) was answered."""
        self.inbound.labels(
            operation=_operation_label(operation), status_code=_code_label(status_code)
        ).inc()

    # -- state read at scrape time -------------------------------------------------------------

    def track_link(self, link: str, client_or_flow: LinkLike) -> None:
        """Export the breaker state (and in-flight count) of ``link``; tracking again replaces.

        The link's counters start at zero for every outcome, so rates work from the first scrape.
        """
        breaker_of(client_or_flow)  # refuse what has no breaker now, not at scrape time
        self._links[link] = client_or_flow
        for outcome in OUTCOMES:
            self.submits.labels(link=link, outcome=outcome)
        self.retries.labels(link=link)
        self.submit_seconds.labels(link=link)

    def untrack_link(self, link: str) -> None:
        """Stop exporting the state of ``link`` (its counters stay)."""
        self._links.pop(link, None)

    def track_store(self, store: _StoreLike, links: Iterable[str]) -> None:
        """Export the queue depth of each of ``links`` and the store's writer counters."""
        names = tuple(dict.fromkeys(links))
        self._stores = [t for t in self._stores if t.store is not store]
        self._stores.append(_TrackedStore(store, names, {}))

    def track_listener(self, name: str, listener: _ListenerLike) -> None:
        """Export the connection counts of the listener called ``name`` (api, inbound,
        metrics) at each scrape; tracking a name again replaces."""
        self._listeners[name] = listener

    def untrack_listener(self, name: str) -> None:
        """Stop exporting the listener called ``name`` (it was closed)."""
        self._listeners.pop(name, None)

    def track_leases(self, leases: Callable[[], dict[str, bool]]) -> None:
        """Export ``leases()`` (lease name -> held by this instance) at each scrape."""
        self._leases = leases

    def breaker_states(self) -> dict[str, BreakerState]:
        """The breaker state of every tracked link (for /readyz and diagnostics)."""
        return {name: breaker_of(link).state for name, link in self._links.items()}

    async def refresh(self) -> None:
        """Ask each tracked store for its queue depths (done by every scrape before rendering).

        A store that fails or does not answer within ``refresh_timeout`` exports no depths (never
        stale ones) and ``mm7_store_up`` 0.
        """
        for tracked in list(self._stores):
            try:
                depths = await asyncio.wait_for(self._depths(tracked), timeout=self.refresh_timeout)
            except Exception as exc:
                log.warning("mm7.metrics.queue_depth_failed", error=repr(exc))
                tracked.depths = {}
                tracked.up = False
            else:
                tracked.depths, tracked.relay = depths
                tracked.up = True

    @staticmethod
    async def _depths(tracked: _TrackedStore) -> tuple[dict[str, int], dict[str, int]]:
        values = await asyncio.gather(*(tracked.store.queue_depth(n) for n in tracked.links))
        relay = await tracked.store.relay_counts()
        return dict(zip(tracked.links, values, strict=True)), relay

    # -- exposition ----------------------------------------------------------------------------

    async def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """(body, content type) of a scrape; ``accept`` may ask for OpenMetrics."""
        await self.refresh()
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp handler of ``/metrics``."""
        body, content_type = await self.render(request.headers.get("Accept"))
        return web.Response(
            body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"}
        )

    def add_to(
        self, app: web.Application, path: str = "/metrics", *, token: Secret | None = None
    ) -> None:
        """Serve the metrics at ``path`` on ``app`` (the API's application, by default); with
        ``token``, only to scrapes presenting it as a bearer token (401 otherwise)."""
        app.router.add_get(path, self.handle if token is None else _bearer_only(token, self.handle))

    def application(
        self, path: str = "/metrics", *, token: Secret | None = None
    ) -> web.Application:
        """A stand-alone application serving only the metrics (``[metrics] listen``)."""
        app = web.Application()
        self.add_to(app, path, token=token)
        return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _bearer_only(token: Secret, handler: Handler) -> Handler:
    """``handler`` behind ``Authorization: Bearer <token>`` (compared in constant time)."""
    expected = f"Bearer {token.reveal()}".encode()

    async def guarded(request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, expected):
            return web.json_response(
                {"error": {"field": "Authorization", "message": "a bearer token is required"}},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return await handler(request)

    return guarded
