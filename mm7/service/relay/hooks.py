"""Delivering one relay event to an application's HTTP hook, and deciding what happens next.

    async with HookSender(settings=config.relay, clock=store_clock) as sender:
        outcome = await sender.deliver(hook, event, idempotency_key=key, attempt=n,
                                       first_attempt_at=first)
        match outcome.step:                         # next_step(...), computed for the caller
            case Delivered(): ...                   # done
            case RetryAt(at=at): ...                # due again at ``at``
            case Dead(): ...                        # dead letter

One attempt (``HookSender.deliver``) is a POST of the event as JSON (UTF-8, compact) to
``hook.url`` with the headers:

- ``Content-Type: application/json``
- ``X-MM7-Signature: t=<unix>,v1=<hex>`` (``mm7.service.relay.signing``; signed at each attempt
  with the hook's secret, the timestamp from the injected clock) for a hook whose ``signature``
  is "mm7" (the default) or "both"; ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature`` (Standard Webhooks, the same module) for "standard" or "both"
- ``Idempotency-Key: <key>``: the caller's key, the same on every retry of the same event, so
  the application drops duplicates (delivery is at least once)
- ``X-MM7-Event-Type: <event["type"]>`` (mo, delivery_report, read_reply, ...)

A 2xx answer delivers the event. Anything else is a failed attempt: any other status (3xx
included: redirects are never followed, a hook that moved is a configuration error to notice,
not something to chase with a signed body), a timeout (``hook.timeout`` seconds for the whole
exchange) or a connection error. Why is kept in words, at most ``ERROR_CHARS`` characters and
never a request header: the status and the first ``ANSWER_BYTES`` of the answer, or the
connection error's message. A failed attempt is retried (``next_step``) with exponential
backoff and full jitter (``mm7.service.backoff.backoff_delay`` with the relay's
``initial_backoff`` / ``max_backoff``) until ``max_age`` seconds after the first attempt; the last
retry is scheduled at that deadline at the latest, and an attempt failing at or after it makes
the event ``dead`` (a dead letter, for ``mm7 relay list|retry|drop``).

Each hook has its own concurrency limit: at most ``hook.concurrency`` requests to it are in
flight through one ``HookSender`` (a semaphore per hook name). Secrets never leave this module
except in the signature: logs name the hook, the attempt and the outcome, and show the URL
without credentials or query string.

A URL a caller gave (a message's ``callback_url``, a sendmms ``dlr-url`` / ``rr-url``: ``deliver``
with ``guarded=True``) goes through ``mm7.service.url_guard``: a connection to a loopback, private
or link-local address is refused at connect, so a name whose DNS answer changed since intake
reaches nothing inside. Such an attempt fails as "connection error: cannot connect to
HOST:PORT", the very text of a host that does not answer (so the outcome tells a caller nothing
about the inside network); the operator's log says why.

``deliver_until_done`` retries in memory (sleeping with the injected ``sleep`` until each retry
is due): for tools and tests. The gateway's worker keeps attempts in the store instead and calls
``deliver`` once per lease.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, ClassVar, Literal, TypeAlias

import aiohttp
import structlog
from yarl import URL

from mm7.service.backoff import backoff_delay
from mm7.service.config.settings import RelayHook, RelaySettings
from mm7.service.relay.signing import signature_headers
from mm7.service.store import jsontext
from mm7.service.store.base import Clock, SystemClock
from mm7.service.url_guard import UrlGuard, UrlRefused
from mm7.transport.logs import drops

__all__ = [
    "EVENT_TYPE_HEADER",
    "IDEMPOTENCY_HEADER",
    "Dead",
    "Delivered",
    "DeliveryOutcome",
    "RetryAt",
    "HookSender",
    "Step",
    "after_failure",
    "next_step",
]

_LOGGER = "mm7.service.relay"
log = structlog.get_logger(_LOGGER)

IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_TYPE_HEADER = "X-MM7-Event-Type"


@dataclass(frozen=True, slots=True)
class Delivered:
    """The hook answered 2xx: the event is done."""

    outcome: ClassVar[Literal["delivered"]] = "delivered"


@dataclass(frozen=True, slots=True)
class RetryAt:
    """The attempt failed: the event is due again at ``at``."""

    at: datetime
    outcome: ClassVar[Literal["retry"]] = "retry"


@dataclass(frozen=True, slots=True)
class Dead:
    """The attempt failed at or after the deadline: the event is a dead letter."""

    outcome: ClassVar[Literal["dead"]] = "dead"


#: what follows an attempt (``outcome`` is what the store records: delivered, retry or dead)
Step: TypeAlias = Delivered | RetryAt | Dead
SessionSource: TypeAlias = aiohttp.ClientSession | Callable[[], aiohttp.ClientSession] | None


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """The result of one attempt to deliver an event to a hook."""

    hook: str
    idempotency_key: str
    #: 1 for the first attempt
    attempt: int
    #: a 2xx answer
    delivered: bool
    #: the HTTP status answered; None: no answer (timeout, connection error)
    status: int | None
    #: why the attempt failed, for logs and dead letters, at most ``ERROR_CHARS`` characters:
    #: "HTTP 503: <the answer's first bytes>", "timeout after 10s", "connection error:
    #: ClientConnectorError: Cannot connect to host ..."; None: ok. Never a request header.
    error: str | None
    #: when the attempt started (the injected clock)
    at: datetime
    #: what follows (``next_step``)
    step: Step


def next_step(
    outcome: DeliveryOutcome,
    first_attempt_at: datetime,
    attempts: int,
    now: datetime,
    settings: RelaySettings,
    rng: random.Random | None = None,
) -> Step:
    """What follows an attempt: ``Delivered``, ``RetryAt(at)`` or ``Dead`` (a dead letter).

    ``attempts``: attempts made so far, this one included (the backoff grows with it).
    A failed attempt at or after ``first_attempt_at + max_age`` is dead; otherwise the next one
    is due ``backoff_delay(attempts, initial_backoff, max_backoff)`` from ``now``, at the
    deadline at the latest (one last try there).
    """
    if outcome.delivered:
        return Delivered()
    return after_failure(first_attempt_at, attempts, now, settings, rng)


def after_failure(
    first_attempt_at: datetime,
    attempts: int,
    now: datetime,
    settings: RelaySettings,
    rng: random.Random | None = None,
) -> RetryAt | Dead:
    """What follows a failed attempt (``next_step`` of one that was not delivered); also for a
    failure before any POST (a hook missing from the configuration, missing media)."""
    deadline = first_attempt_at + timedelta(seconds=settings.max_age)
    if now >= deadline:
        return Dead()
    delay = backoff_delay(attempts, settings.initial_backoff, settings.max_backoff, rng)
    return RetryAt(min(now + timedelta(seconds=delay), deadline))


#: how much of a failed answer's body is kept, and the longest error text kept for an attempt
ANSWER_BYTES = 200
ERROR_CHARS = 200


def _bounded(text: str) -> str:
    """``text`` cut to ``ERROR_CHARS`` (what the store keeps and ``mm7 relay list`` shows)."""
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


#: a URL inside an error's text (aiohttp names the URL in some of its errors)
_URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>\])]+")


def _error_text(exc: BaseException) -> str:
    """A client error in words (``ClientConnectorError: Cannot connect to host ...``), any URL
    in it shown without credentials or query (a hook's or a dlr-url's may carry a token)."""
    text = _URL_IN_TEXT.sub(lambda found: _shown(found.group(0)), str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _shown(url: str) -> str:
    """``url`` without user info, query or fragment (for logs)."""
    try:
        parsed = URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<invalid url>"


class HookSender:
    """Delivers relay events to hooks (module docstring).

    ``session``: a ``ClientSession`` to use (not closed here), a factory called on first use
    (the session it makes is closed by ``close``), or None: a default session is made and owned.
    ``clock``: "now" for signature timestamps, attempt times and retry decisions (the store's
    clock). ``sleep``: how ``deliver_until_done`` waits. ``rng``: the backoff's jitter.
    """

    def __init__(
        self,
        session: SessionSource = None,
        *,
        settings: RelaySettings | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        url_guard: UrlGuard | None = None,
    ) -> None:
        self._guard = url_guard if url_guard is not None else UrlGuard()
        self._own_guard = url_guard is None
        self._guarded: aiohttp.ClientSession | None = None
        self._given = session if isinstance(session, aiohttp.ClientSession) else None
        self._factory = session if callable(session) and self._given is None else None
        self._owned: aiohttp.ClientSession | None = None
        self.settings = settings if settings is not None else RelaySettings()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._sleep = sleep
        self._rng = rng
        self._limits: dict[str, asyncio.Semaphore] = {}

    async def __aenter__(self) -> HookSender:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the sessions this sender made (a given session is the caller's to close)."""
        if self._owned is not None:
            await self._owned.close()
            self._owned = None
        if self._guarded is not None:
            await self._guarded.close()
            self._guarded = None
        if self._own_guard:
            await self._guard.close()

    def _guarded_session(self) -> aiohttp.ClientSession:
        if self._guarded is None:
            self._guarded = aiohttp.ClientSession(connector=self._guard.connector())
        return self._guarded

    def _session(self) -> aiohttp.ClientSession:
        if self._given is not None:
            return self._given
        if self._owned is None:
            if self._factory is not None:
                self._owned = self._factory()
            else:
                self._owned = aiohttp.ClientSession()
        return self._owned

    def limit(self, hook: RelayHook) -> asyncio.Semaphore:
        """The semaphore bounding requests in flight to ``hook`` (``hook.concurrency``)."""
        semaphore = self._limits.get(hook.name)
        if semaphore is None:
            semaphore = self._limits[hook.name] = asyncio.Semaphore(max(1, hook.concurrency))
        return semaphore

    async def deliver(
        self,
        hook: RelayHook,
        event: Mapping[str, Any],
        *,
        idempotency_key: str,
        attempt: int,
        first_attempt_at: datetime | None = None,
        get_url: str | None = None,
        get_headers: Mapping[str, str] | None = None,
        guarded: bool = False,
    ) -> DeliveryOutcome:
        """One attempt to deliver ``event`` to ``hook``; never raises for a failed attempt.

        With ``get_url`` the attempt is a GET of that URL with ``get_headers`` (plus
        Idempotency-Key and X-MM7-Event-Type) instead of the signed JSON POST: a sendmms
        message's dlr-url / rr-url, called as Kannel and Mbuni call them
        (``mm7.service.relay.kannel``). Answers, retries and dead letters are the same.
        ``guarded``: the URL is a caller's that may not reach private addresses (module
        docstring).

        ``event`` must have a string ``type`` (the ``X-MM7-Event-Type`` header). ``attempt``:
        this attempt's number (1 for the first). ``first_attempt_at``: when the first attempt was
        made, for ``next_step`` (None: this one is the first). Waits for a free slot of the
        hook's concurrency limit first; the attempt's time is taken when the slot is obtained.
        """
        event_type = event.get("type")
        if not isinstance(event_type, str) or not event_type:
            raise ValueError("a relay event needs a string 'type'")
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        body = jsontext.dumps_bytes(event)
        async with self.limit(hook):
            at = self.clock.now()
            started = time.monotonic()
            if get_url is not None:
                headers = {**(get_headers or {}), IDEMPOTENCY_HEADER: idempotency_key,
                           EVENT_TYPE_HEADER: event_type}  # fmt: skip
                status, error = await self._send(hook, "GET", get_url, None, headers, guarded)
            else:
                headers = {
                    "Content-Type": "application/json",
                    **signature_headers(
                        hook.signature,
                        hook.secret.reveal(),
                        idempotency_key,
                        int(at.timestamp()),
                        body,
                    ),
                    IDEMPOTENCY_HEADER: idempotency_key,
                    EVENT_TYPE_HEADER: event_type,
                }
                status, error = await self._send(hook, "POST", hook.url, body, headers, guarded)
            elapsed = time.monotonic() - started
        delivered = status is not None and 200 <= status < 300
        pending = DeliveryOutcome(
            hook=hook.name,
            idempotency_key=idempotency_key,
            attempt=attempt,
            delivered=delivered,
            status=status,
            error=error,
            at=at,
            step=Delivered(),
        )
        first = first_attempt_at if first_attempt_at is not None else at
        step = next_step(pending, first, attempt, self.clock.now(), self.settings, self._rng)
        outcome = dataclasses.replace(pending, step=step)
        if delivered and drops(_LOGGER, logging.INFO):
            return outcome
        fields = {
            "hook": hook.name,
            "url": _shown(hook.url),
            "event_type": event_type,
            "idempotency_key": idempotency_key,
            "attempt": attempt,
            "status": status,
            "elapsed_ms": round(elapsed * 1000, 1),
        }
        if delivered:
            log.info("mm7.relay.delivered", **fields)
        elif isinstance(step, RetryAt):
            log.warning("mm7.relay.attempt_failed", error=error, retry_at=str(step.at), **fields)
        else:
            log.error("mm7.relay.dead", error=error, **fields)
        return outcome

    async def _send(
        self,
        hook: RelayHook,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        guarded: bool,
    ) -> tuple[int | None, str | None]:
        """Send once: (status, None) for 2xx, (status, reason) or (None, reason) otherwise."""
        session = self._guarded_session() if guarded else self._session()
        try:
            async with session.request(
                method,
                # a GET URL is sent as built (its substituted values are already encoded)
                URL(url, encoded=True) if body is None else url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=hook.timeout),
            ) as response:
                status = response.status
                answer = b"" if 200 <= status < 300 else await response.content.read(ANSWER_BYTES)
        except TimeoutError:
            return None, f"timeout after {hook.timeout:g}s"
        except aiohttp.ClientConnectorError as exc:
            if not guarded or isinstance(exc, aiohttp.ClientSSLError):
                return None, _bounded(f"connection error: {_error_text(exc)}")
            if isinstance(exc.os_error, UrlRefused):
                log.warning("mm7.relay.url_refused", hook=hook.name, reason=str(exc.os_error))
            # refused or unreachable: the same words, so that they cannot be told apart
            return None, _bounded(f"connection error: cannot connect to {exc.host}:{exc.port}")
        except aiohttp.ClientError as exc:
            return None, _bounded(f"connection error: {_error_text(exc)}")
        if 200 <= status < 300:
            return status, None
        said = " ".join(answer.decode("utf-8", "replace").split())
        said = f": {said}" if said else ""
        if 300 <= status < 400:
            return status, _bounded(f"HTTP {status} (redirects are not followed){said}")
        return status, _bounded(f"HTTP {status}{said}")

    async def deliver_until_done(
        self, hook: RelayHook, event: Mapping[str, Any], *, idempotency_key: str
    ) -> list[DeliveryOutcome]:
        """Deliver ``event``, retrying in memory until delivered or dead; every attempt's outcome.

        Waits with the injected ``sleep`` until each retry is due by the injected clock. Not
        durable (the gateway's worker keeps attempts in the store): for tools and tests.
        """
        outcomes: list[DeliveryOutcome] = []
        first: datetime | None = None
        while True:
            outcome = await self.deliver(
                hook,
                event,
                idempotency_key=idempotency_key,
                attempt=len(outcomes) + 1,
                first_attempt_at=first,
            )
            outcomes.append(outcome)
            if first is None:
                first = outcome.at
            if not isinstance(outcome.step, RetryAt):
                return outcomes
            wait = (outcome.step.at - self.clock.now()).total_seconds()
            await self._sleep(max(0.0, wait))
