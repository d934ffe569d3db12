"""The MT outcome decision (``mm7.service.mt.outcome``) as table rows: what follows one submit
attempt, with no store, no clock and no MMSC. The dispatcher tests check that each step is
recorded; these check the choice itself."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from mm7.core.model import Status, SubmitRsp
from mm7.service.config.settings import RetrySettings
from mm7.service.mt.outcome import (
    Expired,
    Failed,
    Retry,
    Step,
    Submitted,
    after_transient,
    deadline,
    next_step,
)
from mm7.service.store.records import WorkItem
from mm7.transport.classify import Outcome, Verdict
from mm7.transport.errors import MM7ClientError

CREATED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = CREATED + timedelta(minutes=5)
RETRY = RetrySettings(initial_backoff=10.0, max_backoff=10.0, max_age=3600.0)


def item(
    *, address: str = "+15550001", attempts: int = 1, expires_at: datetime | None = None
) -> WorkItem:
    return WorkItem(
        1, "m1", "link", address, "m1.0", attempts, "w", "tok", NOW + timedelta(minutes=1),
        {}, (), None, expires_at, None, CREATED,
    )  # fmt: skip


def rsp(code: int, details: str | None = None, message_id: str | None = "MMSC-1") -> SubmitRsp:
    return SubmitRsp(
        transaction_id="m1.0", status=Status(code, f"text {code}", details), message_id=message_id
    )


def error(
    verdict: Verdict, code: int | None, retry_after: float | None = None, message: str = "boom"
) -> MM7ClientError:
    return MM7ClientError(
        message,
        link="link",
        operation="SubmitReq",
        transaction_id="m1.0",
        outcome=Outcome.MM7_STATUS if code is not None else Outcome.TIMEOUT,
        verdict=verdict,
        status=Status(code, f"text {code}") if code is not None else None,
        retry_after=retry_after,
    )


# (name, result, item, expected step); backoff is fixed at 10 s by RETRY and a top-rng
TOP = random.Random()
TOP.uniform = lambda a, b: b  # type: ignore[method-assign]

CASES: list[tuple[str, SubmitRsp | MM7ClientError, WorkItem, Step]] = [
    ("1000 is submitted", rsp(1000), item(),
     Submitted(message_id="MMSC-1", code=1000, text="text 1000")),
    ("1000 without a MessageID is submitted", rsp(1000, message_id=None), item(),
     Submitted(message_id=None, code=1000, text="text 1000")),
    ("1100 naming another recipient is submitted", rsp(1100, "+15559999 refused"), item(),
     Submitted(message_id="MMSC-1", code=1100, text="text 1100")),
    ("1100 naming this recipient fails with 1100", rsp(1100, "15550001: unknown"), item(),
     Failed(code=1100, text="text 1100")),
    ("a permanent error fails with its status", error(Verdict.PERMANENT, 2002), item(),
     Failed(code=2002, text="text 2002")),
    ("a permanent error without status fails with its message",
     error(Verdict.PERMANENT, None, message="refused"), item(), Failed(code=None, text="refused")),
    ("a transient error retries after the backoff", error(Verdict.TRANSIENT, 3001), item(),
     Retry(at=NOW + timedelta(seconds=10), delay=10.0, code=3001, text="text 3001")),
    ("Retry-After longer than the backoff wins", error(Verdict.TRANSIENT, 4006, 120.0), item(),
     Retry(at=NOW + timedelta(seconds=120), delay=120.0, code=4006, text="text 4006")),
    ("a retry at the message's expiry expires",
     error(Verdict.TRANSIENT, 3001), item(expires_at=NOW + timedelta(seconds=10)),
     Expired(deadline=NOW + timedelta(seconds=10), by_max_age=False, code=3001, text="text 3001")),
    ("a retry before the message's expiry retries",
     error(Verdict.TRANSIENT, 3001), item(expires_at=NOW + timedelta(seconds=11)),
     Retry(at=NOW + timedelta(seconds=10), delay=10.0, code=3001, text="text 3001")),
    ("without expiry, max_age after creation is the deadline",
     error(Verdict.TRANSIENT, 3001, 3600.0), item(),
     Expired(deadline=CREATED + timedelta(hours=1), by_max_age=True, code=3001,
             text="text 3001")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "result", "leased", "expected"), CASES, ids=[c[0] for c in CASES])
def test_next_step(
    name: str, result: SubmitRsp | MM7ClientError, leased: WorkItem, expected: Step
) -> None:
    assert next_step(result, leased, NOW, RETRY, TOP) == expected


@pytest.mark.parametrize("attempts", [1, 2, 3, 5, 12])
def test_after_transient_backoff_is_jittered_and_capped(attempts: int) -> None:
    retry = RetrySettings(initial_backoff=1.0, max_backoff=60.0, max_age=86400.0)
    cap = min(60.0, 2.0 ** (attempts - 1))
    rng = random.Random(attempts)
    for _ in range(50):
        step = after_transient(item(attempts=attempts), NOW, retry, code=None, text=None, rng=rng)
        assert isinstance(step, Retry)
        assert 0.0 <= step.delay <= cap
        assert step.at == NOW + timedelta(seconds=step.delay)


def test_deadline_is_the_expiry_else_creation_plus_max_age() -> None:
    expiry = NOW + timedelta(days=2)
    assert deadline(item(expires_at=expiry), RETRY) == expiry
    assert deadline(item(), RETRY) == CREATED + timedelta(seconds=RETRY.max_age)
