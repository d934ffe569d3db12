"""The inbound MM7 endpoint (MMSC -> VASP): an aiohttp web application.

It accepts DeliverReq, DeliveryReportReq and ReadReplyReq on one path (``/mm7`` by default) in any
published schema version, calls the application's async handler for the request type, and answers
with the matching response that echoes the request's TransactionID, namespace and MM7Version.
What the handler returns (or raises) becomes the response status; the handler decides, so the
gateway answers 1000 only for what it has committed (DESIGN: acknowledge only what is committed).

    async def on_deliver(ctx: InboundContext[DeliverReq]) -> Status:
        await store.commit(ctx.message, ctx.parts)       # durable first
        return Status.of(1000)

    app = create_inbound_app(InboundConfig(peers=(Peer("mmsc", PeerAuth.of(basic=(u, p))),)),
                             InboundHandlers(on_deliver=on_deliver))
    web.run_app(app, port=8080)

The decision is pure and apart from aiohttp: ``admit`` picks the handler or the refusal,
``reply_for`` the answer to what the handler said (``Reply``: message, HTTP status, MM7 status);
``MM7Inbound`` only reads the body, runs the handler with its duplicate check, and writes the
Reply.

Errors are answered as the spec shapes them: a VASPErrorRsp inside a SOAP Fault's detail, with
the peer's ``fault_http_status`` (500 by default, 200 for peers that want it). The mapping of
every refusal to its MM7 status and HTTP status is in ``STATUS_MAP`` (and the module README text).

The body is streamed with a bound: a declared Content-Length over the limit is refused before a
byte of the body is read (also in answer to ``Expect: 100-continue``), and a chunked upload is cut
as soon as it passes the limit. Duplicate requests (an MMSC retry) reach the handler marked
``duplicate=True`` (see ``mm7.transport.dedupe``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog
from aiohttp import StreamReader, hdrs, web
from aiohttp.http import HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy

from mm7.core.codec import Decoded, encode, safe_echo
from mm7.core.dialect import STRICT_3GPP, Dialect
from mm7.core.emit import fault_code_for
from mm7.core.errors import MM7Error, ParseError
from mm7.core.leniency import Leniency
from mm7.core.limits import DEFAULT_LIMITS, Limits
from mm7.core.mime import Part
from mm7.core.model import (
    DeliverReq,
    DeliverRsp,
    DeliveryReportReq,
    DeliveryReportRsp,
    Fault,
    Message,
    ReadReplyReq,
    ReadReplyRsp,
    Request,
    Response,
    Status,
    VASPErrorRsp,
    reply_to,
)
from mm7.core.versions import ALL, Version, get_version
from mm7.transport.decode_off_loop import decode_request
from mm7.transport.dedupe import (
    DuplicateStore,
    KeyedLocks,
    MemoryDedupe,
    any_seen,
    dedupe_keys,
)
from mm7.transport.errors import BodyTooLarge, HandlerError
from mm7.transport.inbound_auth import (
    PEER_IDENTITY,
    PeerAuth,
    PeerIdentity,
    Presented,
    Refusal,
    auth_middleware,
    authenticate,
    log_refusal,
)
from mm7.transport.logs import LazyLog
from mm7.transport.wirelog import SECRET_HEADERS, wire_entry

__all__ = [
    "CARRIER_ID_HEADERS",
    "INBOUND",
    "STATUS_MAP",
    "BodyTooLarge",
    "Handler",
    "HandlerError",
    "HandlerResult",
    "InboundConfig",
    "InboundContext",
    "InboundHandlers",
    "MM7Inbound",
    "Peer",
    "Reply",
    "Route",
    "admit",
    "create_inbound_app",
    "fault_for",
    "handler_for",
    "handler_outcome",
    "read_bounded",
    "reply_for",
    "unreadable_reply",
    "version_refusal",
]

log = structlog.get_logger("mm7.transport.server")

#: (operation, status code) of the answer, kept on the request for ``InboundConfig.on_answer``
_ANSWERED = web.RequestKey("mm7_inbound_answered", tuple)

#: headers in which aggregators name the carrier a message came through; applications route on
#: it, so the first one present reaches handlers as ``carrier_id``
CARRIER_ID_HEADERS = (
    "X-Carrier-Id",
    "X-OpenMarket-Carrier-Id",
    "X-Mblox-Carrier-Id",
    "X-Skycore-Carrier-Id",
)

#: how each refusal is answered: (what, MM7 status, HTTP status). "fault" = the peer dialect's
#: fault_http_status (500 by default). Kept as data so the README and tests read one table.
STATUS_MAP: tuple[tuple[str, int | None, str], ...] = (
    ("handled, handler returned 1xxx", None, "200"),
    ("handler returned or raised a non-1xxx status", None, "fault (or 200 in the Rsp)"),
    ("handler failed unexpectedly / returned nonsense", 3000, "fault"),
    ("malformed MIME or SOAP (core ParseError)", 2007, "fault"),
    ("schema violation (core ValidationError)", 4004, "fault"),
    ("unknown body element", 4003, "fault"),
    ("SubmitReq/CancelReq/ReplaceReq/extended*/responses", 4003, "fault"),
    ("request type the application has no handler for", 4003, "fault"),
    ("version outside the peer's allow-list; strict: unknown namespace", 4002, "fault"),
    ("authentication: a password would let it in", 4001, "401 + WWW-Authenticate: Basic"),
    ("authentication: address or client certificate refused", 4001, "403"),
    ("body over limits.max_total_bytes (declared or streamed)", 2004, "413 (configurable)"),
)

ReqT = TypeVar("ReqT", bound=Request)
#: what a handler returns: a Status, or the full response (DeliverRsp with a ServiceCode, ...)
HandlerResult = Status | Response


@dataclass(frozen=True, slots=True)
class InboundContext(Generic[ReqT]):
    """What a handler gets: the request, how it was read, who sent it, and whether it is a retry."""

    message: ReqT
    #: the decode result: version, leniencies, parts (media, decoded once, not copied), soap
    decoded: Decoded
    peer: PeerIdentity
    #: the HTTP request headers, secrets (Authorization, Cookie, ...) removed
    headers: CIMultiDictProxy[str]
    #: the first carrier-id routing header present (X-OpenMarket-Carrier-Id, ...)
    carrier_id: str | None
    #: a request with the same TransactionID (or the same report) was already answered 1xxx
    duplicate: bool
    #: the SHA-256 of content bodies already hashed for duplicate detection, by ``id`` of the
    #: body (``mm7.transport.dedupe.content_digest``): ``digest_of`` reuses them
    leaf_digests: Mapping[int, bytes] = field(default_factory=dict)

    def digest_of(self, data: bytes) -> str:
        """The SHA-256 (hex) of ``data``, one of the message's bodies or any bytes."""
        known = self.leaf_digests.get(id(data))
        return known.hex() if known is not None else hashlib.sha256(data).hexdigest()

    @property
    def leniencies(self) -> tuple[Leniency, ...]:
        return self.decoded.leniencies

    @property
    def parts(self) -> tuple[Part, ...]:
        """Every MIME part besides the SOAP part (the message's content is ``message.content``)."""
        return self.decoded.parts

    @property
    def version(self) -> Version | None:
        """The schema of the request's namespace; None for an unknown namespace."""
        return self.decoded.version


Handler = Callable[[InboundContext[ReqT]], Awaitable[HandlerResult]]


@dataclass(frozen=True, slots=True)
class InboundHandlers:
    """The application's async handlers, one per request type; None answers 4003."""

    on_deliver: Handler[DeliverReq] | None = None
    on_delivery_report: Handler[DeliveryReportReq] | None = None
    on_read_reply: Handler[ReadReplyReq] | None = None


@dataclass(frozen=True, slots=True)
class Peer:
    """One MMSC that may call the endpoint: how it is recognised and how it is answered."""

    name: str
    auth: PeerAuth = field(default_factory=PeerAuth)
    #: how responses to this peer are written (prefixes, fault HTTP status, ...); the version is
    #: always the request's (echoed), and responses are written leniently so any pair echoes
    dialect: Dialect = STRICT_3GPP
    #: schema versions accepted (tokens); a known namespace outside it is answered 4002
    versions: frozenset[str] = ALL
    #: refuse (4002) an unknown namespace, no namespace, or an MM7Version its namespace does not
    #: allow, and (4004) a request without an element its schema requires; lenient (the
    #: default) accepts and echoes odd versions and reads what it can act on
    strict: bool = False
    #: non-1xxx statuses as a VASPErrorRsp in a SOAP Fault (spec); False: inside the normal Rsp,
    #: HTTP 200, for peers that want that (mmsgw, Seoultel style)
    errors_as_fault: bool = True
    #: log every request and response through the redacted wire log
    wire_log: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Peer.name must not be empty")
        tokens = frozenset(get_version(v).token for v in self.versions)
        object.__setattr__(self, "versions", tokens)


@dataclass(frozen=True, slots=True)
class InboundConfig:
    """The endpoint: path, peers, size bounds and HTTP choices."""

    path: str = "/mm7"
    #: callers; the first whose checks all pass is the peer. The default is one open peer: set
    #: real authentication for anything reachable from outside
    peers: tuple[Peer, ...] = (Peer("default"),)
    #: parser bounds; ``max_total_bytes`` also bounds the streamed HTTP body
    limits: Limits = DEFAULT_LIMITS
    #: HTTP status answering a body over the limit (with a 2004 fault)
    oversize_http_status: int = 413
    carrier_id_headers: tuple[str, ...] = CARRIER_ID_HEADERS
    #: GET route answering {"status": "ok"}; None: no route
    health_path: str | None = "/healthz"
    #: how answers are written before a peer is known (authentication refusals, oversize)
    dialect: Dialect = STRICT_3GPP
    #: called once per decoded-or-refused request with (operation, MM7 status code answered);
    #: operation "unreadable" for a body that did not decode (metrics hook)
    on_answer: Callable[[str, int], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"InboundConfig.path must start with '/': {self.path!r}")
        if not self.peers:
            raise ValueError("InboundConfig.peers must name at least one peer")
        names = [p.name for p in self.peers]
        if len(set(names)) != len(names):
            raise ValueError(f"InboundConfig.peers: duplicate peer names in {names}")
        if not 400 <= self.oversize_http_status <= 599:
            raise ValueError("InboundConfig.oversize_http_status must be a 4xx or 5xx status")


async def read_bounded(stream: StreamReader, limit: int) -> bytes:
    """The whole body of ``stream``, refusing (BodyTooLarge) once more than ``limit`` arrived.

    Chunks are kept as they come and joined once: one copy of the body, never a growing buffer.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await stream.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size, limit, declared=False)
        chunks.append(chunk)


# -- the decision: pure (no aiohttp, no I/O); MM7Inbound feeds it and writes what it returns


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer decided: the MM7 message to write, its HTTP status, and the MM7 status it says."""

    message: Message
    http_status: int
    status: Status


@dataclass(frozen=True, slots=True)
class Route:
    """A request admitted: the application's handler to call and the response type answering it."""

    handler: Handler[Any]
    response: type[Response]
    #: the request as its answer echoes it (namespace made safe to write back)
    echo: Message


def handler_for(
    handlers: InboundHandlers, message: Message
) -> tuple[Handler[Any] | None, type[Response]] | None:
    """The application's handler for ``message`` (None when it has none) and the response type;
    None for a message an MMSC does not send to a VASP."""
    match message:
        case DeliverReq():
            return handlers.on_deliver, DeliverRsp
        case DeliveryReportReq():
            return handlers.on_delivery_report, DeliveryReportRsp
        case ReadReplyReq():
            return handlers.on_read_reply, ReadReplyRsp
    return None


def admit(decoded: Decoded, peer: Peer, handlers: InboundHandlers) -> Route | Reply:
    """Which handler a decoded request goes to, or the refusal answering it: 4002 for a version
    the peer is not accepted in, 4003 for an operation not sent to a VASP or not handled here."""
    echo = safe_echo(decoded.message)
    found = handler_for(handlers, decoded.message)
    refusal = version_refusal(peer, decoded)
    if refusal is not None:
        return reply_for(peer, echo, found[1] if found is not None else None, refusal)
    if found is None:
        why = f"{decoded.operation} is not an operation an MMSC sends to a VASP"
        return reply_for(peer, echo, None, Status.of(4003, why))
    handler, response = found
    if handler is None:
        why = f"{decoded.operation} is not handled here"
        return reply_for(peer, echo, response, Status.of(4003, why))
    return Route(handler, response, echo)


def version_refusal(peer: Peer, decoded: Decoded) -> Status | None:
    """4002 for a schema version this peer is not accepted in, else None."""
    message = decoded.message
    version = decoded.version
    if version is not None:
        if version.token not in peer.versions:
            accepted = ", ".join(sorted(peer.versions))
            return Status.of(4002, f"{version.token} is not accepted (accepted: {accepted})")
    elif peer.strict:
        what = repr(message.namespace) if message.namespace else "no namespace"
        return Status.of(4002, f"MM7 namespace {what} is not a published schema")
    if peer.strict and Leniency.VERSION_NAMESPACE_MISMATCH in decoded.leniencies:
        token = version.token if version is not None else "its namespace"
        return Status.of(4002, f"MM7Version {message.mm7_version!r} is not allowed by {token}")
    return None


def handler_outcome(
    result: object, response: type[Response]
) -> tuple[Status, Response | None] | None:
    """What a handler's return value answers: its Status, or its response and that response's
    status (the spec text filled in); None when it returned something else."""
    if isinstance(result, Status):
        return _complete(result), None
    if isinstance(result, response):
        status = _complete(result.status)
        return status, dataclasses.replace(result, status=status)
    if isinstance(result, VASPErrorRsp):
        return _complete(result.status), None
    return None


def reply_for(
    peer: Peer,
    echo: Message | None,
    response: type[Response] | None,
    status: Status,
    full: Response | None = None,
) -> Reply:
    """The answer carrying ``status``: the handler's ``full`` response when it gave one and
    succeeded, the normal Rsp for 1xxx (or for errors, if the peer wants that), else a
    VASPErrorRsp fault with the peer dialect's fault HTTP status."""
    if full is not None and status.is_success:
        return Reply(full if echo is None else reply_to(echo, full), 200, status)
    if response is not None and (status.is_success or not peer.errors_as_fault):
        rsp = response(status=status)
        return Reply(rsp if echo is None else reply_to(echo, rsp), 200, status)
    return Reply(fault_for(echo, status), peer.dialect.fault_http_status, status)


def unreadable_reply(peer: Peer, echo: Message | None, exc: ParseError) -> Reply:
    """The fault answering a body the codec refused: the parser's status (2007, 4004...) and
    where it failed, echoing what could be salvaged of the envelope."""
    status = Status.of(exc.status_code, _details(str(exc)))
    return Reply(fault_for(echo, status), peer.dialect.fault_http_status, status)


def fault_for(echo: Message | None, status: Status) -> Fault:
    """A SOAP Fault with a VASPErrorRsp carrying ``status`` in its detail, echoing ``echo``."""
    error = VASPErrorRsp(status=status)
    fault = Fault(faultcode=fault_code_for(status), faultstring=status.text, error=error)
    if echo is not None:
        fault = reply_to(echo, dataclasses.replace(fault, error=reply_to(echo, error)))
    return fault


class MM7Inbound:
    """The inbound endpoint: configuration, handlers and duplicate store; ``application()``."""

    def __init__(
        self,
        config: InboundConfig | None = None,
        handlers: InboundHandlers | None = None,
        *,
        dedupe: DuplicateStore | None = None,
    ) -> None:
        self.config = config or InboundConfig()
        self.handlers = handlers or InboundHandlers()
        #: None: an in-memory LRU/TTL store; pass NoDedupe() to switch detection off
        self.dedupe: DuplicateStore = dedupe if dedupe is not None else MemoryDedupe()
        self._locks = KeyedLocks()
        self._peers = {p.name: p for p in self.config.peers}
        self._lax = {p.name: _lax(p.dialect) for p in self.config.peers}
        self._default_dialect = _lax(self.config.dialect)
        for peer in self.config.peers:
            if peer.auth.is_open:
                log.warning("mm7.inbound.open_peer", peer=peer.name, path=self.config.path)

    # -- wiring

    def application(self) -> web.Application:
        """A new aiohttp application serving this endpoint (auth middleware, MM7 and health)."""
        app = web.Application(
            middlewares=[
                auth_middleware(
                    self.config.peers, paths=[self.config.path], on_refused=self._refused
                )
            ]
        )
        app[INBOUND] = self
        app.router.add_post(self.config.path, self.handle, expect_handler=self._expect)
        if self.config.health_path:
            app.router.add_get(self.config.health_path, self._health)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: refuse a stranger or an oversized body before it is sent."""
        outcome = authenticate(self.config.peers, Presented.from_request(request))
        if isinstance(outcome, Refusal):
            log_refusal(request, outcome)
            return await self._refused(request, outcome)
        declared = request.content_length
        limit = self.config.limits.max_total_bytes
        if declared is not None and declared > limit:
            peer = self._peers[outcome.name]
            return self._oversize(peer, BodyTooLarge(declared, limit, declared=True), outcome)
        expect = request.headers.get(hdrs.EXPECT, "")
        if request.version != HttpVersion11 or expect.lower() != "100-continue":
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
        return None

    async def _refused(self, request: web.Request, refusal: Refusal) -> web.StreamResponse:
        """4001 in a fault, HTTP 401 + challenge or 403; the body is never read."""
        status = Status.of(4001)
        fault = fault_for(None, status)
        response = self._encode_response(self._default_dialect, fault, refusal.http_status)
        if refusal.challenge:
            response.headers[hdrs.WWW_AUTHENTICATE] = refusal.challenge
        response.force_close()
        return response

    # -- the MM7 route

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Read, decode, check, dispatch and answer one MM7 request."""
        identity = request.get(PEER_IDENTITY)
        if identity is None:  # mounted without the middleware: authenticate here
            outcome = authenticate(self.config.peers, Presented.from_request(request))
            if isinstance(outcome, Refusal):
                log_refusal(request, outcome)
                return await self._refused(request, outcome)
            identity = outcome
        peer = self._peers[identity.name]
        bound = LazyLog("mm7.transport.server", peer=peer.name, remote=request.remote)
        limit = self.config.limits.max_total_bytes
        content_type = request.headers.get(hdrs.CONTENT_TYPE)
        try:
            declared = request.content_length
            if declared is not None and declared > limit:
                raise BodyTooLarge(declared, limit, declared=True)
            body = await read_bounded(request.content, limit)
        except BodyTooLarge as exc:
            return self._oversize(peer, exc, identity)
        if peer.wire_log:
            bound.info(
                "mm7.inbound.wire",
                **wire_entry(
                    "inbound-request",
                    url=str(request.rel_url),
                    headers=request.headers,
                    body=body,
                    content_type=content_type,
                ),
            )
        response = await self._answer(request, peer, identity, body, content_type, bound)
        answered = request.get(_ANSWERED)
        if answered is not None and self.config.on_answer is not None:
            try:
                self.config.on_answer(*answered)
            except Exception:
                bound.exception("mm7.inbound.on_answer_failed")
        if peer.wire_log:
            bound.info(
                "mm7.inbound.wire",
                **wire_entry(
                    "inbound-response",
                    status=response.status,
                    headers=response.headers,
                    body=response.body if isinstance(response.body, bytes) else b"",
                    content_type=response.headers.get(hdrs.CONTENT_TYPE),
                ),
            )
        return response

    async def _answer(
        self,
        request: web.Request,
        peer: Peer,
        identity: PeerIdentity,
        body: bytes,
        content_type: str | None,
        bound: Any,
    ) -> web.Response:
        """Decode, let ``admit`` choose the handler or the refusal, run the handler (duplicate
        check around it), and write the ``Reply`` chosen for its outcome."""
        dialect = self._lax[peer.name]
        outcome = await decode_request(body, content_type, self.config.limits, peer.strict)
        if isinstance(outcome, tuple):
            exc, echo = outcome
            if echo is not None:
                bound = bound.bind(transaction_id=echo.transaction_id)
            reply = unreadable_reply(peer, echo, exc)
            bound.warning("mm7.inbound.refused", status=reply.status.code, reason=str(exc))
            request[_ANSWERED] = ("unreadable", reply.status.code)
            return self._write(dialect, reply)

        decoded = outcome
        message = decoded.message
        bound = bound.bind(
            transaction_id=message.transaction_id,
            message_id=getattr(message, "message_id", None),
            operation=decoded.operation,
        )
        route = admit(decoded, peer, self.handlers)
        if isinstance(route, Reply):
            status = route.status
            bound.warning("mm7.inbound.refused", status=status.code, reason=status.details)
            request[_ANSWERED] = (decoded.operation, status.code)
            return self._write(dialect, route)
        assert isinstance(message, Request)

        leaves: dict[int, bytes] = {}
        keys = dedupe_keys(peer.name, message, leaves)
        async with self._locks.hold(keys):
            try:
                duplicate = await any_seen(self.dedupe, keys)
            except Exception:
                # at-least-once: a store outage must not stop traffic; the relay is idempotent
                bound.exception("mm7.inbound.dedupe_failed", step="seen")
                duplicate = False
            context: InboundContext[Any] = InboundContext(
                message=message,
                decoded=decoded,
                peer=identity,
                headers=_public_headers(request),
                carrier_id=self._carrier_id(request),
                duplicate=duplicate,
                leaf_digests=leaves,
            )
            status, rsp = await self._call(route, context, bound)
            if status.is_success:
                try:
                    for key in keys:
                        await self.dedupe.record(key)
                except Exception:
                    # committed already: answer the success; a retry is then processed again
                    bound.exception("mm7.inbound.dedupe_failed", step="record")
        bound.info(
            "mm7.inbound.answered",
            status=status.code,
            duplicate=duplicate,
            leniencies=list(decoded.leniencies),
        )
        request[_ANSWERED] = (decoded.operation, status.code)
        return self._write(dialect, reply_for(peer, route.echo, route.response, status, rsp))

    async def _call(
        self, route: Route, context: InboundContext[Any], bound: Any
    ) -> tuple[Status, Response | None]:
        """Run the handler: its Status, or its response and that response's status.

        Anything unexpected (an exception, a wrong return type) is 3000 with no details; the
        traceback goes to the server log only.
        """
        try:
            result = await route.handler(context)
        except HandlerError as exc:
            return _complete(exc.status), None
        except Exception:
            bound.exception("mm7.inbound.handler_failed")
            return Status.of(3000), None
        outcome = handler_outcome(result, route.response)
        if outcome is None:
            bound.error(
                "mm7.inbound.handler_failed",
                reason=f"handler returned {type(result).__name__}, expected Status or "
                f"{route.response.__name__}",
            )
            return Status.of(3000), None
        return outcome

    def _carrier_id(self, request: web.Request) -> str | None:
        for name in self.config.carrier_id_headers:
            value = request.headers.get(name)
            if value:
                return value
        return None

    # -- answers

    def _oversize(self, peer: Peer, exc: BodyTooLarge, identity: PeerIdentity) -> web.Response:
        log.warning(
            "mm7.inbound.refused",
            peer=identity.name,
            remote=identity.remote,
            status=2004,
            reason=str(exc),
        )
        status = Status.of(2004, str(exc))
        response = self._encode_response(
            self._lax[peer.name], fault_for(None, status), self.config.oversize_http_status
        )
        response.force_close()  # the rest of the body is not wanted: close, do not drain
        return response

    def _write(self, dialect: Dialect, reply: Reply) -> web.Response:
        return self._encode_response(dialect, reply.message, reply.http_status)

    def _encode_response(
        self, dialect: Dialect, message: Message, http_status: int
    ) -> web.Response:
        """Encode ``message``; if the echo cannot be written, answer without it (never crash)."""
        try:
            encoded = encode(message, dialect)
        except MM7Error:
            log.exception("mm7.inbound.encode_failed", operation=type(message).__name__)
            bare = dataclasses.replace(message, transaction_id="", namespace=None, mm7_version=None)
            if isinstance(bare, Fault) and bare.error is not None:
                plain = VASPErrorRsp(status=bare.error.status)
                bare = dataclasses.replace(bare, error=plain)
            encoded = encode(bare, dialect)
        return web.Response(
            status=http_status,
            body=encoded.body,
            headers={hdrs.CONTENT_TYPE: encoded.content_type},
        )


#: where the MM7Inbound serving an application is kept (``app[INBOUND]``)
INBOUND = web.AppKey("mm7_inbound", MM7Inbound)


def create_inbound_app(
    config: InboundConfig | None = None,
    handlers: InboundHandlers | None = None,
    *,
    dedupe: DuplicateStore | None = None,
) -> web.Application:
    """An aiohttp application serving the MM7 inbound endpoint (see ``MM7Inbound``)."""
    return MM7Inbound(config, handlers, dedupe=dedupe).application()


def _lax(dialect: Dialect) -> Dialect:
    """The dialect responses are written in: the peer's, but echoing any version pair."""
    return dataclasses.replace(dialect, strict=False, allow_any_mm7_version=True)


def _complete(status: Status) -> Status:
    """``status`` with the spec's text when the handler gave none."""
    if status.text:
        return status
    return dataclasses.replace(status, text=Status.of(status.code).text)


#: keep Details short: it names where the parse failed, it is not a dump of the body
_MAX_DETAILS = 512


def _details(text: str) -> str:
    """Parser error text made safe for a Details element (printable, bounded)."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean[:_MAX_DETAILS]


def _public_headers(request: web.BaseRequest) -> CIMultiDictProxy[str]:
    """The request headers without secrets (handlers may log them)."""
    kept: CIMultiDict[str] = CIMultiDict(
        (k, v) for k, v in request.headers.items() if k.lower() not in SECRET_HEADERS
    )
    return CIMultiDictProxy(kept)
