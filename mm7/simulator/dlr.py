"""What the simulated MMSC sends to the VASP: delivery reports after a submit (with an outcome
mix, Forwarded-then-final, duplicates, out-of-order), and any other MMSC request (MO DeliverReq,
ReadReplyReq) on command, each retried until the VASP answers properly.

"Properly" is the retry policy's mode: ``strict`` wants status 1000 and the request's
TransactionID echoed (Skycore postbacks); ``lax`` also takes a blank HTTP 200 (Vibes).
Delays go through an injectable ``sleep`` so tests run on short, configurable delays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mm7.core.dialect import Dialect
from mm7.core.errors import MM7Error
from mm7.core.model import Address, DeliveryReportReq, Request, SubmitReq
from mm7.core.status import MMStatus
from mm7.simulator.store import TrafficStore, recipients_of
from mm7.transport.classify import Outcome
from mm7.transport.client import MM7Client, new_transaction_id
from mm7.transport.errors import MM7ClientError
from mm7.transport.judge import BLANK_200
from mm7.transport.link import BasicAuth, LinkConfig, Secret

Sleep = Callable[[float], Awaitable[None]]
RETRY_MODES = ("strict", "lax")
#: what a blank HTTP 200 from the VASP counts as (``Expect.blank``)
BLANK_RULES = ("refuse", "accept", "require")
DLR_WHEN = ("requested", "always", "never")
#: outcomes a final delivery report may carry
FINAL_STATUSES = (MMStatus.RETRIEVED, MMStatus.REJECTED, MMStatus.EXPIRED)
#: the StatusText of the report of a handset that cannot take MMS (``DlrPlan.no_mms``)
NO_MMS_TEXT = "MMS not supported by the handset"


class DlrConfigError(MM7Error):
    """A DLR plan or retry policy with an unknown key or an impossible value."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the simulator judges the VASP's answers and retries the wrong ones."""

    mode: str = "strict"
    #: attempts in all, the first included
    max_attempts: int = 5
    #: seconds before the second attempt, multiplied by ``factor`` each time, capped
    backoff: float = 1.0
    factor: float = 2.0
    max_backoff: float = 300.0
    #: seconds one attempt may take
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.mode not in RETRY_MODES:
            raise DlrConfigError(f"retry.mode: {self.mode!r} is not one of strict, lax")
        if self.max_attempts < 1 or self.backoff < 0 or self.factor < 1 or self.timeout <= 0:
            raise DlrConfigError("retry: max_attempts >= 1, backoff >= 0, factor >= 1, timeout > 0")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.backoff * self.factor ** (attempt - 1), self.max_backoff)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RetryPolicy:
        policy: RetryPolicy = _build(cls, data, "retry")
        return policy


@dataclass(frozen=True, slots=True)
class DlrPlan:
    """When and how delivery reports follow a submit."""

    #: requested: only when the SubmitReq asks (DeliveryReport true); always; never
    when: str = "requested"
    #: seconds after the SubmitRsp before the first report
    delay: float = 1.0
    #: final outcome weights: Retrieved / Rejected / Expired
    retrieved: float = 1.0
    rejected: float = 0.0
    expired: float = 0.0
    #: probability that Forwarded comes first, and the seconds until the final report follows
    forwarded: float = 0.0
    final_delay: float = 1.0
    #: probability a report is sent twice (a second delivery with a fresh TransactionID)
    duplicate: float = 0.0
    #: probability that the final report is sent before the Forwarded one
    out_of_order: float = 0.0
    #: numbers whose handsets cannot take MMS (comma-separated, '+' optional): their final
    #: report is always Rejected, "MMS not supported by the handset" (a gateway's SMS fallback
    #: can be seen working against them)
    no_mms: str = ""

    def refuses(self, recipient: Address) -> bool:
        """Whether ``recipient`` is one of the ``no_mms`` numbers."""
        wanted = {n.strip().removeprefix("+") for n in self.no_mms.split(",") if n.strip()}
        return recipient.value.split("/", 1)[0].removeprefix("+") in wanted

    def __post_init__(self) -> None:
        if self.when not in DLR_WHEN:
            raise DlrConfigError(f"dlr.when: {self.when!r} is not one of {', '.join(DLR_WHEN)}")
        weights = (self.retrieved, self.rejected, self.expired)
        if min(weights) < 0 or sum(weights) <= 0:
            raise DlrConfigError("dlr: outcome weights must be >= 0 with a positive sum")
        for name in ("forwarded", "duplicate", "out_of_order"):
            if not 0 <= getattr(self, name) <= 1:
                raise DlrConfigError(f"dlr.{name}: a probability between 0 and 1")
        if self.delay < 0 or self.final_delay < 0:
            raise DlrConfigError("dlr: delays must be >= 0")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> DlrPlan:
        plan: DlrPlan = _build(cls, data, "dlr")
        return plan


def _build(cls: Any, data: Mapping[str, Any], where: str) -> Any:
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise DlrConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        kind = {"str": str, "int": int, "float": float}[str(fields[key])]
        if kind is str and not isinstance(value, str) or isinstance(value, bool):
            raise DlrConfigError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
        if kind is not str and not isinstance(value, int | float):
            raise DlrConfigError(f"{where}.{key}: expected a number, got {value!r}")
        values[key] = kind(value)
    return cls(**values)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of sending one request to the VASP, over all its attempts."""

    request: Request
    ok: bool
    attempts: int
    #: the VASP's last answer: MM7 status, HTTP status, and what was wrong with it
    status_code: int | None
    http_status: int | None
    problem: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.request.OPERATION,
            "transaction_id": self.request.transaction_id,
            "ok": self.ok,
            "attempts": self.attempts,
            "status_code": self.status_code,
            "http_status": self.http_status,
            "problem": self.problem,
        }


class Outbound:
    """Sends MMSC requests to the VASP through the project's client, retrying per the policy
    and recording every attempt in the store."""

    def __init__(
        self,
        url: str | None,
        dialect: Dialect,
        policy: RetryPolicy,
        store: TrafficStore,
        *,
        auth: tuple[str, str] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.url = url
        self.policy = policy
        self.store = store
        self.sleep = sleep
        # written leniently: echo any version pair; the mode decides whether blank 200 is ok
        self.dialect = dataclasses.replace(
            dialect,
            strict=False,
            allow_any_mm7_version=True,
            accept_blank_200=policy.mode == "lax",
        )
        self._auth = None if auth is None else BasicAuth(auth[0], Secret(auth[1]))
        self._client: MM7Client | None = None
        self._lock = asyncio.Lock()
        #: clients of an earlier dialect, closed at ``close``
        self._retired: list[MM7Client] = []

    async def _get_client(self) -> MM7Client:
        if self.url is None:
            raise DlrConfigError("no VASP URL configured (--vasp-url)")
        async with self._lock:
            if self._client is None:
                self._client = await self._open()
            return self._client

    async def _open(self) -> MM7Client:
        """The client of the VASP link (no circuit breaker: the retry policy decides)."""
        assert self.url is not None
        link = LinkConfig(
            name="vasp",
            url=self.url,
            dialect=self.dialect,
            auth=self._auth,
            request_timeout=self.policy.timeout,
            connect_timeout=self.policy.timeout,
            breaker_threshold=0,
        )
        client = MM7Client(link)
        await client.start()
        return client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        while self._retired:
            await self._retired.pop().close()

    def set_dialect(self, dialect: Dialect) -> None:
        """Write from now on as ``dialect`` (a persona change); the client is made anew."""
        self.dialect = dataclasses.replace(
            dialect,
            strict=False,
            allow_any_mm7_version=True,
            accept_blank_200=self.policy.mode == "lax",
        )
        if self._client is not None:
            # deliveries under way keep it for their retries: closed with the simulator
            self._retired.append(self._client)
            self._client = None

    async def deliver(
        self, request: Request, *, expect: Expect | None = None, attempts: int | None = None
    ) -> Delivery:
        """Send ``request`` until the VASP answers as ``expect`` wants (default: the retry
        policy's mode) or ``attempts`` (default: the policy's) run out."""
        if not request.transaction_id:
            request = dataclasses.replace(request, transaction_id=new_transaction_id())
        wanted = expect or Expect.of_mode(self.policy.mode)
        limit = attempts or self.policy.max_attempts
        client = await self._get_client()
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            got = await self._attempt(client, request)
            problem = wanted.problem(got, request.transaction_id)
            self.store.add_exchange(
                direction="out",
                operation=request.OPERATION,
                transaction_id=request.transaction_id,
                namespace=request.namespace or self.dialect.namespace,
                mm7_version=request.mm7_version or self.dialect.effective_mm7_version,
                recipients=recipients_of(request),
                subject=getattr(request, "subject", None),
                http_status=got.http_status,
                status_code=got.code,
                status_text=got.text,
                duration_ms=(time.monotonic() - started) * 1000,
                message_id=getattr(request, "message_id", None),
                leniencies=got.leniencies,
                problems=() if problem is None else (problem,),
                attempt=attempt,
                recipient=_recipient(request),
                mm_status=_mm_status(request),
                response_headers=got.headers,
                response_content_type=_header(got.headers, "Content-Type"),
                request_body=got.sent,
                response_body=got.received,
            )
            if problem is None or attempt >= limit:
                ok = problem is None
                return Delivery(request, ok, attempt, got.code, got.http_status, problem)
            await self.sleep(self.policy.delay(attempt))

    async def _attempt(self, client: MM7Client, request: Request) -> Attempt:
        """What one try got back (judged by the caller's ``Expect``)."""
        try:
            result = await client.send(request)
        except MM7ClientError as exc:
            return Attempt(
                code=exc.code,
                text=exc.text,
                http_status=exc.http_status,
                error=f"{exc.outcome.value}: {exc}",
                blank=exc.outcome is Outcome.BLANK_200,
                echoed=None if exc.response is None else exc.response.transaction_id,
                leniencies=exc.leniencies,
                sent=exc.request_body,
                received=exc.response_body,
            )
        return Attempt(
            code=result.status.code,
            text=result.status.text,
            http_status=result.http_status,
            error=None,
            blank=BLANK_200 in result.leniencies,
            echoed=result.message.transaction_id,
            leniencies=result.leniencies,
            headers=result.headers,
            sent=result.request_body,
            received=result.response_body,
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try's answer from the VASP, as facts: the judgement is ``Expect``'s."""

    code: int | None
    text: str | None
    http_status: int | None
    #: the client's error (transport, HTTP, MM7 status...), None when it took the answer
    error: str | None
    #: the answer was an empty HTTP 2xx
    blank: bool
    #: the TransactionID the answer carried, when one was read
    echoed: str | None
    leniencies: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    sent: bytes = b""
    received: bytes = b""


@dataclass(frozen=True, slots=True)
class Expect:
    """Which answer from the VASP is the proper one: MM7 ``status`` (None: any the client
    takes as success) with the TransactionID echoed (``echo``), and what a blank HTTP 200
    counts as: refused, accepted too, or required."""

    status: int | None = 1000
    #: "refuse" (a response is due), "accept" (a blank 200 is fine too), "require" (the VASP
    #: must answer with a blank 200)
    blank: str = "refuse"
    echo: bool = True

    def __post_init__(self) -> None:
        if self.blank not in BLANK_RULES:
            raise DlrConfigError(f"expect: blank {self.blank!r} is not one of {BLANK_RULES}")

    @classmethod
    def of_mode(cls, mode: str) -> Expect:
        """The retry policy's judgement: strict (1000, echoed) or lax (any success, a blank
        200 too)."""
        if mode == "lax":
            return cls(None, "accept", echo=False)
        return cls(1000, "refuse")

    def problem(self, got: Attempt, transaction_id: str) -> str | None:
        """What is wrong with ``got``; None when it is the answer wanted."""
        if got.blank and got.http_status == 200:
            if self.blank == "refuse":
                return got.error or "a blank HTTP 200 where a response was due"
            return None
        if self.blank == "require":
            what = f"status {got.code}" if got.code is not None else f"HTTP {got.http_status}"
            return f"{what}, expected a blank HTTP 200"
        if self.status is None:
            return got.error
        if got.code != self.status:
            if got.code is None:
                return got.error or f"HTTP {got.http_status} without an MM7 status"
            return f"status {got.code}, expected {self.status}"
        if self.echo and got.echoed is not None and got.echoed != transaction_id:
            return f"TransactionID {got.echoed!r} does not echo {transaction_id!r}"
        return None


def _header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers if k.lower() == wanted), None)


def _recipient(request: Request) -> str | None:
    recipient = getattr(request, "recipient", None)
    return recipient.value if isinstance(recipient, Address) else None


def _mm_status(request: Request) -> str | None:
    status = getattr(request, "mm_status", None)
    return None if status is None else str(status)


class DlrScheduler:
    """Delivery reports for submitted messages, sent in background tasks."""

    def __init__(
        self,
        plan: DlrPlan,
        outbound: Outbound,
        *,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        default_sender: str = "mmsc",
    ) -> None:
        self.plan = plan
        self.outbound = outbound
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.now = now
        self.default_sender = default_sender
        self.deliveries: list[Delivery] = []
        self._tasks: dict[str, set[asyncio.Task[None]]] = {}

    def wanted(self, submit: SubmitReq) -> bool:
        """Whether this submit gets reports under the plan."""
        if self.plan.when == "always":
            return True
        return self.plan.when == "requested" and bool(submit.delivery_report)

    def schedule(self, submit: SubmitReq, message_id: str) -> None:
        """Start the reports for each recipient of ``submit`` (display-only ones excluded)."""
        for recipient in submit.recipients.all:
            if recipient.display_only:
                continue
            sender = submit.sender_address or Address.guess(self.default_sender)
            task = asyncio.create_task(self._recipient(submit, message_id, recipient, sender))
            tasks = self._tasks.setdefault(message_id, set())
            tasks.add(task)
            task.add_done_callback(functools.partial(self._done, message_id))

    def _done(self, message_id: str, task: asyncio.Task[None]) -> None:
        tasks = self._tasks.get(message_id)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._tasks[message_id]

    def cancel(self, message_id: str) -> bool:
        """Stop pending reports of a message (CancelReq); True when some were pending."""
        tasks = self._tasks.pop(message_id, set())
        for task in tasks:
            task.cancel()
        return bool(tasks)

    def pending(self, message_id: str) -> bool:
        return bool(self._tasks.get(message_id))

    async def idle(self) -> None:
        """Wait until every scheduled report has been sent (or given up)."""
        while self._tasks:
            tasks = [t for group in self._tasks.values() for t in group]
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        for message_id in list(self._tasks):
            self.cancel(message_id)

    def final_status(self) -> MMStatus:
        plan = self.plan
        return self.rng.choices(FINAL_STATUSES, (plan.retrieved, plan.rejected, plan.expired))[0]

    def report(
        self,
        submit: SubmitReq | None,
        message_id: str,
        recipient: Address,
        sender: Address,
        status: MMStatus,
    ) -> DeliveryReportReq:
        """One DeliveryReportReq, in the submit's namespace and MM7Version when known."""
        return DeliveryReportReq(
            transaction_id=new_transaction_id(),
            namespace=submit.namespace if submit is not None else None,
            mm7_version=submit.mm7_version if submit is not None else None,
            message_id=message_id,
            recipient=recipient,
            sender=sender,
            date=self.now().replace(microsecond=0),
            mm_status=status,
            status_text=str(status),
        )

    async def _recipient(
        self, submit: SubmitReq, message_id: str, recipient: Address, sender: Address
    ) -> None:
        plan = self.plan
        if plan.refuses(recipient):
            await self.sleep(plan.delay)
            report = self.report(submit, message_id, recipient, sender, MMStatus.REJECTED)
            report = dataclasses.replace(report, status_text=NO_MMS_TEXT)
            self.deliveries.append(await self.outbound.deliver(report))
            return
        statuses = [self.final_status()]
        if self.rng.random() < plan.forwarded:
            statuses.insert(0, MMStatus.FORWARDED)
            if self.rng.random() < plan.out_of_order:
                statuses.reverse()
        await self.sleep(plan.delay)
        for index, status in enumerate(statuses):
            if index:
                await self.sleep(plan.final_delay)
            report = self.report(submit, message_id, recipient, sender, status)
            self.deliveries.append(await self.outbound.deliver(report))
            if self.rng.random() < plan.duplicate:
                again = dataclasses.replace(report, transaction_id=new_transaction_id())
                self.deliveries.append(await self.outbound.deliver(again))
