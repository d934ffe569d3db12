"""Strict emission refuses what a version's schema forbids with an EmitError naming the element
and the version; non-strict dialects drop what the version lacks. Elements leave in schema
sequence order, and the strict dialect writes booleans lower-case and dates in UTC with Z."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from lxml import etree

from mm7.core.codec import decode, encode
from mm7.core.dialect import STRICT_3GPP, Dialect, DialectError, get_dialect
from mm7.core.errors import EmitError
from mm7.core.mime import make_part, parse_swa
from mm7.core.model import (
    Address,
    AddressCoding,
    AddressKind,
    CancelReq,
    ChargedParty,
    DeliverReq,
    DeliveryReportReq,
    ExtendedCancelReq,
    ExtendedReplaceReq,
    Fault,
    Message,
    PreviouslySentBy,
    Recipients,
    ReplyCharging,
    Status,
    SubmitReq,
    SubmitRsp,
    UACapabilities,
)
from mm7.core.spec import Kind, operations_in
from mm7.core.status import MMStatus
from mm7.core.validate import validate_envelope
from mm7.core.versions import VERSIONS, Version, get_version
from mm7.core.xmlsafe import parse_xml
from tests.helpers.samples import full_message, minimal_message

LAX = dataclasses.replace(STRICT_3GPP, name="lax", strict=False)


def strict(token: str) -> Dialect:
    return STRICT_3GPP.with_version(token)


def lax(token: str) -> Dialect:
    return LAX.with_version(token)


def submit(*to: Address, **fields: Any) -> SubmitReq:
    return SubmitReq(
        transaction_id="tx-1", recipients=Recipients(to=to or (Address("+15551230001"),)), **fields
    )


def soap_of(message: Message, dialect: Dialect) -> Any:
    wire = encode(message, dialect)
    return parse_xml(parse_swa(wire.body, wire.content_type).soap)


def body_of(message: Message, dialect: Dialect) -> Any:
    return soap_of(message, dialect)[-1][0]


def round_trip(message: Message, dialect: Dialect) -> Message:
    wire = encode(message, dialect)
    return decode(wire.body, wire.content_type).message


# ---------------------------------------------------------------------- NMTOKEN numbers and IDs


@pytest.mark.parametrize("token", ["REL-5-MM7-1-0", "REL-5-MM7-1-1"])
def test_plus_number_is_refused_where_numbers_are_nmtokens(token: str) -> None:
    with pytest.raises(EmitError) as info:
        encode(submit(Address("+15551230001")), strict(token))
    text = str(info.value)
    assert text.startswith("SubmitReq/To: Number '+15551230001' is not an xs:NMTOKEN")
    assert f"which {token} requires" in text and "number_plus='strip'" in text
    sender = DeliverReq(transaction_id="t", sender=Address("+4917012345"), reply_charging_id="r")
    with pytest.raises(EmitError, match=f"^DeliverReq/Sender: Number '\\+4917012345' .*{token}"):
        encode(sender, strict(token))


@pytest.mark.parametrize("token", ["REL-5-MM7-1-0", "REL-5-MM7-1-1"])
def test_plus_number_is_stripped_with_number_plus_strip(token: str) -> None:
    dialect = dataclasses.replace(strict(token), number_plus="strip")
    message = submit(Address("+15551230001"), Address("+4917012345", AddressKind.SHORT_CODE))
    root = soap_of(message, dialect)
    ns = get_version(token).namespace
    numbers = [e.text for e in root.iter(f"{{{ns}}}Number", f"{{{ns}}}ShortCode")]
    assert numbers == ["15551230001", "4917012345"]
    assert b"+" not in etree.tostring(root)
    assert validate_envelope(root).errors == ()
    back = round_trip(message, dialect)
    assert isinstance(back, SubmitReq)
    assert [a.value for a in back.recipients.to] == ["15551230001", "4917012345"]


def test_plus_number_is_fine_from_rel_5_mm7_1_2_on() -> None:
    for version in VERSIONS:
        if version.nmtoken_identifiers:
            continue
        root = soap_of(submit(Address("+15551230001")), STRICT_3GPP.with_version(version))
        assert validate_envelope(root).errors == ()


def test_nmtoken_ids_are_checked_and_untyped_sender_address_is_not() -> None:
    """MessageID is an NMTOKEN in REL-5-MM7-1-0; SenderAddress is xs:string there."""
    message = CancelReq(transaction_id="t", message_id="msg 1")
    with pytest.raises(EmitError, match="^CancelReq/MessageID: 'msg 1' is not an xs:NMTOKEN, which "
                       "REL-5-MM7-1-0 requires"):  # fmt: skip
        encode(message, strict("REL-5-MM7-1-0"))
    with pytest.raises(EmitError, match="CancelReq/MessageID: '\uf900' is not an xs:NMTOKEN"):
        # U+F900 is a NameChar in XML 1.0 5th edition, not in the 4th (libxml2's, Xerces')
        encode(dataclasses.replace(message, message_id="\uf900"), strict("REL-5-MM7-1-0"))
    ok = dataclasses.replace(message, message_id="msg-é.1:x", sender_address=Address("+1555 123"))
    root = soap_of(ok, strict("REL-5-MM7-1-0"))
    assert validate_envelope(root).errors == ()
    ns = get_version("REL-5-MM7-1-0").namespace
    assert root.find(f".//{{{ns}}}SenderAddress").text == "+1555 123"
    lax_body = encode(message, lax("REL-5-MM7-1-0")).body  # non-strict writes it as given
    assert b"<mm7:MessageID>msg 1</mm7:MessageID>" in lax_body


@pytest.mark.parametrize("token", ["REL-5-MM7-1-0", "REL-5-MM7-1-1"])
def test_transaction_id_is_an_nmtoken_up_to_rel_5_mm7_1_1(token: str) -> None:
    message = dataclasses.replace(submit(Address("15551230001")), transaction_id="tx 1/2")
    with pytest.raises(EmitError) as info:
        encode(message, strict(token))
    assert str(info.value).startswith(
        f"TransactionID: 'tx 1/2' is not an xs:NMTOKEN, which {token} requires"
    )
    # non-strict writes it (and the validator reports it); REL-5-MM7-1-2 on it is an xs:string
    report = validate_envelope(soap_of(message, lax(token)))
    assert [e.split(":")[0] for e in report.errors] == ["TransactionID"]
    assert validate_envelope(soap_of(message, strict("REL-5-MM7-1-2"))).errors == ()


# ---------------------------------------------------------------------- fields a version lacks


@pytest.mark.parametrize(
    ("token", "field", "value", "element"),
    [
        ("REL-6-MM7-1-3", "applic_id", "app.one", "ApplicID"),
        ("REL-6-MM7-1-3", "content_class", "image-rich", "ContentClass"),
        ("REL-6-MM7-1-3", "drm_content", True, "DRMContent"),
        ("REL-5-MM7-1-4", "charged_party_id", "cp-9", "ChargedPartyID"),
        ("REL-6-MM7-1-2", "delivery_condition", (1, 2), "DeliveryCondition"),
    ],
)
def test_field_the_version_lacks(token: str, field: str, value: Any, element: str) -> None:
    message = submit(subject="kept", **{field: value})
    with pytest.raises(EmitError) as info:
        encode(message, strict(token))
    assert str(info.value).startswith(f"SubmitReq: {field} ({element}) does not exist in {token}")
    # a non-strict dialect drops it, and writes the rest
    root = body_of(message, lax(token))
    names = [etree.QName(c).localname for c in root]
    assert element not in names and "Subject" in names
    back = round_trip(message, lax(token))
    assert isinstance(back, SubmitReq)
    assert getattr(back, field) in (None, ()) and back.subject == "kept"


def test_deliver_req_vaspid_exists_only_in_rel_6_mm7_1_4() -> None:
    message = DeliverReq(transaction_id="t", sender=Address("+1555"), vasp_id="vasp01")
    with pytest.raises(EmitError, match=r"^DeliverReq: vasp_id \(VASPID\) does not exist in "
                       "REL-6-MM7-1-3"):  # fmt: skip
        encode(message, strict("REL-6-MM7-1-3"))
    assert b"VASPID" not in encode(message, lax("REL-6-MM7-1-3")).body
    assert b"<mm7:VASPID>vasp01</mm7:VASPID>" in encode(message, strict("REL-6-MM7-1-4")).body


def test_address_attributes_before_rel_6() -> None:
    addr = Address("+15551230001", address_coding=AddressCoding.ENCRYPTED, id="a1")
    with pytest.raises(EmitError, match="^SubmitReq/To: addressCoding and id exist from "
                       "REL-6-MM7-1-0 on, not in REL-5-MM7-1-4"):  # fmt: skip
        encode(submit(addr), strict("REL-5-MM7-1-4"))
    lax_body = encode(submit(addr), lax("REL-5-MM7-1-4")).body
    assert b"addressCoding" not in lax_body and b' id="' not in lax_body
    ok = encode(submit(addr), strict("REL-6-MM7-1-0")).body
    assert b'<mm7:Number addressCoding="encrypted" id="a1">+15551230001</mm7:Number>' in ok


def test_address_id_must_be_a_unique_ncname() -> None:
    with pytest.raises(EmitError, match=r"^SubmitReq/To/@id: '1a' is not an xs:ID \(an NCName\)"):
        encode(submit(Address("+1555", id="1a")), STRICT_3GPP)
    twice = submit(Address("+1555", id="r1"), Address("+1666", id="r1"))
    with pytest.raises(EmitError, match=r"^SubmitReq/To/@id: 'r1' is used twice \(xs:ID\)"):
        encode(twice, STRICT_3GPP)
    assert b'id="r1"' in encode(twice, LAX).body
    # ids are unique per message, not per process
    assert encode(submit(Address("+1555", id="r1")), STRICT_3GPP).body.count(b'id="r1"') == 1
    assert encode(submit(Address("+1555", id="r1")), STRICT_3GPP).body.count(b'id="r1"') == 1


# ---------------------------------------------------------------------- enumeration values


def test_charged_party_third_party_needs_rel_6_mm7_1_2() -> None:
    message = submit(Address("15551230001"), charged_party=ChargedParty.THIRD_PARTY)
    for version in VERSIONS:
        if version.key >= (6, 2):
            assert b">ThirdParty<" in encode(message, STRICT_3GPP.with_version(version)).body
            continue
        with pytest.raises(EmitError) as info:
            encode(message, STRICT_3GPP.with_version(version))
        assert str(info.value) == (
            f"SubmitReq/ChargedParty: 'ThirdParty' is not allowed in {version.token} "
            "(allowed: Sender, Recipient, Both, Neither)"
        )
    # non-strict dialects keep the odd value (the peer may know it)
    assert b">ThirdParty<" in encode(message, lax("REL-5-MM7-1-0")).body


@pytest.mark.parametrize(
    ("status", "since"),
    [
        (MMStatus.DEFERRED, "REL-6-MM7-1-1"),
        (MMStatus.UNRECOGNISED, "REL-6-MM7-1-1"),
        (MMStatus.DELIVERY_CONDITION_NOT_MET, "REL-6-MM7-1-3"),
    ],
)
def test_mm_status_values_by_version(status: MMStatus, since: str) -> None:
    first = get_version(since)
    report = DeliveryReportReq(
        transaction_id="t",
        message_id="m1",
        recipient=Address("15551230001"),
        sender=Address("15559870000"),
        date=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        mm_status=status,
    )
    for version in VERSIONS:
        dialect = STRICT_3GPP.with_version(version)
        if version >= first:
            assert f">{status.value}<".encode() in encode(report, dialect).body
        else:
            with pytest.raises(EmitError) as info:
                encode(report, dialect)
            assert str(info.value).startswith(
                f"DeliveryReportReq/MMStatus: '{status.value}' is not allowed in {version.token} "
                "(allowed: Expired, Retrieved, Rejected, Indeterminate, Forwarded"
            )


# ---------------------------------------------------------------------- MM7Version


def test_mm7_version_the_namespace_does_not_allow() -> None:
    message = dataclasses.replace(submit(), mm7_version="6.8.0")
    with pytest.raises(EmitError) as info:
        encode(message, strict("REL-6-MM7-1-3"))
    assert str(info.value) == (
        "SubmitReq/MM7Version: '6.8.0' is not allowed by REL-6-MM7-1-3 (allowed: 6.6.0, 6.5.0, "
        "6.4.0, 6.3.0, 5.10.0, 5.8.0, 5.6.0, 5.5.0, 5.3.0)"
    )
    anyway = dataclasses.replace(strict("REL-6-MM7-1-3"), allow_any_mm7_version=True)
    assert b"<mm7:MM7Version>6.8.0</mm7:MM7Version>" in encode(message, anyway).body
    assert b"<mm7:MM7Version>6.8.0</mm7:MM7Version>" in encode(message, lax("REL-6-MM7-1-3")).body
    # the dialect itself refuses such a pairing when it is built
    with pytest.raises(DialectError, match="^mm7_version: '6.7.0' is not allowed by REL-6-MM7-1-4"):
        Dialect(mm7_version="6.7.0")
    assert Dialect(mm7_version="6.7.0", allow_any_mm7_version=True).effective_mm7_version == "6.7.0"


# ---------------------------------------------------------------------- operations and required


@pytest.mark.parametrize("version", [v for v in VERSIONS if not v.has_extended_operations],
                         ids=lambda v: v.token)  # fmt: skip
def test_extended_operations_exist_only_in_rel_6_mm7_1_4(version: Version) -> None:
    cancel = ExtendedCancelReq(transaction_id="t", cancel_id="m1")
    replace = ExtendedReplaceReq(transaction_id="t", replace_id="m1")
    for message, name in ((cancel, "extendedCancelReq"), (replace, "extendedReplaceReq")):
        for dialect in (STRICT_3GPP.with_version(version), LAX.with_version(version)):
            with pytest.raises(EmitError) as info:
                encode(message, dialect)
            assert str(info.value) == (
                f"{name} does not exist in {version.token} (REL-6-MM7-1-4 only)"
            )
    assert b"<mm7:extendedCancelReq>" in encode(cancel, strict("REL-6-MM7-1-4")).body


def test_empty_recipients_are_refused() -> None:
    empty = SubmitReq(transaction_id="t", recipients=Recipients())
    for dialect in (STRICT_3GPP, LAX):
        with pytest.raises(EmitError, match="^SubmitReq/Recipients: at least one recipient is "
                           "required$"):  # fmt: skip
            encode(empty, dialect)


def test_required_element_missing() -> None:
    deliver = DeliverReq(transaction_id="t", sender=Address("15559870000"))
    for token in ("REL-5-MM7-1-0", "REL-5-MM7-1-1"):
        with pytest.raises(EmitError) as info:
            encode(deliver, strict(token))
        assert str(info.value) == f"DeliverReq/ReplyChargingID is required in {token}"
        assert b"ReplyChargingID" not in encode(deliver, lax(token)).body  # non-strict: written
    # optional from REL-5-MM7-1-2 on
    assert validate_envelope(soap_of(deliver, strict("REL-5-MM7-1-2"))).errors == ()
    no_recipients = SubmitReq(transaction_id="t", recipients=None)  # type: ignore[arg-type]
    with pytest.raises(EmitError, match="^SubmitReq/Recipients is required in REL-6-MM7-1-4$"):
        encode(no_recipients, STRICT_3GPP)


# ---------------------------------------------------------------------- characters and values


@pytest.mark.parametrize("bad", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1f", "\ufffe",
                                 "\uffff", "\ud800", "\udfff"])  # fmt: skip
def test_characters_xml_cannot_carry_are_refused(bad: str) -> None:
    cases: list[tuple[Message, str]] = [
        (submit(subject=f"a{bad}b"), "SubmitReq/Subject"),
        (submit(Address(f"x{bad}@example.com", AddressKind.RFC2822)), "SubmitReq/To"),
        (dataclasses.replace(submit(), transaction_id=f"t{bad}"), "TransactionID"),
        (
            DeliverReq(transaction_id="t", sender=Address("+1"), ua_capabilities=UACapabilities(
                f"http://ua{bad}")),
            "DeliverReq/UACapabilities/@UAProf",
        ),
        (
            SubmitRsp(transaction_id="t", status=Status(2000, f"bad{bad}"), message_id="m"),
            "SubmitRsp/Status/StatusText",
        ),
    ]  # fmt: skip
    for message, where in cases:
        for dialect in (STRICT_3GPP, LAX):
            with pytest.raises(EmitError) as info:
                encode(message, dialect)
            assert str(info.value) == (
                f"{where}: contains a control character XML 1.0 cannot carry"
            )


def test_tab_cr_lf_survive_in_text_and_attributes() -> None:
    """TAB/CR/LF are written as character references where XML would normalise them away."""
    text = "a\tb\r\nc\rd\ne "
    message = DeliverReq(
        transaction_id="t",
        sender=Address("+1555"),
        subject=text,
        ua_capabilities=UACapabilities(text),
    )
    wire = encode(message, STRICT_3GPP)
    assert b'UAProf="a&#9;b&#13;&#10;c&#13;d&#10;e "' in wire.body
    assert b"<mm7:Subject>a\tb&#13;\nc&#13;d\ne </mm7:Subject>" in wire.body
    back = decode(wire.body, wire.content_type).message
    assert isinstance(back, DeliverReq)
    assert back.subject == text and back.ua_capabilities == UACapabilities(text)


def test_any_uri_values() -> None:
    """faultactor and Content/@href are xs:anyURI: strict refuses what libxml2 would reject."""
    fault = Fault(transaction_id="t", faultcode="Server", faultstring="x", faultactor="[mmsc]")
    with pytest.raises(EmitError, match=r"^Fault/faultactor: '\[mmsc\]' is not an xs:anyURI$"):
        encode(fault, STRICT_3GPP)
    assert b"<faultactor>[mmsc]</faultactor>" in encode(fault, LAX).body
    ok = dataclasses.replace(fault, faultactor="http://mmsc.example.com/mm7")
    assert validate_envelope(parse_xml(encode(ok, STRICT_3GPP).body)).errors == ()
    bad_cid = submit(content=make_part(b"hi", "text/plain", content_id="part[1]"))
    with pytest.raises(EmitError, match=r"^SubmitReq/Content/@href: 'cid:part\[1\]' is not an "):
        encode(bad_cid, STRICT_3GPP)
    assert b'href="cid:part[1]"' in encode(bad_cid, LAX).body


def test_positive_integers() -> None:
    cases: list[tuple[Message, str]] = [
        (submit(reply_charging=ReplyCharging(0)), "SubmitReq/ReplyCharging: replyChargingSize"),
        (submit(delivery_condition=(1, 0)), "SubmitReq/DeliveryCondition/DC: 0 is not a positive"),
        (
            DeliverReq(transaction_id="t", sender=Address("+1"),
                       previously_sent_by=(PreviouslySentBy(Address("+2"), -1),)),
            "DeliverReq/UserAgent/@sequence: -1 is not a positive integer",
        ),
    ]  # fmt: skip
    for message, text in cases:
        with pytest.raises(EmitError) as info:
            encode(message, STRICT_3GPP)
        assert str(info.value).startswith(text)
        encode(message, LAX)  # non-strict writes them as given
    with pytest.raises(EmitError, match="^SubmitRsp/Status: StatusCode must be a positive"):
        encode(SubmitRsp(transaction_id="t", status=Status(0, "x"), message_id="m"), LAX)


def test_dates_that_cannot_be_written() -> None:
    early = datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))  # year 0 in UTC
    with pytest.raises(EmitError, match="^SubmitReq/TimeStamp: cannot write"):
        encode(submit(timestamp=early), STRICT_3GPP)
    odd_zone = datetime(2026, 1, 1, tzinfo=timezone(timedelta(seconds=30)))
    offset = dataclasses.replace(STRICT_3GPP, date_style="offset")
    with pytest.raises(EmitError, match="^SubmitReq/ExpiryDate: cannot write .*has seconds"):
        encode(submit(expiry_date=odd_zone), offset)
    assert (
        b"<mm7:ExpiryDate>2025-12-31T23:59:30Z<"
        in encode(submit(expiry_date=odd_zone), STRICT_3GPP).body
    )


# ---------------------------------------------------------------------- order and lexical forms

ALL_CASES = [
    pytest.param(op, v, id=f"{op.name}-{v.token}") for v in VERSIONS for op in operations_in(v)
]


@pytest.mark.parametrize(("op", "version"), ALL_CASES)
def test_wire_order_is_the_spec_sequence(op: Any, version: Version) -> None:
    dialect = STRICT_3GPP.with_version(version)
    full = [etree.QName(c).localname for c in body_of(full_message(op, version), dialect)]
    assert full == [el.name for el in op.sequence(version)]
    minimal = [etree.QName(c).localname for c in body_of(minimal_message(op, version), dialect)]
    assert minimal == [el.name for el in op.sequence(version) if el.required]


@pytest.mark.parametrize(("op", "version"), ALL_CASES)
def test_strict_booleans_are_lower_case_and_dates_utc_z(op: Any, version: Version) -> None:
    ns = version.namespace
    east = timezone(timedelta(hours=5, minutes=30))
    message = full_message(op, version)
    shifted: dict[str, Any] = {}
    for el in op.sequence(version):  # move every datetime off UTC: the wire must still say Z
        value = getattr(message, el.attr, None) if el.attr else None
        if el.kind in (Kind.DATETIME, Kind.REL_DATE) and isinstance(value, datetime):
            shifted[el.attr] = value.astimezone(east)
    message = dataclasses.replace(message, **shifted)
    root = body_of(message, STRICT_3GPP.with_version(version))
    seen = 0
    for el in op.sequence(version):
        node = root.find(f"{{{ns}}}{el.name}")
        if el.kind is Kind.BOOLEAN:
            assert node.text in ("true", "false")
            seen += 1
        elif el.kind is Kind.DATETIME or (el.kind is Kind.REL_DATE and el.attr in shifted):
            assert node.text == "2026-11-24T21:30:05Z"
            seen += 1
    for node in root.iter():
        for attr in ("displayOnly", "allowAdaptations"):
            if node.get(attr) is not None:
                assert node.get(attr) in ("true", "false")
                seen += 1
        for attr in ("TimeStamp", "replyDeadline"):
            value = node.get(attr)
            if value is not None and not value.startswith("P"):
                assert value == "2026-11-24T21:30:05Z"
    if op.name in ("SubmitReq", "DeliverReq", "ReplaceReq", "DeliveryReportReq"):
        assert seen > 0


def test_strict_is_the_default_and_named_lax_dialects_are_opt_in() -> None:
    assert STRICT_3GPP.strict and all(get_dialect(n).strict for n in ("mbuni", "nokia"))
    assert STRICT_3GPP.boolean_spelling == "lower" and STRICT_3GPP.date_style == "utc-z"
