"""The relay's side of the sending API: dead letters, suppressions, replies to MOs, opt-outs.

Relay endpoints (``Authorization: Bearer <key>``, JSON; registered by ``create_api_app``)
-----------------------------------------------------------------------------------------
Who may do what depends on the key's role (``[[api.keys]] role``, ``ApiKey.admin``):

* an ``admin`` key: every event (MOs included), every operation below, the suppression list;
* a sending key (the default): the events of its own messages only (status, delivery_report
  and read_reply events carry the API key of the message they report). Listing, counts and
  ``retry-dead`` are limited to them (``retry-dead`` requeues its own dead events); getting,
  retrying or dropping another key's event is 403 ``id`` ("reports a message of another API
  key"), an MO event (or a report of no message sent through the API: it belongs to no key) is
  403 ``id``, ``kind=mo`` is 403 ``kind`` (refused rather than answered empty, so that an empty
  list never hides that MOs exist), and ``GET /v1/suppressions`` is 403 (the opt-outs of every
  application's recipients belong to no key). A 403 changes nothing. Event ids are sequential,
  so their existence is no secret (403, not 404); a message id of another key is a 404
  (``GET /v1/messages/{id}``): it must not leak.

* ``GET /v1/relay/events?status=&hook=&kind=&after=&limit=``: events by id (oldest first).
  ``status`` one of pending, delivered, dead, dropped, skipped or all [all]; ``hook`` a hook name;
  ``kind`` mo, status, delivery_report or read_reply; ``after`` the last id seen (paging) [0];
  ``limit`` 1..1000 [100]. Answers ``{"events": [...], "next_after": <last id> | null}``
  (``next_after`` is set when the page is full: pass it as ``after`` for the next page).
* ``GET /v1/relay/events/{id}``: one event.
* ``POST /v1/relay/events/{id}/retry``: a dead or dropped event pending again (attempts and its
  max_age start over; the relay worker picks it up at its next poll): 200 with the event.
* ``POST /v1/relay/events/{id}/drop``: a dead or pending event is no longer relayed (kept as
  ``dropped``; a lease held on it is cancelled): 200 with the event.
* ``POST /v1/relay/retry-dead``: every dead event pending again: ``{"requeued": n}``.
* ``GET /v1/relay/counts``: ``{"pending": n, "delivered": n, "dead": n, "dropped": n,
  "skipped": n}``.
* ``GET /v1/suppressions?limit=``: the opt-out list, newest first (limit 1..10000 [1000]):
  ``{"suppressions": [{"address", "word", "link", "mo_id", "created_at"}]}``.

Errors as in the rest of the API (``{"error": {"field", "message"}}``): 400 a bad or unknown
query parameter or id (named: ``status``, ``limit``, ``id`` ...), 401 no or a wrong key, 403 not
for this key (above), 404 no such event, 409 the event is not in a state the action applies to
(retry: dead or dropped; drop: dead or pending), with its current status in the message.

An event as JSON (``relay_event_view``): ``id, kind, status, hook, callback_url, link,
source_id, attempts, next_attempt_at, first_attempt_at, last_http_status, last_error,
created_at, updated_at, idempotency_key, event`` (the body the hook receives, without media
URLs, which are made at delivery). ``callback_url`` is shown without its query string and user
info: applications put tokens there.

Replies to MOs (``reply_to`` on ``POST /v1/messages``)
-----------------------------------------------------
``apply_reply`` loads the MO named by ``reply_to`` (the ``id`` of the relayed ``mo`` event) and
fills the request from it before routing: ``link`` is the MO's link (a different ``link`` given
is refused, 422 ``link``: the MMSC that sent the MO is the one that knows it); ``linked_id`` is
the MO's MM7 MessageID when the MMSC sent one, else its TransactionID (LinkedID must reference
the MO as the MMSC knows it; a DeliverReq without a MessageID leaves its TransactionID as the only
identifier we have; a different ``linked_id`` given is refused, 422 ``linked_id``); ``to``
defaults to the MO's sender and ``from`` to the MO's first recipient (the short code it was sent
to). An unknown id is 422 ``reply_to``. Any API key may answer any MO whose id it has: MOs arrive
for the gateway's routes, not for a key, and the id (64 random bits) reaches only the route's
hook and admin keys (a sending key cannot list MO events), so holding it is the right to answer.
The reply is the replying key's message (only that key sees it and its events).

Opt-outs
--------
The store refuses a message whose every recipient is on the suppression list
(``AllSuppressedError``, nothing written): ``suppressed_error`` turns that into 422 ``to`` (or
``to[0]`` for a single recipient given in an array) saying that the recipient opted out and that
sending a start word lifts it. Recipients of a message only partly suppressed are stored as
``suppressed`` and named in the 202 answer's ``suppressed``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web
from multidict import MultiMapping

from mm7.service.api.validate import Request, check_address
from mm7.service.config.settings import ApiKey
from mm7.service.errors import ApiError
from mm7.service.store.base import Store
from mm7.service.store.outbox import RelayKind, RelayRecord, RelayStatus, Suppression
from mm7.service.store.records import MoRecord, normalize_address

__all__ = [
    "RelayApi",
    "apply_reply",
    "relay_event_view",
    "safe_url",
    "suppressed_error",
    "suppression_view",
]

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_SUPPRESSIONS = 10_000
#: SQLite integers are signed 64-bit: a larger id cannot exist (and must not reach SQLite)
_MAX_ID = 2**63 - 1
_TYPE_SUFFIX = re.compile(r"/TYPE=[^/]*$", re.IGNORECASE)

RETRYABLE = (RelayStatus.DEAD, RelayStatus.DROPPED)
DROPPABLE = (RelayStatus.DEAD, RelayStatus.PENDING)


# --------------------------------------------------------------------------- views


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def safe_url(url: str | None) -> str | None:
    """``url`` without user info, query string and fragment (tokens live there)."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<not a URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def relay_event_view(record: RelayRecord) -> dict[str, Any]:
    """The JSON of one relay event (schema ``RelayEvent`` in openapi.json)."""
    return {
        "id": record.id,
        "kind": record.kind.value,
        "status": record.status.value,
        "hook": record.hook,
        "callback_url": safe_url(record.callback_url),
        "link": record.link,
        "source_id": record.source_id,
        "attempts": record.attempts,
        "next_attempt_at": _iso(record.next_attempt_at),
        "first_attempt_at": _iso(record.first_attempt_at),
        "last_http_status": record.last_http_status,
        "last_error": record.last_error,
        "created_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
        "idempotency_key": record.idempotency_key,
        "event": dict(record.event),
    }


def suppression_view(item: Suppression) -> dict[str, Any]:
    """One entry of the suppression list (schema ``Suppression``)."""
    return {
        "address": item.address,
        "word": item.word,
        "link": item.link,
        "mo_id": item.mo_id,
        "created_at": _iso(item.created_at),
    }


def relay_counts_view(counts: dict[str, int]) -> dict[str, int]:
    """Every status with its count (0 for those without events)."""
    out = {status.value: 0 for status in RelayStatus}
    out.update(counts)
    return out


# --------------------------------------------------------------------------- parameters


def parse_event_id(text: str, field: str = "id") -> int:
    """A relay event id (a positive integer), else 400 naming ``field``."""
    value = text.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise ApiError(400, field, f"expected a relay event id (a positive integer), got {text!r}")
    number = int(value)
    if not 0 < number <= _MAX_ID:
        raise ApiError(400, field, f"expected a relay event id (a positive integer), got {text!r}")
    return number


def _query(request: web.Request, *known: str) -> MultiMapping[str]:
    """The query string, every name known (a typo such as ``staus=dead`` is refused by name)."""
    query = request.query
    for name in query:
        if name not in known:
            allowed = f" (known: {', '.join(known)})" if known else " (none is taken here)"
            raise ApiError(400, name, f"unknown query parameter{allowed}")
    for name in known:
        if len(query.getall(name, ())) > 1:
            raise ApiError(400, name, "given more than once")
    return query


def _int_param(query: MultiMapping[str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    value = raw.strip()
    if (
        not value.isascii()
        or not value.isdigit()
        or len(value) > 19
        or not low <= int(value) <= high
    ):
        raise ApiError(400, name, f"expected an integer from {low} to {high}, got {raw!r}")
    return int(value)


def parse_status(text: str | None, field: str = "status") -> RelayStatus | None:
    """``all`` (or nothing) is None; else one of RelayStatus, or 400 naming ``field``."""
    if text is None or text == "all":
        return None
    try:
        return RelayStatus(text)
    except ValueError:
        known = ", ".join([*(s.value for s in RelayStatus), "all"])
        raise ApiError(400, field, f"expected one of {known}, got {text!r}") from None


def _kind(text: str | None) -> RelayKind | None:
    if text is None or text == "":
        return None
    try:
        return RelayKind(text)
    except ValueError:
        known = ", ".join(k.value for k in RelayKind)
        raise ApiError(400, "kind", f"expected one of {known}, got {text!r}") from None


# --------------------------------------------------------------------------- endpoints


class RelayApi:
    """The relay endpoints over one store (module docstring). ``key_of(request)`` is the API
    key the request authenticated with: its role decides what it sees."""

    def __init__(self, store: Store, key_of: Callable[[web.Request], ApiKey]) -> None:
        self.store = store
        self.key_of = key_of

    def _owner(self, request: web.Request) -> str | None:
        """The key name a request is limited to (None: an admin key, limited to nothing)."""
        key = self.key_of(request)
        return None if key.admin else key.name

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/relay/events", self.list_events)
        router.add_get("/v1/relay/events/{id}", self.get_event)
        router.add_post("/v1/relay/events/{id}/retry", self.retry_event)
        router.add_post("/v1/relay/events/{id}/drop", self.drop_event)
        router.add_post("/v1/relay/retry-dead", self.retry_dead)
        router.add_get("/v1/relay/counts", self.counts)
        router.add_get("/v1/suppressions", self.suppressions)

    async def _event(self, request: web.Request) -> RelayRecord:
        event_id = parse_event_id(request.match_info["id"])
        _query(request)
        record = await self.store.get_relay_event(event_id)
        if record is None:
            raise ApiError(404, "id", f"no relay event {event_id}")
        owner = self._owner(request)
        if owner is not None and record.api_key is None:
            raise ApiError(
                403,
                "id",
                f"relay event {event_id} belongs to no API key (an MO, or a report of no "
                "message sent through the API): only an admin key may see or act on it",
            )
        if owner is not None and record.api_key != owner:
            raise ApiError(
                403,
                "id",
                f"relay event {event_id} reports a message of another API key: a sending key "
                "sees and acts on the events of its own messages only",
            )
        return record

    async def list_events(self, request: web.Request) -> web.Response:
        """``GET /v1/relay/events``: filtered, paged by id."""
        query = _query(request, "status", "hook", "kind", "after", "limit")
        status = parse_status(query.get("status"))
        kind = _kind(query.get("kind"))
        hook = query.get("hook") or None
        if hook is not None and len(hook) > 255:
            raise ApiError(400, "hook", "too long (at most 255 characters)")
        after = _int_param(query, "after", 0, 0, _MAX_ID)
        limit = _int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        owner = self._owner(request)
        if owner is not None and kind is RelayKind.MO:
            raise ApiError(
                403,
                "kind",
                "MO events belong to no API key: only an admin key may list them",
            )
        records = await self.store.relay_events(
            status=status, hook=hook, kind=kind, after_id=after, limit=limit, api_key=owner
        )
        return web.json_response(
            {
                "events": [relay_event_view(r) for r in records],
                "next_after": records[-1].id if len(records) == limit else None,
            }
        )

    async def get_event(self, request: web.Request) -> web.Response:
        """``GET /v1/relay/events/{id}``."""
        return web.json_response(relay_event_view(await self._event(request)))

    async def retry_event(self, request: web.Request) -> web.Response:
        """``POST /v1/relay/events/{id}/retry``: dead or dropped -> pending."""
        record = await self._event(request)
        if record.status not in RETRYABLE or not await self.store.requeue_relay([record.id]):
            now = await self.store.get_relay_event(record.id) or record
            raise ApiError(
                409,
                "id",
                f"relay event {record.id} is {now.status.value}: only dead or dropped events "
                "can be retried",
            )
        return web.json_response(relay_event_view(await self._event(request)))

    async def drop_event(self, request: web.Request) -> web.Response:
        """``POST /v1/relay/events/{id}/drop``: dead or pending -> dropped."""
        record = await self._event(request)
        if record.status not in DROPPABLE or not await self.store.drop_relay([record.id]):
            now = await self.store.get_relay_event(record.id) or record
            raise ApiError(
                409,
                "id",
                f"relay event {record.id} is {now.status.value}: only dead or pending events "
                "can be dropped",
            )
        return web.json_response(relay_event_view(await self._event(request)))

    async def retry_dead(self, request: web.Request) -> web.Response:
        """``POST /v1/relay/retry-dead``: every dead event pending again."""
        _query(request)
        requeued = await self.store.requeue_relay(None, api_key=self._owner(request))
        return web.json_response({"requeued": requeued})

    async def counts(self, request: web.Request) -> web.Response:
        """``GET /v1/relay/counts``."""
        _query(request)
        counts = await self.store.relay_counts(self._owner(request))
        return web.json_response(relay_counts_view(counts))

    async def suppressions(self, request: web.Request) -> web.Response:
        """``GET /v1/suppressions``: newest first."""
        if self._owner(request) is not None:
            raise ApiError(
                403,
                None,
                "the suppression list belongs to no API key (opt-outs of every application's "
                "recipients): only an admin key may read it",
            )
        limit = _int_param(_query(request, "limit"), "limit", 1000, 1, MAX_SUPPRESSIONS)
        items = await self.store.suppressions(limit=limit)
        return web.json_response({"suppressions": [suppression_view(s) for s in items]})


# --------------------------------------------------------------------------- replies, opt-outs


def _mo_address(value: Any, where: str) -> str | None:
    """An address of the stored MO as one we can send to (None: not usable)."""
    if not isinstance(value, str):
        return None
    try:
        return check_address(_TYPE_SUFFIX.sub("", value.strip()), where)
    except ApiError:
        return None


async def apply_reply(store: Store, parsed: Request) -> MoRecord:
    """Fill ``parsed`` from the MO it answers (module docstring); ApiError 422 when it cannot."""
    assert parsed.reply_to is not None
    mo = await store.get_mo(parsed.reply_to)
    if mo is None:
        raise ApiError(
            422, "reply_to", f"no MO with id {parsed.reply_to!r} (give the id of a relayed MO)"
        )
    if parsed.link is not None and parsed.link != mo.link:
        raise ApiError(
            422,
            "link",
            f"the MO arrived on link {mo.link!r}: a reply goes back on that link (leave link out)",
        )
    # LinkedID names the MO as the MMSC knows it: its MessageID, else its TransactionID
    linked = mo.mm7_message_id or mo.transaction_id
    if parsed.linked_id is not None and linked is not None and parsed.linked_id != linked:
        raise ApiError(
            422,
            "linked_id",
            f"the MO's LinkedID is {linked!r}; leave linked_id out when giving reply_to",
        )
    parsed.link = mo.link
    if linked is not None:
        parsed.linked_id = linked
    if not parsed.to:
        sender = _mo_address(mo.fields.get("from"), "to")
        if sender is None and mo.fields.get("from") is None:
            raise ApiError(422, "to", "the MO came without a sender (the MMSC sent none); give to")
        if sender is None:
            raise ApiError(
                422,
                "to",
                f"the MO's sender {mo.fields.get('from')!r} is not an address to send to; give to",
            )
        parsed.to = [sender]
        parsed.to_array = False
    if parsed.sender is None:
        recipients = mo.fields.get("to")
        if isinstance(recipients, list) and recipients:
            # None (not usable) leaves the link's sender_address
            parsed.sender = _mo_address(recipients[0], "from")
    return mo


def is_opt_out_confirmation(mo: MoRecord, parsed: Request) -> bool:
    """A reply to a STOP MO sent only to its sender: the one confirmation carriers expect.

    It goes out although the sender is now suppressed; the API gives it the idempotency key
    ``opt-out-confirmation:<mo id>`` so that an application cannot send a second one.
    """
    sender = mo.fields.get("from")
    if mo.fields.get("opt_out") != "stop" or not isinstance(sender, str):
        return False
    return [normalize_address(a) for a in parsed.to] == [normalize_address(sender)]


def suppressed_error(
    addresses: Sequence[str], parsed: Request, start_words: Sequence[str]
) -> ApiError:
    """The 422 of a message whose every recipient opted out."""
    if start_words:
        words = " or ".join(start_words)
        lift = f"the opt-out is lifted when the recipient sends {words}"
    else:
        lift = "the opt-out is lifted when the recipient sends a start word (none is configured)"
    if len(addresses) == 1:
        field = "to[0]" if parsed.to_array else "to"
        return ApiError(
            422, field, f"{addresses[0]} opted out (sent a stop word) and is not sent to; {lift}"
        )
    return ApiError(
        422,
        "to",
        f"every recipient opted out (sent a stop word): {', '.join(addresses)}; nothing is "
        f"sent to them, and {lift}",
    )
