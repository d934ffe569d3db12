"""Checking a sending-API request field by field, before anything is fetched or written.

``parse_request(body, now=...)`` turns the decoded JSON object (or the same names read from a form)
into a ``Request``: typed values, every problem an ``ApiError`` naming the field (``to[1]``,
``media[0].content_base64``, ``slides[2].visual``) and saying why. Unknown top-level names are
refused by name, so a typo ("delivery_reprot") is never silently ignored. The media are not
fetched or decoded here beyond base64 (``api.py`` does that next, then builds the presentation).
"""

from __future__ import annotations

import binascii
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from mm7.core.errors import MM7Error
from mm7.core.values import Duration, format_datetime, parse_relative_or_absolute
from mm7.service.api import fastcodec
from mm7.service.errors import ApiError

__all__ = [
    "FIELDS",
    "MAX_RECIPIENTS",
    "ApiError",
    "MediaInput",
    "Request",
    "SlideInput",
    "Timing",
    "parse_request",
    "parse_timing",
    "request_digest",
]

#: recipients per message: a campaign is one call (one stored image, one row per recipient,
#: committed in one transaction of about a second at this size)
MAX_RECIPIENTS = 100_000
MAX_MEDIA = 40
_MAX_SHORT = 255
_MAX_TEXT = 1_000_000
_NUMBER = re.compile(r"\+?[0-9]{1,20}")
_EMAIL = re.compile(r"[^@\s<>\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253})")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PRIORITIES = {"low": "Low", "normal": "Normal", "high": "High"}
#: the values of ``fallback`` (``mm7.service.fallback``)
FALLBACKS = ("sms", "none")

#: every top-level name a request may carry
FIELDS = frozenset(
    {
        "to",
        "from",
        "subject",
        "text",
        "media",
        "slides",
        "smil",
        "link",
        "delivery_report",
        "read_reply",
        "priority",
        "expiry",
        "earliest_delivery",
        "service_code",
        "linked_id",
        "callback_url",
        "idempotency_key",
        "reply_to",
        "fallback",
    }
)


@dataclass(frozen=True, slots=True)
class MediaInput:
    """One entry of ``media``: a URL to fetch, or bytes given inline (base64 or a file upload)."""

    field: str
    url: str | None = None
    data: bytes | None = None
    content_type: str | None = None
    filename: str | None = None
    #: the SHA-256 (hex) of ``data``, taken once here: the request's digest and the part's
    #: Content-ID and store key all use it (each would otherwise hash the bytes again)
    sha256: str | None = dataclasses.field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        if self.data is not None:
            object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())


@dataclass(frozen=True, slots=True)
class SlideInput:
    """One explicit slide: references are media indexes (0-based) or "text"."""

    field: str
    duration_ms: int
    visual: int | str | None
    text: int | str | None
    audio: int | str | None
    refs: tuple[int | str, ...]


@dataclass(frozen=True, slots=True)
class Timing:
    """expiry / earliest_delivery: the absolute time, and the xsd form MM7 will carry."""

    at: datetime
    xsd: str


@dataclass(slots=True)
class Request:
    """A checked request (media not fetched yet)."""

    to: list[str]
    sender: str | None = None
    subject: str | None = None
    text: str | None = None
    media: list[MediaInput] = field(default_factory=list)
    slides: list[SlideInput] | None = None
    smil: str | None = None
    link: str | None = None
    delivery_report: bool | None = None
    read_reply: bool | None = None
    priority: str | None = None
    expiry: Timing | None = None
    earliest_delivery: Timing | None = None
    service_code: str | None = None
    linked_id: str | None = None
    callback_url: str | None = None
    idempotency_key: str | None = None
    #: the id of an MO this message answers (``to``/``from``/``link``/``linked_id`` come from it)
    reply_to: str | None = None
    #: ``to`` was given as an array (an error about its one address names ``to[0]``, not ``to``)
    to_array: bool = True
    #: "sms" or "none": overrides the link's SMS fallback (None: the link's)
    fallback: str | None = None


def request_digest(parsed: Request) -> str:
    """The SHA-256 (hex) of a request as parsed, the idempotency key left out: two requests
    with the same digest are "identical" for an idempotency key (``POST /v1/messages``).

    It is taken from the parsed values, not the bytes, so JSON key order, whitespace, JSON vs a
    form, ``"to": "x"`` vs ``["x"]`` and number punctuation do not count; everything that would
    change the message does (an uploaded medium by its SHA-256, a URL as given, an expiry as
    given: ``P1D`` is the same duration at each retry). Call it before ``reply_to`` fills the
    request from the MO.
    """
    shape = {
        "to": parsed.to,
        "from": parsed.sender,
        "subject": parsed.subject,
        "text": parsed.text,
        "media": [
            {
                "url": m.url,
                "sha256": m.sha256,
                "content_type": m.content_type,
                "filename": m.filename,
            }
            for m in parsed.media
        ],
        "slides": None
        if parsed.slides is None
        else [[s.duration_ms, s.visual, s.text, s.audio, list(s.refs)] for s in parsed.slides],
        "smil": parsed.smil,
        "link": parsed.link,
        "delivery_report": parsed.delivery_report,
        "read_reply": parsed.read_reply,
        "priority": parsed.priority,
        "expiry": parsed.expiry.xsd if parsed.expiry else None,
        "earliest_delivery": parsed.earliest_delivery.xsd if parsed.earliest_delivery else None,
        "service_code": parsed.service_code,
        "linked_id": parsed.linked_id,
        "callback_url": parsed.callback_url,
        "reply_to": parsed.reply_to,
    }
    if parsed.fallback is not None:  # only when given: older digests stay as they were
        shape["fallback"] = parsed.fallback
    canonical = json.dumps(shape, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _bad(field_name: str | None, message: str, status: int = 400) -> ApiError:
    return ApiError(status, field_name, message)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _opt_str(body: Mapping[str, Any], name: str, limit: int = _MAX_SHORT) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(name, f"expected a string, got {_type_name(value)}")
    if len(value) > limit:
        raise _bad(name, f"too long: {len(value)} characters, at most {limit}", 422)
    if _CONTROL.search(value):
        raise _bad(name, "control characters are not allowed", 422)
    return value


def _opt_bool(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise _bad(name, f"expected true or false, got {_type_name(value)}")


def check_address(value: Any, where: str) -> str:
    """An address as MM7 can carry it: a number (digits, optional '+'), a short code or an
    e-mail address; spaces, dashes, dots and parentheses in numbers are dropped."""
    if not isinstance(value, str):
        raise _bad(where, f"expected an address string, got {_type_name(value)}")
    text = value.strip()
    if not text:
        raise _bad(where, "empty address", 422)
    if "@" in text:
        if not _EMAIL.fullmatch(text):
            raise _bad(where, f"{text!r} is not an e-mail address", 422)
        return text
    compact = re.sub(r"[\s\-.()]", "", text)
    if compact.lower().startswith("tel:"):
        compact = compact[4:]
    if not _NUMBER.fullmatch(compact):
        raise _bad(
            where,
            f"{text!r} is not a phone number (digits with an optional leading '+'), "
            "short code or e-mail address",
            422,
        )
    return compact


def parse_timing(value: Any, where: str, now: datetime) -> Timing | None:
    """An ISO 8601 / xsd dateTime or an xsd duration (P1D, PT30M), which must lie ahead."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(where, f"expected a date-time or duration string, got {_type_name(value)}")
    try:
        parsed = parse_relative_or_absolute(value)
    except MM7Error as exc:
        raise _bad(where, str(exc), 422) from None
    except ValueError as exc:
        raise _bad(where, f"not a date-time or duration: {exc}", 422) from None
    if isinstance(parsed, Duration):
        if parsed.negative:
            raise _bad(where, "a negative duration lies in the past", 422)
        try:
            at = parsed.after(now)
        except OverflowError as exc:
            raise _bad(where, str(exc), 422) from None
        xsd = parsed.to_xsd()
    else:
        at = parsed
        xsd = format_datetime(parsed, "utc-z")
    if at <= now:
        raise _bad(where, f"{value!r} is not in the future", 422)
    return Timing(at, xsd)


def _callback(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad("callback_url", f"expected a URL string, got {_type_name(value)}")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad("callback_url", "expected an http:// or https:// URL with a host", 422)
    if len(value) > 2000:
        raise _bad("callback_url", "too long (at most 2000 characters)", 422)
    return value


def _recipients(value: Any) -> list[str]:
    if value is None:
        raise _bad("to", "missing (at least one recipient is required)")
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list):
        raise _bad("to", f"expected an address or an array of addresses, got {_type_name(value)}")
    if not values:
        raise _bad("to", "empty (at least one recipient is required)", 422)
    if len(values) > MAX_RECIPIENTS:
        raise _bad("to", f"{len(values)} recipients, at most {MAX_RECIPIENTS} per message", 422)
    seen: dict[str, int] = {}
    out: list[str] = []
    for index, item in enumerate(values):
        where = "to" if isinstance(value, str) else f"to[{index}]"
        address = check_address(item, where)
        key = address.lower()
        if key in seen:
            raise _bad(where, f"repeats to[{seen[key]}] ({address})", 422)
        seen[key] = index
        out.append(address)
    return out


def _media(value: Any) -> list[MediaInput]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad("media", f"expected an array, got {_type_name(value)}")
    if len(value) > MAX_MEDIA:
        raise _bad("media", f"{len(value)} items, at most {MAX_MEDIA}", 422)
    out: list[MediaInput] = []
    for index, entry in enumerate(value):
        where = f"media[{index}]"
        if not isinstance(entry, dict):
            raise _bad(where, f"expected an object, got {_type_name(entry)}")
        unknown = sorted(set(entry) - {"url", "content_base64", "content_type", "filename"})
        if unknown:
            raise _bad(f"{where}.{unknown[0]}", "unknown field")
        filename = _opt_str(entry, "filename")
        content_type = _opt_str(entry, "content_type")
        url = entry.get("url")
        encoded = entry.get("content_base64")
        if (url is None) == (encoded is None):
            raise _bad(where, "give exactly one of url and content_base64")
        if url is not None:
            if not isinstance(url, str) or not url:
                raise _bad(f"{where}.url", f"expected a URL string, got {_type_name(url)}")
            if len(url) > 2000:
                raise _bad(f"{where}.url", "too long (at most 2000 characters)", 422)
            out.append(MediaInput(where, url=url, content_type=content_type, filename=filename))
            continue
        if not isinstance(encoded, str):
            raise _bad(
                f"{where}.content_base64", f"expected a base64 string, got {_type_name(encoded)}"
            )
        if content_type is None:
            raise _bad(f"{where}.content_type", "missing (required with content_base64)")
        try:
            data = fastcodec.b64decode(encoded)
        except (binascii.Error, ValueError):
            raise _bad(f"{where}.content_base64", "not valid base64", 422) from None
        if not data:
            raise _bad(f"{where}.content_base64", "empty (a part needs content)", 422)
        out.append(MediaInput(where, data=data, content_type=content_type, filename=filename))
    return out


def _ref(value: Any, where: str, media_count: int, has_text: bool) -> int | str | None:
    if value is None:
        return None
    if value == "text":
        if not has_text:
            raise _bad(where, "refers to the text, but the message has no text", 422)
        return "text"
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(where, f'expected a media index or "text", got {_type_name(value)}')
    if not 0 <= value < media_count:
        raise _bad(where, f"media[{value}] does not exist ({media_count} media)", 422)
    return value


def _slides(value: Any, media_count: int, has_text: bool) -> list[SlideInput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _bad("slides", f"expected an array, got {_type_name(value)}")
    if not value:
        raise _bad("slides", "empty (leave slides out for the default layout)", 422)
    out: list[SlideInput] = []
    for index, entry in enumerate(value):
        where = f"slides[{index}]"
        if not isinstance(entry, dict):
            raise _bad(where, f"expected an object, got {_type_name(entry)}")
        unknown = sorted(set(entry) - {"duration_ms", "visual", "text", "audio", "refs"})
        if unknown:
            raise _bad(f"{where}.{unknown[0]}", "unknown field")
        duration = entry.get("duration_ms", 5000)
        if isinstance(duration, bool) or not isinstance(duration, int):
            raise _bad(f"{where}.duration_ms", f"expected an integer, got {_type_name(duration)}")
        if not 0 < duration <= 86_400_000:
            raise _bad(f"{where}.duration_ms", "out of range (1 ms to 24 h)", 422)
        refs_value = entry.get("refs", [])
        if not isinstance(refs_value, list):
            raise _bad(f"{where}.refs", f"expected an array, got {_type_name(refs_value)}")
        refs: list[int | str] = []
        for n, ref in enumerate(refs_value):
            got = _ref(ref, f"{where}.refs[{n}]", media_count, has_text)
            if got is None:
                raise _bad(f"{where}.refs[{n}]", 'expected a media index or "text", got null')
            refs.append(got)
        out.append(
            SlideInput(
                where,
                duration,
                _ref(entry.get("visual"), f"{where}.visual", media_count, has_text),
                _ref(entry.get("text"), f"{where}.text", media_count, has_text),
                _ref(entry.get("audio"), f"{where}.audio", media_count, has_text),
                tuple(refs),
            )
        )
    return out


def parse_request(body: Any, *, now: datetime, media: list[MediaInput] | None = None) -> Request:
    """Check a decoded request body (module docstring); ApiError names the first bad field.

    ``to`` may be left out only with ``reply_to`` (``Request.to`` is then empty: the API fills
    in the MO's sender once it has loaded the MO).

    ``media`` replaces the body's ``media`` (a form's URLs and file uploads, already collected).
    """
    if not isinstance(body, dict):
        raise _bad(None, f"the body must be a JSON object, got {_type_name(body)}")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise _bad(unknown[0], f"unknown field (known: {', '.join(sorted(FIELDS))})")
    reply_to = _opt_str(body, "reply_to")
    if reply_to is not None and not reply_to.strip():
        raise _bad("reply_to", "empty (the id of an MO, as in the relayed event's id)", 422)
    # answering an MO, the recipient defaults to the MO's sender (filled in by the API)
    to_value = body.get("to")
    to = [] if to_value is None and reply_to is not None else _recipients(to_value)
    sender = body.get("from")
    text = _opt_str(body, "text", _MAX_TEXT)
    if text is not None and not text.strip():
        text = None
    if media is None:
        media = _media(body.get("media"))
    elif len(media) > MAX_MEDIA:
        raise _bad("media", f"{len(media)} items, at most {MAX_MEDIA}", 422)
    if text is None and not media:
        raise _bad("text", "a message needs text or media (both are missing)", 422)
    slides = _slides(body.get("slides"), len(media), text is not None)
    smil = _opt_str(body, "smil", 200_000)
    if slides is not None and smil is not None:
        raise _bad("smil", "give slides or smil, not both", 422)
    priority_value = body.get("priority")
    priority = None
    if priority_value is not None:
        if not isinstance(priority_value, str) or priority_value.lower() not in _PRIORITIES:
            raise _bad("priority", "expected one of low, normal, high", 422)
        priority = _PRIORITIES[priority_value.lower()]
    key = _opt_str(body, "idempotency_key")
    if key is not None and not key.strip():
        raise _bad("idempotency_key", "empty", 422)
    link = _opt_str(body, "link")
    expiry = parse_timing(body.get("expiry"), "expiry", now)
    earliest = parse_timing(body.get("earliest_delivery"), "earliest_delivery", now)
    if expiry is not None and earliest is not None and earliest.at >= expiry.at:
        raise _bad("earliest_delivery", "is not before the expiry", 422)
    return Request(
        to=to,
        sender=check_address(sender, "from") if sender is not None else None,
        subject=_opt_str(body, "subject"),
        text=text,
        media=media,
        slides=slides,
        smil=smil,
        link=link,
        delivery_report=_opt_bool(body, "delivery_report"),
        read_reply=_opt_bool(body, "read_reply"),
        priority=priority,
        expiry=expiry,
        earliest_delivery=earliest,
        service_code=_opt_str(body, "service_code"),
        linked_id=_opt_str(body, "linked_id"),
        callback_url=_callback(body.get("callback_url")),
        idempotency_key=key,
        reply_to=reply_to,
        to_array=not isinstance(to_value, str),
        fallback=_fallback(body.get("fallback")),
    )


def _fallback(value: Any) -> str | None:
    """``fallback``: "sms" or "none" (whether the link has an SMS link is checked once the
    message is routed)."""
    if value is None:
        return None
    if value not in FALLBACKS:
        raise _bad("fallback", f'expected "sms" or "none", got {value!r}', 422)
    return str(value)
