"""zeep's XSD engine as an independent reader: it loads our generated schemas (schemas/, offline)
and parses the body element of every operation x version the codec emits; every value it reads
must be the one the message held.

What zeep does not do, and how these tests cope (each is pinned by a test below, so a zeep
upgrade that changes it is noticed):

* xs:union (relativeOrAbsoluteDateType = xs:dateTime | xs:duration): zeep's UnionType has no
  common base class to convert with and hands back the lexical string; we convert it with the
  union's own member types (zeep's DateTime, then Duration), as a schema processor would.
* Attribute defaults (displayOnly default="false"): an absent attribute comes back as the
  default's unconverted lexical form, the string "false", not the boolean.
* Parsing does not enforce minOccurs or enumeration facets: a missing required element reads as
  None and MM7Version "9.9.9" is accepted. Those are covered by lxml's validator
  (test_conformance); zeep checks structure (names, nesting, xs:sequence order, choices) and
  the value space of built-in types.
* A schema with a top-level XML comment breaks zeep's visitor ("No visitor defined for
  Comment"); the reference schemas are therefore parsed with comments removed.
* An element with no children and no attributes (an empty SenderIdentification) reads as None.
* A repeated xs:choice (Recipients' To/Cc/Bcc) comes back as one item holding all three keys;
  we gather each list by its key.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree
from zeep import helpers, transports, xsd
from zeep.exceptions import XMLParseError
from zeep.settings import Settings

from mm7.core.codec import encode
from mm7.core.dialect import STRICT_3GPP
from mm7.core.mime import parse_swa
from mm7.core.model import Address, AddressKind, Message, Recipients, Status
from mm7.core.spec import SENDER_ID_ELEMENTS, Element, Kind, Operation, operations_in
from mm7.core.values import Duration
from mm7.core.versions import VERSIONS, Version, get_version
from mm7.core.xmlsafe import parse_xml
from mm7.core.xsdgen import load_schema
from tests.helpers.samples import WHEN, full_message, minimal_message

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
RECONSTRUCTED = ROOT.parent / "shared" / "mm7-reference" / "xsd-reconstructed"
ADDRESS_TAGS = ("RFC2822Address", "Number", "ShortCode")
# zeep is untyped: its entry points as Any, so the rest of this file type-checks
Schema: Any = xsd.Schema
Transport: Any = transports.Transport
serialize_object: Any = helpers.serialize_object

CASES = [
    pytest.param(op, v, id=f"{op.name}-{v.token}") for v in VERSIONS for op in operations_in(v)
]
# Where the reference schema and ours differ on purpose (see test_conformance): REL-5-MM7-1-0's
# SubmitRsp has no MessageID; we emit it, so zeep with the reference schema rejects exactly it.
KNOWN_DISAGREEMENTS = {("SubmitRsp", "REL-5-MM7-1-0"): "MessageID"}


class _NoNetwork(requests.Session):
    """A session that refuses every request: the schemas must load from disk only."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"zeep tried the network: {method!r} {url!r}")


def _load(path: Path, *, strip_comments: bool = False) -> Schema:
    parser = etree.XMLParser(remove_comments=strip_comments, resolve_entities=False)
    return Schema(
        etree.parse(str(path), parser).getroot(),
        transport=Transport(session=_NoNetwork()),
        location=str(path),  # the soap-envelope.xsd import resolves next to it, on disk
        settings=Settings(strict=True),
    )


@cache
def our_schema(token: str) -> Schema:
    return _load(SCHEMAS / f"{token}.xsd")


@cache
def reference_schema(token: str) -> Schema:
    return _load(RECONSTRUCTED / f"{token}.xsd", strip_comments=True)


def _emitted_root(message: Message, version: Version) -> Any:
    encoded = encode(message, STRICT_3GPP.with_version(version))
    return parse_xml(parse_swa(encoded.body, encoded.content_type).soap)


def _body(root: Any) -> Any:
    return root[-1][0]


def zeep_parse(schema: Schema, version: Version, element: Any) -> dict[str, Any]:
    """The body element as zeep reads it, as plain dicts and lists."""
    name = etree.QName(element).localname
    parsed = schema.get_element(f"{{{version.namespace}}}{name}").parse(element, schema)
    result: dict[str, Any] = serialize_object(parsed, dict)
    return result


# ------------------------------------------------------------------------------ comparison


def _union(schema: Schema, version: Version, text: str) -> Any:
    """A relativeOrAbsoluteDateType value converted by the union's member types, in order."""
    union = schema.get_type(f"{{{version.namespace}}}relativeOrAbsoluteDateType")
    for member in union.item_types:
        try:
            return member.pythonvalue(text)
        except Exception:  # noqa: BLE001 - not this member's lexical space; try the next
            continue
    raise AssertionError(f"{text!r} is in no member type of relativeOrAbsoluteDateType")


def _python(value: Any) -> Any:
    """Our value as zeep's member types give it back (xs:duration without Y/M: a timedelta)."""
    if isinstance(value, Duration):
        assert not (value.years or value.months), "samples use day/time durations only"
        return value.approx_timedelta()
    return value


def _address(choice: dict[str, Any], version: Version) -> Address:
    """The one address a zeep AddressGroup choice holds, as our model."""
    present = [(tag, choice[tag]) for tag in ADDRESS_TAGS if choice.get(tag) is not None]
    assert len(present) == 1, choice
    tag, node = present[0]
    display = node["displayOnly"]
    if version.key >= (6, 0):
        coding, ident = node["addressCoding"], node["id"]
    else:
        assert "addressCoding" not in node and "id" not in node
        coding = ident = None
    # zeep hands back an absent attribute's default lexically: the string "false"
    return Address(
        node["_value_1"], AddressKind(tag), None if display == "false" else display, coding, ident
    )


def _expected_address(addr: Address) -> Address:
    """An explicit displayOnly="false" reads back like an absent one (the default's lexical)."""
    if addr.display_only is False:
        return Address(addr.value, addr.kind, None, addr.address_coding, addr.id)
    return addr


def _recipients(node: dict[str, Any], version: Version) -> Recipients:
    lists: dict[str, list[Address]] = {"To": [], "Cc": [], "Bcc": []}
    for item in node["_value_1"]:
        for tag in lists:
            group = item.get(tag)
            if group is not None:
                lists[tag].extend(_address(choice, version) for choice in group["_value_1"])
    return Recipients(tuple(lists["To"]), tuple(lists["Cc"]), tuple(lists["Bcc"]))


def _status(node: dict[str, Any], expected: Status, *, code_only: bool) -> None:
    assert node["StatusCode"] == expected.code
    if code_only:
        assert set(node) == {"StatusCode"}
        return
    assert node["StatusText"] == expected.text
    if expected.details is None:
        assert node["Details"] is None
    else:
        (reason,) = node["Details"]["_value_1"]
        assert (reason.tag, reason.text) == (STRICT_3GPP.details_element, expected.details)


def check_element(
    el: Element, want: Any, got: Any, message: Message, schema: Schema, version: Version
) -> None:
    """Assert zeep's reading ``got`` of element ``el`` is the message's value ``want``."""
    kind = el.kind
    if kind in (Kind.STRING, Kind.ID, Kind.VERSION):
        assert got == want
    elif kind is Kind.SERVICE_CODE:
        assert got["_value_1"] == want
    elif kind is Kind.BOOLEAN:
        assert got is want
    elif kind is Kind.DATETIME:
        assert got == want
    elif kind is Kind.REL_DATE:
        assert _union(schema, version, got) == _python(want)
    elif kind in (Kind.ENUM, Kind.MM_STATUS, Kind.READ_STATUS):
        assert got == want.value
    elif kind is Kind.ADDRESS:
        assert _address(got, version) == _expected_address(want)
    elif kind is Kind.RECIPIENTS:
        assert _recipients(got, version) == Recipients(
            *(tuple(map(_expected_address, group)) for group in (want.to, want.cc, want.bcc))
        )
    elif kind is Kind.SENDER_ID:
        if got is None:  # zeep reads an element without children or attributes as None
            got = {}
            assert not any(getattr(message, sub.attr) for sub in SENDER_ID_ELEMENTS)
        for sub in SENDER_ID_ELEMENTS:
            value = getattr(message, sub.attr)
            if sub.kind is Kind.SENDER_ADDRESS and value is not None:
                if version.typed_sender_address:
                    assert _address(got[sub.name], version) == _expected_address(value)
                else:  # xs:string up to REL-5-MM7-1-1
                    assert got[sub.name] == value.value
            else:
                assert got.get(sub.name) == value
    elif kind in (Kind.STATUS, Kind.CODE_ONLY_STATUS):
        _status(got, want, code_only=kind is Kind.CODE_ONLY_STATUS)
    elif kind is Kind.REPLY_CHARGING:
        assert got["replyChargingSize"] == want.size
        assert _union(schema, version, got["replyDeadline"]) == _python(want.deadline)
    elif kind is Kind.DELIVERY_CONDITION:
        assert got["DC"] == list(want)
    elif kind is Kind.DELIVERY_CONDITION_TEXT:
        assert got == " ".join(map(str, want))
    elif kind is Kind.PREVIOUSLY_SENT_BY:
        assert [(_address(ua, version), ua["sequence"]) for ua in got["UserAgent"]] == [
            (_expected_address(item.address), item.sequence) for item in want
        ]
    elif kind is Kind.PREVIOUSLY_SENT_DATE:
        assert [
            (_union(schema, version, d["_value_1"]), d["sequence"]) for d in got["DateTime"]
        ] == [(_python(item.value), item.sequence) for item in want]
    elif kind is Kind.CAPABILITIES:
        assert got["UAProf"] == want.ua_prof
        assert _union(schema, version, got["TimeStamp"]) == _python(want.timestamp)
    elif kind is Kind.CONTENT:
        assert got["href"] == f"cid:{want.content_id}"
        assert got["allowAdaptations"] is message.allow_adaptations  # type: ignore[attr-defined]
    else:  # pragma: no cover - every kind the table uses is handled above
        raise AssertionError(f"no check for {el.name} ({kind})")


def check_message(
    parsed: dict[str, Any], message: Message, op: Operation, version: Version, schema: Schema
) -> int:
    """Compare every element of ``op`` in ``version``; returns how many were present."""
    assert list(parsed) == [el.name for el in op.sequence(version)]
    present = 0
    for el in op.sequence(version):
        if el.kind is Kind.VERSION:  # the emitter writes the namespace's newest when unset
            want: Any = message.mm7_version or version.default_mm7_version
        elif el.kind is Kind.SENDER_ID:
            want = message
        else:
            want = getattr(message, el.attr)
        got = parsed[el.name]
        if want is None or want == ():
            assert got is None, f"{el.name}: zeep read {got!r} for an absent element"
            continue
        present += 1
        check_element(el, want, got, message, schema, version)
    return present


# ------------------------------------------------------------------------------ tests


@pytest.mark.parametrize(("op", "version"), CASES)
@pytest.mark.parametrize("builder", [full_message, minimal_message], ids=["full", "minimal"])
def test_zeep_reads_every_emitted_body_with_our_schema(
    op: Operation, version: Version, builder: Any
) -> None:
    message = builder(op, version)
    schema = our_schema(version.token)
    parsed = zeep_parse(schema, version, _body(_emitted_root(message, version)))
    present = check_message(parsed, message, op, version, schema)
    if builder is full_message:
        assert present == len(op.sequence(version))  # every element was compared


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.token)
def test_key_values_through_zeep(version: Version) -> None:
    """Spot values, spelled out: numbers, subject, MM7Version, StatusCode, dates."""
    schema = our_schema(version.token)
    ops = {op.name: op for op in operations_in(version)}
    submit = zeep_parse(
        schema, version, _body(_emitted_root(full_message(ops["SubmitReq"], version), version))
    )
    plus = "" if version.nmtoken_identifiers else "+"
    to = _recipients(submit["Recipients"], version).to
    assert [a.value for a in to] == [f"{plus}15551230001", "user@example.com"]
    assert submit["Subject"] == "Héllo & <wörld>"
    assert submit["MM7Version"] == version.default_mm7_version
    assert submit["TimeStamp"] == WHEN
    assert _union(schema, version, submit["ExpiryDate"]) == timedelta(days=90)
    assert _union(schema, version, submit["EarliestDeliveryTime"]) == WHEN
    assert submit["Content"]["href"] == "cid:mm7-content"
    rsp = zeep_parse(
        schema, version, _body(_emitted_root(full_message(ops["SubmitRsp"], version), version))
    )
    assert rsp["Status"]["StatusCode"] == 1000
    assert rsp["MessageID"] == "msg-000123"


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.token)
def test_zeep_reads_the_transaction_id_header(version: Version) -> None:
    schema = our_schema(version.token)
    op = next(op for op in operations_in(version) if op.name == "CancelReq")
    root = _emitted_root(full_message(op, version), version)
    header = root[0]
    (tid,) = header
    parsed = schema.get_element(f"{{{version.namespace}}}TransactionID").parse(tid, schema)
    if version.transaction_id_has_soap_attrs:
        assert parsed._value_1 == f"tx-CancelReq-{version.token}"
        assert parsed.mustUnderstand is True
    else:  # REL-5-MM7-1-0/1-1: a bare xs:NMTOKEN; zeep ignores the SOAP attribute
        assert parsed == f"tx-CancelReq-{version.token}"


@pytest.mark.parametrize(("op", "version"), CASES)
def test_zeep_reads_every_emitted_body_with_the_reference_schema(
    op: Operation, version: Version
) -> None:
    if not RECONSTRUCTED.is_dir():
        pytest.skip(f"reference schemas not present at {RECONSTRUCTED}")
    schema = reference_schema(version.token)
    element = _body(_emitted_root(full_message(op, version), version))
    disagreement = KNOWN_DISAGREEMENTS.get((op.name, version.token))
    if disagreement:
        with pytest.raises(XMLParseError, match=disagreement):
            zeep_parse(schema, version, element)
        return
    parsed = zeep_parse(schema, version, element)
    assert parsed["MM7Version"] == version.default_mm7_version


# ------------------------------------------------------------------- what zeep checks, and not


def test_zeep_refuses_elements_out_of_sequence_order() -> None:
    """zeep's check has teeth: swapping two children of an emitted SubmitReq is refused."""
    version = get_version("REL-6-MM7-1-4")
    op = next(op for op in operations_in(version) if op.name == "SubmitReq")
    element = copy.deepcopy(_body(_emitted_root(full_message(op, version), version)))
    subject = element.find(f"{{{version.namespace}}}Subject")
    priority = element.find(f"{{{version.namespace}}}Priority")
    priority.addprevious(subject)
    with pytest.raises(XMLParseError, match="Unexpected element .*Priority"):
        zeep_parse(our_schema(version.token), version, element)


def test_zeep_refuses_unknown_elements() -> None:
    version = get_version("REL-6-MM7-1-4")
    op = next(op for op in operations_in(version) if op.name == "DeliverRsp")
    element = copy.deepcopy(_body(_emitted_root(full_message(op, version), version)))
    etree.SubElement(element, f"{{{version.namespace}}}Vendor").text = "x"
    with pytest.raises(XMLParseError, match="Unexpected element .*Vendor"):
        zeep_parse(our_schema(version.token), version, element)


def test_zeep_limitations_that_lxml_covers() -> None:
    """zeep neither enforces minOccurs nor enumerations when parsing; lxml's validator does,
    which is why both checks run."""
    version = get_version("REL-6-MM7-1-4")
    ns = version.namespace
    schema = our_schema(version.token)
    status = "<Status><StatusCode>1000</StatusCode><StatusText>ok</StatusText></Status>"
    missing = etree.fromstring(
        f'<SubmitRsp xmlns="{ns}"><MM7Version>6.8.0</MM7Version>{status}</SubmitRsp>'
    )
    assert zeep_parse(schema, version, missing)["MessageID"] is None
    assert not load_schema(version.token).validate(missing)
    odd = etree.fromstring(
        f'<SubmitRsp xmlns="{ns}"><MM7Version>9.9.9</MM7Version>{status}'
        "<MessageID>m1</MessageID></SubmitRsp>"
    )
    assert zeep_parse(schema, version, odd)["MM7Version"] == "9.9.9"
    assert not load_schema(version.token).validate(odd)


def test_zeep_union_and_default_quirks_are_as_documented() -> None:
    """xs:union values come back as text; an absent attribute's default as its lexical form."""
    version = get_version("REL-6-MM7-1-4")
    op = next(op for op in operations_in(version) if op.name == "SubmitReq")
    parsed = zeep_parse(
        our_schema(version.token), version, _body(_emitted_root(full_message(op, version), version))
    )
    assert parsed["ExpiryDate"] == "P90D"
    assert parsed["ReplyCharging"]["replyDeadline"] == "P2D"
    number = parsed["Recipients"]["_value_1"][0]["To"]["_value_1"][0]["Number"]
    assert number["displayOnly"] == "false"  # absent in the XML: the default, unconverted


def test_zeep_cannot_load_a_schema_with_a_top_level_comment() -> None:
    """Why the reference schemas are parsed with remove_comments=True."""
    if not RECONSTRUCTED.is_dir():
        pytest.skip(f"reference schemas not present at {RECONSTRUCTED}")
    with pytest.raises(ValueError, match="No visitor defined"):
        _load(RECONSTRUCTED / "REL-5-MM7-1-2.xsd")
