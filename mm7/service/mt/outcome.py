"""What follows one submit attempt, decided in one place: ``Submitted``, ``Failed``, ``Retry`` or
``Expired`` (pure: no store, no clock, no network; the dispatcher records the step it gets).

    step = next_step(rsp_or_error, item, now, settings.retry, rng)
    match step:
        case Submitted(): await store.complete(...)
        case Failed():    await store.fail(...)
        case Retry():     await store.retry_later(item, step.at, ...)
        case Expired():   await store.expire(...)

The rules:

- a SubmitRsp is ``Submitted``, except a 1100 (partial success) whose Details name this
  recipient, which is ``Failed`` with 1100 (one recipient per request: it is the one refused);
- a permanent ``MM7ClientError`` is ``Failed`` with its MM7 status;
- a transient one (and an internal error, with no status) is retried after
  ``backoff_delay(attempts, initial_backoff, max_backoff)``, at least the peer's Retry-After,
  unless that time is at or past the deadline: the message's expiry, or without one its
  creation plus the link's ``retry.max_age``. Then the recipient is ``Expired``.

Errors are classified once, by the transport (``mm7.transport.classify``); this module reads
only ``MM7ClientError.transient``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from mm7.core.model import Address, SubmitRsp
from mm7.service.backoff import backoff_delay
from mm7.service.config.settings import RetrySettings
from mm7.service.store.records import WorkItem
from mm7.transport.errors import MM7ClientError
from mm7.transport.fanout import named_in_details

__all__ = [
    "Expired",
    "Failed",
    "Retry",
    "Step",
    "Submitted",
    "after_transient",
    "deadline",
    "next_step",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Submitted:
    """The MMSC took the message for this recipient: ``message_id`` is its MM7 MessageID
    (None when the MMSC gave none)."""

    message_id: str | None
    code: int
    text: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    """A permanent refusal: the recipient fails with this status (None: no MM7 status)."""

    code: int | None
    text: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """A transient failure: try again at ``at`` (``delay`` seconds from the attempt's end)."""

    at: datetime
    delay: float
    code: int | None
    text: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Expired:
    """A transient failure whose next attempt would fall at or after ``deadline``.

    ``by_max_age``: the deadline is the link's ``retry.max_age`` (the message has no expiry).
    """

    deadline: datetime
    by_max_age: bool
    code: int | None
    text: str | None


#: what follows one attempt
Step = Submitted | Failed | Retry | Expired


def next_step(
    result: SubmitRsp | MM7ClientError,
    item: WorkItem,
    now: datetime,
    retry: RetrySettings,
    rng: random.Random | None = None,
) -> Step:
    """What follows an attempt that got ``result`` (module docstring)."""
    if isinstance(result, MM7ClientError):
        text = result.text or str(result)
        if result.transient:
            return after_transient(
                item, now, retry, code=result.code, text=text, retry_after=result.retry_after,
                rng=rng,
            )  # fmt: skip
        return Failed(code=result.code, text=text)
    status = result.status
    if status.code == 1100 and named_in_details(status.details, [Address.guess(item.address)]):
        return Failed(code=status.code, text=status.text or "partial success")
    return Submitted(message_id=result.message_id, code=status.code, text=status.text)


def after_transient(
    item: WorkItem,
    now: datetime,
    retry: RetrySettings,
    *,
    code: int | None,
    text: str | None,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> Retry | Expired:
    """A transient failure (or an internal error): ``Retry`` at a backed-off time, or
    ``Expired`` when that time is at or past the item's ``deadline``."""
    delay = backoff_delay(item.attempts, retry.initial_backoff, retry.max_backoff, rng)
    if retry_after is not None:
        delay = max(delay, retry_after)
    at = now + timedelta(seconds=delay)
    end = deadline(item, retry)
    if at >= end:
        return Expired(deadline=end, by_max_age=item.expires_at is None, code=code, text=text)
    return Retry(at=at, delay=delay, code=code, text=text)


def deadline(item: WorkItem, retry: RetrySettings) -> datetime:
    """When retrying stops: the message's expiry, else its creation plus ``retry.max_age``."""
    if item.expires_at is not None:
        return item.expires_at
    return item.created_at + timedelta(seconds=retry.max_age)
