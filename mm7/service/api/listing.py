"""``GET /v1/messages``: an API key's messages, newest first, filtered, in cursor pages.

Query parameters (each at most once; another name is refused, 400 naming it):

* ``status``: one message status (``queued``, ``sending``, ``submitted``, ``delivered``,
  ``partially_delivered``, ``expired``, ``failed``; how they roll up from the recipients is in
  ``mm7.service.store.records``);
* ``to``: messages with this recipient, in any spelling intake takes (``+49 151 ...``,
  ``tel:+49151...``, a national number read in the region intake reads it in,
  ``numbers.region_for``: the key's ``default_region``, else that of the ``link`` filter,
  else that of the link the number routes to): normalised as intake normalises recipients
  (``mm7.service.api.numbers``, a possible length enough), so it matches the stored E.164
  form (a national number sent with a ``link`` of another region is found with that
  ``link`` filter, or in E.164);
* ``since``: messages created at or after this time: an ISO 8601 date-time with its offset
  (``2026-01-02T03:04:05Z``) or a date (``2026-01-02``, midnight UTC);
* ``link``: messages sent on this link (a configured one);
* ``limit``: 1..500 [50];
* ``cursor``: ``next_cursor`` of the previous page, given with the same filters.

Answers ``{"messages": [summary, ...], "next_cursor": str | null}``; ``next_cursor`` is null
on the last page. A summary (``summary_view``) is the message without its recipients, parts
and events, with ``recipient_counts`` (how many stand where) instead; ``GET
/v1/messages/{id}`` has the rest. The order is stable (creation time, then id, newest first)
and the cursor is a position in it, so messages created while paging do not shift the pages
(they show up on a listing started anew). The cursor is opaque: its form may change.

Bad values are 422 naming the parameter (an unknown status or link, an address that is not
one, a time without an offset, a limit out of range, a cursor this API did not make). Each key
sees only the messages it sent, as with ``GET /v1/messages/{id}``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable, Collection
from datetime import UTC, date, datetime, time
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from mm7.service.api.numbers import NumberRules, normalise_recipient, region_for
from mm7.service.api.validate import check_address
from mm7.service.config.settings import ApiKey, GatewayConfig
from mm7.service.errors import ApiError
from mm7.service.store.base import Store
from mm7.service.store.records import (
    MessageCursor,
    MessageFilter,
    MessageStatus,
    MessageSummary,
)

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "MessageListing", "decode_cursor", "encode_cursor"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
PARAMETERS = ("status", "to", "since", "link", "limit", "cursor")
_CURSOR = re.compile(r"(?P<ms>[0-9]{1,15}):(?P<id>[0-9a-zA-Z_-]{1,64})")


def encode_cursor(cursor: MessageCursor) -> str:
    """The opaque ``next_cursor`` of a position."""
    ms = round(cursor.created_at.timestamp() * 1000)
    return base64.urlsafe_b64encode(f"{ms}:{cursor.id}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> MessageCursor:
    """The position a ``cursor`` names; 422 ``cursor`` for one this API did not make."""
    bad = ApiError(422, "cursor", "not a cursor of this API (pass next_cursor as it came)")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise bad from None
    found = _CURSOR.fullmatch(raw)
    if found is None:
        raise bad
    when = datetime.fromtimestamp(int(found["ms"]) / 1000, UTC)
    return MessageCursor(when, found["id"])


def _since(text: str) -> datetime:
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        when = datetime.fromisoformat(value)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ApiError(
            422,
            "since",
            f"expected an ISO 8601 date-time with its offset (2026-01-02T03:04:05Z) or a date "
            f"(2026-01-02), got {text!r}",
        )
    return when


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    value = text.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 4) or not (
        1 <= int(value) <= MAX_LIMIT
    ):
        raise ApiError(422, "limit", f"expected an integer from 1 to {MAX_LIMIT}, got {text!r}")
    return int(value)


#: the region a national ``to`` is read in, given the ``link`` filter (None: none) and ``to``
RegionOf = Callable[[str | None, str], str | None]


def _to(address: str, region: str | None) -> str:
    """``to`` (read by ``check_address``) as intake stores it: a number in E.164 (national ones
    read in ``region``), a short code or an e-mail address as given. Only a possible length is
    asked for: a filter finds what is stored, it does not judge it."""
    return normalise_recipient(address, "to", NumberRules(region, "possible"))


def parse_filter(
    query: MultiMapping[str],
    api_key: str,
    links: Collection[str],
    region_of: RegionOf | None = None,
) -> tuple[MessageFilter, int, MessageCursor | None]:
    """The filter, page size and position a query asks for (module docstring for the rules);
    ``region_of``: the region national numbers in ``to`` are read in (None: E.164 only)."""
    for name in query:
        if name not in PARAMETERS:
            raise ApiError(400, name, f"unknown query parameter (known: {', '.join(PARAMETERS)})")
    for name in PARAMETERS:
        if len(query.getall(name, ())) > 1:
            raise ApiError(400, name, "given more than once")
    status = None
    if (text := query.get("status")) is not None:
        try:
            status = MessageStatus(text)
        except ValueError:
            known = ", ".join(s.value for s in MessageStatus)
            raise ApiError(422, "status", f"expected one of {known}, got {text!r}") from None
    link = query.get("link")
    if link is not None and link not in links:
        raise ApiError(422, "link", f"unknown link {link!r} (links: {', '.join(links)})")
    to = None
    if (text := query.get("to")) is not None:
        address = check_address(text, "to")
        to = _to(address, region_of(link, address) if region_of is not None else None)
    since = _since(query["since"]) if "since" in query else None
    cursor = decode_cursor(query["cursor"]) if "cursor" in query else None
    where = MessageFilter(api_key=api_key, status=status, to=to, since=since, link=link)
    return where, _limit(query.get("limit")), cursor


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def summary_view(summary: MessageSummary) -> dict[str, Any]:
    """One listed message (schema ``MessageSummary`` in openapi.json)."""
    fields = summary.fields
    counts = summary.counts
    return {
        "id": summary.id,
        "status": summary.status.value,
        "link": summary.link,
        "created_at": _iso(summary.created_at),
        "updated_at": _iso(summary.updated_at),
        "from": fields.get("from"),
        "subject": fields.get("subject"),
        "to": list(fields.get("to") or ()),
        "recipient_count": counts.total,
        "recipient_counts": {
            "queued": counts.queued,
            "submitted": counts.submitted,
            "delivered": counts.delivered,
            "undelivered": counts.undelivered,
            "failed": counts.failed,
            "expired": counts.expired,
            "suppressed": counts.suppressed,
        },
    }


class MessageListing:
    """The ``GET /v1/messages`` handler over ``store``; ``key_of`` names the request's API key
    (set by the API's authentication); ``config``: the links, and the regions of ``to``."""

    def __init__(
        self, store: Store, config: GatewayConfig, key_of: Callable[[web.Request], ApiKey]
    ) -> None:
        self.store = store
        self.config = config
        self.links = config.link_names
        self.key_of = key_of

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register ``GET /v1/messages``."""
        router.add_get("/v1/messages", self.list_messages)

    async def list_messages(self, request: web.Request) -> web.Response:
        """One page of the key's messages (module docstring)."""
        key = self.key_of(request)
        region_of = functools.partial(region_for, self.config, key)
        where, limit, after = parse_filter(request.query, key.name, self.links, region_of)
        page = await self.store.list_messages(where, limit=limit, after=after)
        return web.json_response(
            {
                "messages": [summary_view(m) for m in page.messages],
                "next_cursor": encode_cursor(page.next) if page.next is not None else None,
            }
        )
