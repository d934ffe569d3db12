"""The MM7 client for one MMSC link: encode a request, POST it, read and judge the answer.

    async with MM7Client(LinkConfig(name="carrier", url="https://mmsc.example/mm7")) as client:
        rsp = await client.submit(SubmitReq(...))      # SubmitRsp, or MM7ClientError

One aiohttp ClientSession per link (keep-alive pool sized to ``max_in_flight``), shared flow
control (TPS, in-flight bound, circuit breaker). The response body is always read and parsed
whatever the HTTP status, so a 2002 inside an HTTP 500 is a permanent error and not a retry
(ANCHORS quirk 20); text/xml, application/xml and multipart answers are all accepted; a blank
200 is success only when the dialect allows it. Every non-success raises ``MM7ClientError``,
classified by ``mm7.transport.classify``. The client also speaks the MMSC's half (DeliverReq,
DeliveryReportReq, ReadReplyReq to a VASP), so a simulator can use it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar

import aiohttp
import structlog

from mm7.core.codec import Decoded, decode, encode
from mm7.core.errors import MM7Error
from mm7.core.leniency import Leniency
from mm7.core.model import (
    RESPONSE_FOR,
    SUCCESS,
    CancelReq,
    CancelRsp,
    ExtendedCancelReq,
    ExtendedCancelRsp,
    ExtendedReplaceReq,
    ExtendedReplaceRsp,
    Fault,
    Message,
    ReplaceReq,
    ReplaceRsp,
    Request,
    Response,
    RSErrorRsp,
    Status,
    SubmitReq,
    SubmitRsp,
    VASPErrorRsp,
    reply_to,
)
from mm7.transport.classify import Classifier, Outcome, Verdict
from mm7.transport.client_auth import (
    CertificateInfo,
    auth_setup,
    check_certificate,
    make_ssl_context,
)
from mm7.transport.errors import MM7ClientError
from mm7.transport.flow import BreakerOpen, Clock, LinkFlow, Sleep
from mm7.transport.link import LinkConfig
from mm7.transport.wirelog import redact_headers, redact_url, wire_entry

__all__ = ["BLANK_200", "MM7Client", "Result", "new_transaction_id"]

log = structlog.get_logger("mm7.transport.client")

#: the leniency a Result names when a blank 2xx was taken as success (dialect.accept_blank_200)
BLANK_200 = Leniency.BLANK_200
#: the header VectorCore puts the MM7 status in when its Fault has none (ANCHORS quirk 19)
STATUS_HEADER = "X-MM7-Status-Code"

R = TypeVar("R", bound=Response)


def new_transaction_id() -> str:
    """A fresh TransactionID: 32 hex digits, valid as xs:NMTOKEN in every schema version."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Result(Generic[R]):
    """A successful exchange: the typed response and how it came."""

    #: the typed response (SubmitRsp, CancelRsp, ...), status 1xxx
    message: R
    #: the request as sent (its TransactionID filled in when it had none)
    request: Request
    http_status: int
    #: SUCCESS, or PARTIAL for 1100
    verdict: Verdict
    #: named leniencies the response needed (codec names, or BLANK_200)
    leniencies: tuple[str, ...] = ()
    #: response headers, secrets masked
    headers: tuple[tuple[str, str], ...] = ()
    #: the HTTP bodies exchanged, for traffic records (the simulator, interop captures)
    request_body: bytes = field(default=b"", repr=False, compare=False)
    response_body: bytes = field(default=b"", repr=False, compare=False)

    @property
    def status(self) -> Status:
        return self.message.status


@dataclass(slots=True)
class _Exchange:
    """One request on its way: what logs and errors need to name it."""

    request: Request
    operation: str
    expected: type[Response]
    log: Any
    sent: bytes = b""
    received: bytes = b""


class MM7Client:
    """The client of one MMSC link; share one instance between all callers of the link."""

    def __init__(
        self,
        link: LinkConfig,
        *,
        flow: LinkFlow | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.link = link
        self.classifier = Classifier(link.classification)
        self.flow = flow or LinkFlow(
            tps=link.tps,
            burst=link.burst,
            max_in_flight=link.max_in_flight,
            breaker_threshold=link.breaker_threshold,
            breaker_cooldown=link.breaker_cooldown,
            clock=clock,
            sleep=sleep,
        )
        self.flow.breaker.bind(link=link.name)
        self._auth = auth_setup(link.auth)
        # built now so a bad or expired certificate fails at construction, not at first send
        self._ssl: ssl.SSLContext | None = make_ssl_context(link.tls, link=link.name)
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the link's session (idempotent); ``async with`` does it for you."""
        if self._session is not None and not self._session.closed:
            return
        link = self.link
        connector = aiohttp.TCPConnector(
            limit=link.max_in_flight,
            limit_per_host=link.max_in_flight,
            keepalive_timeout=link.keepalive_timeout,
            ssl=self._ssl if self._ssl is not None else True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=link.request_timeout,
                connect=link.connect_timeout,
                sock_connect=link.connect_timeout,
            ),
            middlewares=self._auth.middlewares,
            raise_for_status=False,
            trust_env=False,
        )
        log.debug(
            "mm7.client.started", link=link.name, url=redact_url(link.url), auth=self._auth.scheme
        )

    def certificate(self) -> CertificateInfo | None:
        """Check our client certificate again (warns when it is close to expiry, raises
        LinkConfigError once expired): for a gateway's periodic health check."""
        tls = self.link.tls
        if tls is None or tls.cert_file is None:
            return None
        return check_certificate(
            tls.cert_file, link=self.link.name, warning_days=tls.expiry_warning_days
        )

    async def close(self) -> None:
        """Close the session and its pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> MM7Client:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- typed operations ------------------------------------------------------------------------
    async def submit(self, request: SubmitReq) -> SubmitRsp:
        """Send a SubmitReq; its SubmitRsp (1000, or 1100 partial success) or MM7ClientError."""
        return _as(await self.send(request), SubmitRsp)

    async def cancel(self, request: CancelReq) -> CancelRsp:
        """Cancel a submitted message by MessageID; its CancelRsp or MM7ClientError."""
        return _as(await self.send(request), CancelRsp)

    async def replace(self, request: ReplaceReq) -> ReplaceRsp:
        """Replace a submitted message's content by MessageID; ReplaceRsp or MM7ClientError."""
        return _as(await self.send(request), ReplaceRsp)

    async def extended_cancel(self, request: ExtendedCancelReq) -> ExtendedCancelRsp:
        """REL-6-MM7-1-4 only (the dialect's version decides; others raise INVALID_REQUEST)."""
        return _as(await self.send(request), ExtendedCancelRsp)

    async def extended_replace(self, request: ExtendedReplaceReq) -> ExtendedReplaceRsp:
        """REL-6-MM7-1-4 only."""
        return _as(await self.send(request), ExtendedReplaceRsp)

    # -- the generic exchange --------------------------------------------------------------------
    async def send(self, request: Request) -> Result[Response]:
        """Send any MM7 request and return its typed response in a Result; MM7ClientError for
        every non-success (MM7 error status, HTTP error, timeout, reset, open breaker...)."""
        if not request.transaction_id:
            request = dataclasses.replace(request, transaction_id=new_transaction_id())
        expected = RESPONSE_FOR.get(type(request))
        ex = _Exchange(
            request,
            request.OPERATION,
            expected or Response,
            # bound per request, not once per client: a logging set-up changed later still applies
            log.bind(
                link=self.link.name,
                transaction_id=request.transaction_id,
                operation=request.OPERATION,
                message_id=getattr(request, "message_id", None),
            ),
        )
        if expected is None:
            raise self._error(ex, Outcome.INVALID_REQUEST, f"{request.OPERATION} is not a request")
        self._check_recipients(ex)
        try:
            encoded = encode(request, self.link.dialect)
        except MM7Error as exc:
            raise self._error(ex, Outcome.INVALID_REQUEST, f"cannot encode it: {exc}") from None
        ex.sent = encoded.body
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("MM7Client is not started: use 'async with MM7Client(link)'")

        try:
            async with self.flow.slot():
                try:
                    result = await self._exchange(session, ex, encoded.content_type, encoded.body)
                except MM7ClientError as exc:
                    if exc.transient:
                        self.flow.breaker.record_failure()
                    else:
                        self.flow.breaker.record_success()  # it answered: the link is alive
                    raise
                self.flow.breaker.record_success()
                return result
        except BreakerOpen as exc:
            raise self._error(
                ex,
                Outcome.CIRCUIT_OPEN,
                "not sent: circuit breaker open",
                retry_after=exc.retry_after,
            ) from None

    # -- internals -------------------------------------------------------------------------------
    def _check_recipients(self, ex: _Exchange) -> None:
        limit = self.link.max_recipients
        request = ex.request
        if isinstance(request, SubmitReq) and limit is not None and len(request.recipients) > limit:
            raise self._error(
                ex,
                Outcome.INVALID_REQUEST,
                f"{len(request.recipients)} recipients over the link's max_recipients {limit}: "
                "use mm7.transport.fanout.submit_fanout",
            )

    async def _exchange(
        self, session: aiohttp.ClientSession, ex: _Exchange, content_type: str, body: bytes
    ) -> Result[Response]:
        link = self.link
        dialect = link.dialect
        headers: dict[str, str] = {"Content-Type": content_type, "User-Agent": link.user_agent}
        soap_action = dialect.soap_action_header()
        if soap_action is not None:
            headers["SOAPAction"] = soap_action
        headers.update(dialect.extra_headers)
        headers.update(self._auth.headers)
        if link.wire_log:
            ex.log.info(
                "mm7.wire",
                **wire_entry(
                    "request", url=link.url, headers=headers, body=body, content_type=content_type
                ),
                auth=self._auth.scheme,
            )
        extra: dict[str, Any] = {}
        if link.tls is not None and link.tls.server_hostname:
            extra["server_hostname"] = link.tls.server_hostname
        started = time.monotonic()
        try:
            # no redirects: an MMSC that moves is a configuration matter, and following one
            # would hand our credentials to another origin
            async with session.post(
                link.url,
                data=body,
                headers=headers,
                chunked=dialect.chunked or None,
                allow_redirects=False,
                **extra,
            ) as resp:
                http_status = resp.status
                rsp_headers = resp.headers
                rsp_body = await self._read_body(resp)
                ex.received = rsp_body
        except TimeoutError:
            raise self._error(
                ex,
                Outcome.TIMEOUT,
                f"timed out (connect {link.connect_timeout:g}s, "
                f"whole exchange {link.request_timeout:g}s)",
            ) from None
        except aiohttp.ClientError as exc:
            outcome = _transport_outcome(exc, tls=link.is_tls)
            raise self._error(ex, outcome, f"{type(exc).__name__}: {_short(exc)}") from None
        except _TooLarge as exc:
            return self._judge(ex, exc.status, exc.headers, b"", started, too_large=True)
        if link.wire_log:
            ex.log.info(
                "mm7.wire",
                **wire_entry(
                    "response",
                    status=http_status,
                    headers=rsp_headers.items(),
                    body=rsp_body,
                    content_type=rsp_headers.get("Content-Type"),
                ),
            )
        return self._judge(ex, http_status, rsp_headers, rsp_body, started)

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        """The whole body, refused once it passes the link's max_total_bytes."""
        limit = self.link.limits.max_total_bytes
        if resp.content_length is not None and resp.content_length > limit:
            raise _TooLarge(resp.status, resp.headers)
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(64 * 1024):
            buf += chunk
            if len(buf) > limit:
                raise _TooLarge(resp.status, resp.headers)
        return bytes(buf)

    def _judge(
        self,
        ex: _Exchange,
        http_status: int,
        headers: Mapping[str, str],
        body: bytes,
        started: float,
        *,
        too_large: bool = False,
    ) -> Result[Response]:
        """The Result, or the MM7ClientError, that this HTTP answer means."""
        ok_http = 200 <= http_status <= 299
        header_status = _header_status(headers)
        retry_after = _retry_after(headers)
        common: dict[str, Any] = {"http_status": http_status, "retry_after": retry_after}
        if too_large or not body.strip():
            if header_status is not None:
                raise self._status_error(ex, header_status, None, (), common)
            if ok_http and not too_large:
                if self.link.dialect.accept_blank_200:
                    message = reply_to(ex.request, ex.expected(status=SUCCESS))
                    ex.log.info("mm7.client.blank_200_accepted", http_status=http_status)
                    return self._success(ex, message, http_status, (BLANK_200,), headers, started)
                raise self._error(
                    ex,
                    Outcome.BLANK_200,
                    "blank answer where a response was due (dialect accept_blank_200 is off)",
                    **common,
                )
            what = f"an answer over the {self.link.limits.max_total_bytes}-byte limit"
            if too_large and ok_http:
                raise self._error(ex, Outcome.MALFORMED, what, **common)
            raise self._http_error(ex, http_status, what if too_large else "a blank body", common)
        try:
            decoded = decode(body, headers.get("Content-Type"), self.link.limits)
        except MM7Error as exc:
            if header_status is not None:
                raise self._status_error(ex, header_status, None, (), common) from None
            if ok_http:
                raise self._error(
                    ex, Outcome.MALFORMED, f"unreadable answer: {_short(exc)}", **common
                ) from None
            raise self._http_error(
                ex, http_status, f"unreadable body ({_short(exc)})", common
            ) from None
        return self._judge_message(
            ex, decoded, http_status, headers, header_status, common, started
        )

    def _judge_message(
        self,
        ex: _Exchange,
        decoded: Decoded,
        http_status: int,
        headers: Mapping[str, str],
        header_status: Status | None,
        common: dict[str, Any],
        started: float,
    ) -> Result[Response]:
        message = decoded.message
        leniencies = tuple(str(x) for x in decoded.leniencies)
        if decoded.leniencies:
            ex.log.debug("mm7.client.leniencies", leniencies=list(leniencies))
        if isinstance(message, Fault):
            status = message.status or header_status
            if status is None:
                outcome = _fault_outcome(message.faultcode)
                raise self._error(
                    ex,
                    outcome,
                    f"SOAP Fault {message.faultcode!r} ({message.faultstring!r}), no MM7 status",
                    response=message,
                    leniencies=leniencies,
                    **common,
                )
            raise self._status_error(ex, status, message, leniencies, common)
        if isinstance(message, RSErrorRsp | VASPErrorRsp):
            raise self._status_error(ex, message.status, message, leniencies, common)
        if not isinstance(message, ex.expected):
            raise self._error(
                ex,
                Outcome.UNEXPECTED_RESPONSE,
                f"answered with {message.OPERATION}, expected {ex.expected.OPERATION}",
                response=message,
                leniencies=leniencies,
                **common,
            )
        assert isinstance(message, Response)
        verdict = self.classifier.status(message.status.code)
        if not verdict.ok:
            raise self._status_error(ex, message.status, message, leniencies, common)
        if message.transaction_id and message.transaction_id != ex.request.transaction_id:
            ex.log.warning("mm7.client.transaction_id_mismatch", answered=message.transaction_id)
        return self._success(ex, message, http_status, leniencies, headers, started)

    def _success(
        self,
        ex: _Exchange,
        message: Response,
        http_status: int,
        leniencies: tuple[str, ...],
        headers: Mapping[str, str],
        started: float,
    ) -> Result[Response]:
        verdict = self.classifier.status(message.status.code)
        message_id = getattr(message, "message_id", None) or getattr(ex.request, "message_id", None)
        ex.log.info(
            "mm7.client.response",
            message_id=message_id,
            status_code=message.status.code,
            http_status=http_status,
            elapsed_ms=round((time.monotonic() - started) * 1000, 1),
        )
        kept = tuple(redact_headers(list(headers.items())))
        return Result(
            message, ex.request, http_status, verdict, leniencies, kept, ex.sent, ex.received
        )

    def _status_error(
        self,
        ex: _Exchange,
        status: Status,
        response: Message | None,
        leniencies: tuple[str, ...],
        common: dict[str, Any],
    ) -> MM7ClientError:
        verdict = self.classifier.status(status.code)
        outcome = Outcome.MM7_STATUS
        note = ""
        if verdict.ok:
            # an error element or a Fault that claims success: contradictory, do not resend
            outcome, verdict, note = Outcome.UNEXPECTED_RESPONSE, Verdict.PERMANENT, " in an error"
        where = f" (HTTP {common['http_status']})" if common.get("http_status") else ""
        text = f"MM7 status {status.code} {status.text}".rstrip()
        return self._error(
            ex,
            outcome,
            f"{text}{note}{where}",
            verdict=verdict,
            status=status,
            response=response,
            leniencies=leniencies,
            **common,
        )

    def _http_error(
        self, ex: _Exchange, http_status: int, what: str, common: dict[str, Any]
    ) -> MM7ClientError:
        return self._error(
            ex,
            Outcome.HTTP_STATUS,
            f"HTTP {http_status} with {what}",
            verdict=self.classifier.http(http_status),
            **common,
        )

    def _error(
        self,
        ex: _Exchange,
        outcome: Outcome,
        what: str,
        *,
        verdict: Verdict | None = None,
        status: Status | None = None,
        http_status: int | None = None,
        response: Message | None = None,
        leniencies: tuple[str, ...] = (),
        retry_after: float | None = None,
    ) -> MM7ClientError:
        """Build (and log) the error; the message names the link and request, never a secret."""
        verdict = verdict or self.classifier.outcome(outcome)
        message = (
            f"link {self.link.name!r}: {ex.operation} {ex.request.transaction_id}: {what} "
            f"[{outcome.value}, {verdict.value}]"
        )
        error = MM7ClientError(
            message,
            link=self.link.name,
            operation=ex.operation,
            transaction_id=ex.request.transaction_id,
            outcome=outcome,
            verdict=verdict,
            status=status,
            http_status=http_status,
            response=response,
            leniencies=leniencies,
            retry_after=retry_after,
        )
        error.request_body, error.response_body = ex.sent, ex.received
        # refusals by an open breaker come in floods: one warning when it opens is enough
        emit = ex.log.info if outcome is Outcome.CIRCUIT_OPEN else ex.log.warning
        emit(
            "mm7.client.error",
            outcome=outcome.value,
            verdict=verdict.value,
            status_code=error.code,
            http_status=http_status,
            detail=what,
        )
        return error


class _TooLarge(Exception):
    """The response body passed the size limit (carries what we know of the answer)."""

    def __init__(self, status: int, headers: Mapping[str, str]) -> None:
        self.status = status
        self.headers = headers
        super().__init__("response body over the size limit")


def _as(result: Result[Response], cls: type[R]) -> R:
    message = result.message
    if not isinstance(message, cls):  # send() has checked it; this keeps the types honest
        raise TypeError(f"expected {cls.__name__}, got {type(message).__name__}")
    return message


def _header_status(headers: Mapping[str, str]) -> Status | None:
    raw = headers.get(STATUS_HEADER)
    if raw is None or not raw.strip().isdigit():
        return None
    return Status.of(int(raw.strip()))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw.strip()))
    except ValueError:
        return None  # an HTTP date: rare from MMSCs, the gateway's backoff applies


def _fault_outcome(faultcode: str) -> Outcome:
    """Client/Sender -> FAULT_CLIENT, Server/Receiver -> FAULT_SERVER, anything else OTHER."""
    head = faultcode.rsplit(":", 1)[-1].split(".", 1)[0].strip().lower()
    if head in ("client", "sender"):
        return Outcome.FAULT_CLIENT
    if head in ("server", "receiver"):
        return Outcome.FAULT_SERVER
    return Outcome.FAULT_OTHER


def _transport_outcome(exc: BaseException, *, tls: bool) -> Outcome:
    """What an aiohttp exception means: TLS, connect, or a drop mid-exchange."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError | aiohttp.ClientSSLError):
            return Outcome.TLS_ERROR
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, aiohttp.ClientConnectorError):
        # TCP was up (a refusal is ConnectionRefusedError): a reset while connecting over TLS is
        # the peer aborting the handshake, e.g. refusing our client certificate under TLS 1.2
        if tls and isinstance(exc.os_error, ConnectionResetError | ConnectionAbortedError):
            return Outcome.TLS_ERROR
        return Outcome.CONNECT_ERROR
    if isinstance(exc, TimeoutError):
        return Outcome.TIMEOUT
    if isinstance(
        exc,
        aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError,
    ):
        return Outcome.CONNECTION_RESET
    # a bare ClientError: an answer aiohttp could not use (a malformed Digest challenge)
    return Outcome.MALFORMED


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."
