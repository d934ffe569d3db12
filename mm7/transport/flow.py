"""Flow control for one link, shared by every caller: a token-bucket TPS limit, a bound on
requests in flight, and a circuit breaker that stops hammering an MMSC that keeps failing.

The clock and the sleep are injectable so tests can drive the breaker's cool-down and the bucket
without waiting. Order on the way out: breaker check (refuse fast, nothing waits), in-flight slot,
token, the caller's own ``admit`` check (a sender's rate: refused, the token goes back and nothing
waits inside the slot), then the breaker admits (one probe when half-open), so tokens are spent
just before a send.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from enum import StrEnum

import structlog

from mm7.core.errors import MM7Error

__all__ = [
    "BreakerOpen",
    "BreakerState",
    "CircuitBreaker",
    "LinkFlow",
    "NotAdmitted",
    "TokenBucket",
]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

log = structlog.get_logger("mm7.transport.flow")


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; waiters are served first come first."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_take(self) -> float:
        """Take a token now and return 0, or return the seconds until one is due (none taken)."""
        self._refill()
        # the epsilon absorbs float rounding, which could otherwise ask for a wait too short to
        # move the clock at all
        if self._tokens >= 1.0 - 1e-9:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self.rate

    async def acquire(self) -> None:
        """Wait for a token and take it; the lock keeps the waiters in arrival order."""
        async with self._lock:
            while (wait := self.try_take()) > 0:
                await self._sleep(wait)

    def give_back(self) -> None:
        """Return a token taken for a request that was not sent after all."""
        self._refill()
        self._tokens = min(float(self.burst), self._tokens + 1.0)


class NotAdmitted(MM7Error):
    """Raised by ``LinkFlow.slot`` when the caller's ``admit`` check refused the request (nothing
    sent, the link's token given back); ``retry_after``: seconds until it may pass."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"not admitted; may pass in {retry_after:.3f}s")


class BreakerState(StrEnum):
    """Closed: traffic flows; open: refused locally; half-open: one probe is let through."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class BreakerOpen(MM7Error):
    """Raised by the breaker when it refuses a request; ``retry_after`` seconds until a probe."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"circuit breaker open; next probe in {retry_after:.1f}s")


class CircuitBreaker:
    """Opens after ``threshold`` consecutive transient failures; after ``cooldown`` seconds lets
    one probe through (half-open); the probe's success closes it, its failure re-opens it.

    Permanent failures count as proof the peer is alive (it answered): they reset the count.
    ``threshold`` 0 disables the breaker.
    """

    def __init__(self, threshold: int, cooldown: float, *, clock: Clock = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._opened_at = 0.0
        self._probe_out = False
        self._context: dict[str, str] = {}

    def bind(self, **context: str) -> None:
        """Log state changes with this context (the link name)."""
        self._context = dict(context)

    def _remaining(self) -> float:
        return max(0.0, self._opened_at + self.cooldown - self._clock())

    def check(self) -> None:
        """Refuse (BreakerOpen) while open and cooling down, or while a probe is out; no change."""
        if self.state is BreakerState.OPEN:
            remaining = self._remaining()
            if remaining > 0:
                raise BreakerOpen(remaining)
        elif self.state is BreakerState.HALF_OPEN and self._probe_out:
            raise BreakerOpen(0.0)

    def admit(self) -> None:
        """Let this request go, or refuse it; after the cool-down the first one is the probe."""
        self.check()
        if self.state is BreakerState.OPEN:
            self.state = BreakerState.HALF_OPEN
            log.info("mm7.breaker.half_open", **self._context)
        if self.state is BreakerState.HALF_OPEN:
            self._probe_out = True

    def record_success(self) -> None:
        """The peer answered (success, or an error it meant): close and reset the count."""
        if self.state is not BreakerState.CLOSED:
            log.info("mm7.breaker.closed", **self._context)
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._probe_out = False

    def record_failure(self) -> None:
        """A transient failure: count it; open at the threshold, or re-open after a failed probe."""
        if self.threshold <= 0:
            return
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED and self.failures >= self.threshold
        ):
            self.state = BreakerState.OPEN
            self._opened_at = self._clock()
            self._probe_out = False
            log.warning(
                "mm7.breaker.open",
                failures=self.failures,
                cooldown_s=self.cooldown,
                **self._context,
            )

    def abandon(self) -> None:
        """The admitted request ended without an answer either way (cancelled): free the probe."""
        self._probe_out = False


class LinkFlow:
    """The TPS bucket, the in-flight bound and the breaker of one link, used as one gate."""

    def __init__(
        self,
        *,
        tps: float | None,
        burst: int = 1,
        max_in_flight: int,
        breaker_threshold: int,
        breaker_cooldown: float,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.bucket = TokenBucket(tps, burst, clock=clock, sleep=sleep) if tps is not None else None
        self.max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown, clock=clock)
        self.in_flight = 0

    @asynccontextmanager
    async def slot(self, admit: Callable[[], float] | None = None) -> AsyncIterator[None]:
        """Hold one in-flight slot and one token for the body of the ``async with``.

        Raises BreakerOpen before waiting for anything when the breaker refuses. ``admit`` is
        asked last, once the slot and the token are held, so that what it allows goes out at
        once: 0 lets the request pass (it has taken what it counts), more raises
        ``NotAdmitted`` with that many seconds, giving the token back. The caller reports the
        result with ``breaker.record_success()``/``record_failure()``; a body left by an
        exception without a report (a cancellation) frees the probe.
        """
        self.breaker.check()
        async with self._slots:
            if self.bucket is not None:
                await self.bucket.acquire()
            if admit is not None and (wait := admit()) > 0:
                if self.bucket is not None:
                    self.bucket.give_back()
                raise NotAdmitted(wait)
            self.breaker.admit()
            self.in_flight += 1
            try:
                yield
            except BaseException:
                self.breaker.abandon()
                raise
            finally:
                self.in_flight -= 1
