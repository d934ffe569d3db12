"""Liveness and readiness endpoints: ``/healthz`` and ``/readyz``.

``/healthz`` answers 200 ``{"status": "ok"}`` while the process serves HTTP at all (liveness: a
failing store must not get the process restarted). ``/readyz`` runs the readiness checks
concurrently, each with a time limit, and answers 200 ``{"status": "ready", "checks": {...}}``
or 503 ``{"status": "not ready", "reason": "...", "checks": {...}}`` naming what failed.

A check is any ``async`` callable taking nothing. It passes when it returns ``None`` or ``True``;
it fails when it returns ``False`` or a string (the reason), raises (the exception names the
reason) or exceeds the time limit. Facts added with ``add_info`` (e.g. the leases this instance
holds in a cluster) are answered beside the checks and never fail readiness. Ready-made checks:

- ``store_check(store)``: the store answers a read (``queue_depth``) and, when it can tell
  (``writable()``), can commit: a store whose disk refuses writes is not ready;
- ``links_check(links)``: not every link's circuit breaker is open (half-open is a probe on its
  way, so it counts as usable); no links at all is ready.

Usage::

    health = Health({"store": store_check(store), "links": links_check(clients)})
    health.add_to(app)                     # GET /healthz and GET /readyz
    ...
    health.shutting_down()                 # graceful shutdown: /readyz answers 503 from now on
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, cast

from aiohttp import web

from mm7.transport.client import MM7Client
from mm7.transport.flow import BreakerState, CircuitBreaker, LinkFlow

__all__ = [
    "Check",
    "Health",
    "LinkLike",
    "breaker_of",
    "links_check",
    "store_check",
]

#: a readiness check: None/True passes; False, a reason string, an exception or a timeout fails
Check = Callable[[], Awaitable[object]]
#: what a link's breaker can be read from
LinkLike = MM7Client | LinkFlow | CircuitBreaker

_MAX_REASON = 200


class _Answers(Protocol):
    async def queue_depth(self, link: str | None = None) -> int: ...


def breaker_of(link: LinkLike) -> CircuitBreaker:
    """The circuit breaker of a client, a flow or the breaker itself."""
    if isinstance(link, CircuitBreaker):
        return link
    if isinstance(link, LinkFlow):
        return link.breaker
    return link.flow.breaker


def store_check(store: _Answers) -> Check:
    """A check that passes when the store answers a read (a ``Store``, or anything with
    ``queue_depth``) and, if it has ``writable()``, when that names no reason it cannot write
    (the SQLite store remembers its last write's outcome and probes the disk when idle)."""

    async def check() -> str | None:
        await store.queue_depth()
        writable = getattr(store, "writable", None)
        if writable is None:
            return None
        return cast(str | None, await writable())

    return check


def links_check(
    links: Mapping[str, LinkLike] | Callable[[], Mapping[str, LinkLike]],
) -> Check:
    """A check that fails only when every link's breaker is open (the gateway can send nowhere).

    ``links`` is a mapping of link name to client/flow/breaker, or a callable returning one (so
    links replaced at run time are seen).
    """

    async def check() -> str | None:
        current = links() if callable(links) else links
        if not current:
            return None
        states = {name: breaker_of(link).state for name, link in current.items()}
        if all(state is BreakerState.OPEN for state in states.values()):
            return "circuit breaker open on every link: " + ", ".join(sorted(states))
        return None

    return check


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return reason[:_MAX_REASON]


class Health:
    """The ``/healthz`` and ``/readyz`` handlers over named readiness checks."""

    def __init__(self, checks: Mapping[str, Check] | None = None, *, timeout: float = 5.0) -> None:
        self.checks: dict[str, Check] = dict(checks or {})
        self.timeout = timeout
        self._stopping: str | None = None
        self._info: dict[str, Callable[[], object]] = {}

    def add_check(self, name: str, check: Check) -> None:
        """Add (or replace) a readiness check."""
        self.checks[name] = check

    def add_info(self, name: str, info: Callable[[], object]) -> None:
        """Answer ``info()`` (JSON-serialisable) as ``name`` in /readyz; never a failure."""
        self._info[name] = info

    def shutting_down(self, reason: str = "shutting down") -> None:
        """From now on /readyz answers 503 with ``reason`` (graceful shutdown: stop new traffic)."""
        self._stopping = reason

    async def _run(self, check: Check) -> str | None:
        """None when the check passed, else the reason it failed."""
        try:
            result = await asyncio.wait_for(check(), timeout=self.timeout)
        except TimeoutError:
            return f"no answer within {self.timeout:g}s"
        except Exception as exc:  # a failing check must never fail the endpoint
            return _reason(exc)
        if result is None or result is True:
            return None
        if result is False:
            return "failed"
        return str(result)[:_MAX_REASON]

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Run every check; (ready, the JSON body /readyz answers)."""
        names = list(self.checks)
        results = await asyncio.gather(*(self._run(self.checks[name]) for name in names))
        checks = {
            name: ("ok" if failed is None else failed)
            for name, failed in zip(names, results, strict=True)
        }
        failures = [
            f"{name}: {failed}" for name, failed in zip(names, results, strict=True) if failed
        ]
        if self._stopping is not None:
            failures.insert(0, self._stopping)
        extra = {name: info() for name, info in self._info.items()}
        if failures:
            body = {"status": "not ready", "reason": "; ".join(failures), "checks": checks}
            return False, body | extra
        return True, {"status": "ready", "checks": checks} | extra

    async def healthz(self, request: web.Request) -> web.Response:
        """Liveness: the process is alive and serving."""
        return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})

    async def readyz(self, request: web.Request) -> web.Response:
        """Readiness: 200 when every check passes, 503 with the reason otherwise."""
        ready, body = await self.readiness()
        return web.json_response(
            body, status=200 if ready else 503, headers={"Cache-Control": "no-store"}
        )

    def routes(
        self, *, healthz: str = "/healthz", readyz: str = "/readyz"
    ) -> list[web.AbstractRouteDef]:
        """Route definitions for ``app.add_routes``."""
        return [
            web.get(healthz, self.healthz, allow_head=True),
            web.get(readyz, self.readyz, allow_head=True),
        ]

    def add_to(
        self, app: web.Application, *, healthz: str = "/healthz", readyz: str = "/readyz"
    ) -> None:
        """Serve /healthz and /readyz on ``app``."""
        app.add_routes(self.routes(healthz=healthz, readyz=readyz))

    def application(self) -> web.Application:
        """A stand-alone application serving only /healthz and /readyz."""
        app = web.Application()
        self.add_to(app)
        return app
