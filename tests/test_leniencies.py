"""SOAP/XML-level deviations seen in real MM7 traffic, one fixture per shape (tests/fixtures/soap).

Each fixture reproduces a shape a real peer sends, as its public code, samples or documentation
show it (Nokia MC5.0, OpenMarket, Skycore, CMCC, SKT/KT, Mbuni, instantcom, VectorCore, Vibes).
For each we assert what an interop engineer relies on: the operation, the key fields, the
TransactionID, the status, and the exact set of leniencies reported, so that a clean message
reports none and a deviation is always named, never silently absorbed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mm7.core.capture import read_capture
from mm7.core.codec import Decoded, decode
from mm7.core.errors import ValidationError
from mm7.core.leniency import Leniency as L
from mm7.core.model import (
    AddressKind,
    DeliverReq,
    DeliveryReportRsp,
    MessageClass,
    Priority,
    SubmitReq,
    SubmitRsp,
    reply_to,
)
from mm7.core.status import MMStatus
from mm7.core.values import Duration
from mm7.core.versions import NAMESPACE_BASE

FIXTURES = Path(__file__).parent / "fixtures" / "soap"
JST = timezone(timedelta(hours=9))
CST = timezone(timedelta(hours=8))


def load(name: str) -> Decoded:
    """Decode a fixture: an HTTP capture (.http) or a bare SOAP document served as text/xml."""
    capture = read_capture((FIXTURES / name).read_bytes())
    assert capture.leniencies == ()  # the captures themselves are well framed
    return decode(capture.body, capture.content_type or "text/xml")


def get(obj: Any, path: str) -> Any:
    """Follow a dotted path of attributes and tuple indexes: 'recipients.to.0.value'."""
    for step in path.split("."):
        obj = obj[int(step)] if step.isdigit() else getattr(obj, step)
    return obj


@dataclass(frozen=True)
class Case:
    """What one fixture must decode to."""

    fixture: str
    operation: str
    transaction_id: str
    leniencies: frozenset[L]
    #: the schema version the message is read as (None: namespace unknown)
    version: str | None
    #: the Status code of a response; None for requests
    status: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def case(
    fixture: str,
    operation: str,
    transaction_id: str,
    leniencies: set[L],
    version: str | None,
    status: int | None = None,
    **fields: Any,
) -> Any:
    """A pytest param; keyword arguments are dotted paths with '__' for '.'."""
    expected = {k.replace("__", "."): v for k, v in fields.items()}
    return pytest.param(
        Case(
            fixture,
            operation,
            transaction_id,
            frozenset(leniencies),
            version,
            status,
            expected,
        ),
        id=fixture,
    )


DR_PREFIX_FIELDS: dict[str, Any] = {
    "message_id": "041502073667",
    "mms_relay_server_id": "mmsc.example.net",
    "recipient__value": "+15551230001",
    "sender__kind": AddressKind.SHORT_CODE,
    "date": datetime(2024, 7, 4, 3, 11, 38, tzinfo=UTC),
    "mm_status": MMStatus.RETRIEVED,
    "mm_status_raw": None,
    "status_text": "Message Retrieved",
    "mm7_version": "6.8.0",
}

CASES = [
    # --- prefixes are not deviations
    *(
        case(
            f"prefix-{style}.xml",
            "DeliveryReportReq",
            "DR-20240704-0001",
            set(),
            "REL-6-MM7-1-4",
            **DR_PREFIX_FIELDS,
        )
        for style in (
            "env-mm7",
            "soap-env-mm7p6a0",
            "soapenv-ns3",
            "soap-default-body",
            "env-default-envelope",
        )
    ),
    # --- envelope and header
    case(
        "envelope-ns-no-slash.xml",
        "SubmitRsp",
        "KT0000000001",
        {L.ENVELOPE_NS_NO_SLASH},
        "REL-5-MM7-1-2",
        1000,
        message_id="KT-MSG-0001",
    ),
    case(
        "mm7-children-unqualified.xml",
        "SubmitRsp",
        "vc-7f3a2c",
        {L.MM7_NO_NAMESPACE},
        "REL-5-MM7-1-0",
        1000,
        message_id="01HZX4K2M3N5P7Q9R1S3T5V7W9",
        mm7_version="5.3.0",
        status__text="Success",
    ),
    case(
        "body-unqualified-header-qualified.xml",
        "DeliverRsp",
        "d1e2f3a4-0001",
        {L.MM7_NO_NAMESPACE},
        "REL-6-MM7-1-4",
        1000,
        namespace=NAMESPACE_BASE + "REL-6-MM7-1-4",  # taken from the TransactionID
        mm7_version="6.8.0",
    ),
    case(
        "header-ns-mismatch.xml",
        "DeliveryReportRsp",
        "TX-000123",
        {L.HEADER_NS_MISMATCH},
        "REL-6-MM7-1-4",
        1000,
        namespace=NAMESPACE_BASE + "REL-6-MM7-1-4",  # the body's namespace wins
    ),
    case(
        "header-unqualified.xml",
        "DeliveryReportRsp",
        "TX-000124",
        {L.HEADER_NS_MISMATCH},
        "REL-6-MM7-1-4",
        1000,
    ),
    case(
        "transaction-id-whitespace.xml",
        "SubmitRsp",
        "100200300400",
        {L.TRANSACTION_ID_WHITESPACE},
        "REL-6-MM7-1-4",
        1000,
        message_id="MSG-8877",
    ),
    case(
        "transaction-id-axis-attributes.xml",
        "SubmitRsp",
        "axis-1182937",
        set(),
        "REL-6-MM7-1-4",
        1000,
        message_id="MSG-8878",
    ),
    case(
        "transaction-id-missing.xml",
        "DeliverRsp",
        "",
        {L.TRANSACTION_ID_MISSING},
        "REL-6-MM7-1-4",
        1000,
    ),
    case(
        "transaction-id-empty.xml",
        "DeliverRsp",
        "",
        {L.TRANSACTION_ID_MISSING},
        "REL-6-MM7-1-4",
        1000,
    ),
    # --- namespace / MM7Version pairs: the value is always kept as sent
    case(
        "version-rel6-1-4-with-5.6.0.xml",
        "SubmitRsp",
        "alu-0000042",
        set(),
        "REL-6-MM7-1-4",
        1000,
        mm7_version="5.6.0",
    ),
    case(
        "version-rel6-1-4-with-6.7.0.xml",
        "DeliverReq",
        "vas00001-sub",
        {L.VERSION_NAMESPACE_MISMATCH},
        "REL-6-MM7-1-4",
        mm7_version="6.7.0",
        sender__value="+38591000000",
        recipients__to__0__value="12345",
        linked_id="mms00016666",
        timestamp=datetime(2002, 4, 2, 14, 11, 23, tzinfo=UTC),
        subject="Weather Forecast",
    ),
    case(
        "version-rel5-1-0-with-5.2.0.xml",
        "DeliverReq",
        "0704101505000000100",
        {L.VERSION_NAMESPACE_MISMATCH},
        "REL-5-MM7-1-0",
        mm7_version="5.2.0",
        sender__value="8613900000000",
        reply_charging_id="0704101505000000100",
        timestamp=datetime(2007, 4, 10, 15, 5, tzinfo=CST),
    ),
    case(
        "version-rel5-1-2-with-1.6.xml",
        "SubmitRsp",
        "20240704121138000001",
        {L.VERSION_NAMESPACE_MISMATCH},
        "REL-5-MM7-1-2",
        1000,
        mm7_version="1.6",
        namespace=NAMESPACE_BASE + "REL-5-MM7-1-2",
    ),
    case(
        "namespace-unknown-rel6-6-7.xml",
        "SubmitRsp",
        "vas00001-sub",
        {L.NAMESPACE_UNKNOWN},  # no published schema to judge 6.7.0 against: no mismatch
        None,
        1000,
        mm7_version="6.7.0",
        namespace=NAMESPACE_BASE + "REL-6-MM7-6-7",
        message_id="041502073667",
    ),
    # --- elements
    case(
        "element-order-mbuni.xml",
        "SubmitReq",
        "mbuni-1720062698",
        {L.ELEMENT_ORDER},
        "REL-5-MM7-1-2",
        expiry_date=datetime(2024, 7, 11, 3, 11, 38, tzinfo=UTC),
        delivery_report=True,
        read_reply=False,
        service_code="news-1",
        message_class=MessageClass.INFORMATIONAL,
        subject="Headlines",
    ),
    case(
        "vendor-skt-senderidentification.xml",
        "CancelReq",
        "SKT20240704031138001",
        {L.UNKNOWN_ELEMENT},
        "REL-5-MM7-1-0",
        vasp_id="SEOULTEL",
        vas_id="MMSDIRECT",
        sender_address__value="0215881234",
        message_id="2024070403113800000001",
        extensions=(
            ("SenderIdentification/X-SKT-BPID", "BP0000001234"),
            ("SenderIdentification/X-SKT-RELAY-BPID", "BP0000005678"),
        ),
    ),
    case(
        "vendor-kt-elements.xml",
        "SubmitReq",
        "20240704121138000002",
        {L.UNKNOWN_ELEMENT},
        "REL-5-MM7-1-2",
        extensions=(("ServiceType", "MMS"), ("CPID", "CP0001")),
        subject="notice",
    ),
    case(
        "element-other-version-timestamp.xml",
        "DeliveryReportReq",
        "DR-20240704-0002",
        {L.ELEMENT_OTHER_VERSION},
        "REL-6-MM7-1-4",
        date=datetime(2024, 7, 4, 3, 12, tzinfo=UTC),
        mm_status=MMStatus.RETRIEVED,
    ),
    # --- values
    case(
        "boolean-title-case.xml",
        "SubmitReq",
        "ic-000001",
        {L.BOOLEAN_SPELLING},
        "REL-6-MM7-1-4",
        delivery_report=True,
        read_reply=False,
    ),
    case(
        "boolean-upper-case.xml",
        "SubmitReq",
        "kt-000001",
        {L.BOOLEAN_SPELLING},
        "REL-5-MM7-1-2",
        delivery_report=True,
        read_reply=False,
    ),
    case(
        "boolean-digits.xml",
        "SubmitReq",
        "bd-000001",
        set(),
        "REL-6-MM7-1-4",
        delivery_report=True,
        read_reply=False,
        distribution_indicator=True,
    ),
    case(
        "priority-lower-case.xml",
        "SubmitReq",
        "mb-000001",
        {L.ENUM_CASE},
        "REL-5-MM7-1-0",
        priority=Priority.NORMAL,
    ),
    case(
        "message-class-unknown.xml",
        "SubmitReq",
        "kt-000002",
        {L.ENUM_UNKNOWN},
        "REL-5-MM7-1-2",
        message_class=None,
        extensions=(("MessageClass", "GENERAL"),),
        priority=Priority.NORMAL,
    ),
    case(
        "dates-standard-forms.xml",
        "SubmitReq",
        "dt-000001",
        set(),
        "REL-6-MM7-1-4",
        timestamp=datetime(2024, 7, 4, 3, 11, 38, tzinfo=UTC),
        earliest_delivery_time=datetime(2024, 7, 4, 3, 15, 0, 250000, tzinfo=UTC),
        expiry_date=Duration(days=90),
    ),
    case(
        "date-no-zone.xml",
        "SubmitReq",
        "dt-000002",
        {L.DATE_NO_ZONE},
        "REL-6-MM7-1-4",
        timestamp=datetime(2024, 7, 4, 12, 11, 38, tzinfo=UTC),
    ),
    case(
        "date-rfc2822.xml",
        "SubmitReq",
        "dt-000003",
        {L.DATE_RFC2822},
        "REL-5-MM7-1-0",
        timestamp=datetime(2024, 7, 4, 3, 11, 38, tzinfo=JST),
    ),
    *(
        case(
            f"mmstatus-{raw.lower()}.xml",
            "DeliveryReportReq",
            tid,
            {L.MMSTATUS_NONSTANDARD},
            "REL-6-MM7-1-4",
            mm_status=mapped,
            mm_status_raw=raw,
            message_id=f"{tid}-m",
        )
        for raw, mapped, tid in (
            ("Delivered", MMStatus.RETRIEVED, "sc-dr-0001"),
            ("Unreachable", MMStatus.REJECTED, "sn-dr-0002"),
            ("Unrecognized", MMStatus.UNRECOGNISED, "sn-dr-0003"),
            ("NotSupported", MMStatus.REJECTED, "sn-dr-0004"),
        )
    ),
    case(
        "sender-bare-text.xml",
        "DeliveryReportReq",
        "cn-dr-0001",
        {L.SENDER_BARE_TEXT},
        "REL-6-MM7-1-0",
        sender__value="8613900000000",
        sender__kind=AddressKind.NUMBER,
        recipient__value="10658888",
        status_text="1000",
    ),
    case(
        "number-type-plmn.xml",
        "DeliveryReportReq",
        "nk-dr-0001",
        {L.ADDRESS_TYPE_PLMN},
        "REL-6-MM7-1-4",
        recipient__value="+3859100010010",
        recipient__kind=AddressKind.NUMBER,
    ),
    case(
        "subject-rfc2047-utf8.xml",
        "SubmitReq",
        "sj-000001",
        {L.SUBJECT_RFC2047},
        "REL-6-MM7-1-4",
        subject="Привет, мир",
    ),
    case(
        "subject-rfc2047-euckr.xml",
        "SubmitReq",
        "sj-000002",
        {L.SUBJECT_RFC2047, L.NUMBER_NOT_NMTOKEN},
        "REL-5-MM7-1-0",
        subject="안녕하세요",
    ),
    case(
        "sender-address-text-rel5-1-0.xml",
        "SubmitReq",
        "sa-000001",
        # REL-5-MM7-1-0 types SenderAddress as xs:string; its To Number +1555... is no NMTOKEN
        {L.NUMBER_NOT_NMTOKEN},
        "REL-5-MM7-1-0",
        sender_address__value="12345",
        sender_address__kind=AddressKind.SHORT_CODE,
    ),
    case(
        "sender-address-text-rel6-1-4.xml",
        "SubmitReq",
        "sa-000002",
        {L.SENDER_BARE_TEXT},  # REL-6-MM7-1-4 wants Number/ShortCode/RFC2822Address inside
        "REL-6-MM7-1-4",
        sender_address__value="12345",
        sender_address__kind=AddressKind.SHORT_CODE,
    ),
    case(
        "sender-address-typed-rel5-1-0.xml",
        "SubmitReq",
        "sa-000003",
        {L.SENDER_ADDRESS_TYPED},  # Mbuni's 5.3.0 default under REL-5-MM7-1-0
        "REL-5-MM7-1-0",
        sender_address__value="12345",
        sender_address__kind=AddressKind.SHORT_CODE,
    ),
    case(
        "address-rfc822address.xml",
        "DeliveryReportReq",
        "ic-dr-0001",
        {L.ADDRESS_ELEMENT_NAME},
        "REL-6-MM7-1-4",
        recipient__value="user@example.hr",
        recipient__kind=AddressKind.RFC2822,
    ),
    case(
        "attribute-qualified-displayonly.xml",
        "SubmitReq",
        "ic-000002",
        {L.ATTRIBUTE_QUALIFIED},
        "REL-6-MM7-1-4",
        sender_address__value="12345",
        sender_address__display_only=False,
    ),
    # --- charsets of the SOAP part
    case(
        "charset-vibes-utf16-declared-utf8-bytes.http",
        "DeliveryReportReq",
        "vb-5d3c1a",
        {L.CHARSET_FALLBACK},
        "REL-5-MM7-1-3",
        mm_status=MMStatus.REJECTED,
        status_text="Error 2002 - Address Error: número inválido",
    ),
    case(
        "charset-euckr-skt-submitrsp.http",
        "SubmitRsp",
        "SKT20240704031138001",
        set(),  # euc-kr declared and labelled: standard
        "REL-5-MM7-1-0",
        1000,
        status__text="성공",
        message_id="2024070403113800000001",
    ),
    case(
        "charset-ks-c-5601-kt-submitrsp.http",
        "SubmitRsp",
        "20240704121138000003",
        {L.CHARSET_FALLBACK},
        "REL-5-MM7-1-2",
        2002,
        status__text="똠방각하 수신번호 오류",
        message_id=None,  # an error answer carries no MessageID
    ),
    # --- whole captures in each carrier's style
    # --- what real MMSCs leave out or mistype, read because the gateway can act on it
    case(
        "mbuni-deliverreq-no-replychargingid-rel5-1-0.xml",
        "DeliverReq",
        "mbuni-mo-0001",
        {L.REQUIRED_ELEMENT_MISSING},  # that schema forgot minOccurs="0" on ReplyChargingID
        "REL-5-MM7-1-0",
        sender__value="15551230007",
        recipients__to__0__value="12345",
        reply_charging_id=None,
        subject="Hello from Mbuni",
    ),
    case(
        "mbuni-deliverreq-no-replychargingid-rel5-1-1.xml",
        "DeliverReq",
        "mbuni-mo-0002",
        {L.REQUIRED_ELEMENT_MISSING},
        "REL-5-MM7-1-1",
        sender__value="15551230007",
        reply_charging_id=None,
    ),
    case(
        "deliverreq-version-and-content-only.http",
        "DeliverReq",
        "vc-mo-0001",
        {L.REQUIRED_ELEMENT_MISSING},  # no Sender: relayed with "from": null
        "REL-6-MM7-1-4",
        sender=None,
        content__content_id="mo-text",
        content__body=b"just the text, no sender",
    ),
    case(
        "dlr-no-sender-no-date.xml",
        "DeliveryReportReq",
        "dr-nsd-0001",
        {L.REQUIRED_ELEMENT_MISSING},
        "REL-6-MM7-1-4",
        message_id="nsd-msg-1",
        recipient__value="+15551230001",
        sender=None,
        date=None,
        mm_status=MMStatus.RETRIEVED,
    ),
    *(
        case(
            f"mbuni-dlr-swapped-handset-{letter}.xml",
            "DeliveryReportReq",
            f"mbuni-dr-000{index}",
            set(),  # the codec cannot tell: the gateway finds the handset in Sender
            "REL-5-MM7-1-0",
            message_id="mbuni-msg-77",
            recipient__value="12345",
            recipient__kind=AddressKind.SHORT_CODE,
            sender__value=f"1555123000{index}",
        )
        for index, letter in ((1, "a"), (2, "b"))
    ),
    case(
        "number-plus-in-nmtoken-rel5-1-0.xml",
        "DeliveryReportReq",
        "nt-0001",
        {L.NUMBER_NOT_NMTOKEN},
        "REL-5-MM7-1-0",
        recipient__value="+15551230001",
    ),
    case(
        "id-at-sign-in-nmtoken-rel5-1-0.xml",
        "DeliveryReportReq",
        "q0001@mbuni.mmsc.example",
        {L.ID_NOT_NMTOKEN},
        "REL-5-MM7-1-0",
        message_id="qf-4711@mbuni.mmsc.example",
    ),
    case(
        "nokia-mc5-deliverreq.http",
        "DeliverReq",
        "mmsc01-2007070414400001",
        {L.ADDRESS_TYPE_PLMN, L.PARAM_CASE, L.CONTENT_ID_SPELLING, L.CTE_CASE},
        "REL-6-MM7-1-4",
        mms_relay_server_id="Nokia MMS Center MC5.0",
        sender__value="+3859100010010",
        recipients__to__0__value="23355",
        recipients__to__0__kind=AddressKind.SHORT_CODE,
        timestamp=datetime(2007, 7, 4, 12, 40, tzinfo=UTC),
        allow_adaptations=True,
        subject="Vote",
        content__content_id="mms_content",
    ),
    case(
        "openmarket-deliverreq.http",
        "DeliverReq",
        "2c1d8f50-3a11-4e1f-9a6e-0b51a4e6c001",
        {L.START_UNBRACKETED},
        "REL-6-MM7-1-4",
        vasp_id="acme",
        sender__value="12065550100",
        recipients__to__0__value="33445",
        ua_capabilities__ua_prof="http://nds1.nds.nokia.com/uaprof/N6230r200.xml",
        allow_adaptations=True,
        content__content_id="attachment-1",
    ),
    case(
        "skycore-submitrsp.http",
        "SubmitRsp",
        "sk-20240704-000777",
        set(),  # application/xml and a default namespace are both fine
        "REL-6-MM7-1-4",
        1000,
        message_id="4F2A9C1B7D",
    ),
    case(
        "skycore-deliveryreportreq.http",
        "DeliveryReportReq",
        "sk-dlr-000778",
        {L.MMSTATUS_NONSTANDARD},
        "REL-6-MM7-1-4",
        mm_status=MMStatus.RETRIEVED,
        mm_status_raw="Delivered",
        date=datetime(2024, 7, 4, 7, 40, 12, tzinfo=UTC),
        message_id="4F2A9C1B7D",
    ),
    case(
        "cmcc-submitreq.http",
        "SubmitReq",
        "2024070411113800001",
        {L.SENDER_BARE_TEXT},
        "REL-6-MM7-1-0",
        mm7_version="6.3.0",
        sender_address__value="1065888801",
        recipients__to__0__value="8613900000001",
        service_code="-MMS001",
        timestamp=datetime(2024, 7, 4, 3, 11, 38, tzinfo=UTC),
        subject="天气预报",
        content__content_id="content_0001",
    ),
    case(
        "cmcc-cancelreq.xml",
        "CancelReq",
        "2024070411200000002",
        {L.MM7_NO_NAMESPACE, L.SENDER_BARE_TEXT},
        "REL-6-MM7-1-0",
        message_id="07041120000010000001",
        vasp_id="901234",
        vas_id="1065888801",
    ),
    case(
        "mbuni-submitreq.http",
        "SubmitReq",
        "mmsbox-mm7-1720062698-0001",
        {L.SENDER_ADDRESS_TYPED, L.ELEMENT_ORDER, L.ENUM_CASE},
        "REL-5-MM7-1-0",
        sender_address__value="2020",
        expiry_date=Duration(days=2),
        priority=Priority.NORMAL,
        distribution_indicator=False,
        content__content_id="c1720062698.21.msg",
    ),
    case(
        "instantcom-submitreq.http",
        "SubmitReq",
        "ic-submit-0007",
        {
            L.NAMESPACE_UNKNOWN,
            L.ADDRESS_ELEMENT_NAME,
            L.ATTRIBUTE_QUALIFIED,
            L.BOOLEAN_SPELLING,
            L.UNKNOWN_ELEMENT,
            L.CTE_CASE,
            L.PARAM_CASE,
        },
        None,
        mm7_version="6.7.0",
        vasp_id="TNN",
        sender_address__display_only=False,
        recipients__to__0__value="+385911234567",
        recipients__to__1__value="news@example.hr",
        recipients__to__1__kind=AddressKind.RFC2822,
        recipients__to__1__display_only=True,
        delivery_report=True,
        read_reply=False,
        allow_adaptations=True,
        earliest_delivery_time=None,
        extensions=(
            ("SenderIdentification/MMSRelayServerID", "mmsc.example.hr"),
            ("EarlistDeliveryTime", "2024-07-04T04:00:00Z"),
        ),
        content__content_id="mm7-content",
    ),
    case(
        "kt-submitreq.http",
        "SubmitReq",
        "20240704121138000004",
        {
            L.ENVELOPE_NS_NO_SLASH,
            L.CHARSET_FALLBACK,
            L.VERSION_NAMESPACE_MISMATCH,
            L.UNKNOWN_ELEMENT,
            L.ENUM_UNKNOWN,
            L.DATE_NO_ZONE,
            L.BOOLEAN_SPELLING,
            L.CONTENT_ELEMENT_MISSING,
        },
        "REL-5-MM7-1-2",
        mm7_version="1.6",
        subject="공지사항",
        delivery_report=True,
        timestamp=datetime(2024, 7, 4, 12, 11, 38, tzinfo=UTC),
        extensions=(
            ("ServiceType", "MMS"),
            ("CPID", "CP0001"),
            ("CallBack", "0215881234"),
            ("ResellerCode", "RS01"),
            ("MessageClass", "GENERAL"),
        ),
        content__content_id="kt_text",
    ),
    case(
        "skt-submitreq.http",
        "SubmitReq",
        "SKT20240704031138002",
        {L.UNKNOWN_ELEMENT, L.DATE_RFC2822, L.BOOLEAN_SPELLING, L.HREF_FULL_CONTENT_ID},
        "REL-5-MM7-1-0",
        sender_address__value="0215881234",
        timestamp=datetime(2024, 7, 3, 18, 11, 38, tzinfo=UTC),
        delivery_report=True,
        read_reply=False,
        allow_adaptations=True,
        subject="안내 메시지",
        extensions=(("SenderIdentification/X-SKT-BPID", "BP0000001234"), ("X-SKT", "0")),
        content__content_id="2024070403113800000002",
    ),
]


@pytest.mark.parametrize("expected", CASES)
def test_fixture_decodes_with_exactly_its_leniencies(expected: Case) -> None:
    decoded = load(expected.fixture)
    message = decoded.message
    assert decoded.operation == expected.operation
    assert message.transaction_id == expected.transaction_id
    assert set(decoded.leniencies) == expected.leniencies
    assert (decoded.version.token if decoded.version else None) == expected.version
    status = getattr(message, "status", None)
    assert (status.code if status is not None else None) == expected.status
    for path, value in expected.fields.items():
        assert get(message, path) == value, path


def test_every_fixture_has_a_case() -> None:
    """A fixture nobody asserts on proves nothing: each file here is in CASES (faults/ aside)."""
    files = {p.name for p in FIXTURES.iterdir() if p.is_file() and not p.name.startswith(".")}
    files.discard("README.md")
    covered = {p.values[0].fixture for p in CASES}
    assert files == covered


#: the SOAP/XML-level leniencies this suite must show in real-traffic shapes
SOAP_LEVEL = {
    L.CHARSET_FALLBACK,
    L.ENVELOPE_NS_NO_SLASH,
    L.MM7_NO_NAMESPACE,
    L.HEADER_NS_MISMATCH,
    L.TRANSACTION_ID_MISSING,
    L.TRANSACTION_ID_WHITESPACE,
    L.ELEMENT_ORDER,
    L.UNKNOWN_ELEMENT,
    L.VERSION_NAMESPACE_MISMATCH,
    L.BOOLEAN_SPELLING,
    L.DATE_NO_ZONE,
    L.DATE_RFC2822,
    L.ENUM_CASE,
    L.ENUM_UNKNOWN,
    L.MMSTATUS_NONSTANDARD,
    L.SENDER_BARE_TEXT,
    L.SENDER_ADDRESS_TYPED,
    L.ADDRESS_TYPE_PLMN,
    L.ADDRESS_ELEMENT_NAME,
    L.ATTRIBUTE_QUALIFIED,
    L.SUBJECT_RFC2047,
    L.ELEMENT_OTHER_VERSION,
    L.NAMESPACE_UNKNOWN,
    L.REQUIRED_ELEMENT_MISSING,
    L.NUMBER_NOT_NMTOKEN,
    L.ID_NOT_NMTOKEN,
}


@pytest.mark.parametrize(
    ("fixture", "missing"),
    [
        ("mbuni-deliverreq-no-replychargingid-rel5-1-0.xml", ("ReplyChargingID",)),
        ("mbuni-deliverreq-no-replychargingid-rel5-1-1.xml", ("ReplyChargingID",)),
        ("deliverreq-version-and-content-only.http", ("Sender",)),
        ("dlr-no-sender-no-date.xml", ("Sender", "Date")),
    ],
)
def test_missing_elements_are_listed_and_a_strict_reader_refuses_them(
    fixture: str, missing: tuple[str, ...]
) -> None:
    assert load(fixture).missing == missing
    capture = read_capture((FIXTURES / fixture).read_bytes())
    with pytest.raises(ValidationError) as info:
        decode(capture.body, capture.content_type or "text/xml", strict=True)
    assert info.value.status_code == 4004
    assert f"missing required element {missing[0]}" in str(info.value)


@pytest.mark.parametrize(
    ("body", "needed"),
    [
        # which message and what happened: without them a report cannot be acted on
        ("<mm7:Recipient><mm7:Number>1555</mm7:Number></mm7:Recipient>"
         "<mm7:MMStatus>Retrieved</mm7:MMStatus>", "MessageID"),
        ("<mm7:MessageID>m1</mm7:MessageID>"
         "<mm7:Recipient><mm7:Number>1555</mm7:Number></mm7:Recipient>", "MMStatus"),
        # and some address of the handset, in either element
        ("<mm7:MessageID>m1</mm7:MessageID><mm7:MMStatus>Retrieved</mm7:MMStatus>",
         "Recipient or Sender"),
    ],
)  # fmt: skip
def test_a_report_without_what_the_gateway_needs_is_refused(body: str, needed: str) -> None:
    ns = NAMESPACE_BASE + "REL-6-MM7-1-4"
    soap = (
        '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body>'
        f'<mm7:DeliveryReportReq xmlns:mm7="{ns}"><mm7:MM7Version>6.8.0</mm7:MM7Version>'
        f"{body}</mm7:DeliveryReportReq></env:Body></env:Envelope>"
    ).encode()
    with pytest.raises(ValidationError) as info:
        decode(soap, "text/xml")
    assert info.value.status_code == 4004
    assert f"missing required element {needed}" in str(info.value)


def test_each_soap_level_leniency_has_a_single_quirk_fixture() -> None:
    """Every SOAP-level leniency is shown alone by at least one fixture, not only in a mix."""
    alone = {next(iter(p.values[0].leniencies)) for p in CASES if len(p.values[0].leniencies) == 1}
    assert alone >= SOAP_LEVEL


def test_prefixes_parse_identically() -> None:
    """mm7:, mm7p6a0:, ns3:, default namespaces; env/SOAP-ENV/soap/soapenv: one message."""
    styles = sorted(p.name for p in FIXTURES.glob("prefix-*.xml"))
    assert len(styles) == 5
    decoded = [load(name) for name in styles]
    first = decoded[0].message
    for other in decoded[1:]:
        assert other.message == first
        assert other.leniencies == ()


def test_version_mismatch_is_echoed_not_corrected() -> None:
    """A reply to KT's REL-5-MM7-1-2 + "1.6" carries that pair back, as the peer sent it."""
    request = load("kt-submitreq.http").message
    answer = reply_to(request, SubmitRsp(message_id="KT-1"))
    assert answer.transaction_id == "20240704121138000004"
    assert answer.namespace == NAMESPACE_BASE + "REL-5-MM7-1-2"
    assert answer.mm7_version == "1.6"


def test_unknown_namespace_reads_with_latest_tables() -> None:
    """REL-6-MM7-6-7 is no published schema: kept as sent, read with REL-6-MM7-1-4's tables."""
    decoded = load("namespace-unknown-rel6-6-7.xml")
    assert decoded.version is None
    answer = reply_to(decoded.message, DeliveryReportRsp())
    assert answer.namespace == NAMESPACE_BASE + "REL-6-MM7-6-7"
    assert answer.mm7_version == "6.7.0"


def test_nokia_base64_parts_decode_to_the_original_bytes() -> None:
    message = load("nokia-mc5-deliverreq.http").message
    assert isinstance(message, DeliverReq) and message.content is not None
    content = message.content
    assert content.content_type.mime_type == "multipart/related"
    kinds = [c.content_type.mime_type for c in content.children]
    assert kinds == ["application/smil", "text/plain", "image/jpeg"]
    smil, text, image = content.children
    assert smil.body.startswith(b"<smil>") and b'src="cid:image"' in smil.body
    assert text.body == b"Glasam za broj 7"
    assert image.body.startswith(b"\xff\xd8\xff") and image.body.endswith(b"\xff\xd9")
    assert len(image.body) == 20 + 256 + 2


def test_korean_content_parts_keep_their_charset() -> None:
    """The media of SKT/KT submits stay bytes in their own charset, labelled for the app."""
    skt = load("skt-submitreq.http").message
    assert isinstance(skt, SubmitReq) and skt.content is not None
    text, image = skt.content.children
    assert text.charset == "euc-kr"
    assert text.body.decode("euc-kr") == "안녕하세요, 고객님"
    assert image.content_type.mime_type == "image/jpeg"
    kt = load("kt-submitreq.http").message
    assert isinstance(kt, SubmitReq) and kt.content is not None
    assert kt.content.body.decode("cp949") == "내일 점검이 있습니다"


def test_carrier_headers_stay_available_beside_the_message() -> None:
    """Carrier-ID headers (for routing, passed to apps) stay in the capture beside the body."""
    om = read_capture((FIXTURES / "openmarket-deliverreq.http").read_bytes())
    assert om.header("X-OpenMarket-Carrier-Id") == "383"
    sky = read_capture((FIXTURES / "skycore-deliveryreportreq.http").read_bytes())
    assert sky.header("X-Skycore-Carrier-Id") == "310004"
    assert sky.header("SOAPAction") == f'"{NAMESPACE_BASE}REL-6-MM7-1-4"'


def test_extensions_do_not_change_message_equality() -> None:
    """Vendor elements are kept for logging but two messages differing only there are equal."""
    message = load("vendor-kt-elements.xml").message
    assert message.extensions
    assert dataclasses.replace(message, extensions=()) == message


@pytest.mark.parametrize(
    ("inner", "missing"),
    [
        ("<mm7:Sender/>", ("Sender",)),
        ("<mm7:Sender><mm7:Number/></mm7:Sender>", ("Sender",)),
        ("<mm7:Sender><mm7:Number>  </mm7:Number></mm7:Sender>", ("Sender",)),
        ("<mm7:Sender><mm7:Number>15551230007</mm7:Number></mm7:Sender><mm7:TimeStamp/>", ()),
    ],
)
def test_an_empty_address_or_date_reads_as_absent(inner: str, missing: tuple[str, ...]) -> None:
    ns = NAMESPACE_BASE + "REL-6-MM7-1-4"
    soap = (
        '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body>'
        f'<mm7:DeliverReq xmlns:mm7="{ns}"><mm7:MM7Version>6.8.0</mm7:MM7Version>{inner}'
        "<mm7:Subject>hi</mm7:Subject></mm7:DeliverReq></env:Body></env:Envelope>"
    ).encode()
    decoded = decode(soap, "text/xml")
    assert isinstance(decoded.message, DeliverReq)
    assert decoded.missing == missing
    assert (decoded.message.sender is None) == bool(missing)
    assert decoded.message.timestamp is None


def test_a_blank_messageid_is_no_messageid() -> None:
    ns = NAMESPACE_BASE + "REL-6-MM7-1-4"
    soap = (
        '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body>'
        f'<mm7:DeliveryReportReq xmlns:mm7="{ns}"><mm7:MM7Version>6.8.0</mm7:MM7Version>'
        "<mm7:MessageID>   </mm7:MessageID>"
        "<mm7:Recipient><mm7:Number>+15551230001</mm7:Number></mm7:Recipient>"
        "<mm7:Date/><mm7:MMStatus>Retrieved</mm7:MMStatus>"
        "</mm7:DeliveryReportReq></env:Body></env:Envelope>"
    ).encode()
    with pytest.raises(ValidationError) as info:
        decode(soap, "text/xml")
    assert info.value.status_code == 4004 and "MessageID" in str(info.value)
