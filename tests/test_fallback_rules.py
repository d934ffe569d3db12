"""The SMS fallback's pure decisions (``mm7.service.fallback.rules``): what triggers it, what
the SMS says, what a receipt means, when retrying stops."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from mm7.core.status import MMStatus, parse_mm_status
from mm7.service.fallback.rules import next_attempt, receipt_status, report_trigger, sms_text
from mm7.service.sms.link import ReceiptState
from mm7.service.store.records import FallbackStatus

URL = "https://gw.example/m/AbCdEf0123456789"


@pytest.mark.parametrize(
    ("raw", "trigger"),
    [
        ("Rejected", "report:Rejected"),
        ("Unrecognised", "report:Unrecognised"),
        ("Unrecognized", "report:Unrecognised"),  # the US spelling real MMSCs send
        ("NotSupported", "report:Rejected"),  # vendors: the handset cannot take MMS
        ("DeliveryConditionNotMet", "report:DeliveryConditionNotMet"),
        ("Expired", None),
        ("Retrieved", None),
        ("Indeterminate", None),
        ("Forwarded", None),
        ("Deferred", None),
    ],
)
def test_which_reports_trigger_it(raw: str, trigger: str | None) -> None:
    assert report_trigger(parse_mm_status(raw).value) == trigger


def test_every_trigger_is_a_final_non_delivery() -> None:
    for status in MMStatus:
        if report_trigger(status) is not None:
            assert status not in (MMStatus.RETRIEVED, MMStatus.EXPIRED, MMStatus.INDETERMINATE)


def test_the_text_and_the_link_fit_the_limit() -> None:
    text = sms_text("Your  photos\nfrom the trip are ready, have a look " * 5, None, URL, 160)
    assert len(text) <= 160 and text.endswith("... " + URL)
    assert text.startswith("Your photos from the trip")  # whitespace folded


def test_a_short_text_is_kept_whole_and_the_subject_stands_in() -> None:
    assert sms_text("Hi", "Subject", URL, 160) == f"Hi {URL}"
    assert sms_text(None, "Holiday", URL, 160) == f"Holiday {URL}"
    assert sms_text(None, None, URL, 160) == URL


def test_the_link_is_never_cut() -> None:
    assert sms_text("A long text that cannot fit", None, URL, len(URL) + 3) == URL
    assert sms_text("Hello", None, URL, 10) == URL


def test_the_text_stays_gsm() -> None:
    # three dots, not the ellipsis: that one is outside GSM 03.38 (UCS-2, 70 characters a part)
    assert "…" not in sms_text("x" * 500, None, URL, 160)


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (ReceiptState.DELIVERED, FallbackStatus.DELIVERED),
        (ReceiptState.UNDELIVERABLE, FallbackStatus.FAILED),
        (ReceiptState.EXPIRED, FallbackStatus.FAILED),
        (ReceiptState.REJECTED, FallbackStatus.FAILED),
        (ReceiptState.DELETED, FallbackStatus.FAILED),
        (ReceiptState.UNKNOWN, FallbackStatus.FAILED),
        (ReceiptState.ACCEPTED, None),
    ],
)
def test_receipts(state: ReceiptState, status: FallbackStatus | None) -> None:
    assert receipt_status(state) is status


def test_retries_back_off_and_stop_at_the_max_age() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    rng = random.Random(1)
    at = next_attempt(1, created, created, initial=5, maximum=300, max_age=3600, rng=rng)
    assert at is not None and created <= at <= created + timedelta(seconds=5)
    late = created + timedelta(seconds=3599)
    assert next_attempt(9, created, late, initial=5, maximum=300, max_age=3600, rng=rng) is None
