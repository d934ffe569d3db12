"""MM7 status codes and MMStatus values: spec table, classes, unknown codes, vendor values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mm7.core.leniency import Leniency
from mm7.core.status import (
    MMStatus,
    ReadStatus,
    ReportedStatus,
    StatusClass,
    StatusCode,
    is_success,
    known_code,
    parse_mm_status,
    parse_read_status,
    status_class,
    status_text,
)

# The 3GPP status codes, row by row: code, constant, StatusText, class (the first digit).
SPEC_TABLE = [
    (1000, "SUCCESS", "Success", StatusClass.SUCCESS),
    (1100, "PARTIAL_SUCCESS", "Partial success", StatusClass.SUCCESS),
    (2000, "CLIENT_ERROR", "Client error", StatusClass.CLIENT),
    (2001, "OPERATION_RESTRICTED", "Operation restricted", StatusClass.CLIENT),
    (2002, "ADDRESS_ERROR", "Address Error", StatusClass.CLIENT),
    (2003, "ADDRESS_NOT_FOUND", "Address Not Found", StatusClass.CLIENT),
    (2004, "MULTIMEDIA_CONTENT_REFUSED", "Multimedia content refused", StatusClass.CLIENT),
    (2005, "MESSAGE_ID_NOT_FOUND", "Message ID Not found", StatusClass.CLIENT),
    (2006, "LINKED_ID_NOT_FOUND", "LinkedID not found", StatusClass.CLIENT),
    (2007, "MESSAGE_FORMAT_CORRUPT", "Message format corrupt", StatusClass.CLIENT),
    (2008, "APPLICATION_ID_NOT_FOUND", "Application ID not found", StatusClass.CLIENT),
    (
        2009,
        "REPLY_APPLICATION_ID_NOT_FOUND",
        "Reply Application ID not found",
        StatusClass.CLIENT,
    ),
    (3000, "SERVER_ERROR", "Server Error", StatusClass.SERVER),
    (3001, "NOT_POSSIBLE", "Not Possible", StatusClass.SERVER),
    (3002, "MESSAGE_REJECTED", "Message rejected", StatusClass.SERVER),
    (
        3003,
        "MULTIPLE_ADDRESSES_NOT_SUPPORTED",
        "Multiple addresses not supported",
        StatusClass.SERVER,
    ),
    (
        3004,
        "APPLICATION_ADDRESSING_NOT_SUPPORTED",
        "Application Addressing not supported",
        StatusClass.SERVER,
    ),
    (4000, "GENERAL_SERVICE_ERROR", "General service error", StatusClass.SERVICE),
    (4001, "IMPROPER_IDENTIFICATION", "Improper identification", StatusClass.SERVICE),
    (4002, "UNSUPPORTED_VERSION", "Unsupported version", StatusClass.SERVICE),
    (4003, "UNSUPPORTED_OPERATION", "Unsupported operation", StatusClass.SERVICE),
    (4004, "VALIDATION_ERROR", "Validation error", StatusClass.SERVICE),
    (4005, "SERVICE_ERROR", "Service error", StatusClass.SERVICE),
    (4006, "SERVICE_UNAVAILABLE", "Service unavailable", StatusClass.SERVICE),
    (4007, "SERVICE_DENIED", "Service denied", StatusClass.SERVICE),
    (4008, "APPLICATION_DENIED", "Application denied", StatusClass.SERVICE),
]


@pytest.mark.parametrize(("code", "name", "text", "klass"), SPEC_TABLE)
def test_spec_codes(code: int, name: str, text: str, klass: StatusClass) -> None:
    member = StatusCode[name]
    assert member == code
    assert member.value == code
    assert member.text == text
    assert member.status_class is klass
    assert status_text(code) == text
    assert status_class(code) is klass
    assert known_code(code) is member
    assert is_success(code) is (klass is StatusClass.SUCCESS)


def test_every_member_is_in_the_table() -> None:
    assert sorted(member.value for member in StatusCode) == [row[0] for row in SPEC_TABLE]


@pytest.mark.parametrize(
    ("code", "klass"),
    [
        (2101, StatusClass.CLIENT),  # Korean carrier private code
        (2550, StatusClass.CLIENT),  # Sinch account code
        (3500, StatusClass.SERVER),  # vendor timeout
        (4101, StatusClass.SERVICE),  # Korean maintenance
        (1001, StatusClass.SUCCESS),
        (1999, StatusClass.SUCCESS),
        (4999, StatusClass.SERVICE),
        (5000, StatusClass.UNKNOWN),
        (9999, StatusClass.UNKNOWN),
        (999, StatusClass.UNKNOWN),
        (100, StatusClass.UNKNOWN),
        (10000, StatusClass.UNKNOWN),
        (0, StatusClass.UNKNOWN),
        (-2000, StatusClass.UNKNOWN),
    ],
)
def test_unknown_codes_keep_class_by_first_digit(code: int, klass: StatusClass) -> None:
    assert status_class(code) is klass
    assert known_code(code) is None
    assert status_text(code) is None
    assert is_success(code) is (klass is StatusClass.SUCCESS)


def test_unknown_2101_keeps_its_code_and_is_client() -> None:
    code = 2101
    assert known_code(code) is None
    assert status_class(code) is StatusClass.CLIENT
    assert status_class(code) == "client"
    assert not is_success(code)


@given(st.integers())
def test_status_functions_never_raise(code: int) -> None:
    klass = status_class(code)
    member = known_code(code)
    assert (member is not None) == (status_text(code) is not None)
    if member is not None:
        assert member.status_class is klass
    assert is_success(code) == (klass is StatusClass.SUCCESS)


def test_status_code_behaves_as_int() -> None:
    assert {1000: "found"}[StatusCode.SUCCESS] == "found"
    assert StatusCode.PARTIAL_SUCCESS - StatusCode.SUCCESS == 100
    assert str(StatusCode.VALIDATION_ERROR) == "4004"
    assert f"{StatusCode.SERVICE_UNAVAILABLE}" == "4006"


# --------------------------------------------------------------------------------------------------
# MMStatus
# --------------------------------------------------------------------------------------------------

SPEC_MM_STATUS = [
    "Expired",
    "Retrieved",
    "Rejected",
    "Indeterminate",
    "Forwarded",
    "Unrecognised",
    "Deferred",
    "DeliveryConditionNotMet",
]


def test_mm_status_members() -> None:
    assert [member.value for member in MMStatus] == SPEC_MM_STATUS


@pytest.mark.parametrize("text", SPEC_MM_STATUS)
def test_spec_mm_status_exact(text: str) -> None:
    seen: list[Leniency] = []
    reported = parse_mm_status(text, seen)
    assert reported == ReportedStatus(MMStatus(text), text)
    assert reported.value.value == text
    assert seen == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("retrieved", MMStatus.RETRIEVED),
        ("RETRIEVED", MMStatus.RETRIEVED),
        (" Retrieved ", MMStatus.RETRIEVED),
        ("Retrieved\n", MMStatus.RETRIEVED),
        ("expired", MMStatus.EXPIRED),
        ("deliveryconditionnotmet", MMStatus.DELIVERY_CONDITION_NOT_MET),
        ("unrecognised", MMStatus.UNRECOGNISED),
    ],
)
def test_mm_status_case_and_whitespace(text: str, value: MMStatus) -> None:
    seen: list[Leniency] = []
    assert parse_mm_status(text, seen) == ReportedStatus(value, text)
    assert seen == [Leniency.ENUM_CASE]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Delivered", MMStatus.RETRIEVED),
        ("delivered", MMStatus.RETRIEVED),
        ("Unrecognized", MMStatus.UNRECOGNISED),
        ("Unreachable", MMStatus.REJECTED),
        ("NotSupported", MMStatus.REJECTED),
        ("Not Supported", MMStatus.REJECTED),
        ("not_supported", MMStatus.REJECTED),
        ("Delivery Condition Not Met", MMStatus.DELIVERY_CONDITION_NOT_MET),
        ("Sent", MMStatus.INDETERMINATE),
        ("1000", MMStatus.INDETERMINATE),
        ("", MMStatus.INDETERMINATE),
        ("Retrieved.", MMStatus.INDETERMINATE),
    ],
)
def test_mm_status_nonstandard(text: str, value: MMStatus) -> None:
    seen: list[Leniency] = []
    reported = parse_mm_status(text, seen)
    assert reported.value is value
    assert reported.raw == text
    assert seen == [Leniency.MMSTATUS_NONSTANDARD]


@pytest.mark.parametrize(
    ("value", "final"),
    [
        (MMStatus.FORWARDED, False),
        (MMStatus.DEFERRED, False),
        (MMStatus.RETRIEVED, True),
        (MMStatus.REJECTED, True),
        (MMStatus.EXPIRED, True),
        (MMStatus.INDETERMINATE, True),
        (MMStatus.UNRECOGNISED, True),
        (MMStatus.DELIVERY_CONDITION_NOT_MET, True),
    ],
)
def test_is_final(value: MMStatus, final: bool) -> None:
    assert ReportedStatus(value, value.value).is_final is final


def test_reported_status_is_frozen() -> None:
    reported = parse_mm_status("Delivered")
    with pytest.raises(AttributeError):
        reported.raw = "x"  # type: ignore[misc]


@given(st.text(max_size=40))
def test_parse_mm_status_never_raises_and_keeps_raw(text: str) -> None:
    seen: list[Leniency] = []
    reported = parse_mm_status(text, seen)
    assert reported.raw == text
    assert isinstance(reported.value, MMStatus)
    assert len(seen) <= 1


# --------------------------------------------------------------------------------------------------
# read status
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Read", "Deleted", "Indeterminate"])
def test_read_status_exact(text: str) -> None:
    seen: list[Leniency] = []
    assert parse_read_status(text, seen) == (ReadStatus(text), text)
    assert seen == []


def test_read_status_case_and_unknown() -> None:
    seen: list[Leniency] = []
    assert parse_read_status(" read ", seen) == (ReadStatus.READ, " read ")
    assert seen == [Leniency.ENUM_CASE]
    seen = []
    assert parse_read_status("DELETED", seen) == (ReadStatus.DELETED, "DELETED")
    assert seen == [Leniency.ENUM_CASE]
    seen = []
    assert parse_read_status("Opened", seen) == (ReadStatus.INDETERMINATE, "Opened")
    assert seen == [Leniency.MMSTATUS_NONSTANDARD]
    assert parse_read_status("Retrieved") == (ReadStatus.INDETERMINATE, "Retrieved")
