"""Mbuni's ``sendmms`` interface: code written for Mbuni's mmsbox keeps working against mm7.

``GET|POST /cgi-bin/sendmms`` (also ``/sendmms``) takes Mbuni's CGI parameters (query string,
``application/x-www-form-urlencoded`` or ``multipart/form-data``), turns them into the sending
API's request (``parse_request``) and answers as mmsbox does:

* ``200 Accepted: <id>``: queued; ``<id>`` is the message id (``GET /v1/messages/{id}``), which
  is also what the report callbacks carry (``X-Mbuni-TransactionID``, ``%I``), as Mbuni repeats
  its TransactionID there;
* ``401 Authentication failed``: ``username``/``password`` are not an ``[[api.keys]]`` entry's
  name and key;
* ``400 Missing recipient!``, ``400 Missing content``, ``400 failed to fetch content from url
  [<url>]!``: Mbuni's texts for those cases (mmsbox answers them with status 200; mm7 answers
  400 so a client that only looks at the status is not told a refused message was sent);
* any other refusal: the sending API's status (400, 413, 415, 422, 503) and ``Error: <field>:
  <message>``; an API key's quota (``max_per_second``, ``max_per_day``) ``429 Error: API key
  '<name>' is over its <quota> quota (...)`` with ``Retry-After``.

Nothing is written unless the answer is ``Accepted``. Parameters (Mbuni name: what it becomes):
``to`` (several separated by spaces or commas, or repeated), ``from``, ``subject``, ``text`` with
``charset`` (the text's encoding as sent, default UTF-8; the part is stored as UTF-8), ``smil``,
``content-url``, ``content`` (a file field of a multipart form, or a field with
``content_type``), ``mmsc`` (``link``), ``dlr-url``, ``rr-url``, ``priority``, ``mclass``,
``servicecode``, ``vasid``, ``allow-adaptations``, ``distribution``, ``validityperiod``
(minutes, becomes the expiry), ``base-url`` (accepted, unused: mm7 fetches no relative SMIL
references). ``mms-direction=MO``, ``charged-party`` and ``extra-content-header`` are refused by
name (mm7 has nothing that does them). As in Mbuni, exactly one content source is used, in the
order text, smil, content-url, content.

``dlr-url`` and ``rr-url`` are stored with the message (``fields["sendmms"]``) and called by the
relay with GET (``mm7.service.relay.kannel``): Kannel %-escapes substituted, Mbuni's
``X-Mbuni-*`` headers added.
"""

from __future__ import annotations

import codecs
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web
from multidict import MultiMapping

from mm7.service.api.validate import MediaInput, Request, parse_request
from mm7.service.config.settings import ApiKey
from mm7.service.errors import ApiError

__all__ = ["MBUNI_ERRORS", "SendmmsParams", "parse_sendmms"]

#: Mbuni's answer texts for the cases it names
MBUNI_ERRORS = {
    "auth": "Authentication failed",
    "to": "Missing recipient!",
    "content": "Missing content",
}
_CLASSES = {c.lower(): c for c in ("Personal", "Informational", "Advertisement", "Auto")}
_REFUSED = {
    "charged-party": "mm7 does not set ChargedParty per message",
    "extra-content-header": "mm7 does not add headers to content parts",
}
_KNOWN = frozenset(
    {
        "username", "password", "to", "from", "subject", "text", "charset", "smil",
        "content-url", "content", "content_type", "mmsc", "link", "dlr-url", "rr-url",
        "priority", "mclass", "servicecode", "vasid", "allow-adaptations", "distribution",
        "validityperiod", "base-url", "mms-direction", *_REFUSED,
    }
)  # fmt: skip


@dataclass(slots=True)
class SendmmsParams:
    """A checked sendmms request: the sending API's request plus what only sendmms carries."""

    request: Request
    dlr_url: str | None
    rr_url: str | None
    #: MessageClass, VASID, allowAdaptations, DistributionIndicator (None: not given)
    message_class: str | None
    vas_id: str | None
    allow_adaptations: bool | None
    distribution: bool | None

    def fields(self) -> dict[str, Any]:
        """``fields["sendmms"]`` of the stored message."""
        return {
            "dlr_url": self.dlr_url,
            "rr_url": self.rr_url,
            "message_class": self.message_class,
            "vas_id": self.vas_id,
            "allow_adaptations": self.allow_adaptations,
            "distribution": self.distribution,
        }


def _one(params: MultiMapping[Any], name: str) -> str | None:
    value = params.get(name)
    if isinstance(value, web.FileField):
        raise ApiError(400, name, "a file is only accepted for content and smil")
    return value if isinstance(value, str) else None


def report_url(value: str | None, name: str) -> str | None:
    """A dlr-url / rr-url: http(s) with a host (as ``callback_url``), no escape in the host
    (a substituted value must not choose where the report goes)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(422, name, "expected an http:// or https:// URL with a host")
    if "%" in parts.netloc:
        raise ApiError(422, name, "%-escapes are only substituted in the path and query")
    if len(value) > 2000:
        raise ApiError(422, name, "too long (at most 2000 characters)")
    return value


def _flag(value: str | None, name: str, yes: tuple[str, ...], no: tuple[str, ...]) -> bool | None:
    if value is None or not value.strip():
        return None
    text = value.strip().lower()
    if text in yes:
        return True
    if text in no:
        return False
    raise ApiError(422, name, f"expected {yes[0]} or {no[0]}")


def _text(params: MultiMapping[Any], raw: str) -> str | None:
    """``text`` decoded from ``charset``: its bytes came percent-encoded in that charset, so it
    is read again from ``raw`` (the query string or url-encoded form, still encoded)."""
    raw_text = params.get("text")
    if raw_text is None:
        return None
    if not isinstance(raw_text, str):
        raise ApiError(400, "text", "expected a text field, not a file")
    charset = _one(params, "charset")
    if charset is None or not charset.strip():
        return raw_text
    try:
        codec = codecs.lookup(charset.strip())
    except LookupError:
        raise ApiError(422, "charset", f"unknown character set {charset.strip()!r}") from None
    if codec.name in ("utf-8", "ascii"):
        return raw_text
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, encoding=codec.name, errors="strict")
    except UnicodeError as exc:
        raise ApiError(422, "text", f"not valid {codec.name}: {exc}") from None
    # a multipart form's text field has no percent-encoding to undo: it is taken as it came
    return next((value for name, value in pairs if name == "text"), raw_text)


def _content(
    params: MultiMapping[Any], raw: str
) -> tuple[str | None, str | None, list[MediaInput]]:
    """(text, smil, media): the one content source Mbuni would use, in its order."""
    text = _text(params, raw)
    if text is not None and text.strip():
        return text, None, []
    smil_value = params.get("smil")
    if isinstance(smil_value, web.FileField):
        try:
            smil_value = smil_value.file.read().decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(422, "smil", "the SMIL file is not UTF-8") from None
    if isinstance(smil_value, str) and smil_value.strip():
        return None, smil_value, []
    url = _one(params, "content-url")
    if url is not None and url.strip():
        return None, None, [MediaInput("content-url", url=url.strip())]
    content = params.get("content")
    declared = _one(params, "content_type")
    if isinstance(content, web.FileField):
        data = content.file.read()
        kind = declared or content.content_type
        if not data:
            raise ApiError(400, "content", MBUNI_ERRORS["content"])
        entry = MediaInput("content", data=data, content_type=kind, filename=content.filename)
        return None, None, [entry]
    if isinstance(content, str) and content:
        kind = declared or "application/octet-stream"
        return None, None, [MediaInput("content", data=content.encode("utf-8"), content_type=kind)]
    raise ApiError(400, "content", MBUNI_ERRORS["content"])


def parse_sendmms(params: MultiMapping[Any], *, now: datetime, raw: str = "") -> SendmmsParams:
    """Check Mbuni's parameters (module docstring); an ApiError names the first bad one.
    ``raw``: the query string and url-encoded form as received (for ``charset``)."""
    unknown = sorted(n for n in set(params) if n not in _KNOWN)
    if unknown:
        raise ApiError(400, unknown[0], "unknown parameter (Mbuni's sendmms has no such name)")
    for name, why in _REFUSED.items():
        if _one(params, name):
            raise ApiError(422, name, f"not supported: {why}")
    direction = (_one(params, "mms-direction") or "mt").strip().lower()
    if direction != "mt":
        raise ApiError(422, "mms-direction", "only MT: mm7 does not inject MOs through sendmms")
    recipients: list[str] = []
    for value in params.getall("to", []):
        if isinstance(value, str):
            recipients.extend(v for v in value.replace(",", " ").split() if v)
    if not recipients:
        raise ApiError(400, "to", MBUNI_ERRORS["to"])
    text, smil, media = _content(params, raw)
    body: dict[str, Any] = {"to": recipients}
    if text is not None:
        body["text"] = text
    if smil is not None:
        body["smil"] = smil
    for name, target in (("from", "from"), ("subject", "subject"), ("servicecode", "service_code")):
        value = _one(params, name)
        if value is not None and value.strip():
            body[target] = value.strip() if name != "subject" else value
    link = _one(params, "mmsc") or _one(params, "link")
    if link:
        body["link"] = link.strip()
    priority = _one(params, "priority")
    if priority is not None and priority.strip():
        if priority.strip().lower() not in ("low", "normal", "high"):
            raise ApiError(422, "priority", "expected Low, Normal or High")
        body["priority"] = priority.strip()
    validity = _one(params, "validityperiod")
    if validity is not None and validity.strip():
        minutes = validity.strip()
        if not minutes.isdigit() or int(minutes) < 1:
            raise ApiError(422, "validityperiod", "expected a whole number of minutes, at least 1")
        body["expiry"] = f"PT{int(minutes)}M"
    dlr_url = report_url(_one(params, "dlr-url"), "dlr-url")
    rr_url = report_url(_one(params, "rr-url"), "rr-url")
    if dlr_url is not None:
        body["delivery_report"] = True
    if rr_url is not None:
        body["read_reply"] = True
    try:
        request = parse_request(body, now=now, media=media)
    except ApiError as exc:
        raise renamed(exc) from None
    mclass = _one(params, "mclass")
    message_class = None
    if mclass is not None and mclass.strip():
        message_class = _CLASSES.get(mclass.strip().lower())
        if message_class is None:
            raise ApiError(422, "mclass", "expected Personal, Informational, Advertisement or Auto")
    vas_id = _one(params, "vasid")
    if vas_id is not None and (len(vas_id) > 255 or not vas_id.strip()):
        raise ApiError(422, "vasid", "expected 1 to 255 characters")
    allow = _flag(_one(params, "allow-adaptations"), "allow-adaptations", ("1", "true"),
                  ("0", "false"))  # fmt: skip
    distribution = _flag(_one(params, "distribution"), "distribution", ("true", "1"),
                         ("false", "0"))  # fmt: skip
    return SendmmsParams(
        request=request,
        dlr_url=dlr_url,
        rr_url=rr_url,
        message_class=message_class,
        vas_id=vas_id.strip() if vas_id else None,
        allow_adaptations=allow,
        distribution=distribution,
    )


_NAMES = {"service_code": "servicecode", "link": "mmsc", "expiry": "validityperiod"}


def renamed(exc: ApiError) -> ApiError:
    """An error of ``parse_request`` named with the sendmms parameter."""
    field = exc.field
    if field is not None:
        head, dot, rest = field.partition(".")
        field = _NAMES.get(head, head) + dot + rest
    return ApiError(exc.status, field, exc.message, headers=exc.headers)


Submit = Callable[[SendmmsParams, ApiKey], Awaitable[str]]


async def handle(
    request: web.Request,
    params: MultiMapping[Any],
    check_key: Callable[[str], ApiKey | None],
    submit: Submit,
    raw: str = "",
) -> web.Response:
    """Authenticate, check and submit; Mbuni's answer (module docstring)."""
    username = (_one(params, "username") or "").strip()
    password = (_one(params, "password") or "").strip()
    key = check_key(password) if password else None
    if key is None or key.name != username:
        raise ApiError(401, None, MBUNI_ERRORS["auth"])
    parsed = parse_sendmms(params, now=datetime.now(UTC), raw=raw)
    message_id = await submit(parsed, key)
    return web.Response(status=200, text=f"Accepted: {message_id}")
