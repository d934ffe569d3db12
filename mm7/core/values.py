"""Typed scalar values as MM7 writes them: xsd:boolean, xsd:dateTime, xsd:duration, charsets.

Parsers accept the standard form silently and each known deviation under a named ``Leniency``
appended to the caller's list; anything else is a ``ParseError`` naming the value and the forms
accepted. xsd:boolean, xsd:dateTime and xsd:duration collapse whitespace, so surrounding whitespace
is standard for them and is not reported as a leniency.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import codecs
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache

from mm7.core.errors import ParseError
from mm7.core.leniency import Leniency

__all__ = [
    "Duration",
    "RelativeOrAbsolute",
    "decode_rfc2047",
    "format_bool",
    "format_datetime",
    "format_relative_or_absolute",
    "lookup_charset",
    "parse_bool",
    "parse_datetime",
    "parse_relative_or_absolute",
]


def _note(leniencies: list[Leniency] | None, leniency: Leniency) -> None:
    if leniencies is not None:
        leniencies.append(leniency)


# --------------------------------------------------------------------------------------------------
# xsd:boolean
# --------------------------------------------------------------------------------------------------

_BOOL_STRICT = {"true": True, "false": False, "1": True, "0": False}

_BOOL_SPELLINGS: dict[str, tuple[str, str]] = {
    "lower": ("true", "false"),
    "title": ("True", "False"),
    "upper": ("TRUE", "FALSE"),
    "digit": ("1", "0"),
}


def parse_bool(text: str, leniencies: list[Leniency] | None = None) -> bool:
    """Read an xsd:boolean; other letter cases (True, TRUE, ...) are BOOLEAN_SPELLING."""
    value = _BOOL_STRICT.get(text)
    if value is not None:
        return value
    stripped = text.strip()
    value = _BOOL_STRICT.get(stripped)
    if value is not None:
        return value  # whitespace is collapsed by xsd:boolean itself
    value = _BOOL_STRICT.get(stripped.lower())
    if value is not None:
        _note(leniencies, Leniency.BOOLEAN_SPELLING)
        return value
    raise ParseError(f"expected a boolean (true/false/1/0), got {text!r}")


def format_bool(value: bool, spelling: str = "lower") -> str:
    """Write a boolean in the spelling a dialect asks for: lower, title, upper or digit."""
    try:
        true, false = _BOOL_SPELLINGS[spelling]
    except KeyError:
        raise ValueError(
            f"unknown boolean spelling {spelling!r}; use one of {', '.join(_BOOL_SPELLINGS)}"
        ) from None
    return true if value else false


# --------------------------------------------------------------------------------------------------
# xsd:dateTime
# --------------------------------------------------------------------------------------------------

_XSD_DATETIME = re.compile(
    r"(-?\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", re.ASCII
)

_RFC2822_DATE = re.compile(
    r"(?:(?:mon|tue|wed|thu|fri|sat|sun)\s*,\s*)?"
    r"(\d{1,2})\s+(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\s+(\d{2,4})\s+"
    r"(\d{1,2}):(\d\d)(?::(\d\d))?"
    r"(?:\s+([+-]\d{4}|[a-z]{1,5}))?",
    re.ASCII | re.IGNORECASE,
)

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}

# RFC 2822 section 4.3 obsolete zone names; any other name means "-0000" (UTC, local zone unknown).
_RFC2822_ZONES = {
    "ut": 0,
    "utc": 0,
    "gmt": 0,
    "z": 0,
    "est": -5,
    "edt": -4,
    "cst": -6,
    "cdt": -5,
    "mst": -7,
    "mdt": -6,
    "pst": -8,
    "pdt": -7,
}

_MAX_XSD_OFFSET = timedelta(hours=14)

_DATETIME_FORMS = (
    "an xsd:dateTime such as 2024-07-04T03:11:38Z (with an optional +hh:mm offset and fractional "
    "seconds), a dateTime without zone, or an RFC 2822 date such as Thu, 4 Jul 2024 03:11:38 +0900"
)


def _datetime_error(text: str, reason: str = "") -> ParseError:
    detail = f" ({reason})" if reason else ""
    return ParseError(f"expected {_DATETIME_FORMS}, got {text!r}{detail}")


def parse_datetime(text: str, leniencies: list[Leniency] | None = None) -> datetime:
    """Read a dateTime as MM7 peers write it; the result is always timezone-aware.

    No zone is taken as UTC (DATE_NO_ZONE); RFC 2822 dates are DATE_RFC2822.
    """
    stripped = text.strip()
    match = _XSD_DATETIME.fullmatch(stripped)
    if match is not None:
        return _from_xsd(text, stripped, match, leniencies)
    match = _RFC2822_DATE.fullmatch(stripped)
    if match is not None:
        return _from_rfc2822(text, match, leniencies)
    raise _datetime_error(text)


def _from_xsd(
    text: str, stripped: str, match: re.Match[str], leniencies: list[Leniency] | None
) -> datetime:
    year, _, _, hour, minute, second, fraction, zone = match.groups()
    if len(year) != 4:
        raise _datetime_error(text, "year outside 0001-9999")
    end_of_day = hour == "24"
    if end_of_day:
        # xsd 1.0 allows 24:00:00 for the midnight that ends a day.
        if minute != "00" or second != "00" or (fraction and fraction.strip("0")):
            raise _datetime_error(text, "hour 24 is only allowed as 24:00:00")
        stripped = f"{stripped[:11]}00{stripped[13:]}"
    try:
        # 3.11's fromisoformat reads this (regex-checked) form, "Z" and any number of digits.
        value = datetime.fromisoformat(stripped)
    except ValueError as exc:
        raise _datetime_error(text, str(exc)) from None
    if end_of_day:
        try:
            value += timedelta(days=1)
        except OverflowError:
            raise _datetime_error(text, "year outside 0001-9999") from None
    if zone is None:
        _note(leniencies, Leniency.DATE_NO_ZONE)
        return value.replace(tzinfo=UTC)
    offset = value.utcoffset()
    if offset is not None and abs(offset) > _MAX_XSD_OFFSET:
        raise _datetime_error(text, "zone offset beyond 14:00")
    return value


def _from_rfc2822(text: str, match: re.Match[str], leniencies: list[Leniency] | None) -> datetime:
    day, month, year_text, hour, minute, second, zone = match.groups()
    year = int(year_text)
    if len(year_text) == 2:
        year += 2000 if year < 50 else 1900  # RFC 2822 section 4.3 obs-year
    elif len(year_text) == 3:
        year += 1900
    _note(leniencies, Leniency.DATE_RFC2822)
    if zone is None:
        tz = UTC
        _note(leniencies, Leniency.DATE_NO_ZONE)
    elif zone[0] in "+-":
        minutes = int(zone[1:3]) * 60 + int(zone[3:5])
        if int(zone[3:5]) > 59 or minutes > 14 * 60:
            raise _datetime_error(text, f"bad zone offset {zone}")
        tz = timezone(timedelta(minutes=-minutes if zone[0] == "-" else minutes))
    else:
        hours = _RFC2822_ZONES.get(zone.lower())
        if hours is None:
            _note(leniencies, Leniency.DATE_NO_ZONE)
            hours = 0
        tz = timezone(timedelta(hours=hours))
    try:
        value = datetime(
            year,
            _MONTHS[month.lower()],
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            tzinfo=tz,
        )
    except ValueError as exc:
        raise _datetime_error(text, str(exc)) from None
    return value


def _fraction(microsecond: int) -> str:
    if not microsecond:
        return ""
    digits = f"{microsecond:06d}".rstrip("0")
    return "." + digits.ljust(3, "0")


def _format_offset(offset: timedelta) -> str:
    if offset.microseconds or offset.seconds % 60:
        raise ValueError(f"zone offset {offset} has seconds; xsd:dateTime cannot write it")
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def format_datetime(value: datetime, style: str = "utc-z") -> str:
    """Write a dateTime: ``utc-z`` (standard), ``offset`` (own +hh:mm) or ``local-naive``.

    A naive value is taken as UTC. ``local-naive`` writes the value's own wall-clock time with no
    zone; convert it first (``value.astimezone(tz)``) to choose which local time that is.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    if style == "utc-z":
        value = value.astimezone(UTC)
        zone = "Z"
    elif style == "offset":
        offset = value.utcoffset()
        zone = _format_offset(offset if offset is not None else timedelta(0))
    elif style == "local-naive":
        zone = ""
    else:
        raise ValueError(f"unknown dateTime style {style!r}; use utc-z, offset or local-naive")
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
        f"{_fraction(value.microsecond)}{zone}"
    )


# --------------------------------------------------------------------------------------------------
# xsd:duration
# --------------------------------------------------------------------------------------------------

_XSD_DURATION = re.compile(
    r"(-)?P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d*)?|\.\d+)S)?)?",
    re.ASCII,
)

_MICROSECONDS = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Duration:
    """An xsd:duration (P1Y2M3DT4H5M6.5S), kept exactly as its components so it round-trips.

    Equality is by component: P1D and PT24H are different values, as they are in xsd.
    """

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: Decimal = Decimal(0)
    negative: bool = False

    def __post_init__(self) -> None:
        for name in ("years", "months", "days", "hours", "minutes"):
            if getattr(self, name) < 0:
                raise ValueError(f"Duration.{name} must not be negative; use negative=True")
        if not isinstance(self.seconds, Decimal):
            object.__setattr__(self, "seconds", Decimal(self.seconds))
        if not self.seconds.is_finite() or self.seconds < 0:
            raise ValueError("Duration.seconds must be a finite, non-negative Decimal")
        if self.negative and self._is_zero():
            object.__setattr__(self, "negative", False)  # -P0D is P0D

    def _is_zero(self) -> bool:
        return not (self.years or self.months or self.days or self.hours or self.minutes) and (
            self.seconds == 0
        )

    def to_xsd(self) -> str:
        """The canonical lexical form: P90D, PT1H, -P1D; zero is P0D."""
        if self._is_zero():
            return "P0D"
        parts = ["-P" if self.negative else "P"]
        for amount, unit in ((self.years, "Y"), (self.months, "M"), (self.days, "D")):
            if amount:
                parts.append(f"{amount}{unit}")
        if self.hours or self.minutes or self.seconds:
            parts.append("T")
            for amount, unit in ((self.hours, "H"), (self.minutes, "M")):
                if amount:
                    parts.append(f"{amount}{unit}")
            if self.seconds:
                parts.append(f"{format(self.seconds.normalize(), 'f')}S")
        return "".join(parts)

    def approx_timedelta(self) -> timedelta:
        """A timedelta with a year as 365 days and a month as 30 days (an approximation).

        Fractions of a microsecond are rounded half-even. Use :meth:`after` for exact dates.
        """
        microseconds = (self.seconds * _MICROSECONDS).to_integral_value(ROUND_HALF_EVEN)
        delta = timedelta(
            days=self.years * 365 + self.months * 30 + self.days,
            hours=self.hours,
            minutes=self.minutes,
            microseconds=int(microseconds),
        )
        return -delta if self.negative else delta

    def after(self, base: datetime) -> datetime:
        """``base`` plus this duration, calendar-exact (xsd:duration's own addition rule).

        Years and months move the calendar month, clamping the day to that month's length
        (Jan 31 + P1M = Feb 28/29); days and times are then added as a timedelta (wall-clock
        arithmetic for a ZoneInfo ``base``, as Python does).
        """
        sign = -1 if self.negative else 1
        total_months = base.year * 12 + (base.month - 1) + sign * (self.years * 12 + self.months)
        year, month0 = divmod(total_months, 12)
        if not 1 <= year <= 9999:
            raise OverflowError(f"{self.to_xsd()} after {base.isoformat()} is out of range")
        day = min(base.day, calendar.monthrange(year, month0 + 1)[1])
        moved = base.replace(year=year, month=month0 + 1, day=day)
        rest = Duration(
            days=self.days, hours=self.hours, minutes=self.minutes, seconds=self.seconds
        ).approx_timedelta()
        return moved + rest if sign > 0 else moved - rest

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Read an xsd:duration strictly; P, PT, P1Y2 and the like are ParseErrors."""
        stripped = text.strip()
        match = _XSD_DURATION.fullmatch(stripped)
        if match is None or stripped.endswith(("P", "T")):
            raise ParseError(f"expected an xsd:duration such as P90D or PT1H30M, got {text!r}")
        sign, years, months, days, hours, minutes, seconds = match.groups()
        try:
            second_value = Decimal(seconds) if seconds else Decimal(0)
        except InvalidOperation:  # pragma: no cover - the regex admits only decimals
            raise ParseError(f"expected an xsd:duration, got {text!r}") from None
        return cls(
            years=int(years or 0),
            months=int(months or 0),
            days=int(days or 0),
            hours=int(hours or 0),
            minutes=int(minutes or 0),
            seconds=second_value,
            negative=sign is not None,
        )


RelativeOrAbsolute = datetime | Duration


def parse_relative_or_absolute(
    text: str, leniencies: list[Leniency] | None = None
) -> RelativeOrAbsolute:
    """Read a relativeOrAbsoluteDateType (xsd:dateTime | xsd:duration), e.g. ExpiryDate."""
    stripped = text.lstrip()
    if stripped.startswith(("P", "-P")):
        return Duration.parse(text)
    return parse_datetime(text, leniencies)


def format_relative_or_absolute(value: RelativeOrAbsolute, style: str = "utc-z") -> str:
    """Write a Duration canonically or a datetime in the given dateTime style."""
    if isinstance(value, Duration):
        return value.to_xsd()
    return format_datetime(value, style)


# --------------------------------------------------------------------------------------------------
# Charsets and RFC 2047 encoded-words
# --------------------------------------------------------------------------------------------------

# Labels whose usual meaning differs from Python's alias, or that Python does not know. Korean and
# Chinese labels map to the superset codec real senders use (WHATWG does the same): every valid
# euc-kr / gb2312 byte string decodes identically, and the common extensions decode too.
_CHARSET_ALIASES = {
    "utf8": "utf-8",
    "utf-8": "utf-8",
    "us-ascii": "ascii",
    "ascii": "ascii",
    "iso-8859-1": "iso-8859-1",
    "iso8859-1": "iso-8859-1",
    "iso_8859-1": "iso-8859-1",
    "latin1": "iso-8859-1",
    "latin-1": "iso-8859-1",
    "euc-kr": "cp949",
    "euckr": "cp949",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601-1989": "cp949",
    "ks_c_5601": "cp949",
    "ksc5601": "cp949",
    "ksc_5601": "cp949",
    "ks_x_1001": "cp949",
    "korean": "cp949",
    "cp949": "cp949",
    "windows-949": "cp949",
    "x-windows-949": "cp949",
    "uhc": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "cp936": "gb18030",
    "x-gbk": "gb18030",
    "gb18030": "gb18030",
    "big5": "big5",
    "shift_jis": "shift_jis",
    "shift-jis": "shift_jis",
    "sjis": "shift_jis",
    "x-sjis": "shift_jis",
    "utf-16": "utf-16",
    "utf-16le": "utf-16-le",
    "utf-16be": "utf-16-be",
}

# Python codecs that are not charsets (bytes-to-bytes codecs are filtered by _is_text_encoding).
_NOT_CHARSETS = frozenset({"undefined", "unicode_escape", "raw_unicode_escape", "idna", "punycode"})


@lru_cache(maxsize=256)
def lookup_charset(name: str | None) -> str | None:
    """A Python codec name for a MIME/XML charset label, or None if there is none."""
    if not name:
        return None
    label = name.strip().strip("\"'").strip().lower()
    if not label:
        return None
    alias = _CHARSET_ALIASES.get(label)
    if alias is not None:
        return alias
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return info.name


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


def _decode_word_bytes(encoding: str, payload: str) -> bytes | None:
    try:
        raw = payload.encode("ascii")
    except UnicodeEncodeError:
        return None
    if encoding in "bB":
        try:
            return base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None
    return _Q_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), raw.replace(b"_", b" "))


def decode_rfc2047(text: str, leniencies: list[Leniency] | None = None) -> str:
    """Decode RFC 2047 encoded-words (=?charset?B|Q?...?=) mixed with plain text; never raises.

    Whitespace between adjacent encoded-words is dropped (RFC 2047 section 6.2), and adjacent
    words in one charset are decoded together, because senders split multi-byte characters across
    words. A word with an unknown charset or a bad encoding is left as it was.
    """
    if "=?" not in text:
        return text
    out: list[str] = []
    decoded_any = False
    position = 0
    # A run of adjacent encoded-words sharing one charset: (codec, bytes, start of its text).
    # The run's text is sliced once when needed, never grown word by word: growing it made a
    # Subject of N words cost O(N^2).
    run: tuple[str, bytearray, int] | None = None
    run_end = 0

    def flush() -> None:
        nonlocal run, decoded_any
        if run is None:
            return
        codec, data, start = run
        try:
            out.append(data.decode(codec))
            decoded_any = True
        except (UnicodeDecodeError, LookupError):
            out.append(text[start:run_end])
        run = None

    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        adjacent = run is not None and not between.strip()
        charset = match.group(1).split("*", 1)[0]  # RFC 2231 language suffix: utf-8*en
        codec = lookup_charset(charset)
        data = _decode_word_bytes(match.group(2), match.group(3)) if codec else None
        if codec is None or data is None:
            flush()
            out.append(between + match.group(0))
        elif adjacent and run is not None and run[0] == codec:
            run[1].extend(data)
        else:
            if not adjacent:
                flush()
                out.append(between)
            else:
                flush()  # whitespace between encoded-words in different charsets is dropped
            run = (codec, bytearray(data), match.start())
        run_end = position = match.end()
    flush()
    out.append(text[position:])
    if decoded_any:
        _note(leniencies, Leniency.SUBJECT_RFC2047)
    return "".join(out)
