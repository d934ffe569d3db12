"""What the store keeps for the sender's own limits and the API keys' quotas, on every backend.

Senders over their rate (``mm7.service.mt.senders``): a dispatcher gives a leased recipient
back with ``defer``, due again at the time its sender may send it; the attempt is not counted,
so it waits without failing and leases of other senders' recipients go on.

API keys' quotas (``[[api.keys]] max_per_second``, ``max_per_day``; ``mm7.service.api.quotas``)
count recipients, as carriers count one message per recipient. ``take_quota`` counts a
request's recipients against both at once, in one transaction of the store, or refuses naming
the quota: a day's count (``api_day_counts``, by UTC day of the store's clock) is checked and
raised in one conditional write, so instances sharing the store never pass the limit together
and a restart keeps the count; the per-second quota is a token bucket in the store
(``api_rate_buckets``) holding one second's worth. ``give_back_quota`` returns what a request
that did not enqueue (a duplicate, a refusal after the count, suppressed recipients) had taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, TypeAlias

from mm7.service.store.records import JSONObject, WorkItem

__all__ = [
    "Deferral",
    "LimitOps",
    "QuotaLimits",
    "QuotaName",
    "QuotaRefused",
    "QuotaTaken",
    "bucket_level",
    "bucket_wait",
    "day_of",
    "until_next_day",
]

QuotaName: TypeAlias = Literal["max_per_second", "max_per_day"]


@dataclass(frozen=True, slots=True)
class Deferral:
    """A leased recipient given back unattempted, due again at ``at`` (its sender's next turn);
    ``details`` go into the ``throttled`` event of its message."""

    item: WorkItem
    at: datetime
    details: JSONObject


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """An API key's quotas, in recipients (None: that quota is not set)."""

    per_second: int | None = None
    per_day: int | None = None


@dataclass(frozen=True, slots=True)
class QuotaTaken:
    """Recipients counted against ``api_key``'s quotas; ``day`` is the UTC day they count on."""

    api_key: str
    count: int
    day: str
    limits: QuotaLimits


@dataclass(frozen=True, slots=True)
class QuotaRefused:
    """The quota that refused a request: its limit and the seconds until it may pass."""

    quota: QuotaName
    limit: int
    retry_after: float


class LimitOps(Protocol):
    """The store's operations for sender limits and quotas (module docstring)."""

    async def defer(self, deferrals: list[Deferral]) -> int:
        """Give each lease back unattempted, due again at its ``at`` (or expired when that is at
        or past its message's expiry), with a ``throttled`` event; how many were still ours."""
        ...

    async def take_quota(
        self, api_key: str, count: int, limits: QuotaLimits
    ) -> QuotaTaken | QuotaRefused:
        """Count ``count`` recipients against both quotas of ``api_key`` at once, or refuse
        (counting nothing) naming the first quota that is over."""
        ...

    async def give_back_quota(self, taken: QuotaTaken, count: int) -> None:
        """Return ``count`` of the recipients ``taken`` counted (to its day and its bucket)."""
        ...


def day_of(now: datetime) -> str:
    """The UTC day ``now`` counts on, ``YYYY-MM-DD``."""
    return now.astimezone(UTC).date().isoformat()


def until_next_day(now: datetime) -> float:
    """Seconds from ``now`` to the next UTC midnight (when a day's quota starts again)."""
    utc = now.astimezone(UTC)
    midnight = datetime(utc.year, utc.month, utc.day, tzinfo=UTC) + timedelta(days=1)
    return (midnight - utc).total_seconds()


def bucket_level(tokens: float | None, stamp_ms: int | None, now_ms: int, rate: int) -> float:
    """The tokens of a per-second bucket at ``now_ms``: full (``rate``) when new, refilled at
    ``rate`` a second since ``stamp_ms``, never above ``rate`` (negative: in debt after a
    message larger than the bucket)."""
    if tokens is None or stamp_ms is None:
        return float(rate)
    elapsed = max(0, now_ms - stamp_ms) / 1000.0
    return min(float(rate), tokens + elapsed * rate)


def bucket_wait(level: float, rate: int, count: int) -> float:
    """0 when ``count`` recipients may pass a bucket at ``level``, else the seconds until they
    may. A message larger than the bucket passes when it is full and leaves it in debt, so the
    key's rate holds over time and a large message is not refused for ever."""
    need = min(count, rate)
    if level + 1e-9 >= need:
        return 0.0
    return (need - level) / rate
