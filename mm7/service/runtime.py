"""The gateway process: every piece of ``mm7 serve`` wired together from one ``GatewayConfig``.

    gateway = Gateway(load_config("conf/gateway.toml"))
    await gateway.start()          # store, inbound endpoint, dispatchers, API: in that order
    ...                            # gateway.api_url, gateway.inbound_url (the bound addresses)
    await gateway.stop()           # graceful: the reverse order

What ``start`` does:

1. configures logging (``[logging]``) unless told not to (tests and the demo keep their own);
2. opens the store (``[store]``, SQLite; the folder of its file is created) and claims this
   instance's named leases (``[cluster]``, ``mm7.service.cluster.ownership``): ``link:<name>``
   for each link, ``relay`` and ``retention``. Each is held by one instance of those sharing the
   store; what it guards runs here only while it is held (a lone instance holds them all), and
   retention (``[store] retain``) runs at once and hourly on the holder of ``retention``;
3. starts the relay worker (``[relay]``): the store's outbox of MOs and status events goes to
   the applications' hooks and callback URLs, signed, retried, dead-lettered after max_age;
   with ``[sms_links.NAME]`` configured, starts those SMS links (their receipts go to the
   fallback worker, which correlates them in the store) and the SMS fallback worker
   (``mm7.service.fallback``: a recipient whose MMS failed for good gets an SMS with the text
   and the hosted page's link), sending while this instance holds the lease ``fallback``;
4. serves the inbound MM7 endpoint (``[inbound]``) with the delivery-report and read-reply
   handlers (``DeliveryReports``: correlated to the link of the calling peer) and the MO
   handler (``MoIngest``: stored with its relay event before DeliverRsp 1000), so reports of
   messages sent before a restart land as soon as the process is up; with a store other
   processes share (not SQLite), duplicate detection (``StoreDedupe``) is on the store, so a
   retry is recognised whichever instance it reaches (on SQLite it stays in memory: one process);
5. starts one ``Dispatcher`` per link, each leasing work only while this instance owns the link,
   and asks the store to wake them (and the relay) when another process commits work
   (``Store.watch``);
6. serves the sending API (``[api]``) with ``/healthz``, ``/readyz`` (store and link breakers),
   ``/media/...`` (the MOs' media as signed expiring URLs), with ``[hosting]`` enabled
   ``/m/...`` (each MT message's hosted page, ``mm7.service.hosting``; the dispatchers send its
   URL when a message cannot fit a ``too_big = "link"`` profile; the SMS fallback sends it),
   the HTTP SMS links' dlr-url endpoints (``/sms/dlr/<link>/<sms_id>``)
   and, when ``[metrics]`` is enabled, ``/metrics`` (on the API's listener, or on
   ``[metrics] listen`` of its own);
7. announces (``announce``, stdout by default) each bound address, and the API key of this run
   when it was generated (``generate_if_unset``) -- printed once, never logged.

Every listener (inbound, API, metrics) is an ``mm7.transport.listener``: header, body and
keep-alive timeouts and a connection limit from ``[inbound]`` / ``[api]`` (the metrics listener
takes the API's); their connection counts are in ``/metrics`` (``mm7_listener_*``, labelled
by listener name). A listen port 0 picks a free port: the bound one is in ``api_url`` /
``inbound_url`` and in the announcement. Every new message the API commits (JSON or
``sendmms``) wakes its link's dispatcher at once (``on_enqueued``), so it does not wait for the
dispatchers' poll interval.

``stop`` (SIGTERM/SIGINT in ``mm7 serve``): ``/readyz`` answers 503 from now on, the API stops
taking requests (in-flight ones finish, bounded), the dispatchers stop leasing and give their
in-flight submits ``grace`` seconds before releasing the leases of the rest (due again at once
for the next process), the inbound endpoint closes (it stays up until then, so reports keep
landing while the last submits finish), the fallback worker gives its SMS sends ``grace``
seconds and the SMS links close, the relay worker gives its deliveries ``grace`` seconds
(the rest are released, due again for the next process), the named leases are given up (another
instance takes them at its next claim), and the store closes after its queued writes committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import socket
import sqlite3
import ssl
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

import structlog
from aiohttp import web

from mm7.service.api.app import create_api_app
from mm7.service.cluster.dedupe import for_store as dedupe_for_store
from mm7.service.cluster.ownership import (
    RELAY,
    RETENTION,
    Ownership,
    default_instance,
    link_lease,
)
from mm7.service.cluster.urls import HOSTING_URL_BASE, MEDIA_URL_BASE, unset_url_bases
from mm7.service.config.settings import GatewayConfig, Listen, StoreSettings
from mm7.service.errors import ConfigError, StoreError
from mm7.service.fallback.links import add_dlr_routes, make_sms_links, no_plus, send_ttl
from mm7.service.fallback.worker import FALLBACK, FallbackWorker
from mm7.service.hosting.links import HostedLinks
from mm7.service.hosting.routes import add_hosting_routes
from mm7.service.mt.dispatcher import Dispatcher
from mm7.service.mt.reports import DeliveryReports
from mm7.service.mt.submit_build import stored_presentation
from mm7.service.ops.health import Health, LinkLike, links_check, store_check
from mm7.service.ops.logs import configure_logging
from mm7.service.ops.metrics import GatewayMetrics
from mm7.service.relay.ingest import MoIngest
from mm7.service.relay.media_urls import MediaUrls, add_media_route
from mm7.service.relay.worker import RelayWorker
from mm7.service.sms.link import SmsLink
from mm7.service.store.base import Store
from mm7.service.store.sqlite.store import SqliteStore
from mm7.transport.inbound_auth import server_ssl_context
from mm7.transport.listener import Listener, ListenerLimits, serve
from mm7.transport.server import create_inbound_app

__all__ = ["Gateway"]

log = structlog.get_logger("mm7.service.runtime")

#: seconds the API's and the inbound endpoint's in-flight requests get at shutdown
HTTP_SHUTDOWN_TIMEOUT = 10.0


def _print(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


def _url(scheme: str, listen: Listen, port: int) -> str:
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    return f"{scheme}://{host}:{port}"


class Gateway:
    """One gateway process (module docstring).

    ``poll_interval``: how often an idle dispatcher looks for due work (enqueues wake it at
    once; retries and scheduled messages become due without a wake). ``grace``: seconds the
    in-flight submits get at ``stop``. ``lease_ttl``: overrides the dispatchers' and the relay's
    lease TTL and ``[cluster] lease_ttl`` (tests and drills of crash recovery shorten them).
    ``announce``: where the bound addresses and a generated API key are written (one line
    each). ``reuse_port``: the API and inbound listeners share their port with other processes
    (``mm7 serve --workers``).
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        configure_logs: bool = True,
        poll_interval: float = 1.0,
        grace: float = 10.0,
        lease_ttl: timedelta | None = None,
        announce: Callable[[str], None] = _print,
        reuse_port: bool = False,
    ) -> None:
        self.config = config
        self.reuse_port = reuse_port
        #: the name this instance holds its leases under
        self.instance = config.cluster.instance or default_instance()
        self.ownership: Ownership | None = None
        self._retention_due = asyncio.Event()
        self.configure_logs = configure_logs
        self.poll_interval = poll_interval
        self.grace = grace
        self.lease_ttl = lease_ttl
        self.announce = announce
        self.store: Store | None = None
        self.relay: RelayWorker | None = None
        #: seconds between two retention passes (``[store] retain``); the first runs at start
        self.retention_interval = 3600.0
        self._retention: asyncio.Task[None] | None = None
        self.dispatchers: dict[str, Dispatcher] = {}
        self.health = Health()
        self.metrics = GatewayMetrics()
        self.api_url: str | None = None
        self.inbound_url: str | None = None
        self.metrics_url: str | None = None
        #: the hosted pages' links (``[hosting]``; None while it is off): the page URL of a
        #: message is ``hosting.page_url(message_id, created_at)`` or ``await
        #: hosting.url_for(store, message_id)``
        self.hosting: HostedLinks | None = None
        #: the SMS links (``[sms_links.NAME]``), started with the gateway, and the worker that
        #: sends the SMS fallback through them (None without SMS links)
        self.sms_links: dict[str, SmsLink] = {}
        self.fallback: FallbackWorker | None = None
        #: the URL base keys warned about as a cluster's (``cluster.urls``), at start
        self._cluster_urls: tuple[str, ...] = ()
        self._listeners: dict[str, Listener] = {}
        self._started = False
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start everything (module docstring); on a failure what was started is stopped."""
        if self._started:
            return
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        config = self.config
        if self.configure_logs:
            configure_logging(config.logging.level, config.logging.json)
        self.store = store = await self._open_store()
        # warned here, once, in the cluster's words; the single-process warnings skip these keys
        self._cluster_urls = unset_url_bases(config)
        if self._cluster_urls:
            log.warning(
                "mm7.gateway.cluster_url_base_unset",
                keys=list(self._cluster_urls),
                hint="with several instances set them to the load balancer's address: unset, "
                "a URL names the API listen address of the instance that made it and breaks "
                "while that instance is down",
            )
        ttl = self.lease_ttl.total_seconds() if self.lease_ttl else config.cluster.lease_ttl
        names = [*(link_lease(name) for name in config.link_names), RELAY, RETENTION]
        if config.sms_links:
            names.append(FALLBACK)
        # on_acquired: the work the lease guards starts now, not at its next poll
        ownership = self.ownership = Ownership(
            store, self.instance, names, ttl, on_acquired=self._on_acquired
        )
        await ownership.start()
        self._retention = asyncio.create_task(self._retain(store), name="mm7-retention")
        media_urls = await self._media_urls(store)
        hosting = self.hosting = await self._hosting(store)
        # The callbacks that tie the pieces together, one name each:
        # - wake_relay=self._wake_relay: a store commit queued a relay event (an MO, a report,
        #   a status change with a callback_url) or an SMS fallback (a recipient failed), so
        #   the relay worker and the fallback worker lease it now;
        # - on_enqueued=self._on_enqueued: the API committed a new message, so its link's
        #   dispatcher leases it now;
        # - on_outcome / on_stored / on_answer: observers, for metrics only.
        relay = self.relay = RelayWorker(
            store,
            config.relay,
            api_key_secret=config.api.key_secret,
            allows_private=config.api.allows_private,
            media_urls=media_urls,
            poll_interval=self.poll_interval,
            lease_ttl=self.lease_ttl or RelayWorker.default_lease_ttl(config.relay),
            on_outcome=self.metrics.observe_relay,
            owner=f"{self.instance}/relay",
            may_lease=functools.partial(ownership.held, RELAY),
        )
        await relay.start()
        await self._start_fallback(store, hosting, ownership)
        reports = DeliveryReports(
            store,
            link_for_peer=config.peer_link,
            links_for_peer=config.peer_links,
            own_addresses=config.own_addresses,
            wake_relay=self._wake_relay,
            metrics=self.metrics,
        )
        ingest = MoIngest(
            store,
            config.relay,
            link_of=reports.link_of,
            wake_relay=relay.wake,
            on_stored=self.metrics.observe_mo,
        )
        inbound_config = dataclasses.replace(
            config.inbound_config(), on_answer=self.metrics.observe_inbound
        )
        inbound = create_inbound_app(
            inbound_config,
            reports.handlers(on_deliver=ingest.on_deliver),
            dedupe=dedupe_for_store(config.store.backend, store),
        )
        tls = config.inbound.tls
        ssl_context = None
        if tls is not None:
            ssl_context = server_ssl_context(
                tls.cert_file,
                tls.key_file,
                client_ca=tls.client_ca,
                require_client_cert=tls.require_client_cert,
            )
        port = await self._serve(
            "inbound",
            inbound,
            config.inbound.listen,
            config.inbound.limits,
            ssl_context,
            reuse_port=self.reuse_port,
        )
        scheme = "https" if ssl_context is not None else "http"
        self.inbound_url = _url(scheme, config.inbound.listen, port) + config.inbound.config.path

        for settings in config.links:
            dispatcher = Dispatcher(
                self.store,
                settings,
                wake_relay=self._wake_relay,
                poll_interval=self.poll_interval,
                lease_ttl=self.lease_ttl,
                metrics=self.metrics,
                owner=f"{self.instance}/{settings.name}",
                may_lease=functools.partial(ownership.held, link_lease(settings.name)),
                hosting=hosting,
            )
            self.dispatchers[settings.name] = dispatcher
            await dispatcher.start()
        store.watch(on_mt=self._on_enqueued, on_relay=self._wake_relay)
        self.metrics.track_store(self.store, config.link_names)
        self.metrics.track_leases(ownership.states)
        self.health.add_info("cluster", self._cluster_info)

        self.health.add_check("store", store_check(self.store))
        self.health.add_check("links", links_check(self._clients))
        api = create_api_app(
            config,
            self.store,
            on_enqueued=self._on_enqueued,
            on_quota_refused=self.metrics.observe_quota_refusal,
            hosting=hosting,
        )
        add_media_route(api, media_urls, store)
        add_dlr_routes(api, self.sms_links)
        if hosting is not None:
            add_hosting_routes(api, hosting, store, stored_presentation)
        self.health.add_to(api)
        metrics = config.metrics
        if metrics.enabled and metrics.listen is None:
            self.metrics.add_to(api, metrics.path, token=metrics.token)
        port = await self._serve(
            "api", api, config.api.listen, config.api.limits, None, reuse_port=self.reuse_port
        )
        self.api_url = _url("http", config.api.listen, port)
        public = self.api_url
        if config.api.listen.host in ("0.0.0.0", "::", ""):
            # a wildcard address is no address for an application or a phone to fetch from
            public = _url("http", Listen(socket.getfqdn(), port), port)
        if config.relay.media_url_base is None:
            media_urls.base = public
            if public != self.api_url and MEDIA_URL_BASE not in self._cluster_urls:
                log.warning(
                    "mm7.gateway.media_url_base_guessed",
                    base=media_urls.base,
                    hint="set [relay] media_url_base to the address applications reach",
                )
        if hosting is not None and not hosting.base:
            hosting.base = public
        if metrics.enabled and metrics.listen is not None:
            port = await self._serve(
                "metrics",
                self.metrics.application(metrics.path, token=metrics.token),
                metrics.listen,
                config.api.limits,
                None,
            )
            self.metrics_url = _url("http", metrics.listen, port) + metrics.path
        elif metrics.enabled:
            self.metrics_url = self.api_url + metrics.path

        self.announce(f"mm7 gateway: sending API on {self.api_url}/v1/messages")
        self.announce(f"mm7 gateway: inbound MM7 endpoint on {self.inbound_url}")
        for link in config.links:
            self.announce(f"mm7 gateway: link {link.name} submits to {link.link.url}")
        if self.metrics_url is not None:
            self.announce(f"mm7 gateway: metrics on {self.metrics_url}")
        self.announce(f"mm7 gateway: health on {self.api_url}/healthz and {self.api_url}/readyz")
        for key in config.api.keys:
            if key.generated:
                self.announce(
                    f"mm7 gateway: API key {key.name!r} generated for this run (set "
                    f"{key.env or 'its variable'} to choose it): {key.key.reveal()}"
                )
        log.info(
            "mm7.gateway.started",
            api=self.api_url,
            inbound=self.inbound_url,
            links=list(self.dispatchers),
            instance=self.instance,
            leases=sorted(ownership.holding()),
        )

    async def stop(self) -> None:
        """Graceful shutdown (module docstring); safe to call more than once."""
        self.health.shutting_down()
        for name in ("api", "metrics"):
            await self._cleanup(name)
        if self.dispatchers:
            results = await asyncio.gather(
                *(d.stop(self.grace) for d in self.dispatchers.values()), return_exceptions=True
            )
            for name, result in zip(self.dispatchers, results, strict=True):
                if isinstance(result, BaseException):
                    log.error("mm7.gateway.dispatcher_stop_failed", link=name, error=repr(result))
            self.dispatchers.clear()
        await self._cleanup("inbound")
        await self._stop_fallback()
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
            self._retention = None
        if self.relay is not None:
            try:
                await self.relay.stop(self.grace)
            except Exception as exc:
                log.error("mm7.gateway.relay_stop_failed", error=repr(exc))
            self.relay = None
        if self.ownership is not None:
            # last: nothing of this instance leases work any more when the others take over
            await self.ownership.stop()
            self.ownership = None
        if self.store is not None:
            await self.store.close()
            self.store = None
        if self._started and not self._stopped:
            # once: a failed start stops here and again in the caller's ``finally``
            self._stopped = True
            log.info("mm7.gateway.stopped")

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- pieces --------------------------------------------------------------------------------

    async def _open_store(self) -> Store:
        relay = self.config.relay
        status_hooks = any(r.status_hook for r in relay.routes) or (
            relay.default_route is not None and relay.default_route.status_hook is not None
        )
        return await open_store(
            self.config.store, source=self.config.source, relay_all_statuses=status_hooks
        )

    async def _retain(self, store: Store) -> None:
        """Delete what is finished and older than ``[store] retain``, every interval while this
        instance holds the ``retention`` lease, and at once when it takes it."""
        retain = timedelta(seconds=self.config.store.retain)
        while True:
            self._retention_due.clear()
            if self.ownership is not None and self.ownership.held(RETENTION):
                try:
                    stats = await store.purge(datetime.now(UTC) - retain)
                except Exception:
                    log.exception("mm7.gateway.retention_failed")
                else:
                    if any(dataclasses.astuple(stats)):
                        log.info("mm7.gateway.retention", **dataclasses.asdict(stats))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retention_due.wait(), self.retention_interval)

    async def _start_fallback(
        self, store: Store, hosting: HostedLinks | None, ownership: Ownership
    ) -> None:
        """The SMS links (``[sms_links.NAME]``) and the fallback worker sending through them,
        while this instance holds the ``fallback`` lease; every instance's links take receipts
        (correlated in the store). Nothing without SMS links."""
        config = self.config
        if not config.sms_links:
            return
        self.sms_links = make_sms_links(config.sms_links)
        worker = self.fallback = FallbackWorker(
            store,
            self.sms_links,
            hosting,
            config.fallback,
            owner=f"{self.instance}/fallback",
            may_lease=functools.partial(ownership.held, FALLBACK),
            wake_relay=self.relay.wake if self.relay is not None else None,
            poll_interval=self.poll_interval,
            lease_ttl=self.lease_ttl or timedelta(seconds=60),
            send_ttl=send_ttl(config.sms_links),
            no_plus=no_plus(config.sms_links),
        )
        for link in self.sms_links.values():
            await link.start(worker.on_receipt)
        await worker.start()

    async def _stop_fallback(self) -> None:
        """The fallback worker (its sends get ``grace``), then the SMS links."""
        if self.fallback is not None:
            try:
                await self.fallback.stop(self.grace)
            except Exception as exc:
                log.error("mm7.gateway.fallback_stop_failed", error=repr(exc))
            self.fallback = None
        for name, link in self.sms_links.items():
            try:
                await link.close()
            except Exception as exc:
                log.error("mm7.gateway.sms_link_close_failed", sms_link=name, error=repr(exc))
        self.sms_links = {}

    def _wake_relay(self) -> None:
        """A commit queued relay events, or maybe an SMS fallback: both workers look now."""
        if self.relay is not None:
            self.relay.wake()
        if self.fallback is not None:
            self.fallback.wake()

    def _on_acquired(self, lease: str) -> None:
        """This instance took ``lease``: the work it guards starts now."""
        if lease == RETENTION:
            self._retention_due.set()
        elif lease == RELAY:
            if self.relay is not None:
                self.relay.wake()
        elif lease == FALLBACK:
            if self.fallback is not None:
                self.fallback.wake()
        else:
            dispatcher = self.dispatchers.get(lease.removeprefix("link:"))
            if dispatcher is not None:
                dispatcher.wake()

    def _cluster_info(self) -> dict[str, object]:
        """/readyz: this instance's name and the leases it holds (holding none is no error)."""
        held = self.ownership.holding() if self.ownership is not None else {}
        return {"instance": self.instance, "leases": held}

    async def _media_urls(self, store: Store) -> MediaUrls:
        """Signing of MO media URLs: the configured key, else one the store keeps."""
        relay = self.config.relay
        secret = relay.media_url_secret
        key = secret.reveal() if secret is not None else await store.own_secret("media_url")
        # without media_url_base, the API's bound address is filled in once it is listening
        return MediaUrls(
            key.encode(), relay.media_url_base or "http://127.0.0.1", relay.media_url_ttl
        )

    async def _hosting(self, store: Store) -> HostedLinks | None:
        """The hosted pages' links (``[hosting]``), or None when hosting is off. Without a base
        URL configured, the API's address: known now when its port is fixed (dispatchers may
        need it before the API listens), else "" until it listens."""
        settings = self.config.hosting
        if not settings.enabled:
            return None
        secret = settings.secret
        key = secret.reveal() if secret is not None else await store.own_secret("hosting")
        listen = self.config.api.listen
        base = settings.url_base or self.config.relay.media_url_base or ""
        if not base and HOSTING_URL_BASE not in self._cluster_urls:
            log.warning(
                "mm7.gateway.hosting_url_base_guessed",
                hint="set [hosting] url_base to the public address phones reach; the API's "
                "listen address is used",
            )
        if not base and listen.port and listen.host not in ("0.0.0.0", "::", ""):
            base = _url("http", listen, listen.port)
        return HostedLinks(key.encode(), base, settings.ttl)

    async def _serve(
        self,
        name: str,
        app: web.Application,
        listen: Listen,
        limits: ListenerLimits,
        ssl_context: ssl.SSLContext | None,
        *,
        reuse_port: bool = False,
    ) -> int:
        """Serve ``app`` on ``listen`` within ``limits``; the port bound (the chosen one for
        port 0)."""
        listener = await serve(
            app,
            listen.host,
            listen.port,
            limits,
            ssl_context=ssl_context,
            name=name,
            shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT,
            reuse_port=reuse_port,
        )
        self._listeners[name] = listener
        self.metrics.track_listener(name, listener)
        return listener.port

    async def _cleanup(self, name: str) -> None:
        listener = self._listeners.pop(name, None)
        self.metrics.untrack_listener(name)
        if listener is not None:
            try:
                await listener.close()
            except Exception as exc:
                log.error("mm7.gateway.http_stop_failed", listener=name, error=repr(exc))

    def _clients(self) -> Mapping[str, LinkLike]:
        return {n: d.client for n, d in self.dispatchers.items() if d.client is not None}

    def _on_enqueued(self, link: str) -> None:
        """The API committed a new message for ``link``: its dispatcher looks for work now."""
        dispatcher = self.dispatchers.get(link)
        if dispatcher is not None:
            dispatcher.wake()
        else:
            self.wake()

    def wake(self) -> None:
        """Every dispatcher looks for due work now."""
        for dispatcher in self.dispatchers.values():
            dispatcher.wake()


async def open_store(
    settings: StoreSettings, *, source: Path, relay_all_statuses: bool = False
) -> Store:
    """The store ``[store]`` of the configuration file ``source`` names, opened and migrated:
    what ``mm7 serve`` and ``mm7 relay`` run on. Raises ``ConfigError`` when the PostgreSQL
    driver is missing and ``StoreError`` (the database named: a file, or ``postgresql://host:
    port/database``, never a password) when the store cannot be opened."""
    if settings.backend == "postgresql":
        assert settings.dsn is not None  # the loader requires dsn (or dsn_env)
        try:  # the driver is an extra: without it, the error says what to install
            from mm7.service.store.postgres import PostgresStore
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        return await PostgresStore.open(
            settings.dsn.reveal(), relay_all_statuses=relay_all_statuses
        )
    path = Path(settings.path)
    with contextlib.suppress(OSError):  # an unwritable folder fails in open, with its name
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return await SqliteStore.open(path, relay_all_statuses=relay_all_statuses)
    except sqlite3.Error as exc:  # not a database, a folder, a file it may not open
        raise StoreError(f"{path}: cannot open the database: {exc}") from None
