"""API keys' quotas (``[[api.keys]] max_per_second``, ``max_per_day``): 429 before a commit.

Quotas count recipients, as carriers count one message per recipient: a message to three
numbers counts three. They are checked once the request passed every other check (a request
the API refuses anyway gets that error, never a 429 nor a count) and before the message is
committed, in the store (``Store.take_quota``), so they hold for every instance sharing the store
and across restarts: ``max_per_day`` per UTC day of the store's clock, ``max_per_second`` as a
token bucket holding one second's worth (a message with more recipients than that passes when
the bucket is full and leaves it in debt, so the rate holds over time). A request the store
then does not enqueue gives back what it counted: a repeat of an idempotency key, recipients
on the suppression list, a failure of the commit. A repeat of a message already accepted is
answered as such, over quota or not.

A refusal is ``QuotaExceeded``: HTTP 429, ``Retry-After`` (whole seconds, at least 1) and the
error body's ``quota`` (which one), ``limit`` and ``retry_after``. A message with more
recipients than ``max_per_day`` could never pass: 422 ``to`` instead.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import structlog

from mm7.service.config.settings import ApiKey
from mm7.service.errors import ApiError
from mm7.service.store.base import Store
from mm7.service.store.limits import QuotaLimits, QuotaRefused, QuotaTaken

__all__ = ["QuotaExceeded", "give_back", "take"]

log = structlog.get_logger("mm7.service.api.quotas")

_PER = {"max_per_second": "a second", "max_per_day": "a UTC day"}


class QuotaExceeded(ApiError):
    """429: the API key's ``quota`` allows no more now; ``retry_after`` whole seconds."""

    def __init__(self, key: str, refused: QuotaRefused) -> None:
        self.quota = refused.quota
        self.limit = refused.limit
        self.retry_after = max(1, math.ceil(refused.retry_after))
        super().__init__(
            429,
            None,
            f"API key {key!r} is over its {refused.quota} quota ({refused.limit} recipients "
            f"{_PER[refused.quota]}); retry in {self.retry_after} s",
            headers={"Retry-After": str(self.retry_after)},
        )

    def body(self) -> dict[str, Any]:
        """What the error body adds to ``field`` and ``message``."""
        return {"quota": self.quota, "limit": self.limit, "retry_after": self.retry_after}


def limits_of(key: ApiKey) -> QuotaLimits | None:
    """The key's quotas, or None when it has none."""
    if key.max_per_second is None and key.max_per_day is None:
        return None
    return QuotaLimits(per_second=key.max_per_second, per_day=key.max_per_day)


async def take(store: Store, key: ApiKey, count: int) -> QuotaTaken | None:
    """Count ``count`` recipients against ``key``'s quotas (None: it has none); raises
    ``QuotaExceeded``, or a 422 for more recipients than a whole day allows."""
    limits = limits_of(key)
    if limits is None:
        return None
    if limits.per_day is not None and count > limits.per_day:
        raise ApiError(
            422,
            "to",
            f"{count} recipients are more than API key {key.name!r} may send in a UTC day "
            f"(max_per_day {limits.per_day}); send them over several days",
        )
    result = await store.take_quota(key.name, count, limits)
    if isinstance(result, QuotaRefused):
        log.info(
            "mm7.api.quota_refused", api_key=key.name, quota=result.quota, limit=result.limit,
            recipients=count, retry_after_s=round(result.retry_after, 3),
        )  # fmt: skip
        raise QuotaExceeded(key.name, result)
    return result


async def give_back(store: Store, taken: QuotaTaken | None, count: int) -> None:
    """Return ``count`` recipients a request counted but did not enqueue. A failure is logged
    and left: the count stays higher than sent, never lower."""
    if taken is None or count <= 0:
        return
    try:
        await asyncio.shield(store.give_back_quota(taken, count))
    except Exception:
        log.exception("mm7.api.quota_give_back_failed", api_key=taken.api_key, recipients=count)
