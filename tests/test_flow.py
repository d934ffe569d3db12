"""Flow control: the TPS limit and the in-flight bound hold (counted per window at the fake
MMSC, never by timing the test), and the circuit breaker opens, refuses fast, probes, closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from mm7.transport.classify import Outcome
from mm7.transport.client import MM7Client
from mm7.transport.errors import MM7ClientError
from mm7.transport.flow import (
    BreakerOpen,
    BreakerState,
    CircuitBreaker,
    LinkFlow,
    NotAdmitted,
    TokenBucket,
)
from mm7.transport.link import LinkConfig
from tests.helpers.fake_mmsc import (
    PATH,
    Behaviour,
    FakeClock,
    FakeMMSC,
    Seen,
    fault,
    hold,
    ok,
    raw,
    submit_req,
)

Server = Callable[..., Awaitable[Any]]


@pytest.fixture
async def mmsc(aiohttp_server: Server) -> AsyncIterator[tuple[FakeMMSC, str]]:
    fake = FakeMMSC()
    server = await aiohttp_server(fake.app())
    yield fake, str(server.make_url(PATH))


def state(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state, read through a call so mypy does not keep a stale narrowing."""
    return breaker.state


def gather_then_answer(fake: FakeMMSC, count: int, total: int) -> Behaviour:
    """Hold each request until ``count`` are in flight at the fake (or all ``total`` have come,
    or a second passed), so the peak it records is the client's limit, not an accident."""

    async def behaviour(seen: Seen, request: web.Request) -> web.StreamResponse:
        for _ in range(200):
            if fake.in_flight >= count or len(fake.seen) >= total:
                break
            await asyncio.sleep(0.005)
        return await ok()(seen, request)

    return behaviour


def max_in_window(times: list[float], window: float) -> int:
    """The most arrivals inside any window of ``window`` seconds (sliding, from each arrival)."""
    times = sorted(times)
    best = 0
    j = 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + window:
            j += 1
        best = max(best, j - i)
    return best


# --- against the fake MMSC ---------------------------------------------------------------------


async def test_tps_limit_holds_per_window_at_the_server(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    tps, n = 40, 30
    config = LinkConfig(name="tps", url=url, tps=tps, burst=2, max_in_flight=n)
    async with MM7Client(config) as client:
        await asyncio.gather(*(client.submit(submit_req()) for _ in range(n)))
    arrivals = [s.at for s in fake.seen]
    assert len(arrivals) == n
    # a token bucket lets at most burst + rate * w requests through in any window w; two more
    # are allowed for the scheduling jitter between leaving the client and arriving here.
    # Unlimited, all 30 arrive within a few milliseconds, so each bound below also shows the
    # limiter at work.
    for window in (0.25, 0.5):
        assert max_in_window(arrivals, window) <= 2 + tps * window + 2, window


async def test_in_flight_limit_holds_at_the_server(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.default = gather_then_answer(fake, 3, 12)
    async with MM7Client(LinkConfig(name="inflight", url=url, max_in_flight=3)) as client:
        await asyncio.gather(*(client.submit(submit_req()) for _ in range(12)))
        assert client.flow.in_flight == 0
    assert len(fake.seen) == 12
    assert fake.max_in_flight == 3


async def test_breaker_opens_refuses_fast_probes_and_closes(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    clock = FakeClock()
    config = LinkConfig(name="brk", url=url, breaker_threshold=3, breaker_cooldown=30)
    fake.script = [raw(503, b""), ok(4006), raw(502, b"")]
    async with MM7Client(config, clock=clock, sleep=clock.sleep) as client:
        breaker = client.flow.breaker
        for _ in range(3):
            with pytest.raises(MM7ClientError) as info:
                await client.submit(submit_req())
            assert info.value.transient
        assert state(breaker) is BreakerState.OPEN and len(fake.seen) == 3

        # open: refused locally, the server sees nothing
        for _ in range(5):
            with pytest.raises(MM7ClientError) as info:
                await client.submit(submit_req())
            assert info.value.outcome is Outcome.CIRCUIT_OPEN and info.value.transient
            assert info.value.retry_after == 30
        assert len(fake.seen) == 3

        # after the cool-down one probe goes through; it fails: open again
        clock.advance(30)
        fake.script = [raw(503, b"")]
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit_req())
        assert info.value.outcome is not Outcome.CIRCUIT_OPEN
        assert state(breaker) is BreakerState.OPEN and len(fake.seen) == 4
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit_req())
        assert info.value.outcome is Outcome.CIRCUIT_OPEN and len(fake.seen) == 4

        # the next probe succeeds: closed, traffic flows
        clock.advance(30)
        assert (await client.submit(submit_req())).status.code == 1000
        assert state(breaker) is BreakerState.CLOSED and breaker.failures == 0
        assert (await client.submit(submit_req())).status.code == 1000
        assert len(fake.seen) == 6


async def test_half_open_lets_exactly_one_probe_through(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    clock = FakeClock()
    config = LinkConfig(name="probe", url=url, breaker_threshold=1, breaker_cooldown=5)
    fake.script = [raw(503, b"")]
    async with MM7Client(config, clock=clock, sleep=clock.sleep) as client:
        with pytest.raises(MM7ClientError):
            await client.submit(submit_req())
        clock.advance(5)
        release = asyncio.Event()
        fake.default = ok()
        fake.script = [hold(release)]
        probe = asyncio.create_task(client.submit(submit_req()))
        while len(fake.seen) < 2:  # the probe has reached the server
            await asyncio.sleep(0.01)
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit_req())  # a second caller while the probe is out
        assert info.value.outcome is Outcome.CIRCUIT_OPEN
        release.set()
        assert (await probe).status.code == 1000
    assert len(fake.seen) == 2


async def test_permanent_errors_do_not_open_the_breaker(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.default = fault(2002)
    config = LinkConfig(name="perm", url=url, breaker_threshold=2)
    async with MM7Client(config) as client:
        for _ in range(4):
            with pytest.raises(MM7ClientError) as info:
                await client.submit(submit_req())
            assert not info.value.transient
        assert state(client.flow.breaker) is BreakerState.CLOSED
    assert len(fake.seen) == 4


async def test_one_flow_shared_by_two_clients(mmsc: tuple[FakeMMSC, str]) -> None:
    """Callers on one link share its flow, even through separate client objects."""
    fake, url = mmsc
    fake.default = ok(delay=0.05)
    flow = LinkFlow(tps=None, max_in_flight=2, breaker_threshold=5, breaker_cooldown=1)
    config = LinkConfig(name="shared", url=url)
    async with MM7Client(config, flow=flow) as a, MM7Client(config, flow=flow) as b:
        await asyncio.gather(*(c.submit(submit_req()) for c in (a, b) * 4))
    assert fake.max_in_flight == 2 and len(fake.seen) == 8


async def test_a_refused_admit_sends_nothing_and_gives_the_token_back(
    mmsc: tuple[FakeMMSC, str],
) -> None:
    """``admit`` is asked once the slot and token are held; its refusal raises NotAdmitted with
    its wait, nothing reaches the MMSC, and the link's token is there for the next request."""
    fake, url = mmsc
    clock = FakeClock()
    config = LinkConfig(name="admit", url=url, tps=1.0, burst=1)
    waits = iter([0.4, 0.0])
    asked: list[int] = []

    def admit() -> float:
        asked.append(flow.in_flight)
        return next(waits)

    async with MM7Client(config, clock=clock, sleep=clock.sleep) as client:
        flow = client.flow
        with pytest.raises(NotAdmitted) as refused:
            await client.submit(submit_req(), admit=admit)
        assert refused.value.retry_after == 0.4 and fake.seen == []
        assert flow.in_flight == 0 and flow.breaker.state is BreakerState.CLOSED
        assert flow.bucket is not None and flow.bucket.try_take() == 0  # the token came back
        flow.bucket.give_back()
        await client.submit(submit_req(), admit=admit)
    assert len(fake.seen) == 1 and asked == [0, 0]
    assert round(clock() - 1000, 6) == 0  # no wait: neither request waited for a token


# --- the pieces alone, on a fake clock ---------------------------------------------------------


async def test_token_bucket_spacing_on_a_fake_clock() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=3, clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(8):
        await bucket.acquire()
        stamps.append(round(clock() - 1000, 6))
    # three saved up, then one every 100 ms
    assert stamps == [0, 0, 0, 0.1, 0.2, 0.3, 0.4, 0.5]
    clock.advance(10)  # idle: saves up to the burst only
    assert [bucket.try_take() for _ in range(4)][:3] == [0, 0, 0]


async def test_token_bucket_waiters_are_served_in_order() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5, clock=clock, sleep=clock.sleep)
    order: list[int] = []

    async def take(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    await asyncio.gather(*(take(i) for i in range(6)))
    assert order == list(range(6))
    assert round(clock() - 1000, 6) == 1.0  # 5 waits of 200 ms after the first token


def test_breaker_state_machine() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(2, 10, clock=clock)
    breaker.admit()
    breaker.record_failure()
    breaker.record_success()  # resets the count
    breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN
    with pytest.raises(BreakerOpen) as info:
        breaker.check()
    assert info.value.retry_after == 10
    clock.advance(4)
    with pytest.raises(BreakerOpen) as info:
        breaker.admit()
    assert info.value.retry_after == 6
    clock.advance(6)
    breaker.check()  # a probe may go, nothing changed yet
    breaker.admit()
    assert state(breaker) is BreakerState.HALF_OPEN
    with pytest.raises(BreakerOpen):
        breaker.admit()  # one probe at a time
    breaker.abandon()  # the probe was cancelled: another may go
    breaker.admit()
    breaker.record_success()
    assert state(breaker) is BreakerState.CLOSED


def test_breaker_threshold_zero_never_opens() -> None:
    breaker = CircuitBreaker(0, 10, clock=FakeClock())
    for _ in range(50):
        breaker.admit()
        breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED


async def test_cancelled_probe_frees_the_half_open_slot() -> None:
    clock = FakeClock()
    flow = LinkFlow(tps=None, max_in_flight=1, breaker_threshold=1, breaker_cooldown=1, clock=clock)
    flow.breaker.record_failure()
    clock.advance(1)

    async def probe() -> None:
        async with flow.slot():
            await asyncio.sleep(10)

    task = asyncio.create_task(probe())
    await asyncio.sleep(0)
    assert state(flow.breaker) is BreakerState.HALF_OPEN
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with flow.slot():  # admitted as the new probe
        pass
    assert flow.in_flight == 0
