"""Delivering relay events to hooks (mm7.service.relay.hooks) against a real aiohttp receiver.

Time is never waited for: the sender's clock is a ManualClock and its sleep advances it.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from mm7.service.config.settings import RelayHook, RelaySettings
from mm7.service.relay import (
    EVENT_TYPE_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    Dead,
    Delivered,
    DeliveryOutcome,
    HookSender,
    RetryAt,
    next_step,
    verify,
)
from mm7.service.relay.hooks import ERROR_CHARS, _error_text
from mm7.service.store import ManualClock
from mm7.transport.link import Secret

SECRET = "s3cret-of-the-hook-XYZ"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EVENT: dict[str, Any] = {"type": "mo", "id": "mo-1", "from": "+15550001", "text": "héllo"}
SETTINGS = RelaySettings(initial_backoff=2.0, max_backoff=10.0, max_age=60.0)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool


@dataclass
class Receiver:
    """An application's hook: records requests, answers statuses from a script."""

    clock: ManualClock
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    #: statuses answered in turn on /hook (then 200)
    script: list[int] = field(default_factory=list)
    always: int | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))
    hang: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def hook(self, path: str = "/hook", **kwargs: Any) -> RelayHook:
        return RelayHook(name=path.strip("/"), url=self.url + path, secret=Secret(SECRET), **kwargs)

    async def record(self, request: web.Request) -> None:
        body = await request.read()
        header = request.headers.get(SIGNATURE_HEADER, "")
        ok = verify(SECRET.encode(), header, body, now=self.clock.now().timestamp())
        self.seen.append(Seen(request.path, dict(request.headers), body, ok))

    async def until(self, predicate: Callable[[], bool]) -> None:
        async def wait() -> None:
            async with self.changed:
                await self.changed.wait_for(predicate)

        await asyncio.wait_for(wait(), 10)  # a safety net only: nothing here waits for time

    async def scripted(self, request: web.Request) -> web.Response:
        await self.record(request)
        status = self.always or (self.script.pop(0) if self.script else 200)
        return web.Response(status=status, text="ok" if status < 300 else "no")

    async def gated(self, request: web.Request) -> web.Response:
        await self.record(request)
        async with self.changed:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.changed.notify_all()
        await self.gate.acquire()
        async with self.changed:
            self.in_flight -= 1
            self.changed.notify_all()
        return web.Response(status=204)

    async def moved(self, request: web.Request) -> web.Response:
        await self.record(request)
        raise web.HTTPFound(location="/hook")

    async def hanging(self, request: web.Request) -> web.Response:
        await self.record(request)
        await self.hang.wait()
        return web.Response(status=200)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def receiver(clock: ManualClock) -> AsyncIterator[Receiver]:
    rx = Receiver(clock)
    app = web.Application()
    app.router.add_post("/hook", rx.scripted)
    app.router.add_post("/other", rx.scripted)
    app.router.add_post("/gated", rx.gated)
    app.router.add_post("/moved", rx.moved)
    app.router.add_post("/hang", rx.hanging)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rx.url = f"http://127.0.0.1:{port}"
    try:
        yield rx
    finally:
        rx.hang.set()
        for _ in range(100):
            rx.gate.release()
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def make_sender(
    session: aiohttp.ClientSession | None, clock: ManualClock, sleeps: list[float] | None = None
) -> HookSender:
    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    return HookSender(session, settings=SETTINGS, clock=clock, sleep=sleep, rng=random.Random(7))


async def test_delivery_is_signed_and_carries_the_headers(
    receiver: Receiver, clock: ManualClock
) -> None:
    async with HookSender(aiohttp.ClientSession, settings=SETTINGS, clock=clock) as sender:
        outcome = await sender.deliver(
            receiver.hook(), EVENT, idempotency_key="relay-mo-1", attempt=1
        )
    assert outcome.delivered and outcome.status == 200 and outcome.error is None
    assert outcome.step == Delivered() and outcome.at == START and outcome.attempt == 1
    [seen] = receiver.seen
    assert seen.signature_ok
    assert seen.headers[SIGNATURE_HEADER].startswith(f"t={int(START.timestamp())},v1=")
    assert seen.headers[IDEMPOTENCY_HEADER] == "relay-mo-1"
    assert seen.headers[EVENT_TYPE_HEADER] == "mo"
    assert seen.headers["Content-Type"] == "application/json"
    assert json.loads(seen.body) == EVENT
    # signed with the hook's secret only
    other = verify(b"another", seen.headers[SIGNATURE_HEADER], seen.body, now=START.timestamp())
    assert not other


async def test_fails_twice_then_accepts_with_the_same_key(
    receiver: Receiver, clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    receiver.script = [503, 500]
    sender = make_sender(session, clock)
    hook = receiver.hook()
    outcomes: list[DeliveryOutcome] = []
    for attempt in (1, 2, 3):
        outcome = await sender.deliver(
            hook, EVENT, idempotency_key="k-42", attempt=attempt, first_attempt_at=START
        )
        outcomes.append(outcome)
        if outcome.step != Delivered():
            assert isinstance(outcome.step, RetryAt)
            due = outcome.step.at
            cap = min(SETTINGS.max_backoff, SETTINGS.initial_backoff * 2 ** (attempt - 1))
            assert clock.now() <= due <= clock.now() + timedelta(seconds=cap)
            clock.set(due)
    assert [o.step.outcome for o in outcomes] == [
        "retry",
        "retry",
        "delivered",
    ]
    assert [o.status for o in outcomes] == [503, 500, 200]
    assert [o.error for o in outcomes] == ["HTTP 503: no", "HTTP 500: no", None]
    assert [s.headers[IDEMPOTENCY_HEADER] for s in receiver.seen] == ["k-42"] * 3
    assert all(s.signature_ok for s in receiver.seen)
    assert len({s.headers[SIGNATURE_HEADER] for s in receiver.seen}) >= 2  # re-signed at retries


async def test_deliver_until_done_sleeps_until_each_retry(
    receiver: Receiver, clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    receiver.script = [502, 429]
    sleeps: list[float] = []
    outcomes = await make_sender(session, clock, sleeps).deliver_until_done(
        receiver.hook(), EVENT, idempotency_key="k-1"
    )
    assert [o.attempt for o in outcomes] == [1, 2, 3]
    assert outcomes[-1].step == Delivered()
    assert len(sleeps) == 2 and all(0 <= s <= SETTINGS.max_backoff for s in sleeps)
    assert [s.headers[IDEMPOTENCY_HEADER] for s in receiver.seen] == ["k-1"] * 3


async def test_always_failing_is_dead_after_max_age(
    receiver: Receiver, clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    receiver.always = 500
    outcomes = await make_sender(session, clock, []).deliver_until_done(
        receiver.hook(), EVENT, idempotency_key="k-dead"
    )
    deadline = START + timedelta(seconds=SETTINGS.max_age)
    assert outcomes[-1].step == Dead()
    assert outcomes[-1].at >= deadline
    for before in outcomes[:-1]:
        assert isinstance(before.step, RetryAt)
        assert before.at < deadline and before.step.at <= deadline
    assert len(outcomes) >= 5  # backoff capped at 10s within 60s
    assert len(receiver.seen) == len(outcomes)
    assert {s.headers[IDEMPOTENCY_HEADER] for s in receiver.seen} == {"k-dead"}


async def test_redirects_are_not_followed(
    receiver: Receiver, clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    outcome = await make_sender(session, clock).deliver(
        receiver.hook("/moved"), EVENT, idempotency_key="k", attempt=1
    )
    assert not outcome.delivered and outcome.status == 302
    assert outcome.error == "HTTP 302 (redirects are not followed): 302: Found"
    assert isinstance(outcome.step, RetryAt)
    assert [s.path for s in receiver.seen] == ["/moved"]


async def test_timeout_is_a_failed_attempt(
    receiver: Receiver, clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    outcome = await make_sender(session, clock).deliver(
        receiver.hook("/hang", timeout=0.2), EVENT, idempotency_key="k", attempt=1
    )
    assert not outcome.delivered and outcome.status is None
    assert outcome.error == "timeout after 0.2s"
    assert isinstance(outcome.step, RetryAt)


async def test_connection_error_is_a_failed_attempt(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hook = RelayHook(name="down", url=f"http://127.0.0.1:{port}/hook", secret=Secret(SECRET))
    outcome = await make_sender(session, clock).deliver(
        hook, EVENT, idempotency_key="k", attempt=3, first_attempt_at=START - timedelta(hours=1)
    )
    assert not outcome.delivered and outcome.status is None
    assert outcome.error is not None and outcome.error.startswith("connection error: ")
    # in words: what could not be reached, not only the exception's class
    assert f"127.0.0.1:{port}" in outcome.error and len(outcome.error) <= ERROR_CHARS
    assert outcome.step == Dead()  # first attempt an hour ago, max_age 60s


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (503, b"down for\n  maintenance", "HTTP 503: down for maintenance"),
        (400, b"", "HTTP 400"),
        (302, b"moved", "HTTP 302 (redirects are not followed): moved"),
        (500, "é".encode() * 50, "HTTP 500: " + "é" * 50),
        (500, b"x" * 1000, "HTTP 500: " + "x" * 189 + "…"),
    ],
)
async def test_a_failed_answer_is_kept_in_words_and_bounded(
    aiohttp_server: Any,
    clock: ManualClock,
    session: aiohttp.ClientSession,
    status: int,
    body: bytes,
    expected: str,
) -> None:
    seen: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(status=status, body=body, headers={"Location": "/elsewhere"})

    app = web.Application()
    app.router.add_post("/hook", answer)
    server = await aiohttp_server(app)
    hook = RelayHook(name="app", url=str(server.make_url("/hook")), secret=Secret(SECRET))
    outcome = await make_sender(session, clock).deliver(hook, EVENT, idempotency_key="k", attempt=1)
    assert outcome.status == status and outcome.error == expected
    assert len(outcome.error) <= ERROR_CHARS
    # what was sent is never kept: not the signature, not the secret
    assert seen and seen[0][SIGNATURE_HEADER] not in outcome.error
    assert SECRET not in outcome.error


async def test_concurrency_limit_per_hook(
    receiver: Receiver, clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    sender = make_sender(session, clock)
    gated = receiver.hook("/gated", concurrency=2)
    tasks = [
        asyncio.create_task(sender.deliver(gated, EVENT, idempotency_key=f"k{i}", attempt=1))
        for i in range(6)
    ]
    await receiver.until(lambda: receiver.in_flight >= 2)
    # another hook is not held up by this one's limit
    other = await sender.deliver(receiver.hook("/other"), EVENT, idempotency_key="o", attempt=1)
    assert other.delivered
    assert sender.limit(gated).locked()
    assert receiver.in_flight == 2 and receiver.max_in_flight == 2
    assert sum(s.path == "/gated" for s in receiver.seen) == 2
    for _ in range(6):
        receiver.gate.release()
    outcomes = await asyncio.gather(*tasks)
    assert all(o.delivered and o.status == 204 for o in outcomes)
    assert sum(s.path == "/gated" for s in receiver.seen) == 6
    assert receiver.max_in_flight == 2


async def test_secret_is_never_logged(
    receiver: Receiver, clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    receiver.script = [500]
    hook = RelayHook(
        name="creds",
        url=receiver.url.replace("http://", "http://user:pw-XYZ@") + "/hook?token=tok-XYZ",
        secret=Secret(SECRET),
    )
    with capture_logs() as logs:
        outcomes = await make_sender(session, clock, []).deliver_until_done(
            hook, EVENT, idempotency_key="k"
        )
    assert outcomes[-1].delivered and len(logs) == 2
    assert [entry["event"] for entry in logs] == ["mm7.relay.attempt_failed", "mm7.relay.delivered"]
    text = repr(logs) + repr(outcomes)
    for leak in (SECRET, "pw-XYZ", "tok-XYZ", "v1="):
        assert leak not in text


async def test_event_needs_a_type(clock: ManualClock) -> None:
    sender = HookSender(settings=SETTINGS, clock=clock)
    hook = RelayHook(name="h", url="http://127.0.0.1:9/hook", secret=Secret(SECRET))
    with pytest.raises(ValueError, match="type"):
        await sender.deliver(hook, {"id": "x"}, idempotency_key="k", attempt=1)
    await sender.close()


def _outcome(delivered: bool) -> DeliveryOutcome:
    return DeliveryOutcome(
        hook="h",
        idempotency_key="k",
        attempt=1,
        delivered=delivered,
        status=200 if delivered else 503,
        error=None if delivered else "HTTP 503",
        at=START,
        step=Delivered(),
    )


def test_next_step_delivered() -> None:
    later = START + timedelta(days=30)
    assert next_step(_outcome(True), START, 9, later, SETTINGS) == Delivered()


@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 10])
def test_next_step_retries_with_capped_jittered_backoff(attempts: int) -> None:
    rng = random.Random(attempts)
    now = START + timedelta(seconds=5)
    cap = min(SETTINGS.max_backoff, SETTINGS.initial_backoff * 2 ** (attempts - 1))
    for _ in range(50):
        step = next_step(_outcome(False), START, attempts, now, SETTINGS, rng)
        assert isinstance(step, RetryAt)
        assert now <= step.at <= now + timedelta(seconds=cap)


def test_next_step_last_retry_at_the_deadline_then_dead() -> None:
    deadline = START + timedelta(seconds=SETTINGS.max_age)
    now = deadline - timedelta(seconds=0.5)
    steps = {
        next_step(_outcome(False), START, 8, now, SETTINGS, random.Random(i)) for i in range(20)
    }
    assert all(isinstance(step, RetryAt) and step.at <= deadline for step in steps)
    assert RetryAt(deadline) in steps
    assert next_step(_outcome(False), START, 9, deadline, SETTINGS) == Dead()
    assert next_step(_outcome(False), START, 9, deadline + timedelta(hours=1), SETTINGS) == Dead()


def test_a_url_in_an_error_is_shown_without_credentials_or_query() -> None:
    error = aiohttp.InvalidURL("http://user:pw@app.example/hook?token=s3cret#frag")
    text = _error_text(error)
    assert text.startswith("InvalidURL: ") and "app.example/hook" in text
    assert "s3cret" not in text and "pw" not in text and "frag" not in text
