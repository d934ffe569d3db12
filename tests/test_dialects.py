"""Named dialects write what they promise on the wire (prefixes, default namespace, CTEs,
Content-ID and start brackets, '+' stripping), read back to the same message, and validate;
``Dialect.from_mapping`` builds dialects from configuration and refuses bad keys and values by name.
"""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from mm7.core.codec import decode, encode
from mm7.core.dialect import DIALECTS, STRICT_3GPP, Dialect, DialectError, get_dialect
from mm7.core.leniency import Leniency
from mm7.core.mime import Part, parse_swa
from mm7.core.model import (
    Address,
    AddressKind,
    MessageClass,
    Priority,
    Recipients,
    SubmitReq,
)
from mm7.core.spec import operations_in
from mm7.core.validate import validate_envelope
from mm7.core.values import Duration
from mm7.core.versions import SOAP_ENV_NS, get_version
from mm7.core.xmlsafe import parse_xml
from tests.helpers.samples import JPEG, SMIL, content, full_message

NAMED = sorted(DIALECTS)


def submit() -> SubmitReq:
    """A SubmitReq with content that every named dialect's version can carry."""
    return SubmitReq(
        transaction_id="tx-dialect-1",
        vasp_id="vasp01",
        vas_id="vas01",
        sender_address=Address("12345", AddressKind.SHORT_CODE),
        recipients=Recipients(
            to=(Address("+15551230001"), Address("+15551230002")),
            cc=(Address("54321", AddressKind.SHORT_CODE),),
            bcc=(Address("ops@example.com", AddressKind.RFC2822),),
        ),
        service_code="svc-1",
        message_class=MessageClass.INFORMATIONAL,
        timestamp=datetime(2026, 11, 24, 21, 30, 5, tzinfo=UTC),
        expiry_date=Duration(days=7),
        delivery_report=True,
        read_reply=False,
        priority=Priority.NORMAL,
        subject="Grüße & <hallo>",
        allow_adaptations=True,
        content=content(),
    )


def _strip_plus(addr: Address) -> Address:
    if addr.kind is AddressKind.RFC2822 or not addr.value.startswith("+"):
        return addr
    return dataclasses.replace(addr, value=addr.value[1:])


def expected_back(message: SubmitReq, dialect: Dialect) -> SubmitReq:
    """What the peer reads: the dialect's namespace and MM7Version, numbers as written."""
    out = dataclasses.replace(
        message, namespace=dialect.namespace, mm7_version=dialect.effective_mm7_version
    )
    if dialect.number_plus == "strip":
        r = message.recipients
        out = dataclasses.replace(
            out,
            recipients=Recipients(
                tuple(map(_strip_plus, r.to)),
                tuple(map(_strip_plus, r.cc)),
                tuple(map(_strip_plus, r.bcc)),
            ),
        )
    return out


def _leaves(part: Part) -> list[Part]:
    if part.children:
        return [leaf for child in part.children for leaf in _leaves(child)]
    return [part]


def _soap_text(body: bytes, content_type: str) -> str:
    return parse_swa(body, content_type).soap.decode("utf-8")


@pytest.mark.parametrize("name", NAMED)
def test_named_dialect_wire_form_and_round_trip(name: str) -> None:
    dialect = DIALECTS[name]
    message = submit()
    wire = encode(message, dialect)
    soap = _soap_text(wire.body, wire.content_type)
    e, p, ns = dialect.envelope_prefix, dialect.mm7_prefix, dialect.namespace

    # envelope prefix
    assert soap.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert f'<{e}:Envelope xmlns:{e}="{SOAP_ENV_NS}"' in soap
    assert f"<{e}:Body>" in soap and soap.endswith(f"</{e}:Body></{e}:Envelope>")
    # MM7 prefix, or the MM7 namespace as default namespace of the body element
    if p:
        assert f'xmlns:{p}="{ns}"' in soap
        assert f"<{p}:SubmitReq><{p}:MM7Version>{dialect.effective_mm7_version}<" in soap
        assert f'<{p}:TransactionID {e}:mustUnderstand="1">tx-dialect-1<' in soap
    else:
        assert f'<SubmitReq xmlns="{ns}"><MM7Version>{dialect.effective_mm7_version}<' in soap
        assert f'<TransactionID xmlns="{ns}" {e}:mustUnderstand="1">tx-dialect-1<' in soap
        assert "xmlns:" + "mm7" not in soap
    # '+' on numbers
    if dialect.number_plus == "strip":
        assert "+1555" not in soap and ">15551230001<" in soap
    else:
        assert ">+15551230001<" in soap
    # Content-ID headers and the start parameter, with or without <>
    if dialect.content_id_brackets:
        assert b"\r\nContent-ID: <mm7-soap>\r\n" in wire.body
        assert b"\r\nContent-ID: <image1>\r\n" in wire.body
    else:
        assert b"\r\nContent-ID: mm7-soap\r\n" in wire.body
        assert b"\r\nContent-ID: image1\r\n" in wire.body
        assert b"Content-ID: <" not in wire.body
    start = "<mm7-soap>" if dialect.start_brackets else "mm7-soap"
    assert f'start="{start}"' in wire.content_type or f"start={start}" in wire.content_type
    assert 'type="text/xml"' in wire.content_type
    # Content-Transfer-Encoding of each media part, as the dialect chooses it by media type
    decoded = decode(wire.body, wire.content_type)
    (received,) = decoded.parts
    leaves = _leaves(received)
    assert [leaf.content_type.mime_type for leaf in leaves] == [
        "application/smil",
        "image/jpeg",
        "text/plain",
    ]
    for leaf in leaves:
        assert leaf.transfer_encoding == dialect.transfer_encoding_for(leaf.content_type.mime_type)
    jpeg_cte = dialect.transfer_encoding_for("image/jpeg")
    if jpeg_cte == "base64":
        assert base64.b64encode(JPEG)[:76] + b"\r\n" in wire.body
        assert JPEG not in wire.body
    else:
        assert JPEG in wire.body
    assert SMIL in wire.body  # 8bit and binary alike leave the SMIL readable
    # and the peer reads back the same message
    assert decoded.message == expected_back(message, dialect)
    assert decoded.version == dialect.version
    unbracketed = {Leniency.CONTENT_ID_UNBRACKETED, Leniency.START_UNBRACKETED}
    assert set(decoded.leniencies) == (set() if dialect.content_id_brackets else unbracketed)


def test_named_dialects_cover_the_documented_choices() -> None:
    """The dialects the conf files extend exist, with the choices their notes describe."""
    assert set(DIALECTS) == {"3gpp", "mbuni", "nokia", "rel5-legacy", "aggregator", "openmarket"}
    assert DIALECTS["3gpp"] is STRICT_3GPP
    mbuni = get_dialect("mbuni")
    assert (mbuni.version.token, mbuni.envelope_prefix, mbuni.number_plus) == (
        "REL-5-MM7-1-0",
        "SOAP-ENV",
        "strip",
    )
    assert get_dialect("nokia").transfer_encoding_for("image/png") == "base64"
    assert get_dialect("nokia").transfer_encoding_for("text/plain") == "8bit"
    assert get_dialect("rel5-legacy").effective_mm7_version == "5.3.0"
    assert get_dialect("aggregator").mm7_prefix == ""
    assert get_dialect("openmarket").envelope_prefix == "soapenv"
    with pytest.raises(KeyError, match="unknown dialect 'nope'; known: 3gpp, mbuni"):
        get_dialect("nope")


@pytest.mark.parametrize("name", NAMED)
def test_every_named_dialect_emits_schema_valid_soap(name: str) -> None:
    """Every operation of the dialect's version, fully populated, validates against our schema.
    REL-5-MM7-1-0 (mbuni) numbers are NMTOKENs there: the sample numbers carry no '+'."""
    dialect = DIALECTS[name]
    version = dialect.version
    checked = []
    for op in operations_in(version):
        message = dataclasses.replace(
            full_message(op, version), mm7_version=dialect.effective_mm7_version
        )
        if version.nmtoken_identifiers:
            assert "+" not in str(getattr(message, "recipients", ""))
        wire = encode(message, dialect)
        report = validate_envelope(parse_xml(parse_swa(wire.body, wire.content_type).soap))
        assert report.errors == (), (op.name, report.errors)
        assert (report.element, report.namespace) == (op.name, version.namespace)
        checked.append(op.name)
    assert len(checked) == len(operations_in(version)) >= 14


def test_mbuni_strips_plus_so_rel5_numbers_validate() -> None:
    """The same '+' numbers strict REL-5-MM7-1-0 refuses are valid NMTOKENs the mbuni way."""
    wire = encode(submit(), get_dialect("mbuni"))
    report = validate_envelope(parse_xml(parse_swa(wire.body, wire.content_type).soap))
    assert report.errors == ()


# ------------------------------------------------------------------------------ other knobs


def _plain_submit(**fields: Any) -> SubmitReq:
    return SubmitReq(
        transaction_id="tx", recipients=Recipients(to=(Address("+15551230001"),)), **fields
    )


@pytest.mark.parametrize(
    ("spelling", "true", "false"),
    [("lower", "true", "false"), ("title", "True", "False"), ("upper", "TRUE", "FALSE"),
     ("digit", "1", "0")],
)  # fmt: skip
def test_boolean_spelling(spelling: str, true: str, false: str) -> None:
    dialect = Dialect.from_mapping({"extends": "3gpp", "boolean_spelling": spelling})
    wire = encode(_plain_submit(delivery_report=True, read_reply=False), dialect)
    assert f"<mm7:DeliveryReport>{true}</mm7:DeliveryReport>".encode() in wire.body
    assert f"<mm7:ReadReply>{false}</mm7:ReadReply>".encode() in wire.body
    back = decode(wire.body, wire.content_type)
    assert back.message == dataclasses.replace(
        _plain_submit(delivery_report=True, read_reply=False),
        namespace=dialect.namespace,
        mm7_version="6.8.0",
    )
    lenient = spelling in ("title", "upper")
    assert (Leniency.BOOLEAN_SPELLING in back.leniencies) is lenient


def test_date_styles() -> None:
    when = datetime(2026, 11, 24, 23, 30, 5, 250000, tzinfo=timezone(timedelta(hours=2)))
    expected = {
        "utc-z": "2026-11-24T21:30:05.250Z",
        "offset": "2026-11-24T23:30:05.250+02:00",
        "local-naive": "2026-11-24T23:30:05.250",
    }
    for style, text in expected.items():
        wire = encode(
            _plain_submit(timestamp=when), dataclasses.replace(STRICT_3GPP, date_style=style)
        )
        assert f"<mm7:TimeStamp>{text}</mm7:TimeStamp>".encode() in wire.body
        back = decode(wire.body, wire.content_type)
        assert isinstance(back.message, SubmitReq)
        if style == "local-naive":  # no zone: read as UTC, a named leniency
            assert back.message.timestamp == when.replace(tzinfo=UTC)
            assert back.leniencies == (Leniency.DATE_NO_ZONE,)
        else:
            assert back.message.timestamp == when
            assert back.leniencies == ()


def test_soap_part_knobs() -> None:
    dialect = Dialect.from_mapping(
        {
            "name": "knobs",
            "soap_content_id": "soap-root",
            "soap_content_type": "text/xml",
            "soap_transfer_encoding": "8bit",
            "emit_type": False,
            "must_understand": False,
            "xml_declaration": False,
        }
    )
    wire = encode(_plain_submit(content=content()), dialect)
    assert "type=" not in wire.content_type.replace('type="application/smil"', "")
    assert 'start="<soap-root>"' in wire.content_type
    assert b"Content-Type: text/xml\r\nContent-Transfer-Encoding: 8bit\r\n" in wire.body
    assert b"Content-ID: <soap-root>\r\n\r\n<env:Envelope" in wire.body
    assert b"mustUnderstand" not in wire.body and b"<?xml" not in wire.body
    assert decode(wire.body, wire.content_type).message.transaction_id == "tx"


def test_details_element_choice() -> None:
    from mm7.core.model import Status, SubmitRsp

    rsp = SubmitRsp(transaction_id="tx", status=Status(2002, "Address Error", "no such number"),
                    message_id="m1")  # fmt: skip
    wrapped = encode(rsp, STRICT_3GPP)
    assert b"<mm7:Details><Reason>no such number</Reason></mm7:Details>" in wrapped.body
    bare = encode(rsp, dataclasses.replace(STRICT_3GPP, details_element=None))
    assert b"<mm7:Details>no such number</mm7:Details>" in bare.body
    for wire in (wrapped, bare):
        back = decode(wire.body, wire.content_type).message
        assert isinstance(back, SubmitRsp) and back.status == rsp.status
    assert validate_envelope(parse_xml(wrapped.body)).errors == ()
    assert validate_envelope(parse_xml(bare.body)).errors != ()  # Details is element-only


# ------------------------------------------------------------------------------ from_mapping


def test_from_mapping_extends_and_overrides() -> None:
    d = Dialect.from_mapping(
        {"extends": "nokia", "name": "nokia-soap", "envelope_prefix": "soap", "strict": False}
    )
    nokia = get_dialect("nokia")
    assert d.name == "nokia-soap"
    assert (d.envelope_prefix, d.strict) == ("soap", False)
    # everything else comes from nokia
    assert (d.mm7_prefix, d.transfer_encoding, d.version) == (
        nokia.mm7_prefix,
        nokia.transfer_encoding,
        nokia.version,
    )
    assert d.transfer_encoding_by_type == nokia.transfer_encoding_by_type


def test_from_mapping_reads_versions_and_cte_tables() -> None:
    rel5 = get_version("REL-5-MM7-1-3")
    by_token = Dialect.from_mapping({"version": "REL-5-MM7-1-3", "mm7_version": "5.5.0"})
    by_uri = Dialect.from_mapping({"version": rel5.namespace})
    assert by_token.version is rel5 and by_uri.version is rel5
    assert by_token.effective_mm7_version == "5.5.0"
    assert by_uri.effective_mm7_version == "5.6.0"
    table = Dialect.from_mapping(
        {"transfer_encoding_by_type": {"image/": "base64", "text/": "quoted-printable"}}
    )
    assert table.transfer_encoding_by_type == (("image/", "base64"), ("text/", "quoted-printable"))
    assert table.transfer_encoding_for("image/gif") == "base64"
    assert table.transfer_encoding_for("text/plain") == "quoted-printable"
    assert table.transfer_encoding_for("audio/amr") == "binary"
    pairs = Dialect.from_mapping({"transfer_encoding_by_type": [["audio/", "base64"]]})
    assert pairs.transfer_encoding_by_type == (("audio/", "base64"),)
    based = Dialect.from_mapping({"name": "b"}, base=get_dialect("aggregator"))
    assert (based.name, based.mm7_prefix, based.number_plus) == ("b", "", "strip")


def test_from_mapping_allows_any_mm7_version_only_when_asked() -> None:
    with pytest.raises(DialectError, match=r"^mm7_version: '1\.6' is not allowed by REL-5-MM7-1-2"):
        Dialect.from_mapping({"extends": "rel5-legacy", "mm7_version": "1.6"})
    d = Dialect.from_mapping(
        {"extends": "rel5-legacy", "mm7_version": "1.6", "allow_any_mm7_version": True}
    )
    assert d.effective_mm7_version == "1.6"
    wire = encode(_plain_submit(), d)
    assert b"<mm7:MM7Version>1.6</mm7:MM7Version>" in wire.body


def test_from_mapping_refuses_unknown_keys_by_name() -> None:
    with pytest.raises(DialectError, match=r"^unknown dialect key\(s\): colour, prefix$"):
        Dialect.from_mapping({"extends": "3gpp", "prefix": "x", "colour": "blue"})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("boolean_spelling", "yes", "boolean_spelling: 'yes' is not one of lower, title"),
        ("date_style", "iso", "date_style: 'iso' is not one of utc-z, offset, local-naive"),
        ("number_plus", "drop", "number_plus: 'drop' is not one of keep, strip"),
        ("transfer_encoding", "uuencode", "transfer_encoding: 'uuencode' is not one of"),
        ("transfer_encoding_by_type", {"image/": "b64"}, "transfer_encoding_by_type['image/']"),
        ("transfer_encoding_by_type", "base64", "transfer_encoding_by_type: expected a table"),
        ("transfer_encoding_by_type", [["a", "b", "c"]], "transfer_encoding_by_type: expected"),
        ("version", "REL-9-MM7-1-0", "version: unknown MM7 schema version 'REL-9-MM7-1-0'"),
        ("mm7_version", "6.9.9", "mm7_version: '6.9.9' is not allowed by REL-6-MM7-1-4"),
        ("mm7_version", 6.8, "mm7_version: expected a string, got 6.8"),
        ("envelope_prefix", "", "envelope_prefix: must not be empty"),
        ("envelope_prefix", "soap env", "envelope_prefix: 'soap env' is not an XML prefix"),
        ("mm7_prefix", "1mm7", "mm7_prefix: '1mm7' is not an XML prefix"),
        ("mm7_prefix", "xmlns", "mm7_prefix: 'xmlns' is not an XML prefix"),
        ("strict", "false", "strict: expected true/false, got 'false'"),
        ("must_understand", 1, "must_understand: expected true/false, got 1"),
        ("typed_sender_address", "yes", "typed_sender_address: expected true/false"),
        ("soap_content_id", None, "soap_content_id: expected a string, got None"),
        ("extends", "carrier-x", "extends: unknown dialect 'carrier-x'"),
    ],
)
def test_from_mapping_refuses_bad_values_naming_the_key(key: str, value: Any, message: str) -> None:
    with pytest.raises(DialectError) as info:
        Dialect.from_mapping({key: value})
    assert str(info.value).startswith(message), str(info.value)


def test_from_mapping_accepts_none_for_optional_fields() -> None:
    d = Dialect.from_mapping(
        {"details_element": None, "soap_transfer_encoding": None, "typed_sender_address": None}
    )
    assert (d.details_element, d.soap_transfer_encoding, d.typed_sender_address) == (
        None,
        None,
        None,
    )


def test_with_version_resets_mm7_version_to_the_namespace_default() -> None:
    legacy = get_dialect("rel5-legacy")
    moved = legacy.with_version("REL-6-MM7-1-2")
    assert moved.version.token == "REL-6-MM7-1-2"
    assert moved.effective_mm7_version == "6.5.0"
    assert moved.name == "rel5-legacy"
    assert legacy.with_version("REL-6-MM7-1-2", "5.3.0").effective_mm7_version == "5.3.0"


def test_http_knobs_are_data_with_checked_values() -> None:
    """SOAPAction, chunking, extra headers and the fault status travel with the dialect."""
    assert get_dialect("3gpp").soap_action_header() == '""'
    assert not get_dialect("3gpp").chunked
    assert get_dialect("3gpp").fault_http_status == 500
    aggregator = get_dialect("aggregator")
    assert aggregator.soap_action_header() == f'"{aggregator.namespace}"'
    built = Dialect.from_mapping(
        {
            "extends": "3gpp",
            "soap_action": "none",
            "extra_headers": {"X-Carrier-Id": "42"},
            "fault_http_status": 200,
            "accept_blank_200": True,
        }
    )
    assert built.soap_action_header() is None
    assert built.extra_headers == (("X-Carrier-Id", "42"),)
    assert built.fault_http_status == 200
    with pytest.raises(DialectError, match="fault_http_status"):
        Dialect.from_mapping({"fault_http_status": "500"})
    with pytest.raises(DialectError, match="fault_http_status"):
        Dialect.from_mapping({"fault_http_status": 42})
    with pytest.raises(DialectError, match="extra_headers"):
        Dialect.from_mapping({"extra_headers": {"Bad Header": "x"}})
