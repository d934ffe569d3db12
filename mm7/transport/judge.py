"""What an MMSC's answer means: HTTP status, headers and body in, a ``Result`` or an error out.

    judged = judge(request, Answer(500, headers, body), link)
    if isinstance(judged, MM7ClientError):
        ...                                    # judged.transient says whether to retry

Pure: no aiohttp, no clock, no logging. ``MM7Client`` POSTs, hands the answer to ``judge``, then
logs and raises (or returns) what comes back, so every rule here is testable with bytes alone.

The body is always read and parsed whatever the HTTP status: MMSCs put MM7 errors in a 200, a 500
or a 4xx alike, and a gateway that retries every non-2xx resends a permanent 2002 until it gives
up. text/xml, application/xml and multipart answers are all accepted; a blank 2xx is success
only when the dialect allows it. Verdicts (transient or permanent) come from the link's
``Classifier``, so a carrier's own codes can be configured per link.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mm7.core.codec import Decoded, decode
from mm7.core.errors import MM7Error
from mm7.core.leniency import Leniency
from mm7.core.model import (
    RESPONSE_FOR,
    SUCCESS,
    Fault,
    Message,
    Request,
    Response,
    RSErrorRsp,
    Status,
    VASPErrorRsp,
    reply_to,
)
from mm7.transport.classify import Classifier, Outcome, Verdict
from mm7.transport.errors import MM7ClientError
from mm7.transport.link import LinkConfig
from mm7.transport.wirelog import redact_headers

__all__ = [
    "BLANK_200",
    "STATUS_HEADER",
    "Answer",
    "Result",
    "client_error",
    "exception_text",
    "judge",
]

#: the leniency a Result names when a blank 2xx was taken as success (dialect.accept_blank_200)
BLANK_200 = Leniency.BLANK_200
#: the header VectorCore puts the MM7 status in when its Fault has none
STATUS_HEADER = "X-MM7-Status-Code"

R = TypeVar("R", bound=Response)


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


@dataclass(frozen=True, slots=True)
class Answer:
    """An MMSC's HTTP answer as received: all ``judge`` reads of the network."""

    http_status: int
    #: the response headers; aiohttp's are case-insensitive, the names here are looked up as
    #: ``Content-Type``, ``Retry-After`` and ``X-MM7-Status-Code``
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = field(default=b"", repr=False)
    #: the body passed the link's ``limits.max_total_bytes`` and was not kept (``body`` is empty)
    too_large: bool = False


def judge(
    request: Request,
    answer: Answer,
    link: LinkConfig,
    *,
    classifier: Classifier | None = None,
    sent: bytes = b"",
) -> Result[Response] | MM7ClientError:
    """The Result, or the MM7ClientError to raise, that ``answer`` to ``request`` means.

    ``classifier`` defaults to the link's table (the client passes the one it keeps); ``sent``
    is the request body, kept on the Result or the error for traffic records.
    """
    expected = RESPONSE_FOR.get(type(request)) or Response
    case = _Case(request, expected, link, classifier or Classifier(link.classification), sent)
    return case.judge(answer)


def client_error(
    link: str,
    request: Request,
    outcome: Outcome,
    reason: str,
    *,
    classifier: Classifier,
    verdict: Verdict | None = None,
    status: Status | None = None,
    http_status: int | None = None,
    response: Message | None = None,
    leniencies: tuple[str, ...] = (),
    retry_after: float | None = None,
    sent: bytes = b"",
    received: bytes = b"",
) -> MM7ClientError:
    """The error for ``request`` on ``link``: its message names the link, the request and the
    verdict, never a secret. ``verdict`` defaults to what the classifier says of ``outcome``."""
    verdict = verdict or classifier.outcome(outcome)
    message = (
        f"link {link!r}: {request.OPERATION} {request.transaction_id}: {reason} "
        f"[{outcome.value}, {verdict.value}]"
    )
    error = MM7ClientError(
        message,
        link=link,
        operation=request.OPERATION,
        transaction_id=request.transaction_id,
        outcome=outcome,
        verdict=verdict,
        status=status,
        http_status=http_status,
        response=response,
        leniencies=leniencies,
        retry_after=retry_after,
        reason=reason,
    )
    error.request_body, error.response_body = sent, received
    return error


def exception_text(exc: BaseException, limit: int = 300) -> str:
    """An exception's text for an error message, cut at ``limit`` characters."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True, slots=True)
class _Case:
    """One request under judgement, with what every rule needs to name and classify it."""

    request: Request
    expected: type[Response]
    link: LinkConfig
    classifier: Classifier
    sent: bytes

    def judge(self, answer: Answer) -> Result[Response] | MM7ClientError:
        http_status, headers, body = answer.http_status, answer.headers, answer.body
        too_large = answer.too_large
        ok_http = 200 <= http_status <= 299
        header_status = _header_status(headers)
        common = _Common(http_status, _retry_after(headers), body)
        if too_large or not body.strip():
            if header_status is not None:
                return self.status_error(header_status, None, (), common)
            if ok_http and not too_large:
                if self.link.dialect.accept_blank_200:
                    message = reply_to(self.request, self.expected(status=SUCCESS))
                    return self.success(message, http_status, (BLANK_200,), headers, body)
                return self.error(
                    Outcome.BLANK_200,
                    "blank answer where a response was due (dialect accept_blank_200 is off)",
                    common,
                )
            what = f"an answer over the {self.link.limits.max_total_bytes}-byte limit"
            if too_large and ok_http:
                return self.error(Outcome.MALFORMED, what, common)
            return self.http_error(what if too_large else "a blank body", common)
        try:
            decoded = decode(body, headers.get("Content-Type"), self.link.limits)
        except MM7Error as exc:
            if header_status is not None:
                return self.status_error(header_status, None, (), common)
            if ok_http:
                return self.error(
                    Outcome.MALFORMED, f"unreadable answer: {exception_text(exc)}", common
                )
            return self.http_error(f"unreadable body ({exception_text(exc)})", common)
        return self.judge_message(decoded, headers, header_status, common)

    def judge_message(
        self,
        decoded: Decoded,
        headers: Mapping[str, str],
        header_status: Status | None,
        common: _Common,
    ) -> Result[Response] | MM7ClientError:
        """A decoded answer: a Fault, an error element, the wrong response, or the response."""
        message = decoded.message
        leniencies = tuple(str(x) for x in decoded.leniencies)
        if self.answered_in_another_version(message):
            leniencies += (str(Leniency.RESPONSE_VERSION_MISMATCH),)
        if isinstance(message, Fault):
            status = message.status or header_status
            if status is None:
                return self.error(
                    _fault_outcome(message.faultcode),
                    f"SOAP Fault {message.faultcode!r} ({message.faultstring!r}), no MM7 status",
                    common,
                    response=message,
                    leniencies=leniencies,
                )
            return self.status_error(status, message, leniencies, common)
        if isinstance(message, RSErrorRsp | VASPErrorRsp):
            return self.status_error(message.status, message, leniencies, common)
        if not isinstance(message, self.expected):
            return self.error(
                Outcome.UNEXPECTED_RESPONSE,
                f"answered with {message.OPERATION}, expected {self.expected.OPERATION}",
                common,
                response=message,
                leniencies=leniencies,
            )
        assert isinstance(message, Response)
        verdict = self.classifier.status(message.status.code)
        if not verdict.ok:
            return self.status_error(message.status, message, leniencies, common)
        return self.success(message, common.http_status, leniencies, headers, common.body)

    def answered_in_another_version(self, message: Message) -> bool:
        """Whether the answer's namespace or MM7Version is not the request's: Mbuni answers
        every response in REL-5-MM7-1-0 / 5.3.0, whatever was asked. Read all the same (the
        answer's meaning does not depend on it), and named."""
        dialect = self.link.dialect
        sent_ns = self.request.namespace or dialect.version.namespace
        sent_version = self.request.mm7_version or dialect.effective_mm7_version
        if message.namespace is not None and message.namespace != sent_ns:
            return True
        return message.mm7_version is not None and message.mm7_version != sent_version

    def success(
        self,
        message: Response,
        http_status: int,
        leniencies: tuple[str, ...],
        headers: Mapping[str, str],
        received: bytes,
    ) -> Result[Response]:
        verdict = self.classifier.status(message.status.code)
        kept = tuple(redact_headers(list(headers.items())))
        return Result(
            message, self.request, http_status, verdict, leniencies, kept, self.sent, received
        )

    def status_error(
        self,
        status: Status,
        response: Message | None,
        leniencies: tuple[str, ...],
        common: _Common,
    ) -> MM7ClientError:
        """An MM7 status that is not success, wherever it was found."""
        verdict = self.classifier.status(status.code)
        outcome = Outcome.MM7_STATUS
        note = ""
        if verdict.ok:
            # an error element or a Fault that claims success: contradictory, do not resend
            outcome, verdict, note = Outcome.UNEXPECTED_RESPONSE, Verdict.PERMANENT, " in an error"
        where = f" (HTTP {common.http_status})" if common.http_status else ""
        text = f"MM7 status {status.code} {status.text}".rstrip()
        return self.error(
            outcome,
            f"{text}{note}{where}",
            common,
            verdict=verdict,
            status=status,
            response=response,
            leniencies=leniencies,
        )

    def http_error(self, what: str, common: _Common) -> MM7ClientError:
        """An HTTP status with no usable MM7 body: judged by the HTTP status alone."""
        return self.error(
            Outcome.HTTP_STATUS,
            f"HTTP {common.http_status} with {what}",
            common,
            verdict=self.classifier.http(common.http_status),
        )

    def error(
        self,
        outcome: Outcome,
        what: str,
        common: _Common,
        *,
        verdict: Verdict | None = None,
        status: Status | None = None,
        response: Message | None = None,
        leniencies: tuple[str, ...] = (),
    ) -> MM7ClientError:
        return client_error(
            self.link.name,
            self.request,
            outcome,
            what,
            classifier=self.classifier,
            verdict=verdict,
            status=status,
            http_status=common.http_status,
            response=response,
            leniencies=leniencies,
            retry_after=common.retry_after,
            sent=self.sent,
            received=common.body,
        )


@dataclass(frozen=True, slots=True)
class _Common:
    """What every error from one answer carries."""

    http_status: int
    retry_after: float | None
    body: bytes


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
