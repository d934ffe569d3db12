"""The client's judgement of an answer, without a network: each row is an HTTP answer (status,
headers, body) to a SubmitReq and what ``judge`` must make of it: every error shape (RSErrorRsp in
a Fault, error status in a 200, bare 5xx, malformed, blank 200) and every accepted one."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from operator import attrgetter

import pytest
from multidict import CIMultiDict

from mm7.core.codec import encode
from mm7.core.dialect import STRICT_3GPP
from mm7.core.leniency import Leniency
from mm7.core.mime import make_part
from mm7.core.model import (
    Address,
    CancelRsp,
    Fault,
    Message,
    Recipients,
    RSErrorRsp,
    Status,
    SubmitReq,
    SubmitRsp,
    reply_to,
)
from mm7.core.versions import NAMESPACE_BASE
from mm7.transport.classify import Outcome, Overrides, Verdict
from mm7.transport.errors import MM7ClientError
from mm7.transport.judge import BLANK_200, Answer, Result, judge
from mm7.transport.link import LinkConfig

LINK = LinkConfig(name="test", url="http://mmsc.test/mm7")
LENIENT = dataclasses.replace(LINK, dialect=dataclasses.replace(STRICT_3GPP, accept_blank_200=True))
OVERRIDDEN = dataclasses.replace(
    LINK,
    classification=Overrides.from_mapping(
        {"permanent": ["4101", 4006], "transient": ["2101-2104"], "http_permanent": [503]}
    ),
)


def submit(tid: str = "tx-1", *numbers: str) -> SubmitReq:
    """A small SubmitReq with a text content part, as the client sends it (TransactionID set)."""
    return SubmitReq(
        transaction_id=tid,
        vasp_id="vasp",
        vas_id="vas",
        sender_address=Address.guess("12345"),
        recipients=Recipients(to=tuple(Address(n) for n in numbers or ("+15551230001",))),
        subject="hello",
        content=make_part(b"Hello", "text/plain; charset=utf-8", content_id="text1"),
    )


SUBMIT = submit()


# --- answers, as a fake MMSC would send them ---------------------------------------------------


def raw(
    http: int,
    body: bytes = b"",
    content_type: str | None = "text/xml; charset=utf-8",
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """Any HTTP answer, byte for byte (headers case-insensitive, as aiohttp gives them)."""
    found: CIMultiDict[str] = CIMultiDict(headers or {})
    if content_type is not None:
        found["Content-Type"] = content_type
    return Answer(http, found, body)


def xml(message: Message, *, http: int = 200, content_type: str | None = None) -> Answer:
    encoded = encode(message, STRICT_3GPP)
    return raw(http, encoded.body, content_type or encoded.content_type)


def ok(
    code: int = 1000,
    *,
    details: str | None = None,
    content_type: str | None = None,
    request: SubmitReq = SUBMIT,
) -> Answer:
    """The SubmitRsp echoing ``request`` with status ``code``, in an HTTP 200."""
    rsp = SubmitRsp(status=Status.of(code, details), message_id=f"msg-1-{request.transaction_id}")
    return xml(reply_to(request, rsp), content_type=content_type)


def fault(code: int, *, http: int = 500, details: str | None = None) -> Answer:
    """An RSErrorRsp inside a SOAP Fault (spec style)."""
    error = reply_to(SUBMIT, RSErrorRsp(status=Status.of(code, details)))
    found = Fault(faultcode="env:Client", faultstring="Client error", error=error)
    return xml(reply_to(SUBMIT, found), http=http)


def bare_fault(code: str) -> bytes:
    """A SOAP Fault with no MM7 status anywhere."""
    return (
        '<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault>'
        f"<faultcode>e:{code}</faultcode><faultstring>oops</faultstring>"
        "</e:Fault></e:Body></e:Envelope>"
    ).encode()


#: VectorCore: a Fault with no detail, the status in X-MM7-Status-Code
VECTORCORE_FAULT = (
    b'<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
    b'envelope/"><soap:Body><soap:Fault><faultcode>Client.Auth</faultcode><faultstring>'
    b"authentication failed</faultstring></soap:Fault></soap:Body></soap:Envelope>"
)

MULTIPART_SOAP = (
    b'<?xml version="1.0"?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">'
    b'<env:Header><mm7:TransactionID xmlns:mm7="http://www.3gpp.org/ftp/Specs/archive/'
    b'23_series/23.140/schema/REL-6-MM7-1-4">tx-m</mm7:TransactionID></env:Header>'
    b'<env:Body><mm7:SubmitRsp xmlns:mm7="http://www.3gpp.org/ftp/Specs/archive/23_series/'
    b'23.140/schema/REL-6-MM7-1-4"><mm7:MM7Version>6.8.0</mm7:MM7Version><mm7:Status>'
    b"<mm7:StatusCode>1000</mm7:StatusCode><mm7:StatusText>Success</mm7:StatusText>"
    b"</mm7:Status><mm7:MessageID>m-77</mm7:MessageID></mm7:SubmitRsp></env:Body>"
    b"</env:Envelope>"
)
MULTIPART_BODY = (
    b"--b1\r\nContent-Type: text/xml; charset=utf-8\r\nContent-ID: <soap>\r\n\r\n"
    + MULTIPART_SOAP
    + b"\r\n--b1--\r\n"
)
MULTIPART_TYPE = 'multipart/related; boundary=b1; type="text/xml"; start="<soap>"'


# --- the tables --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Has:
    """Expect the attribute to contain ``item`` (membership, not equality)."""

    item: object


@dataclass(frozen=True)
class Case:
    answer: Answer
    #: attribute path -> what it must be: a type (isinstance), ``Has`` (membership), an enum
    #: member, a bool or None (identity), anything else (equality)
    expect: Mapping[str, object]
    #: text the error's message must contain
    says: tuple[str, ...] = ()
    link: LinkConfig = LINK
    request: SubmitReq = field(default=SUBMIT)


P, T = Verdict.PERMANENT, Verdict.TRANSIENT

#: answers that are an MM7ClientError
ERRORS = [
    pytest.param(
        Case(
            fault(2002, http=500, details="bad address +1555"),
            {
                "code": 2002,
                "text": "Address Error",
                "details": "bad address +1555",
                "http_status": 500,
                "outcome": Outcome.MM7_STATUS,
                "verdict": P,
                "transient": False,
                "response": Fault,
                "response.error": RSErrorRsp,
            },
            says=("2002", "HTTP 500"),
        ),
        id="rserrorrsp-fault-in-http-500-is-permanent-2002",
    ),
    pytest.param(
        Case(
            ok(4006), {"code": 4006, "http_status": 200, "transient": True, "response": SubmitRsp}
        ),
        id="error-status-in-http-200-response-is-transient-4006",
    ),
    pytest.param(
        Case(
            raw(503, b"Service Unavailable", "text/html", headers={"Retry-After": "7"}),
            {
                "outcome": Outcome.HTTP_STATUS,
                "http_status": 503,
                "transient": True,
                "status": None,
                "retry_after": 7.0,
            },
        ),
        id="bare-http-503-is-transient-with-retry-after",
    ),
    pytest.param(
        Case(raw(400, b""), {"http_status": 400, "transient": False}),
        id="bare-http-400-is-permanent",
    ),
    pytest.param(
        Case(raw(401, b"<html>no</html>", "text/html"), {"http_status": 401, "transient": False}),
        id="bare-http-401-is-permanent",
    ),
    pytest.param(
        Case(
            raw(401, VECTORCORE_FAULT, headers={"X-MM7-Status-Code": "4006"}),
            {"code": 4006, "outcome": Outcome.MM7_STATUS, "transient": True, "response": Fault},
        ),
        id="fault-without-status-takes-the-x-mm7-status-code-header",
    ),
    pytest.param(
        Case(
            raw(500, bare_fault("Server")),
            {"outcome": Outcome.FAULT_SERVER, "transient": True, "status": None},
        ),
        id="fault-server-without-any-status-is-transient",
    ),
    pytest.param(
        Case(
            raw(500, bare_fault("Client")),
            {"outcome": Outcome.FAULT_CLIENT, "transient": False},
        ),
        id="fault-client-without-any-status-is-permanent",
    ),
    pytest.param(
        # a 200 we cannot read: the MMSC most likely took the message, a resend could duplicate
        Case(
            raw(200, b"<env:Envelope><unclosed>"),
            {"outcome": Outcome.MALFORMED, "transient": False, "http_status": 200},
        ),
        id="malformed-xml-in-200-is-permanent",
    ),
    pytest.param(
        Case(
            raw(502, b"<html><body>Bad gateway</body></html>", "text/html"),
            {"outcome": Outcome.HTTP_STATUS, "transient": True},
        ),
        id="malformed-body-in-502-is-judged-by-http-status",
    ),
    pytest.param(
        Case(raw(200, b"", None), {"outcome": Outcome.BLANK_200, "transient": False}),
        id="blank-200-refused-unless-the-dialect-allows-it",
    ),
    pytest.param(
        Case(raw(503, b"", None), {"http_status": 503, "transient": True}, link=LENIENT),
        id="blank-503-stays-transient-even-when-blank-200-is-allowed",
    ),
    pytest.param(
        Case(
            xml(CancelRsp(transaction_id="x")),
            {"outcome": Outcome.UNEXPECTED_RESPONSE, "transient": False},
        ),
        id="wrong-response-type-is-unexpected",
    ),
    pytest.param(
        Case(ok(4101), {"transient": False}, link=OVERRIDDEN),
        id="link-overrides-make-4101-permanent",
    ),
    pytest.param(
        Case(ok(4006), {"transient": False}, link=OVERRIDDEN),
        id="link-overrides-make-4006-permanent",
    ),
    pytest.param(
        Case(ok(2101), {"transient": True}, link=OVERRIDDEN),
        id="link-overrides-make-2101-transient",
    ),
    pytest.param(
        Case(raw(503, b""), {"transient": False}, link=OVERRIDDEN),
        id="link-overrides-make-http-503-permanent",
    ),
]

#: answers that are a Result
RESULTS = [
    pytest.param(
        Case(ok(content_type="application/xml"), {"status.code": 1000}),
        id="application-xml-response-is-accepted",
    ),
    pytest.param(
        Case(
            raw(200, MULTIPART_BODY, MULTIPART_TYPE),
            {"message.message_id": "m-77"},
            request=submit("tx-m"),
        ),
        id="multipart-response-is-accepted",
    ),
    pytest.param(
        Case(
            raw(200, b"", None),
            {
                "leniencies": Has(BLANK_200),
                "message": SubmitRsp,
                "status.code": 1000,
                "message.transaction_id": "tx-b",
                "message.message_id": None,
            },
            link=LENIENT,
            request=submit("tx-b"),
        ),
        id="blank-200-accepted-when-the-dialect-allows-it",
    ),
    pytest.param(
        Case(
            ok(1100, details="+15551230002"),
            {"verdict": Verdict.PARTIAL, "status.code": 1100},
            request=submit("tx-1", "+15551230001", "+15551230002"),
        ),
        id="partial-success-1100-is-returned-not-raised",
    ),
    pytest.param(
        Case(
            xml(
                SubmitRsp(
                    transaction_id="tx-1",
                    namespace=NAMESPACE_BASE + "REL-5-MM7-1-0",
                    mm7_version="5.3.0",
                    message_id="mbuni-1",
                )
            ),
            {
                "leniencies": Has(str(Leniency.RESPONSE_VERSION_MISMATCH)),
                "status.code": 1000,
                "message.message_id": "mbuni-1",
            },
        ),
        id="answer-in-another-namespace-is-read-and-named",
    ),
]


def test_an_answer_in_the_request_s_own_version_is_not_named() -> None:
    judged = judge(SUBMIT, ok(), LINK)
    assert isinstance(judged, Result)
    assert str(Leniency.RESPONSE_VERSION_MISMATCH) not in judged.leniencies


def check(found: object, expect: Mapping[str, object]) -> None:
    for path, want in expect.items():
        got = attrgetter(path)(found)
        if isinstance(want, type):
            assert isinstance(got, want), f"{path}: {got!r} is not a {want.__name__}"
        elif isinstance(want, Has):
            assert want.item in got, f"{path}: {want.item!r} not in {got!r}"
        elif want is None or isinstance(want, bool | Enum):
            assert got is want, f"{path}: {got!r} is not {want!r}"
        else:
            assert got == want, f"{path}: {got!r} != {want!r}"


@pytest.mark.parametrize("case", ERRORS)
def test_answer_is_an_error(case: Case) -> None:
    judged = judge(case.request, case.answer, case.link)
    assert isinstance(judged, MM7ClientError)
    check(judged, case.expect)
    for text in case.says:
        assert text in str(judged)


@pytest.mark.parametrize("case", RESULTS)
def test_answer_is_a_result(case: Case) -> None:
    judged = judge(case.request, case.answer, case.link)
    assert isinstance(judged, Result)
    check(judged, case.expect)
