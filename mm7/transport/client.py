"""The MM7 client for one MMSC link: encode a request, POST it, read the answer and judge it.

    async with MM7Client(LinkConfig(name="carrier", url="https://mmsc.example/mm7")) as client:
        rsp = await client.submit(SubmitReq(...))      # SubmitRsp, or MM7ClientError

One aiohttp ClientSession per link (keep-alive pool sized to ``max_in_flight``), shared flow
control (TPS, in-flight bound, circuit breaker). What the answer means (a 2002 inside an HTTP 500
is permanent, a blank 200 is success only when the dialect allows it, ...) is decided by the pure
``mm7.transport.judge``; this module does the HTTP, the timing and the logging around it. Every
non-success raises ``MM7ClientError``, classified by ``mm7.transport.classify``. The client also
speaks the MMSC's half (DeliverReq, DeliveryReportReq, ReadReplyReq to a VASP), so a simulator
can use it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import structlog

from mm7.core.codec import encode
from mm7.core.errors import MM7Error
from mm7.core.model import (
    RESPONSE_FOR,
    CancelReq,
    CancelRsp,
    ExtendedCancelReq,
    ExtendedCancelRsp,
    ExtendedReplaceReq,
    ExtendedReplaceRsp,
    ReplaceReq,
    ReplaceRsp,
    Request,
    Response,
    SubmitReq,
    SubmitRsp,
)
from mm7.transport.classify import Classifier, Outcome
from mm7.transport.client_auth import (
    CertificateInfo,
    auth_setup,
    check_certificate,
    make_ssl_context,
)
from mm7.transport.errors import MM7ClientError
from mm7.transport.flow import BreakerOpen, Clock, LinkFlow, Sleep
from mm7.transport.judge import BLANK_200, Answer, Result, client_error, exception_text, judge
from mm7.transport.link import LinkConfig
from mm7.transport.wirelog import redact_url, wire_entry

__all__ = ["BLANK_200", "MM7Client", "Result", "new_transaction_id"]

log = structlog.get_logger("mm7.transport.client")

R = TypeVar("R", bound=Response)


def new_transaction_id() -> str:
    """A fresh TransactionID: 32 hex digits, valid as xs:NMTOKEN in every schema version."""
    return uuid.uuid4().hex


@dataclass(slots=True)
class _Exchange:
    """One request on its way: the request, its bound logger and the bytes exchanged so far."""

    request: Request
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
    async def submit(
        self, request: SubmitReq, *, admit: Callable[[], float] | None = None
    ) -> SubmitRsp:
        """Send a SubmitReq; its SubmitRsp (1000, or 1100 partial success) or MM7ClientError.
        ``admit``: asked right before the send (``LinkFlow.slot``); its refusal raises
        ``mm7.transport.flow.NotAdmitted``, nothing sent."""
        return _as(await self.send(request, admit=admit), SubmitRsp)

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
    async def send(
        self, request: Request, *, admit: Callable[[], float] | None = None
    ) -> Result[Response]:
        """Send any MM7 request and return its typed response in a Result; MM7ClientError for
        every non-success (MM7 error status, HTTP error, timeout, reset, open breaker...);
        ``NotAdmitted`` when ``admit`` refused it (``LinkFlow.slot``: nothing sent)."""
        if not request.transaction_id:
            request = dataclasses.replace(request, transaction_id=new_transaction_id())
        expected = RESPONSE_FOR.get(type(request))
        ex = _Exchange(
            request,
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
            async with self.flow.slot(admit):
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
                "mm7.client.wire",
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
        except aiohttp.ConnectionTimeoutError:
            # no TCP connection within the connect timeout: the MMSC never saw the request
            raise self._error(
                ex,
                Outcome.CONNECT_ERROR,
                f"could not connect within {link.connect_timeout:g}s",
            ) from None
        except TimeoutError:
            raise self._error(
                ex,
                Outcome.TIMEOUT,
                f"timed out (connect {link.connect_timeout:g}s, "
                f"whole exchange {link.request_timeout:g}s)",
            ) from None
        except aiohttp.ClientError as exc:
            outcome = _transport_outcome(exc, tls=link.is_tls)
            raise self._error(ex, outcome, f"{type(exc).__name__}: {exception_text(exc)}") from None
        except _TooLarge as exc:
            answer = Answer(exc.status, exc.headers, too_large=True)
        else:
            if link.wire_log:
                ex.log.info(
                    "mm7.client.wire",
                    **wire_entry(
                        "response",
                        status=http_status,
                        headers=rsp_headers.items(),
                        body=rsp_body,
                        content_type=rsp_headers.get("Content-Type"),
                    ),
                )
            answer = Answer(http_status, rsp_headers, rsp_body)
        judged = judge(ex.request, answer, link, classifier=self.classifier, sent=ex.sent)
        self._log_judged(ex, judged, started)
        if isinstance(judged, MM7ClientError):
            raise judged
        return judged

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

    def _log_judged(
        self, ex: _Exchange, judged: Result[Response] | MM7ClientError, started: float
    ) -> None:
        """Log what ``judge`` decided, in the order the decision was made."""
        leniencies = judged.leniencies
        if isinstance(judged, MM7ClientError):
            if leniencies:
                ex.log.debug("mm7.client.leniencies", leniencies=list(leniencies))
            self._log_error(ex, judged)
            return
        message = judged.message
        if BLANK_200 in leniencies:
            ex.log.info("mm7.client.blank_200_accepted", http_status=judged.http_status)
        elif leniencies:
            ex.log.debug("mm7.client.leniencies", leniencies=list(leniencies))
        if message.transaction_id and message.transaction_id != ex.request.transaction_id:
            ex.log.warning("mm7.client.transaction_id_mismatch", answered=message.transaction_id)
        message_id = getattr(message, "message_id", None) or getattr(ex.request, "message_id", None)
        ex.log.info(
            "mm7.client.response",
            message_id=message_id,
            status_code=message.status.code,
            http_status=judged.http_status,
            elapsed_ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _error(
        self,
        ex: _Exchange,
        outcome: Outcome,
        what: str,
        *,
        retry_after: float | None = None,
    ) -> MM7ClientError:
        """Build (and log) an error found before any answer was judged."""
        error = client_error(
            self.link.name,
            ex.request,
            outcome,
            what,
            classifier=self.classifier,
            retry_after=retry_after,
            sent=ex.sent,
            received=ex.received,
        )
        self._log_error(ex, error)
        return error

    def _log_error(self, ex: _Exchange, error: MM7ClientError) -> None:
        # refusals by an open breaker come in floods: one warning when it opens is enough
        emit = ex.log.info if error.outcome is Outcome.CIRCUIT_OPEN else ex.log.warning
        emit(
            "mm7.client.error",
            outcome=error.outcome.value,
            verdict=error.verdict.value,
            status_code=error.code,
            http_status=error.http_status,
            detail=error.reason,
        )


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
