"""Typed MM7 scalar values: every accepted form with its leniency, every refusal, round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mm7.core.errors import ParseError
from mm7.core.leniency import Leniency
from mm7.core.values import (
    Duration,
    decode_rfc2047,
    format_bool,
    format_datetime,
    format_relative_or_absolute,
    lookup_charset,
    parse_bool,
    parse_datetime,
    parse_relative_or_absolute,
)

KST = timezone(timedelta(hours=9))
EST = timezone(timedelta(hours=-5))

# --------------------------------------------------------------------------------------------------
# booleans
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("false", False),
        ("1", True),
        ("0", False),
        (" true\n", True),
        ("\t0 ", False),
    ],
)
def test_bool_standard_forms_have_no_leniency(text: str, expected: bool) -> None:
    seen: list[Leniency] = []
    assert parse_bool(text, seen) is expected
    assert seen == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [("True", True), ("TRUE", True), ("False", False), ("FALSE", False), ("tRuE", True)],
)
def test_bool_other_case_is_boolean_spelling(text: str, expected: bool) -> None:
    seen: list[Leniency] = []
    assert parse_bool(text, seen) is expected
    assert seen == [Leniency.BOOLEAN_SPELLING]


def test_bool_other_case_with_whitespace_is_boolean_spelling() -> None:
    seen: list[Leniency] = []
    assert parse_bool(" TRUE ", seen) is True
    assert seen == [Leniency.BOOLEAN_SPELLING]


@pytest.mark.parametrize("text", ["yes", "", "2", "t", "truee", "on", "-1"])
def test_bool_refusal_names_the_value(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_bool(text)
    assert str(info.value) == f"expected a boolean (true/false/1/0), got {text!r}"
    assert info.value.status_code == 2007


def test_bool_without_leniency_list() -> None:
    assert parse_bool("TRUE") is True


@pytest.mark.parametrize(
    ("spelling", "true", "false"),
    [("lower", "true", "false"), ("title", "True", "False"), ("upper", "TRUE", "FALSE")]
    + [("digit", "1", "0")],
)
def test_format_bool_spellings(spelling: str, true: str, false: str) -> None:
    assert format_bool(True, spelling) == true
    assert format_bool(False, spelling) == false


def test_format_bool_default_is_lower_and_unknown_spelling_refused() -> None:
    assert format_bool(True) == "true"
    with pytest.raises(ValueError, match="unknown boolean spelling 'yes'"):
        format_bool(True, "yes")


@given(st.booleans(), st.sampled_from(["lower", "title", "upper", "digit"]))
def test_bool_round_trip(value: bool, spelling: str) -> None:
    assert parse_bool(format_bool(value, spelling)) is value


# --------------------------------------------------------------------------------------------------
# dateTime
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-07-04T03:11:38Z", datetime(2024, 7, 4, 3, 11, 38, tzinfo=UTC)),
        ("2024-07-04T03:11:38+09:00", datetime(2024, 7, 4, 3, 11, 38, tzinfo=KST)),
        (
            "2002-01-02T09:30:47-05:00",
            datetime(2002, 1, 2, 9, 30, 47, tzinfo=timezone(timedelta(hours=-5))),
        ),
        ("2024-07-04T03:11:38.5Z", datetime(2024, 7, 4, 3, 11, 38, 500000, tzinfo=UTC)),
        ("2024-07-04T03:11:38.120Z", datetime(2024, 7, 4, 3, 11, 38, 120000, tzinfo=UTC)),
        ("2024-07-04T03:11:38.123456Z", datetime(2024, 7, 4, 3, 11, 38, 123456, tzinfo=UTC)),
        # more than six fractional digits: truncated to microseconds
        ("2024-07-04T03:11:38.1234569Z", datetime(2024, 7, 4, 3, 11, 38, 123456, tzinfo=UTC)),
        (
            "2024-07-04T03:11:38.000+08:00",
            datetime(2024, 7, 4, 3, 11, 38, tzinfo=timezone(timedelta(hours=8))),
        ),
        ("2024-07-04T03:11:38-00:00", datetime(2024, 7, 4, 3, 11, 38, tzinfo=UTC)),
        ("  2024-07-04T03:11:38Z\n", datetime(2024, 7, 4, 3, 11, 38, tzinfo=UTC)),
        # xsd 1.0 end-of-day midnight
        ("2024-12-31T24:00:00Z", datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC)),
        (
            "2024-07-04T03:11:38+14:00",
            datetime(2024, 7, 4, 3, 11, 38, tzinfo=timezone(timedelta(hours=14))),
        ),
    ],
)
def test_datetime_xsd_forms(text: str, expected: datetime) -> None:
    seen: list[Leniency] = []
    value = parse_datetime(text, seen)
    assert value == expected
    assert value.utcoffset() == expected.utcoffset()
    assert seen == []


def test_datetime_without_zone_is_utc_with_leniency() -> None:
    seen: list[Leniency] = []
    value = parse_datetime("2024-07-04T03:11:38", seen)
    assert value == datetime(2024, 7, 4, 3, 11, 38, tzinfo=UTC)
    assert value.tzinfo is UTC
    assert seen == [Leniency.DATE_NO_ZONE]


def test_datetime_without_zone_keeps_fraction() -> None:
    seen: list[Leniency] = []
    value = parse_datetime("2024-07-04T03:11:38.25", seen)
    assert value == datetime(2024, 7, 4, 3, 11, 38, 250000, tzinfo=UTC)
    assert seen == [Leniency.DATE_NO_ZONE]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thu, 4 Jul 2024 03:11:38 +0900", datetime(2024, 7, 4, 3, 11, 38, tzinfo=KST)),
        ("4 Jul 2024 03:11:38 +0900", datetime(2024, 7, 4, 3, 11, 38, tzinfo=KST)),
        (
            "Thu, 04 Jul 2024 03:11 -0130",
            datetime(2024, 7, 4, 3, 11, tzinfo=timezone(-timedelta(hours=1, minutes=30))),
        ),
        ("thu, 4 JUL 2024 03:11:38 GMT", datetime(2024, 7, 4, 3, 11, 38, tzinfo=UTC)),
        ("Thu, 4 Jul 2024 03:11:38 EST", datetime(2024, 7, 4, 3, 11, 38, tzinfo=EST)),
        ("Thu, 4 Jul 24 03:11:38 -0000", datetime(2024, 7, 4, 3, 11, 38, tzinfo=UTC)),
        ("Sun, 4 Jul 99 03:11:38 +0000", datetime(1999, 7, 4, 3, 11, 38, tzinfo=UTC)),
    ],
)
def test_datetime_rfc2822(text: str, expected: datetime) -> None:
    seen: list[Leniency] = []
    value = parse_datetime(text, seen)
    assert value == expected
    assert value.utcoffset() == expected.utcoffset()
    assert seen == [Leniency.DATE_RFC2822]


@pytest.mark.parametrize("text", ["Thu, 4 Jul 2024 03:11:38", "Thu, 4 Jul 2024 03:11:38 KST"])
def test_datetime_rfc2822_without_known_zone_is_utc(text: str) -> None:
    seen: list[Leniency] = []
    assert parse_datetime(text, seen) == datetime(2024, 7, 4, 3, 11, 38, tzinfo=UTC)
    assert seen == [Leniency.DATE_RFC2822, Leniency.DATE_NO_ZONE]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2024-07-04",
        "2024-07-04 03:11:38",  # space separator: not xsd
        "20240704T031138Z",  # basic ISO 8601: not xsd
        "2024-07-04T03:11Z",  # seconds are required
        "2024-07-04T03:11:38+0900",  # offset needs a colon in xsd
        "2024-07-04T03:11:38,5Z",
        "2024-07-04T03:11:38.Z",
        "2024-W27-4T03:11:38Z",
        "2024-02-30T03:11:38Z",
        "2024-13-01T03:11:38Z",
        "2024-07-04T25:00:00Z",
        "2024-07-04T24:00:01Z",
        "2024-07-04T03:60:00Z",
        "2024-07-04T03:11:38+15:00",
        "12024-07-04T03:11:38Z",
        "-2024-07-04T03:11:38Z",
        "0000-07-04T03:11:38Z",
        "Thu, 31 Feb 2024 03:11:38 +0900",
        "Thu, 4 Jul 2024 03:11:38 +0975",
        "Thu, 4 Jul 2024",
    ],
)
def test_datetime_refusals_name_value_and_forms(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_datetime(text)
    message = str(info.value)
    assert repr(text) in message
    assert "xsd:dateTime such as 2024-07-04T03:11:38Z" in message
    assert "RFC 2822" in message


def test_datetime_always_aware() -> None:
    for text in ("2024-07-04T03:11:38", "Thu, 4 Jul 2024 03:11:38", "2024-07-04T03:11:38Z"):
        assert parse_datetime(text).tzinfo is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2024, 7, 4, 3, 11, 38, tzinfo=UTC), "2024-07-04T03:11:38Z"),
        (datetime(2024, 7, 4, 3, 11, 38, 120000, tzinfo=UTC), "2024-07-04T03:11:38.120Z"),
        (datetime(2024, 7, 4, 3, 11, 38, 100000, tzinfo=UTC), "2024-07-04T03:11:38.100Z"),
        (datetime(2024, 7, 4, 3, 11, 38, 123456, tzinfo=UTC), "2024-07-04T03:11:38.123456Z"),
        (datetime(2024, 7, 4, 3, 11, 38, 123450, tzinfo=UTC), "2024-07-04T03:11:38.12345Z"),
        (datetime(2024, 7, 4, 3, 11, 38, 1, tzinfo=UTC), "2024-07-04T03:11:38.000001Z"),
        (datetime(2024, 7, 4, 12, 11, 38, tzinfo=KST), "2024-07-04T03:11:38Z"),
        (datetime(2024, 7, 4, 3, 11, 38), "2024-07-04T03:11:38Z"),  # naive is UTC
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z"),
    ],
)
def test_format_datetime_utc_z(value: datetime, expected: str) -> None:
    assert format_datetime(value) == expected
    assert format_datetime(value, "utc-z") == expected


def test_format_datetime_offset_and_local_naive() -> None:
    value = datetime(2024, 7, 4, 12, 11, 38, 500000, tzinfo=KST)
    assert format_datetime(value, "offset") == "2024-07-04T12:11:38.500+09:00"
    assert format_datetime(value, "local-naive") == "2024-07-04T12:11:38.500"
    west = datetime(2024, 7, 4, 3, 11, 38, tzinfo=timezone(-timedelta(hours=3, minutes=30)))
    assert format_datetime(west, "offset") == "2024-07-04T03:11:38-03:30"
    assert format_datetime(datetime(2024, 7, 4, 3, 11, 38), "offset") == "2024-07-04T03:11:38+00:00"
    assert format_datetime(datetime(2024, 7, 4, 3, 11, 38, tzinfo=UTC), "local-naive") == (
        "2024-07-04T03:11:38"
    )


def test_format_datetime_refusals() -> None:
    with pytest.raises(ValueError, match="unknown dateTime style 'iso'"):
        format_datetime(datetime(2024, 1, 1, tzinfo=UTC), "iso")
    odd = timezone(timedelta(hours=1, seconds=30))
    with pytest.raises(ValueError, match="has seconds"):
        format_datetime(datetime(2024, 1, 1, tzinfo=odd), "offset")


_OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_AWARE = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=_OFFSETS
)


@given(_AWARE)
def test_datetime_round_trip_utc_z(value: datetime) -> None:
    seen: list[Leniency] = []
    parsed = parse_datetime(format_datetime(value, "utc-z"), seen)
    assert parsed == value
    assert parsed.microsecond == value.astimezone(UTC).microsecond
    assert parsed.utcoffset() == timedelta(0)
    assert seen == []


@given(_AWARE)
def test_datetime_round_trip_offset(value: datetime) -> None:
    parsed = parse_datetime(format_datetime(value, "offset"))
    assert parsed == value
    assert parsed.utcoffset() == value.utcoffset()
    assert parsed.replace(tzinfo=None) == value.replace(tzinfo=None)


@given(_AWARE)
def test_datetime_round_trip_local_naive_keeps_wall_time(value: datetime) -> None:
    seen: list[Leniency] = []
    parsed = parse_datetime(format_datetime(value, "local-naive"), seen)
    assert parsed.replace(tzinfo=None) == value.replace(tzinfo=None)
    assert seen == [Leniency.DATE_NO_ZONE]


# --------------------------------------------------------------------------------------------------
# Duration
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("P90D", Duration(days=90), "P90D"),
        ("PT1H", Duration(hours=1), "PT1H"),
        ("-P1D", Duration(days=1, negative=True), "-P1D"),
        (
            "P1Y2M3DT4H5M6.5S",
            Duration(1, 2, 3, 4, 5, Decimal("6.5")),
            "P1Y2M3DT4H5M6.5S",
        ),
        ("P0D", Duration(), "P0D"),
        ("PT0S", Duration(), "P0D"),
        ("-P0Y", Duration(), "P0D"),
        ("P1M", Duration(months=1), "P1M"),
        ("PT1M", Duration(minutes=1), "PT1M"),
        ("PT6.50S", Duration(seconds=Decimal("6.5")), "PT6.5S"),
        ("PT.5S", Duration(seconds=Decimal("0.5")), "PT0.5S"),
        ("PT0.000001S", Duration(seconds=Decimal("0.000001")), "PT0.000001S"),
        ("PT100S", Duration(seconds=Decimal(100)), "PT100S"),
        ("P0Y0M90DT0H", Duration(days=90), "P90D"),
        ("P36500D", Duration(days=36500), "P36500D"),
        (" P2D ", Duration(days=2), "P2D"),
    ],
)
def test_duration_parse_and_canonical(text: str, expected: Duration, canonical: str) -> None:
    parsed = Duration.parse(text)
    assert parsed == expected
    assert parsed.to_xsd() == canonical


@pytest.mark.parametrize(
    "text",
    ["P", "PT", "-P", "P1Y2", "1D", "P1DT", "PT1D", "P1H", "P-1D", "P1.5D", "PT1.5H", "p1d"]
    + ["P1D2Y", "P 1D", "+P1D", "", "PT1S2M", "P1YT", "P1W"],
)
def test_duration_refusals(text: str) -> None:
    with pytest.raises(ParseError) as info:
        Duration.parse(text)
    assert str(info.value) == f"expected an xsd:duration such as P90D or PT1H30M, got {text!r}"


def test_duration_constructor_refuses_negative_components() -> None:
    with pytest.raises(ValueError, match="days must not be negative"):
        Duration(days=-1)
    with pytest.raises(ValueError, match="seconds"):
        Duration(seconds=Decimal(-1))
    with pytest.raises(ValueError, match="seconds"):
        Duration(seconds=Decimal("NaN"))


def test_duration_negative_zero_is_zero() -> None:
    assert Duration(negative=True) == Duration()
    assert Duration(negative=True).to_xsd() == "P0D"


def test_duration_approx_timedelta() -> None:
    assert Duration(years=1).approx_timedelta() == timedelta(days=365)
    assert Duration(months=1).approx_timedelta() == timedelta(days=30)
    assert Duration.parse("P1Y2M3DT4H5M6.5S").approx_timedelta() == timedelta(
        days=365 + 60 + 3, hours=4, minutes=5, seconds=6.5
    )
    assert Duration.parse("-PT1.0000005S").approx_timedelta() == -timedelta(seconds=1)
    assert Duration.parse("PT1.0000015S").approx_timedelta() == timedelta(seconds=1, microseconds=2)


def test_duration_after_is_calendar_exact() -> None:
    jan31 = datetime(2024, 1, 31, 10, 0, tzinfo=UTC)
    assert Duration(months=1).after(jan31) == datetime(2024, 2, 29, 10, 0, tzinfo=UTC)
    assert Duration(months=1).after(datetime(2023, 1, 31, tzinfo=UTC)) == datetime(
        2023, 2, 28, tzinfo=UTC
    )
    assert Duration(years=1).after(datetime(2024, 2, 29, tzinfo=UTC)) == datetime(
        2025, 2, 28, tzinfo=UTC
    )
    assert Duration(months=13).after(jan31) == datetime(2025, 2, 28, 10, 0, tzinfo=UTC)
    assert Duration(days=90).after(jan31) == datetime(2024, 4, 30, 10, 0, tzinfo=UTC)
    assert Duration.parse("P1MT1H").after(jan31) == datetime(2024, 2, 29, 11, 0, tzinfo=UTC)
    assert Duration.parse("-P1M").after(datetime(2024, 3, 31, tzinfo=UTC)) == datetime(
        2024, 2, 29, tzinfo=UTC
    )
    assert Duration.parse("-P1MT1H").after(datetime(2024, 3, 31, tzinfo=UTC)) == datetime(
        2024, 2, 28, 23, 0, tzinfo=UTC
    )
    with pytest.raises(OverflowError):
        Duration(years=10000).after(jan31)


_DURATIONS = st.builds(
    Duration,
    years=st.integers(0, 3000),
    months=st.integers(0, 500),
    days=st.integers(0, 10**6),
    hours=st.integers(0, 10**4),
    minutes=st.integers(0, 10**4),
    seconds=st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False),
    negative=st.booleans(),
)


@given(_DURATIONS)
def test_duration_round_trip(value: Duration) -> None:
    text = value.to_xsd()
    assert Duration.parse(text) == value
    assert Duration.parse(text).to_xsd() == text


# --------------------------------------------------------------------------------------------------
# relative or absolute
# --------------------------------------------------------------------------------------------------


def test_relative_or_absolute() -> None:
    assert parse_relative_or_absolute("P90D") == Duration(days=90)
    assert parse_relative_or_absolute(" -PT1H") == Duration(hours=1, negative=True)
    seen: list[Leniency] = []
    assert parse_relative_or_absolute("2024-07-04T03:11:38", seen) == datetime(
        2024, 7, 4, 3, 11, 38, tzinfo=UTC
    )
    assert seen == [Leniency.DATE_NO_ZONE]
    with pytest.raises(ParseError, match="xsd:duration"):
        parse_relative_or_absolute("P90")
    with pytest.raises(ParseError, match="xsd:dateTime"):
        parse_relative_or_absolute("90 days")
    assert format_relative_or_absolute(Duration(days=90)) == "P90D"
    assert (
        format_relative_or_absolute(datetime(2024, 7, 4, 12, 0, tzinfo=KST), "offset")
        == "2024-07-04T12:00:00+09:00"
    )
    assert format_relative_or_absolute(datetime(2024, 7, 4, 12, 0, tzinfo=KST)) == (
        "2024-07-04T03:00:00Z"
    )


# --------------------------------------------------------------------------------------------------
# charsets and RFC 2047
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("utf-8", "utf-8"),
        ("UTF8", "utf-8"),
        ('"utf-8"', "utf-8"),
        (" ISO-8859-1 ", "iso-8859-1"),
        ("latin1", "iso-8859-1"),
        ("euc-kr", "cp949"),
        ("EUC-KR", "cp949"),
        ("ks_c_5601-1987", "cp949"),
        ("ksc5601", "cp949"),
        ("KS_C_5601", "cp949"),
        ("gb2312", "gb18030"),
        ("GBK", "gb18030"),
        ("big5", "big5"),
        ("Shift_JIS", "shift_jis"),
        ("utf-16", "utf-16"),
        ("UTF-16BE", "utf-16-be"),
        ("us-ascii", "ascii"),
        ("windows-1252", "cp1252"),
        ("iso-8859-15", "iso8859-15"),
    ],
)
def test_lookup_charset(label: str, codec: str) -> None:
    assert lookup_charset(label) == codec
    "x".encode(codec)  # a usable Python codec


@pytest.mark.parametrize("label", [None, "", "  ", "x-unknown", "base64", "rot13", "zlib", "idna"])
def test_lookup_charset_unknown(label: str | None) -> None:
    assert lookup_charset(label) is None


def test_lookup_charset_superset_decodes_uhc_hangul() -> None:
    # "똠" is outside KS X 1001, so strict euc-kr cannot decode it; Korean senders still send it.
    data = "똠방각하".encode("cp949")
    with pytest.raises(UnicodeDecodeError):
        data.decode("euc-kr")
    codec = lookup_charset("euc-kr")
    assert codec is not None
    assert data.decode(codec) == "똠방각하"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("=?utf-8?B?7ZWc6rWt7Ja0?=", "한국어"),
        ("=?UTF-8?b?7ZWc6rWt7Ja0?=", "한국어"),
        ("=?ks_c_5601-1987?B?x9GxucDP?=", "한국일"),
        ("=?euc-kr?B?x9GxuQ==?=", "한국"),
        ("=?iso-8859-1?Q?caf=E9_au_lait?=", "café au lait"),
        ("=?ISO-8859-1?q?=C9t=E9?=", "Été"),
        ("News: =?utf-8?Q?caf=C3=A9?= today", "News: café today"),
        # whitespace between adjacent encoded-words is dropped (RFC 2047 section 6.2)
        ("=?utf-8?Q?a?= =?utf-8?Q?b?=", "ab"),
        ("=?utf-8?Q?a?=\r\n =?iso-8859-1?Q?=E9?=", "aé"),
        # a multi-byte character split across two words
        ("=?utf-8?B?7ZU=?= =?utf-8?B?nOq1rQ==?=", "한국"),
        ("=?utf-8*en?Q?hello?=", "hello"),
        ("=?utf-8?B?7ZWc6rWt7Ja0?=", "한국어"),
        ("=?utf-8?B?7ZWc6rWt7Ja0?", "=?utf-8?B?7ZWc6rWt7Ja0?"),
    ],
)
def test_decode_rfc2047(text: str, expected: str) -> None:
    seen: list[Leniency] = []
    assert decode_rfc2047(text, seen) == expected
    assert seen == ([Leniency.SUBJECT_RFC2047] if expected != text else [])


@pytest.mark.parametrize(
    "text",
    [
        "plain subject",
        "price =? unknown",
        "=?x-unknown?B?AAAA?=",
        "=?utf-8?B?!!!!?=",  # bad base64
        "=?utf-8?B?/w==?=",  # valid base64, not UTF-8
        "=?utf-8?X?abc?=",  # unknown encoding letter: not an encoded-word
        "=?base64?B?AAAA?=",
        "",
    ],
)
def test_decode_rfc2047_leaves_undecodable_text(text: str) -> None:
    seen: list[Leniency] = []
    assert decode_rfc2047(text, seen) == text
    assert seen == []


def test_decode_rfc2047_keeps_bad_word_and_decodes_the_rest() -> None:
    seen: list[Leniency] = []
    text = "=?x-unknown?Q?a?= =?utf-8?Q?caf=C3=A9?="
    assert decode_rfc2047(text, seen) == "=?x-unknown?Q?a?= café"
    assert seen == [Leniency.SUBJECT_RFC2047]


def test_decode_rfc2047_plain_text_is_the_same_object() -> None:
    text = "an ordinary subject line"
    assert decode_rfc2047(text) is text
