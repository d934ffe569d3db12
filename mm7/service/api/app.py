"""The application-facing sending API (aiohttp): ``create_api_app(config, store)``.

Endpoints (the OpenAPI document ``mm7/service/api/openapi.json`` is served at ``/openapi.json``)
-------------------------------------------------------------------------------------------
``POST /v1/messages`` (``application/json`` or ``multipart/form-data``), ``Authorization: Bearer
<key>``. Everything is checked, URL media fetched and the presentation built BEFORE anything is
written; the answer comes only after ``store.enqueue_message`` returned, i.e. after the commit:

* ``202 {"id": ..., "status": "queued"}`` and ``Location: /v1/messages/{id}``: created. When
  some recipients opted out (they sent a stop word, see ``[relay] stop_words``) the answer adds
  ``"suppressed": ["+1202...", ...]``: those are stored with status ``suppressed`` and never
  sent; the others are queued.
* ``200 {"id": ..., "status": "duplicate"}``: the idempotency key (body ``idempotency_key`` or
  header ``Idempotency-Key``) was seen before from the same API key with the same request
  (``validate.request_digest``: the parsed values, so JSON key order does not count); the
  original id, nothing created. Keys are scoped per API key (stored as ``"<key name>:<key>"``)
  so two applications cannot collide. The same key with another request is 422
  ``idempotency_key`` (checked before media are fetched, and again in the committing
  transaction for two requests racing).

Errors are JSON ``{"error": {"field": "to[1]" | null, "message": "..."}}``:

* 400: not JSON / not an object, a field of the wrong type, a missing required field, an
  unknown field (typos are refused by name);
* 401: no or a wrong Bearer key (``WWW-Authenticate: Bearer``);
* 404: no such message (or another API key's message); 405: method;
* 413: the body is over ``[api] max_request_bytes`` (refused from Content-Length before reading,
  else as soon as the read passes the limit);
* 415: another content type;
* 429: the API key's quota (``[[api.keys]] max_per_second`` / ``max_per_day``, counted in
  recipients) allows no more now: ``Retry-After`` and the body's ``quota``, ``limit`` and
  ``retry_after`` say which and when (``mm7.service.api.quotas``; checked after every other
  check, before the commit);
* 422: well-formed but unacceptable: an address that is not one or a number the carrier would
  refuse (``to[3]``: ``numbers``), a time not in the future, an
  unknown ``link`` (named), recipients without a route or routed to different links, a media URL
  refused or failing (``media[0].url``: loopback/private target, scheme, size, time, HTTP
  status), a part whose bytes are not what it claims (``media[1]``) or that the link's content
  profile can never carry (``media[1]``: ``mm7.content.carriable``), slides or SMIL that do not
  fit the items, an unknown ``reply_to`` (or a ``link``/``linked_id`` contradicting it), an
  ``idempotency_key`` used before with another request, every
  recipient on the suppression list (``to``, or ``to[0]`` for one given in an array: the message
  says the recipient opted out and that sending START lifts it).

No error writes anything (the store is only called once everything passed).

JSON request (``POST /v1/messages``)
------------------------------------
``to`` (an address or an array, required; E.164 numbers, national numbers of the key's or the
link's ``default_region``, short codes, e-mail),
``from``, ``subject``, ``text``, ``media`` (array of ``{"url": ...}`` or ``{"content_base64":
..., "content_type": ...}``, each with an optional ``filename``; ``content_type`` with a URL
overrides the server's), ``slides`` (array of ``{"duration_ms", "visual", "text", "audio",
"refs"}``: each reference a 0-based media index or the string ``"text"``), ``smil`` (the caller's
SMIL: reference media by their file name, the text as ``text.txt``), ``link``, ``delivery_report``,
``read_reply``, ``priority`` (low/normal/high), ``expiry`` and ``earliest_delivery`` (an ISO 8601
date-time or an xsd duration such as ``P1D``, in the future), ``service_code``, ``linked_id``,
``callback_url``, ``idempotency_key``, ``reply_to``. Text or media is required. Without
``link`` every recipient is routed with ``config.route`` (prefix rules, then the default link);
recipients on different links are refused (send one message per link).

``reply_to`` answers an MO: the ``id`` of the relayed ``mo`` event. The gateway loads the MO and
sends on its link, sets ``linked_id`` to the MO's MM7 MessageID when the MMSC sent one, else to
its TransactionID (LinkedID must reference the MO as the MMSC knows it; without a MessageID the
TransactionID is the identifier the MMSC gave it), and ``to`` / ``from`` default to the MO's
sender / first recipient (the short code). ``to`` is required only without ``reply_to``. See
``mm7.service.api.relay_ops`` for the details.

The presentation: the text becomes a ``text/plain; charset=utf-8`` item placed right after the
first image/video (so it shares that slide), else first; slides follow the default rule of
``mm7.content.builder`` unless ``slides``/``smil`` are given.

multipart/form-data (or application/x-www-form-urlencoded without files): the same names as
form fields (``to`` repeated or comma separated; booleans ``true``/``false``; ``slides`` as a
JSON string; ``smil`` as a field or file), media as file fields named ``media`` (their filename
and Content-Type are used) and/or ``media_url`` fields, in form order.

What is stored (the dispatcher reads this)
------------------------------------------
``NewMessage(link, fields, idempotency_key="<key name>:<key>", expires_at, not_before,
callback_url)`` with one recipient per ``to`` address (as normalised: numbers in E.164) and the
parts IN PRESENTATION ITEM ORDER, each ``MediaPart(content_type, data, content_id,
content_location)`` where ``content_type`` is the real type from the bytes plus
``; charset=<cs>`` for text (``"text/plain; charset=utf-8"``). The SMIL is NOT a part: the
dispatcher builds the content from the items and ``fields["presentation"]`` (and fits it to the
link's profile first). ``fields`` is exactly::

    {
      "v": 1,                          # version of this shape
      "source": "api" | "sendmms",
      "api_key": "dev",                # name of the API key that sent it
      "to": ["+4915112345678", ...],   # the first FIELDS_TO_MAX (100) recipients: every one
                                       #   is a recipient row; the list is for display only
      "recipient_count": 1,            # how many recipients the message has
      "from": "12345" | null,          # SenderAddress; null: the link's sender_address
      "subject": str | null,
      "text": str | null,              # also the text item among the parts (for display/logs)
      "delivery_report": bool | null,  # DeliveryReport; null: leave out
      "read_reply": bool | null,       # ReadReply
      "priority": "Low" | "Normal" | "High" | null,
      "expiry": str | null,            # ExpiryDate as MM7 writes it: "2026-01-02T03:04:05Z" or
                                       #   an xsd duration "P1D" (message.expires_at is absolute)
      "earliest_delivery": str | null, # EarliestDeliveryTime, same forms (not_before absolute)
      "service_code": str | null,      # null: the link's service_code
      "linked_id": str | null,         # given, or the MO's MessageID/TransactionID (reply_to)
      "reply_to": str | null,          # the MO id this message answers
      "fallback": {"sms_link": "smsc1", "text_max": 160},  # only when it falls back to SMS
                                       #   (the request's "fallback" over its link's)
      "presentation": {
        "layout": "portrait",          # mm7.content.model.Layout value
        "slides": [                    # mm7.content.model.Slide; references are Content-IDs;
          {"duration_ms": 5000,        #   null exactly when smil is set (pass one of the two to
           "visual": "img1-1a2b3c4d" | null,  # build_presentation, never both)
           "text": "text2-..." | null, "audio": str | null, "refs": [str, ...]}
        ] | null,
        "smil": str | null             # the caller's SMIL (checked against the items) or null:
                                       #   generate it from the slides
      }
    }

``GET /v1/messages/{id}`` answers the message (``message_view``): overall status (rolled up from
the recipients, see ``mm7.service.store.records``), per recipient status with the MM7 MessageID,
attempts and last status, the parts, the history of events and, with ``[hosting]`` on, the
message's hosted page (``hosted_url``: its content as a web page behind a signed link that
expires, ``mm7.service.hosting``) and each recipient's SMS fallback (``fallback_sms``, null
when none: ``mm7.service.fallback``). ``GET /v1/messages`` lists the
key's messages with filters and cursor paging (``mm7.service.api.listing``).

Relay operations (``mm7.service.api.relay_ops``)
--------------------------------------------
``GET /v1/relay/events``, ``GET /v1/relay/events/{id}``, ``POST /v1/relay/events/{id}/retry``,
``POST /v1/relay/events/{id}/drop``, ``POST /v1/relay/retry-dead``, ``GET /v1/relay/counts`` and
``GET /v1/suppressions``: inspect and replay the relay's dead letters and read the opt-out list.
An ``admin`` key may use them all; a sending key only on the events of its own messages (403
otherwise; the rules are in ``relay_ops``'s docstring).

Mbuni ``sendmms``
----------------
``GET|POST /cgi-bin/sendmms`` (also ``/sendmms``): Mbuni mmsbox's send-mms interface, so that
code written for Mbuni keeps working: the same CGI parameters, the same answers (``200
Accepted: <id>``, ``401 Authentication failed``, Mbuni's error texts) and ``dlr-url`` /
``rr-url`` called with GET, Kannel %-escapes substituted and Mbuni's ``X-Mbuni-*`` headers.
``username`` is the NAME of an ``[[api.keys]]`` entry and ``password`` its key. The parameters,
answers and callbacks are described in ``mm7.service.api.sendmms`` and the README ("sendmms for
Kannel/Mbuni users"); ``fields["sendmms"]`` holds what only sendmms carries (``dlr_url``,
``rr_url``, ``message_class``, ``vas_id``, ``allow_adaptations``, ``distribution``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDict, MultiMapping

from mm7.content.builder import build_presentation
from mm7.content.carriable import never_carried
from mm7.content.model import MediaItem, Slide
from mm7.content.parts import ContentError, PartError, Source, make_items, text_source
from mm7.content.smil import SmilError
from mm7.core.sniff import sniff
from mm7.service.api import fastcodec
from mm7.service.api.backlog import Backlog
from mm7.service.api.fallback import resolve_fallback
from mm7.service.api.listing import MessageListing
from mm7.service.api.media_fetch import Fetcher, MediaFetcher
from mm7.service.api.numbers import NumberRules, check_sender, normalise_recipients, region_for
from mm7.service.api.quotas import QuotaExceeded
from mm7.service.api.quotas import give_back as give_back_quota
from mm7.service.api.quotas import take as take_quota
from mm7.service.api.relay_ops import (
    RelayApi,
    apply_reply,
    is_opt_out_confirmation,
    suppressed_error,
)
from mm7.service.api.sendmms import MBUNI_ERRORS, SendmmsParams
from mm7.service.api.sendmms import handle as sendmms_handle
from mm7.service.api.sendmms import renamed as sendmms_renamed
from mm7.service.api.validate import (
    FIELDS,
    MediaInput,
    Request,
    SlideInput,
    parse_request,
    request_digest,
)
from mm7.service.config.settings import ApiKey, GatewayConfig, LinkSettings
from mm7.service.errors import (
    AllSuppressedError,
    ApiError,
    FetchError,
    IdempotencyConflictError,
    StoreUnavailableError,
)
from mm7.service.hosting.links import HostedLinks
from mm7.service.store.base import Store
from mm7.service.store.records import (
    EnqueueResult,
    FallbackRecord,
    MediaPart,
    MessageRecord,
    NewMessage,
)
from mm7.service.url_guard import UrlGuard, UrlRefused

__all__ = ["OPENAPI_PATH", "create_api_app", "message_view"]

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
TEXT_LOCATION = "text.txt"

#: recipients repeated in the stored fields (all of them are recipient rows)
FIELDS_TO_MAX = 100

CONFIG_KEY = web.AppKey("mm7_api_config", GatewayConfig)
STORE_KEY = web.AppKey("mm7_api_store", Store)
#: called with the link of each new message once it is committed (``create_api_app``)
ON_ENQUEUED_KEY: web.AppKey[Callable[[str], None] | None] = web.AppKey("mm7_api_on_enqueued")
#: called with the key's name and the quota when a quota refused a request (metrics)
ON_QUOTA_KEY: web.AppKey[Callable[[str, str], None] | None] = web.AppKey("mm7_api_on_quota")
FETCHER_KEY = web.AppKey("mm7_api_fetcher", Fetcher)
#: the hosted pages' links, for each message's ``hosted_url`` (None: hosting is off)
HOSTING_KEY: web.AppKey[HostedLinks | None] = web.AppKey("mm7_api_hosting")
BACKLOG_KEY = web.AppKey("mm7_api_backlog", Backlog)
#: checks callback_url, dlr-url and rr-url at intake (media: the fetcher's own guard)
GUARD_KEY = web.AppKey("mm7_api_url_guard", UrlGuard)
_KEY = web.RequestKey("mm7_api_key", ApiKey)
_SENDMMS_PATHS = ("/cgi-bin/sendmms", "/sendmms")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = structlog.get_logger("mm7.service.api")
#: seconds a caller is asked to wait when the store cannot write (the readiness probe's pace)
STORE_RETRY_AFTER = 5


def create_api_app(
    config: GatewayConfig,
    store: Store,
    *,
    fetcher: Fetcher | None = None,
    on_enqueued: Callable[[str], None] | None = None,
    url_guard: UrlGuard | None = None,
    on_quota_refused: Callable[[str, str], None] | None = None,
    hosting: HostedLinks | None = None,
) -> web.Application:
    """The API application. ``fetcher`` defaults to a ``MediaFetcher`` with ``[api.fetch]``
    limits (closed with the app; a fetcher passed in is the caller's to close).
    ``url_guard`` checks callers' URLs (``mm7.service.url_guard``; the default fetcher uses it
    too); a guard passed in is the caller's to close.
    ``on_enqueued(link)`` is called after each new message was committed (not for a
    duplicate): the runtime wakes that link's dispatcher with it. ``on_quota_refused(key,
    quota)`` is called for each 429 of an API key's quota (``mm7.service.api.quotas``).
    ``hosting``: the hosted pages' links (``GET /v1/messages/{id}`` shows each message's
    ``hosted_url``; None: null)."""
    app = web.Application(
        client_max_size=config.api.max_request_bytes,
        middlewares=[_errors_middleware, _auth_middleware],
    )
    app[CONFIG_KEY] = config
    app[STORE_KEY] = store
    app[ON_ENQUEUED_KEY] = on_enqueued
    app[ON_QUOTA_KEY] = on_quota_refused
    app[HOSTING_KEY] = hosting
    if config.api.max_backlog is not None:
        app[BACKLOG_KEY] = Backlog(store, config.api.max_backlog)
    own_guard = url_guard is None
    guard = app[GUARD_KEY] = url_guard if url_guard is not None else UrlGuard()
    own = fetcher is None
    app[FETCHER_KEY] = fetcher if fetcher is not None else MediaFetcher(config.api.fetch, guard)

    async def _close(app: web.Application) -> None:
        if own:
            await app[FETCHER_KEY].close()
        if own_guard:
            await guard.close()

    app.on_cleanup.append(_close)
    app.router.add_post("/v1/messages", post_message)
    app.router.add_get("/v1/messages/{id}", get_message)
    MessageListing(store, config, _key_of).add_routes(app.router)
    app.router.add_get("/openapi.json", openapi)
    RelayApi(store, _key_of).add_routes(app.router)
    for path in _SENDMMS_PATHS:
        app.router.add_route("GET", path, sendmms)
        app.router.add_route("POST", path, sendmms)
    return app


# --------------------------------------------------------------------------- middlewares


def _error_json(
    status: int, field: str | None, message: str, extra: Mapping[str, Any] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"field": field, "message": message, **(extra or {})}}, status=status
    )


def _is_sendmms(request: web.Request) -> bool:
    return request.path in _SENDMMS_PATHS


@web.middleware
async def _errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal as JSON (text for sendmms): ApiError, too-large bodies, 404/405 (keeping
    aiohttp's headers, e.g. 405's Allow), and a store that cannot write as 503 with Retry-After
    (the reason goes to the operator log, not to the caller)."""
    headers: dict[str, str] = {}
    try:
        return await handler(request)
    except StoreUnavailableError as exc:
        log.warning("mm7.api.store_unavailable", path=request.path, reason=str(exc))
        error = ApiError(503, None, "the gateway cannot store messages right now; retry later")
        headers["Retry-After"] = str(STORE_RETRY_AFTER)
    except ApiError as exc:
        error = exc
        headers.update(exc.headers)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG_KEY].api.max_request_bytes
        error = ApiError(413, None, f"the request body is over the limit of {limit} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = ApiError(exc.status, None, exc.reason)
        for name in ("Allow",):
            if name in exc.headers:
                headers[name] = exc.headers[name]
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if _is_sendmms(request):
        headers.pop("WWW-Authenticate", None)
        if error.message in MBUNI_ERRORS.values() or error.field == "content-url.url":
            text = error.message
        else:
            where = f"{error.field}: " if error.field else ""
            text = f"Error: {where}{error.message}"
        return web.Response(status=error.status, text=text, headers=headers)
    extra = error.body() if isinstance(error, QuotaExceeded) else None
    response = _error_json(error.status, error.field, error.message, extra)
    response.headers.update(headers)
    return response


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``Authorization: Bearer <key>`` on /v1/*; the key found is kept on the request."""
    if request.path.startswith("/v1/"):
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        key = None
        if scheme.lower() == "bearer" and presented.strip():
            key = request.app[CONFIG_KEY].api.check_key(presented.strip())
        if key is None:
            raise ApiError(401, None, "missing or invalid API key (Authorization: Bearer <key>)")
        request[_KEY] = key
    return await handler(request)


# --------------------------------------------------------------------------- handlers


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3 document of this API (the file kept in the repository)."""
    return web.Response(body=OPENAPI_PATH.read_bytes(), content_type="application/json")


async def post_message(request: web.Request) -> web.Response:
    """``POST /v1/messages``: check, fetch, build, then enqueue (module docstring)."""
    _check_length(request)
    key: ApiKey = request[_KEY]
    now = datetime.now(UTC)
    mime = request.content_type
    if mime == "application/json":
        raw = await request.read()
        try:
            body = fastcodec.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, None, f"the body is not valid JSON: {exc}") from None
        if isinstance(body, dict) and "idempotency_key" not in body:
            header_key = request.headers.get("Idempotency-Key")
            if header_key is not None:
                body["idempotency_key"] = header_key
        parsed = parse_request(body, now=now)
    elif mime in ("multipart/form-data", "application/x-www-form-urlencoded"):
        body, media = _form_body(await _read_form(request))
        if "idempotency_key" not in body and "Idempotency-Key" in request.headers:
            body["idempotency_key"] = request.headers["Idempotency-Key"]
        parsed = parse_request(body, now=now, media=media)
    else:
        raise ApiError(
            415,
            None,
            "expected application/json, multipart/form-data or "
            f"application/x-www-form-urlencoded, got {mime or 'none'}",
        )
    parsed.callback_url = await _guarded_url(request.app, key, "callback_url", parsed.callback_url)
    result = await _submit(request.app, parsed, key, source="api")
    message_id = result.message_id
    if not result.created:
        return web.json_response(
            {"id": message_id, "status": "duplicate"}, status=200, dumps=fastcodec.dumps
        )
    answer: dict[str, Any] = {"id": message_id, "status": "queued"}
    if result.suppressed:
        answer["suppressed"] = list(result.suppressed)
    return web.json_response(
        answer,
        status=202,
        headers={"Location": f"/v1/messages/{message_id}"},
        dumps=fastcodec.dumps,
    )


def _key_of(request: web.Request) -> ApiKey:
    """The API key the request authenticated with (``_auth_middleware``)."""
    return request[_KEY]


async def get_message(request: web.Request) -> web.Response:
    """``GET /v1/messages/{id}``: the message's status, recipients and history."""
    key: ApiKey = request[_KEY]
    record = await request.app[STORE_KEY].get_message(request.match_info["id"])
    if record is None or record.fields.get("api_key") != key.name:
        raise ApiError(404, "id", "no such message")
    hosting = request.app[HOSTING_KEY]
    url = hosting.page_url(record.id, record.created_at) if hosting is not None else None
    fallbacks = await request.app[STORE_KEY].fallback_sms(record.id)
    return web.json_response(message_view(record, hosted_url=url, fallbacks=fallbacks))


async def sendmms(request: web.Request) -> web.Response:
    """Mbuni's ``sendmms`` (``mm7.service.api.sendmms``): Mbuni's parameters and answers."""
    _check_length(request)
    params: MultiMapping[Any] = request.query
    raw = request.rel_url.raw_query_string
    if request.method == "POST":
        if request.content_type not in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            raise ApiError(415, None, "expected a form (application/x-www-form-urlencoded)")
        form = await _read_form(request)
        params = MultiDict([*request.query.items(), *form.items()])
        if request.content_type == "application/x-www-form-urlencoded":
            raw += "&" + (await request.read()).decode("ascii", "replace")

    async def submit(parsed: SendmmsParams, key: ApiKey) -> str:
        parsed.dlr_url = await _guarded_url(request.app, key, "dlr-url", parsed.dlr_url)
        parsed.rr_url = await _guarded_url(request.app, key, "rr-url", parsed.rr_url)
        try:
            result = await _submit(
                request.app,
                parsed.request,
                key,
                source="sendmms",
                extra={"sendmms": parsed.fields()},
                callback_url=parsed.dlr_url,
            )
        except ApiError as exc:
            if exc.field == "content-url.url":
                url = parsed.request.media[0].url
                raise ApiError(
                    400, exc.field, f"failed to fetch content from url [{url}]! ({exc.message})"
                ) from None
            raise sendmms_renamed(exc) from None
        return result.message_id

    check_key = request.app[CONFIG_KEY].api.check_key
    return await sendmms_handle(request, params, check_key, submit, raw)


# --------------------------------------------------------------------------- the pipeline


async def _guarded_url(
    app: web.Application, key: ApiKey, field: str, url: str | None
) -> str | None:
    """``url`` (a URL the gateway will call: callback_url, dlr-url, rr-url) with its host
    normalised, or a 422 naming ``field`` when it leads somewhere the key may not reach."""
    if url is None:
        return None
    allow_private = app[CONFIG_KEY].api.allows_private(key.name)
    try:
        return await app[GUARD_KEY].check(url, allow_private=allow_private)
    except UrlRefused as exc:
        raise ApiError(422, field, f"refused: {exc}") from None


def _check_length(request: web.Request) -> None:
    limit = request.app[CONFIG_KEY].api.max_request_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            413, None, f"the request body is {request.content_length} bytes, over {limit}"
        )


async def _read_form(request: web.Request) -> MultiMapping[Any]:
    """The form body; a malformed one (no boundary, broken encoding) is a 400, not a 500."""
    try:
        return await request.post()
    except (ValueError, UnicodeDecodeError, AssertionError, HttpProcessingError) as exc:
        detail = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
        raise ApiError(400, None, f"the form cannot be read: {detail}") from None


def _form_body(form: MultiMapping[Any]) -> tuple[dict[str, Any], list[MediaInput]]:
    """A multipart form as a request body plus its media (URLs and uploads in form order)."""
    body: dict[str, Any] = {}
    media: list[MediaInput] = []
    for name, value in form.items():
        if name in ("media", "media_url"):
            where = f"media[{len(media)}]"
            if isinstance(value, web.FileField):
                data = value.file.read()
                if not data:
                    raise ApiError(422, where, "empty file (a part needs content)")
                media.append(
                    MediaInput(
                        where, data=data, content_type=value.content_type, filename=value.filename
                    )
                )
            elif isinstance(value, str) and value:
                media.append(MediaInput(where, url=value))
            continue
        if isinstance(value, web.FileField):
            if name != "smil":
                raise ApiError(400, name, "a file is only accepted for media and smil")
            try:
                value = value.file.read().decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(422, "smil", "the SMIL file is not UTF-8") from None
        if name not in FIELDS:
            raise ApiError(400, name, "unknown field")
        if name == "to":
            body.setdefault("to", []).extend(v for v in value.replace(",", " ").split() if v)
        elif name in ("delivery_report", "read_reply"):
            flag = value.strip().lower()
            if flag not in ("true", "false", "1", "0", "yes", "no"):
                raise ApiError(400, name, "expected true or false")
            body[name] = flag in ("true", "1", "yes")
        elif name == "slides":
            try:
                body[name] = fastcodec.loads(value.encode("utf-8"))
            except ValueError:
                raise ApiError(400, "slides", "expected a JSON array") from None
        else:
            body[name] = value
    return body, media


def _pick_link(config: GatewayConfig, parsed: Request) -> str:
    if parsed.link is not None:
        if parsed.link not in config.link_names:
            raise ApiError(
                422,
                "link",
                f"unknown link {parsed.link!r} (links: {', '.join(config.link_names)})",
            )
        return parsed.link
    chosen: dict[str, int] = {}
    for index, address in enumerate(parsed.to):
        settings = config.route(address)
        if settings is None:
            raise ApiError(
                422,
                f"to[{index}]",
                "no link for this recipient (no prefix matches and there is no default link); "
                "give link",
            )
        chosen.setdefault(settings.name, index)
    if len(chosen) > 1:
        which = ", ".join(f"to[{i}] -> {name}" for name, i in chosen.items())
        raise ApiError(
            422, "to", f"the recipients route to different links ({which}); send one per link"
        )
    return next(iter(chosen))


#: recipients above which numbers are checked in a worker thread (about 30 us each: a campaign
#: of 100,000 would hold the event loop for seconds)
RECIPIENTS_OFF_LOOP = 200


async def _normalised_recipients(config: GatewayConfig, key: ApiKey, parsed: Request) -> list[str]:
    """The caller's recipients as stored and submitted (``numbers``): E.164 numbers, short codes,
    e-mail; a 422 naming ``to[i]`` for one the carrier would refuse. National numbers are read in
    the key's ``default_region``, else in that of the link given or the recipient routes to
    (``numbers.region_for``)."""
    check = key.number_check or config.api.number_check
    rules: dict[str | None, NumberRules] = {}  # one per region: a campaign has few

    def rules_for(address: str) -> NumberRules:
        region = region_for(config, key, parsed.link, address)
        if region not in rules:
            rules[region] = NumberRules(region, check)
        return rules[region]

    fields = [f"to[{i}]" if parsed.to_array else "to" for i in range(len(parsed.to))]
    if len(parsed.to) <= RECIPIENTS_OFF_LOOP:
        return normalise_recipients(parsed.to, fields, rules_for)
    return await asyncio.to_thread(normalise_recipients, parsed.to, fields, rules_for)


async def _gather_media(
    fetcher: Fetcher, media: Sequence[MediaInput], budget: int, *, allow_private: bool
) -> list[tuple[MediaInput, Source]]:
    out: list[tuple[MediaInput, Source]] = []
    total = 0
    for entry in media:
        if entry.url is not None:
            try:
                fetched = await fetcher.fetch(entry.url, allow_private=allow_private)
            except FetchError as exc:
                raise ApiError(
                    422, f"{entry.field}.url", f"cannot use {entry.url}: {exc}"
                ) from None
            data = fetched.data
            served = (fetched.content_type or "").split(";", 1)[0].strip().lower()
            if entry.content_type is None and served in ("text/html", "application/xhtml+xml"):
                raise ApiError(
                    422,
                    f"{entry.field}.url",
                    f"{entry.url} answered a web page ({served}), not media; "
                    "give content_type if an HTML part is really meant",
                )
            source = Source(
                data,
                filename=entry.filename or fetched.filename,
                media_type=entry.content_type or fetched.content_type,
            )
        else:
            assert entry.data is not None
            data = entry.data
            source = Source(
                data, filename=entry.filename, media_type=entry.content_type, sha256=entry.sha256
            )
        total += len(data)
        if total > budget:
            raise ApiError(413, entry.field, f"the media add up to more than {budget} bytes")
        out.append((entry, source))
    return out


def _check_carriable(
    settings: LinkSettings, items: Sequence[MediaItem], fields_at: Sequence[str]
) -> None:
    """422 naming the field of the first item the link's profile can never carry (a type it
    refuses with no conversion here: ``mm7.content.carriable``); a part only too big passes."""
    profile = settings.profile
    if profile is None:
        return
    for item, where in zip(items, fields_at, strict=True):
        why = never_carried(item, profile)
        if why is not None:
            raise ApiError(422, where, f"link {settings.name!r} cannot carry this: {why}")


def _slides(
    inputs: Sequence[SlideInput], items: Sequence[MediaItem], positions: Mapping[int | str, int]
) -> list[Slide]:
    def cid(ref: int | str | None) -> str | None:
        return None if ref is None else items[positions[ref]].content_id

    return [
        Slide(
            s.duration_ms,
            cid(s.visual),
            cid(s.text),
            cid(s.audio),
            tuple(cid(r) or "" for r in s.refs),
        )
        for s in inputs
    ]


async def _answered_before(store: Store, stored_key: str, digest: str | None) -> str | None:
    """The id of the message made earlier under this idempotency key, or None; 422
    ``idempotency_key`` when that message came from another request."""
    try:
        return await store.message_for_key(stored_key, digest)
    except IdempotencyConflictError as exc:
        raise _conflict(exc) from None


async def _submit(
    app: web.Application,
    parsed: Request,
    key: ApiKey,
    *,
    source: str,
    extra: Mapping[str, Any] | None = None,
    callback_url: str | None = None,
) -> EnqueueResult:
    """Answer an MO (reply_to), route, fetch, build and enqueue."""
    config = app[CONFIG_KEY]
    store = app[STORE_KEY]
    if parsed.sender is not None:
        check_sender(parsed.sender, "from", key.number_check or config.api.number_check)
    if parsed.to:
        parsed.to = await _normalised_recipients(config, key, parsed)
    # taken before reply_to fills the request in: the caller's request is what a retry repeats
    digest: str | None = request_digest(parsed) if parsed.idempotency_key is not None else None
    confirmation = False
    if parsed.reply_to is not None:
        mo = await apply_reply(store, parsed)
        confirmation = is_opt_out_confirmation(mo, parsed)
        if confirmation:
            # one confirmation per STOP: a repeat answers 200 with the first one's id, whatever
            # its text (the key is the gateway's, not the caller's: nothing to compare)
            parsed.idempotency_key = f"opt-out-confirmation:{mo.id}"
            digest = None
    stored_key = (
        f"{key.name}:{parsed.idempotency_key}" if parsed.idempotency_key is not None else None
    )
    # The commit decides duplicates and key reuse (enqueue_message: created=False, or
    # IdempotencyConflictError), so a store read here is only worth it where it saves work:
    # before fetching media URLs, and before refusing a retry for a full queue.
    if stored_key is not None and any(m.url is not None for m in parsed.media):
        earlier = await _answered_before(store, stored_key, digest)
        if earlier is not None:
            return EnqueueResult(earlier, False)
    link = _pick_link(config, parsed)
    backlog = app.get(BACKLOG_KEY)
    if backlog is not None:
        queued = await backlog.over(link, len(parsed.to))
        if queued is not None and stored_key is not None:
            # the retry of a message already accepted is answered as such, full queue or not
            earlier = await _answered_before(store, stored_key, digest)
            if earlier is not None:
                return EnqueueResult(earlier, False)
        if queued is not None:
            raise ApiError(
                503,
                None,
                f"link {link!r} has {queued} recipients queued (api.max_backlog is "
                f"{backlog.limit}); retry later",
                headers={"Retry-After": "1"},
            )
    gathered = await _gather_media(
        app[FETCHER_KEY],
        parsed.media,
        config.api.max_request_bytes,
        allow_private=config.api.allows_private(key.name),
    )
    # the text goes right after the first image or video (it shares that slide), else first
    sources: list[Source] = []
    fields_at: list[str] = []
    positions: dict[int | str, int] = {}
    text_slot = 0
    for index, (_, src) in enumerate(gathered):
        if sniff(src.data).startswith(("image/", "video/")):
            text_slot = index + 1
            break
    for index, (entry, src) in enumerate(gathered):
        if parsed.text is not None and index == text_slot:
            positions["text"] = len(sources)
            sources.append(text_source(parsed.text, filename=TEXT_LOCATION))
            fields_at.append("text")
        positions[index] = len(sources)
        sources.append(src)
        fields_at.append(entry.field)
    if parsed.text is not None and "text" not in positions:
        positions["text"] = len(sources)
        sources.append(text_source(parsed.text, filename=TEXT_LOCATION))
        fields_at.append("text")
    try:
        items = make_items(sources)
    except PartError as exc:
        raise ApiError(422, fields_at[exc.index - 1], str(exc)) from None
    except ContentError as exc:
        raise ApiError(422, "media", str(exc)) from None
    settings = config.link(link)
    _check_carriable(settings, items, fields_at)
    fallback = resolve_fallback(settings, parsed.fallback)
    slides = _slides(parsed.slides, items, positions) if parsed.slides is not None else None
    try:
        presentation = build_presentation(
            items,
            slides=slides,
            smil=parsed.smil.encode("utf-8") if parsed.smil is not None else None,
        )
    except SmilError as exc:
        raise ApiError(422, "smil", str(exc)) from None
    except ContentError as exc:
        raise ApiError(422, "slides" if slides is not None else "media", str(exc)) from None
    fields: dict[str, Any] = {
        "v": 1,
        "source": source,
        "api_key": key.name,
        # the recipient rows hold every address; a campaign's list is not repeated here (every
        # lease reads these fields: 100,000 addresses would be parsed again each time)
        "to": list(parsed.to[:FIELDS_TO_MAX]),
        "recipient_count": len(parsed.to),
        "from": parsed.sender,
        "subject": parsed.subject,
        "text": parsed.text,
        "delivery_report": parsed.delivery_report,
        "read_reply": parsed.read_reply,
        "priority": parsed.priority,
        "expiry": parsed.expiry.xsd if parsed.expiry else None,
        "earliest_delivery": parsed.earliest_delivery.xsd if parsed.earliest_delivery else None,
        "service_code": parsed.service_code,
        "linked_id": parsed.linked_id,
        "reply_to": parsed.reply_to,
        "presentation": {
            "layout": presentation.layout.value,
            # exactly one of slides and smil: the builder refuses both (the SMIL has its slides)
            "slides": None
            if parsed.smil is not None
            else [s.as_json() for s in presentation.slides],
            "smil": parsed.smil,
        },
        **(extra or {}),
    }
    if fallback is not None:
        fields["fallback"] = fallback
    parts = [
        MediaPart(
            content_type=item.media_type + (f"; charset={item.charset}" if item.charset else ""),
            data=item.data,
            content_id=item.content_id,
            content_location=item.content_location,
            digest=item.sha256,
        )
        for item in presentation.items
    ]
    message = NewMessage(
        link=link,
        fields=fields,
        idempotency_key=stored_key,
        request_digest=digest,
        expires_at=parsed.expiry.at if parsed.expiry else None,
        not_before=parsed.earliest_delivery.at if parsed.earliest_delivery else None,
        callback_url=callback_url if callback_url is not None else parsed.callback_url,
        allow_suppressed=confirmation,
    )
    try:
        taken = await take_quota(store, key, len(parsed.to))
    except QuotaExceeded as exc:
        # the retry of a message already accepted is answered as such, over quota or not
        if stored_key is not None:
            earlier = await _answered_before(store, stored_key, digest)
            if earlier is not None:
                return EnqueueResult(earlier, False)
        if (on_quota := app[ON_QUOTA_KEY]) is not None:
            on_quota(key.name, exc.quota)
        raise
    try:
        result = await store.enqueue_message(message, parsed.to, parts)
    except BaseException as exc:
        await give_back_quota(store, taken, len(parsed.to))
        if isinstance(exc, AllSuppressedError):
            raise suppressed_error(exc.addresses, parsed, config.relay.start_words) from None
        if isinstance(exc, IdempotencyConflictError):
            # the same key sent twice at once with different requests: the first one won
            raise _conflict(exc) from None
        raise
    # a repeat enqueued nothing; suppressed recipients are never sent
    await give_back_quota(
        store, taken, len(parsed.to) if not result.created else len(result.suppressed)
    )
    on_enqueued = app[ON_ENQUEUED_KEY]
    if result.created and on_enqueued is not None:
        on_enqueued(link)
    return result


def _conflict(exc: IdempotencyConflictError) -> ApiError:
    """422 ``idempotency_key``: the key was used before with another request."""
    return ApiError(
        422,
        "idempotency_key",
        f"already used for message {exc.message_id} with a different request; a retry must "
        "repeat the same request (use a new key for a new message)",
    )


# --------------------------------------------------------------------------- views


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def message_view(
    record: MessageRecord,
    *,
    hosted_url: str | None = None,
    fallbacks: Sequence[FallbackRecord] = (),
) -> dict[str, Any]:
    """The JSON of ``GET /v1/messages/{id}`` (schema ``Message`` in openapi.json);
    ``hosted_url``: the message's hosted page (``mm7.service.hosting``), null when off;
    ``fallbacks``: its recipients' SMS fallbacks (``recipients[i].fallback_sms``)."""
    sms = {f.recipient_id: fallback_view(f) for f in fallbacks}
    key = record.idempotency_key
    if key is not None and ":" in key:
        key = key.split(":", 1)[1]
    return {
        "id": record.id,
        "status": record.status.value,
        "link": record.link,
        "created_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
        "expires_at": _iso(record.expires_at),
        "not_before": _iso(record.not_before),
        "callback_url": record.callback_url,
        "idempotency_key": key,
        "hosted_url": hosted_url,
        "mm7_message_ids": sorted(
            {r.mm7_message_id for r in record.recipients if r.mm7_message_id}
        ),
        "recipients": [
            {
                "address": r.address,
                "status": r.status.value,
                "mm7_message_id": r.mm7_message_id,
                "transaction_id": r.transaction_id,
                "attempts": r.attempts,
                "last_status_code": r.last_status_code,
                "last_status_text": r.last_status_text,
                "updated_at": _iso(r.updated_at),
                "fallback_sms": sms.get(r.id),
            }
            for r in record.recipients
        ],
        "parts": [
            {
                "content_type": p.content_type,
                "size": p.size,
                "sha256": p.sha256,
                "content_id": p.content_id,
                "content_location": p.content_location,
            }
            for p in record.parts
        ],
        "events": [
            {
                "at": _iso(e.at),
                "kind": e.kind,
                "recipient": e.recipient,
                "status": e.status,
                "details": dict(e.details),
            }
            for e in record.events
        ],
    }


def fallback_view(record: FallbackRecord) -> dict[str, Any]:
    """A recipient's SMS fallback in ``GET /v1/messages/{id}`` (schema ``FallbackSms``)."""
    return {
        "status": record.status.value,
        "sms_link": record.sms_link,
        "sms_id": record.sms_id,
        "trigger": record.trigger,
        "attempts": record.attempts,
        "at": _iso(record.updated_at),
        "error": record.error,
    }
