"""One status extractor for every error shape the field sends, and refusals.

Fixtures in tests/fixtures/soap/faults reproduce: the spec's RSErrorRsp inside Fault/detail
(Skycore, instantcom, HTTP 500), Mbuni's VASPErrorRsp with faultcode Server and HTTP 200,
instantcom PR #11's qualified env:faultcode/env:detail, the ALU mock's bare Status, a status number
only in faultstring, VectorCore's detail-less Fault (HTTP 401), CMCC's MM7VASPErrorRsp name, and
error statuses inside normal SubmitRsp/DeliverRsp. Whatever the HTTP status, the body is parsed.

Refusals must be clear: a ParseError subclass with the MM7 status to answer and a message that
names where the problem is and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from mm7.core.capture import Capture, read_capture
from mm7.core.codec import Decoded, decode
from mm7.core.errors import ParseError, UnsafeXMLError, ValidationError
from mm7.core.leniency import Leniency as L
from mm7.core.model import Fault, Response, RSErrorRsp, Status, SubmitRsp, VASPErrorRsp
from mm7.core.status import StatusClass
from mm7.core.versions import NAMESPACE_BASE, SOAP_ENV_NS

FAULTS = Path(__file__).parent / "fixtures" / "soap" / "faults"
NS6 = NAMESPACE_BASE + "REL-6-MM7-1-4"


def load(name: str) -> tuple[Capture, Decoded]:
    capture = read_capture((FAULTS / name).read_bytes())
    assert capture.leniencies == ()  # the captures themselves are well framed
    return capture, decode(capture.body, capture.content_type or "text/xml")


@dataclass(frozen=True)
class FaultCase:
    fixture: str
    #: the HTTP status the capture was sent with (None for a bare document)
    http_status: int | None
    #: Decoded.operation: the error element carried, or "Fault" when none
    operation: str
    transaction_id: str
    faultcode: str
    faultstring: str
    status: Status | None
    leniencies: frozenset[L]
    version: str | None


FAULT_CASES = [
    pytest.param(
        FaultCase(
            "fault-rserrorrsp-http500.http",
            500,
            "RSErrorRsp",
            "vas00002-sub",
            "env:Client",
            "Client error",
            Status(
                4002,
                "Unsupported version",
                "MM7Version 6.7.0 is not accepted with REL-6-MM7-1-4",
            ),
            frozenset(),
            "REL-6-MM7-1-4",
        ),
        id="spec-rserrorrsp-http500",
    ),
    pytest.param(
        FaultCase(
            "fault-vasperrorrsp-mbuni.http",
            200,
            "VASPErrorRsp",
            "mmsc-deliver-000031",
            "Server",
            "Server error",
            Status(2007, "Message format corrupt", "Sender missing"),
            frozenset(),
            "REL-5-MM7-1-0",
        ),
        id="mbuni-vasperrorrsp-server-http200",
    ),
    pytest.param(
        FaultCase(
            "fault-qualified-children.xml",
            None,
            "RSErrorRsp",
            "10110011",
            "env:Server",
            "Server error",
            Status(3001, "Not Possible", "message already delivered"),
            frozenset({L.FAULT_QUALIFIED_CHILDREN}),
            "REL-5-MM7-1-3",
        ),
        id="instantcom-qualified-children",
    ),
    pytest.param(
        FaultCase(
            "fault-bare-status-alu.http",
            500,
            "Fault",
            "alu-0000043",
            "env:Client",
            "Client error",
            Status(2002, "Address Error", "recipient 15551230009 is not a valid number"),
            frozenset({L.FAULT_BARE_STATUS}),
            "REL-6-MM7-1-4",
        ),
        id="alu-bare-status",
    ),
    pytest.param(
        FaultCase(
            "fault-status-in-faultstring.xml",
            None,
            "Fault",
            "mmsbox-mm7-0042",
            "SOAP-ENV:Client",
            "4006 Service unavailable, retry later",
            Status(4006, "4006 Service unavailable, retry later"),
            frozenset({L.FAULT_STATUS_IN_FAULTSTRING}),
            "REL-5-MM7-1-0",
        ),
        id="status-in-faultstring",
    ),
    pytest.param(
        FaultCase(
            "fault-no-status-vectorcore.http",
            401,
            "Fault",
            "",
            "Client.Auth",
            "authentication failed",
            None,
            frozenset({L.FAULT_NO_STATUS, L.TRANSACTION_ID_MISSING}),
            None,
        ),
        id="vectorcore-no-status-http401",
    ),
    pytest.param(
        FaultCase(
            "fault-cmcc-mm7vasperrorrsp.xml",
            None,
            "VASPErrorRsp",
            "2024070411300000003",
            "Client",
            "Client error",
            Status(4004, "Validation error"),
            frozenset({L.ERROR_ELEMENT_NAME}),
            "REL-6-MM7-1-0",
        ),
        id="cmcc-mm7vasperrorrsp",
    ),
]


@pytest.mark.parametrize("expected", FAULT_CASES)
def test_fault_shape_yields_its_status(expected: FaultCase) -> None:
    capture, decoded = load(expected.fixture)
    assert capture.http_status == expected.http_status  # parsed whatever the HTTP status
    fault = decoded.message
    assert isinstance(fault, Fault)
    assert decoded.operation == expected.operation
    assert fault.operation == expected.operation
    assert fault.transaction_id == expected.transaction_id
    assert fault.faultcode == expected.faultcode
    assert fault.faultstring == expected.faultstring
    assert fault.status == expected.status
    assert set(decoded.leniencies) == expected.leniencies
    assert (decoded.version.token if decoded.version else None) == expected.version


def test_every_fault_fixture_is_asserted() -> None:
    used = {p.values[0].fixture for p in FAULT_CASES if isinstance(p.values[0], FaultCase)}
    used |= {"submitrsp-error-status.xml", "deliverrsp-service-error.http"}
    assert {p.name for p in FAULTS.iterdir()} == used


def test_rserrorrsp_is_kept_typed_with_its_envelope_pair() -> None:
    _, decoded = load("fault-rserrorrsp-http500.http")
    fault = decoded.message
    assert isinstance(fault, Fault) and isinstance(fault.error, RSErrorRsp)
    assert fault.error.status is not None and fault.error.status == fault.status
    assert fault.error.mm7_version == fault.mm7_version == "6.8.0"
    assert fault.namespace == fault.error.namespace == NS6
    assert fault.status is not None
    assert fault.status.known is not None and fault.status.known.text == "Unsupported version"
    assert fault.status.status_class is StatusClass.SERVICE


def test_vasperrorrsp_and_cmcc_name_are_the_same_type() -> None:
    _, mbuni = load("fault-vasperrorrsp-mbuni.http")
    _, cmcc = load("fault-cmcc-mm7vasperrorrsp.xml")
    for decoded in (mbuni, cmcc):
        fault = decoded.message
        assert isinstance(fault, Fault) and isinstance(fault.error, VASPErrorRsp)
        assert fault.error.OPERATION == "VASPErrorRsp"
    cmcc_fault = cmcc.message
    assert isinstance(cmcc_fault, Fault)
    assert cmcc_fault.mm7_version == "6.3.0"
    assert cmcc_fault.namespace == NAMESPACE_BASE + "REL-6-MM7-1-0"


def test_bare_status_fault_takes_the_namespace_of_the_status() -> None:
    _, decoded = load("fault-bare-status-alu.http")
    fault = decoded.message
    assert isinstance(fault, Fault)
    assert fault.error is None
    assert fault.namespace == NS6
    assert fault.mm7_version is None  # no MM7Version travelled


def test_faultcode_variants_are_kept_as_sent() -> None:
    """env:Client, Client, SOAP-ENV:Client, Server, env:Server, Client.Auth: never rewritten."""
    seen = set()
    for param in FAULT_CASES:
        expected = param.values[0]
        assert isinstance(expected, FaultCase)
        _, decoded = load(expected.fixture)
        assert isinstance(decoded.message, Fault)
        seen.add(decoded.message.faultcode)
    assert seen == {
        "env:Client",
        "Client",
        "SOAP-ENV:Client",
        "Server",
        "env:Server",
        "Client.Auth",
    }


def test_error_status_inside_a_normal_submitrsp() -> None:
    """Seoultel's dummy and mmsgw answer errors in SubmitRsp, without a MessageID: no leniency."""
    _, decoded = load("submitrsp-error-status.xml")
    message = decoded.message
    assert decoded.operation == "SubmitRsp"
    assert isinstance(message, Response)
    assert message.status == Status(2002, "CID 및 발송 IP 인증 실패")
    assert not message.status.is_success
    assert message.status.status_class is StatusClass.CLIENT
    assert isinstance(message, SubmitRsp) and message.message_id is None
    assert message.transaction_id == "SKT20240704031138003"
    assert decoded.leniencies == ()


def test_service_error_inside_a_normal_deliverrsp() -> None:
    capture, decoded = load("deliverrsp-service-error.http")
    assert capture.http_status == 200 and capture.content_type == "application/xml"
    message = decoded.message
    assert decoded.operation == "DeliverRsp"
    assert isinstance(message, Response)
    assert message.status == Status(4006, "Service unavailable", "queue full, retry later")
    assert message.status.status_class is StatusClass.SERVICE
    assert decoded.leniencies == ()


# ------------------------------------------------------------------------------------------------
# Status numbers in faultstring: only a code, not a date, time, version or quantity
# ------------------------------------------------------------------------------------------------

FAULT_TEMPLATE = (
    '<env:Envelope xmlns:env="{env}"><env:Header><mm7:TransactionID xmlns:mm7="{ns}">f1'
    "</mm7:TransactionID></env:Header><env:Body><env:Fault><faultcode>env:Server</faultcode>"
    "<faultstring>{text}</faultstring></env:Fault></env:Body></env:Envelope>"
)


@pytest.mark.parametrize(
    ("faultstring", "code"),
    [
        ("2007", 2007),
        ("Error 2002 - Address Error", 2002),
        ("MM7 status=2004", 2004),
        ("Status: 4006.", 4006),
        ("Server error", None),
        ("Server error at 2024-07-04T10:00:00Z", None),
        ("Timeout after 3000 ms", None),
        ("gateway v1.2002", None),
        ("internal 5000", None),
    ],
)
def test_status_in_faultstring(faultstring: str, code: int | None) -> None:
    body = FAULT_TEMPLATE.format(env=SOAP_ENV_NS, ns=NS6, text=faultstring).encode()
    decoded = decode(body, "text/xml")
    fault = decoded.message
    assert isinstance(fault, Fault)
    if code is None:
        assert fault.status is None
        assert decoded.leniencies == (L.FAULT_NO_STATUS,)
    else:
        assert fault.status == Status(code, faultstring)
        assert decoded.leniencies == (L.FAULT_STATUS_IN_FAULTSTRING,)


def test_error_element_in_another_namespace_than_the_header() -> None:
    """RSErrorRsp in REL-6-MM7-1-4 answering a REL-5-MM7-1-0 TransactionID: the body wins."""
    body = (
        f'<env:Envelope xmlns:env="{SOAP_ENV_NS}"><env:Header>'
        f'<mm7:TransactionID xmlns:mm7="{NAMESPACE_BASE}REL-5-MM7-1-0">t9</mm7:TransactionID>'
        "</env:Header><env:Body><env:Fault><faultcode>env:Client</faultcode>"
        f'<faultstring>Client error</faultstring><detail><RSErrorRsp xmlns="{NS6}">'
        "<MM7Version>6.8.0</MM7Version><Status><StatusCode>2001</StatusCode>"
        "<StatusText>Operation restricted</StatusText></Status></RSErrorRsp></detail>"
        "</env:Fault></env:Body></env:Envelope>"
    ).encode()
    decoded = decode(body, "text/xml")
    assert isinstance(decoded.message, Fault)
    assert decoded.message.namespace == NS6
    assert decoded.message.transaction_id == "t9"
    assert decoded.leniencies == (L.HEADER_NS_MISMATCH,)


def test_error_element_after_other_detail_children_is_found() -> None:
    """A detail with a vendor element before RSErrorRsp still yields the typed error."""
    body = (
        f'<env:Envelope xmlns:env="{SOAP_ENV_NS}"><env:Body><env:Fault>'
        "<faultcode>env:Server</faultcode><faultstring>Server error</faultstring><detail>"
        "<trace>req-81</trace>"
        f'<RSErrorRsp xmlns="{NS6}"><MM7Version>6.8.0</MM7Version><Status>'
        "<StatusCode>3000</StatusCode><StatusText>Server Error</StatusText></Status>"
        "</RSErrorRsp></detail></env:Fault></env:Body></env:Envelope>"
    ).encode()
    decoded = decode(body, "text/xml")
    fault = decoded.message
    assert isinstance(fault, Fault) and isinstance(fault.error, RSErrorRsp)
    assert fault.status == Status(3000, "Server Error")
    assert set(decoded.leniencies) == {L.TRANSACTION_ID_MISSING}


# ------------------------------------------------------------------------------------------------
# Refusals
# ------------------------------------------------------------------------------------------------

ENVELOPE = (
    '<?xml version="1.0"?><env:Envelope xmlns:env="{env}"><env:Header>'
    '<mm7:TransactionID xmlns:mm7="{ns}">r1</mm7:TransactionID></env:Header>'
    "<env:Body>{body}</env:Body></env:Envelope>"
)


def envelope(body: str) -> bytes:
    return ENVELOPE.format(env=SOAP_ENV_NS, ns=NS6, body=body).encode()


SUBMIT_WITHOUT_RECIPIENTS = (
    f'<mm7:SubmitReq xmlns:mm7="{NS6}"><mm7:MM7Version>6.8.0</mm7:MM7Version>'
    "<mm7:SenderIdentification><mm7:VASPID>v</mm7:VASPID></mm7:SenderIdentification>"
    "<mm7:Subject>hi</mm7:Subject></mm7:SubmitReq>"
)


@pytest.mark.parametrize(
    ("body", "error", "status_code", "fragments"),
    [
        pytest.param(
            b"Internal Server Error",
            ParseError,
            2007,
            ("HTTP body", "expected a SOAP envelope"),
            id="not-xml",
        ),
        pytest.param(
            b"<html><body>502 Bad Gateway</body></html>",
            ParseError,
            2007,
            ("SOAP part", "expected a SOAP 1.1 Envelope", "<html>"),
            id="root-not-envelope",
        ),
        pytest.param(
            b'<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope">'
            b"<env:Body/></env:Envelope>",
            ParseError,
            2007,
            ("SOAP part", "SOAP 1.1", "http://www.w3.org/2003/05/soap-envelope"),
            id="soap-1.2-envelope",
        ),
        pytest.param(
            f'<env:Envelope xmlns:env="{SOAP_ENV_NS}"><env:Header/></env:Envelope>'.encode(),
            ParseError,
            2007,
            ("SOAP part", "no Body", "expected a Body"),
            id="no-body",
        ),
        pytest.param(
            envelope("  "),
            ParseError,
            2007,
            ("Body", "empty", "expected an MM7 request or response"),
            id="empty-body",
        ),
        pytest.param(
            envelope(
                f'<mm7:EchoReq xmlns:mm7="{NS6}"><mm7:MM7Version>6.8.0</mm7:MM7Version>'
                "</mm7:EchoReq>"
            ),
            ParseError,
            4003,
            ("Body", "unsupported MM7 operation 'EchoReq'", "SubmitReq"),
            id="unknown-operation",
        ),
        pytest.param(
            envelope(
                f'<mm7:SubmitRsp xmlns:mm7="{NS6}"><mm7:MM7Version>6.8.0</mm7:MM7Version>'
                "<mm7:Status><mm7:StatusCode>OK</mm7:StatusCode></mm7:Status>"
                "<mm7:MessageID>m</mm7:MessageID></mm7:SubmitRsp>"
            ),
            ParseError,
            2007,
            ("SubmitRsp/Status", "StatusCode must be an integer", "'OK'"),
            id="status-code-not-a-number",
        ),
        pytest.param(
            envelope(
                f'<mm7:SubmitRsp xmlns:mm7="{NS6}"><mm7:MM7Version>6.8.0</mm7:MM7Version>'
                "<mm7:Status><mm7:StatusCode>1_000</mm7:StatusCode></mm7:Status>"
                "<mm7:MessageID>m</mm7:MessageID></mm7:SubmitRsp>"
            ),
            ParseError,
            2007,
            ("SubmitRsp/Status", "StatusCode must be an integer", "'1_000'"),
            id="status-code-python-literal",
        ),
        pytest.param(
            envelope(
                SUBMIT_WITHOUT_RECIPIENTS.replace(
                    "<mm7:Subject>",
                    "<mm7:Recipients><mm7:To><mm7:Number>+1555</mm7:Number></mm7:To>"
                    '</mm7:Recipients><mm7:ReplyCharging replyChargingSize="-5"/><mm7:Subject>',
                )
            ),
            ParseError,
            2007,
            ("SubmitReq/ReplyCharging", "non-negative integer", "'-5'"),
            id="negative-reply-charging-size",
        ),
        pytest.param(
            envelope(SUBMIT_WITHOUT_RECIPIENTS),
            ValidationError,
            4004,
            ("SubmitReq", "missing required element Recipients", "SenderIdentification"),
            id="submit-without-recipients",
        ),
        pytest.param(
            envelope(
                SUBMIT_WITHOUT_RECIPIENTS.replace(
                    "<mm7:Subject>", "<mm7:Recipients></mm7:Recipients><mm7:Subject>"
                )
            ),
            ValidationError,
            4004,
            ("SubmitReq/Recipients", "no To, Cc or Bcc address"),
            id="submit-with-empty-recipients",
        ),
        pytest.param(
            envelope(
                f'<mm7:DeliverReq xmlns:mm7="{NS6}"><mm7:MM7Version>6.8.0</mm7:MM7Version>'
                "<mm7:Sender><mm7:Number>+1555</mm7:Number></mm7:Sender>"
                '<mm7:Content href="cid:x" allowAdaptations="maybe"/></mm7:DeliverReq>'
            ),
            ParseError,
            2007,
            ("DeliverReq/Content/@allowAdaptations", "expected a boolean", "'maybe'"),
            id="attribute-not-a-boolean",
        ),
        pytest.param(
            b'<?xml version="1.0"?>\n<!DOCTYPE env:Envelope [<!ENTITY x "boom">]>\n'
            + envelope("&x;").split(b"?>", 1)[1],
            UnsafeXMLError,
            2007,
            ("SOAP part", "DTD"),
            id="doctype-entity",
        ),
    ],
)
def test_refusal_is_clear(
    body: bytes, error: type[ParseError], status_code: int, fragments: tuple[str, ...]
) -> None:
    with pytest.raises(error) as info:
        decode(body, "text/xml")
    assert type(info.value) is error
    assert info.value.status_code == status_code
    text = str(info.value)
    for fragment in fragments:
        assert fragment in text


SUBMIT_RSP_WITHOUT_MESSAGE_ID = envelope(
    f'<mm7:SubmitRsp xmlns:mm7="{NS6}"><mm7:MM7Version>6.8.0</mm7:MM7Version>'
    "<mm7:Status><mm7:StatusCode>1000</mm7:StatusCode></mm7:Status>"
    "</mm7:SubmitRsp>"
)


def test_successful_submitrsp_without_messageid_is_refused_only_when_strict() -> None:
    # "does it conform?": no, and a strict reader says which element is missing
    with pytest.raises(ValidationError) as info:
        decode(SUBMIT_RSP_WITHOUT_MESSAGE_ID, "text/xml", strict=True)
    assert info.value.status_code == 4004
    assert "SubmitRsp" in str(info.value)
    assert "missing required element MessageID" in str(info.value)
    # "can we act on it?": yes, the MMSC took the message; the absence is named
    decoded = decode(SUBMIT_RSP_WITHOUT_MESSAGE_ID, "text/xml")
    assert isinstance(decoded.message, SubmitRsp) and decoded.message.message_id is None
    assert decoded.message.status.code == 1000
    assert L.REQUIRED_ELEMENT_MISSING in decoded.leniencies
    assert decoded.missing == ("MessageID",)
