"""MIME / SwA codec: a fixture per real-traffic quirk, round trips, bounds, emission, fuzzing."""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mm7.core.errors import EmitError, LimitExceededError, ParseError
from mm7.core.leniency import Leniency as L
from mm7.core.limits import Limits
from mm7.core.mime import (
    ContentType,
    Part,
    build_multipart,
    decode_body,
    encode_body,
    find_content,
    make_multipart,
    make_part,
    parse_content_type,
    parse_entity,
    parse_swa,
    serialize_part,
)

FIXTURES = Path(__file__).parent / "fixtures" / "mime"

MM7_NS = b"http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-6-MM7-1-4"
ENV = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">'
    b'<env:Header><mm7:TransactionID xmlns:mm7="' + MM7_NS + b'" env:mustUnderstand="1">'
    b"tx-0001</mm7:TransactionID></env:Header><env:Body>"
    b'<mm7:SubmitReq xmlns:mm7="' + MM7_NS + b'"><mm7:MM7Version>6.8.0</mm7:MM7Version>'
    b'<mm7:Content href="cid:content"/></mm7:SubmitReq></env:Body></env:Envelope>'
)
SMIL = b'<smil><body><par dur="5s"><img src="cid:img"/></par></body></smil>'
# Binary with CRLFs, NULs, a bare CR and a line that starts with "--": only delimiters split.
JPEG = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\r\n--not-a-delimiter\r\n\x00\x01\x02\xfe\r\r\n\n\x7f\xff\xd9"
)
IMG = ("img", "image/jpeg", JPEG)


def load(name: str) -> tuple[str | None, bytes]:
    """A fixture: an optional HTTP ``Content-Type:`` line (maybe folded), a blank line, the body."""
    raw = (FIXTURES / f"{name}.http").read_bytes()
    if not raw.startswith(b"Content-Type:"):
        return None, raw
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, name
    return head[len(b"Content-Type:") :].decode("ascii").strip(), body


def summary(part: Part) -> tuple[object, ...]:
    """(Content-ID, type, decoded body or children summaries): concrete values to compare."""
    if part.children:
        return (part.content_id, part.content_type.mime_type, tuple(map(summary, part.children)))
    return (part.content_id, part.content_type.mime_type, part.body)


# --------------------------------------------------------------------------- quirk fixtures

# name -> (expected leniencies, expected top-level parts besides SOAP)
FIXTURE_CASES: dict[str, tuple[set[L], list[tuple[object, ...]]]] = {
    "strict": (
        set(),
        [
            (
                "content",
                "multipart/related",
                (("smil", "application/smil", SMIL), IMG),
            )
        ],
    ),
    "start_missing": ({L.START_MISSING}, [IMG]),
    "start_unbracketed": ({L.START_UNBRACKETED}, [IMG]),
    "start_unresolved": ({L.START_UNRESOLVED}, [IMG]),
    "type_missing": ({L.TYPE_MISSING}, [IMG]),
    "type_wrong": ({L.TYPE_WRONG}, [IMG]),
    "param_case": ({L.PARAM_CASE}, [IMG]),
    "boundary_unquoted": ({L.BOUNDARY_UNQUOTED}, [IMG]),
    "boundary_special_chars": (set(), [IMG]),
    "boundary_from_body": ({L.BOUNDARY_FROM_BODY}, [IMG]),
    "delimiter_trailing_space": ({L.DELIMITER_TRAILING_SPACE}, [IMG]),
    "header_folded": ({L.HEADER_FOLDED}, [IMG]),
    "lf_line_endings": ({L.LF_LINE_ENDINGS}, [("img", "image/jpeg", b"GIF89a-lf-image")]),
    "no_blank_line": ({L.NO_BLANK_LINE}, [IMG]),
    "content_id_unbracketed": ({L.CONTENT_ID_UNBRACKETED}, [IMG]),
    "content_id_spelling": ({L.CONTENT_ID_SPELLING}, [IMG]),
    "cte_unknown": ({L.CTE_UNKNOWN}, [IMG]),
    "cte_case": ({L.CTE_CASE}, [IMG]),
    "cte_missing_8bit": (set(), [IMG]),
    "base64_malformed": ({L.BASE64_MALFORMED}, [IMG]),
    "multipart_but_bare_xml": ({L.MULTIPART_BUT_BARE_XML}, []),
    "bare_xml": (set(), []),
    "bare_xml_no_content_type": ({L.BARE_XML_NO_MULTIPART}, []),
    "missing_close_delimiter": ({L.MISSING_CLOSE_DELIMITER}, [IMG]),
    "preamble": ({L.PREAMBLE}, [IMG]),
    "headerless_body": ({L.HEADERLESS_BODY}, [IMG]),
    "content_length_header": (set(), [IMG]),
    "content_disposition": (set(), [IMG]),
    "header_no_space": (set(), [IMG]),
    "multipart_not_related": ({L.MULTIPART_NOT_RELATED}, [IMG]),
    "combined_nokia": (
        {
            L.HEADER_FOLDED,
            L.PARAM_CASE,
            L.CONTENT_ID_SPELLING,
            L.CONTENT_ID_UNBRACKETED,
            L.START_UNBRACKETED,
        },
        [("smil", "application/smil", SMIL), IMG],
    ),
}


def test_every_fixture_file_is_covered() -> None:
    assert {p.stem for p in FIXTURES.glob("*.http")} == set(FIXTURE_CASES)


@pytest.mark.parametrize("name", sorted(FIXTURE_CASES))
def test_fixture(name: str) -> None:
    expected_lens, expected_parts = FIXTURE_CASES[name]
    content_type, body = load(name)
    swa = parse_swa(body, content_type)
    assert swa.soap == ENV
    assert swa.soap_charset == (None if name in NO_CHARSET else "utf-8")
    assert [summary(p) for p in swa.parts] == expected_parts
    assert set(swa.leniencies) == expected_lens
    assert len(swa.leniencies) == len(set(swa.leniencies))  # each named once


NO_CHARSET = {"bare_xml_no_content_type", "multipart_but_bare_xml"}


def test_every_mime_leniency_has_a_fixture_or_a_test() -> None:
    covered = set().union(*(lens for lens, _ in FIXTURE_CASES.values()))
    tested_elsewhere = {
        L.HREF_NO_CID,
        L.HREF_CID_SPACE,
        L.HREF_FULL_CONTENT_ID,
        L.HREF_CONTENT_LOCATION,
        L.HREF_UNRESOLVED,
        L.CONTENT_ELEMENT_MISSING,
        L.CONTENT_FLATTENED,
        L.HREF_QUALIFIED,  # an XML attribute quirk: the SOAP reader names it
    }
    mime_section = [x for x in L if list(L).index(x) <= list(L).index(L.CONTENT_FLATTENED)] + [
        L.MULTIPART_NOT_RELATED,
        L.BASE64_MALFORMED,
    ]
    assert set(mime_section) - covered - tested_elsewhere == set()


def test_strict_fixture_details() -> None:
    content_type, body = load("strict")
    swa = parse_swa(body, content_type)
    (content,) = swa.parts
    assert content.content_type.param("type") == "application/smil"
    assert content.content_type.param("START") == "<smil>"
    smil, img = content.children
    assert (smil.transfer_encoding, img.transfer_encoding) == ("7bit", "binary")
    assert content.transfer_encoding is None


def test_wire_details_are_kept() -> None:
    _, body = load("content_length_header")
    swa = parse_swa(body, load("content_length_header")[0])
    assert swa.parts[0].header("content-length") == "7"
    assert swa.parts[0].body == JPEG  # 43 bytes: the delimiter decides, not Content-Length: 7
    ct, body = load("content_disposition")
    (img,) = parse_swa(body, ct).parts
    assert img.header("Content-Disposition") == 'attachment; filename="photo.jpg"'
    assert img.header("X-Missing") is None


def test_cte_unknown_passes_bytes_through() -> None:
    ct, body = load("cte_unknown")
    (img,) = parse_swa(body, ct).parts
    assert img.transfer_encoding == "x-vendor-pack"
    assert img.body == JPEG


def test_start_resolves_soap_part_even_when_not_first() -> None:
    ct, body = load("start_unbracketed")
    swa = parse_swa(body, ct)
    assert swa.soap == ENV and swa.parts[0].content_id == "img"


def test_soap_part_with_base64_is_decoded() -> None:
    soap = make_part(ENV, "text/xml; charset=euc-kr", content_id="s", transfer_encoding="base64")
    ct, body = build_multipart([soap], params={"type": "text/xml", "start": "<s>"})
    swa = parse_swa(body, ct)
    assert (swa.soap, swa.soap_charset, swa.parts, swa.leniencies) == (ENV, "euc-kr", (), ())


def test_xop_type_is_accepted() -> None:
    soap = make_part(ENV, 'application/xop+xml; type="text/xml"', content_id="s")
    ct, body = build_multipart([soap], params={"type": "application/xop+xml", "start": "<s>"})
    assert parse_swa(body, ct).leniencies == ()


def test_bare_xml_variants() -> None:
    bom = b"\xef\xbb\xbf\r\n  " + ENV
    swa = parse_swa(bom, "application/xml")
    assert (swa.soap, swa.leniencies, swa.soap_charset) == (bom, (), None)
    utf16 = ENV.decode().encode("utf-16")
    assert parse_swa(utf16, "text/xml; charset=utf-16").soap == utf16
    assert parse_swa(ENV, "text/plain").leniencies == (L.BARE_XML_NO_MULTIPART,)


def test_headerless_body_with_a_non_multipart_content_type() -> None:
    _, body = load("headerless_body")
    swa = parse_swa(body, "text/xml")
    assert swa.soap == ENV and swa.leniencies == (L.HEADERLESS_BODY,)


def test_empty_part_and_whitespace_after_last_delimiter() -> None:
    body = (
        b"--b\r\nContent-Type: text/xml\r\n\r\n" + ENV + b"\r\n--b\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\n--b\r\n  \r\n"
    )
    swa = parse_swa(body, 'multipart/related; boundary=b; type="text/xml"; start="<x>"')
    assert [summary(p) for p in swa.parts] == [
        (None, "text/plain", b""),
        (None, "text/plain", b""),
    ]
    assert set(swa.leniencies) == {L.START_UNRESOLVED, L.MISSING_CLOSE_DELIMITER}


def test_boundary_that_prefixes_a_longer_line_is_not_a_delimiter() -> None:
    body = (
        b"--b\r\nContent-Type: text/xml\r\n\r\n" + ENV + b"\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\n--bx is data\r\n--b--\r\nepilogue"
    )
    swa = parse_swa(body, "multipart/related; boundary=b; type=text/xml; start=<x>")
    assert [p.body for p in swa.parts] == [b"--bx is data"]


def test_lf_only_before_one_delimiter() -> None:
    body = (
        b"--b\r\nContent-Type: text/xml\r\n\r\n" + ENV + b"\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nbody\n--b--\r\n"
    )
    swa = parse_swa(body, "multipart/related; boundary=b; type=text/xml; start=<x>")
    assert [p.body for p in swa.parts] == [b"body"]
    assert set(swa.leniencies) == {L.LF_LINE_ENDINGS, L.START_UNRESOLVED}


def test_no_blank_line_before_a_body_with_colons_and_blank_lines() -> None:
    xml = b"<env:Envelope>\r\n\r\n</env:Envelope>"
    body = b"--b\r\nContent-Type: text/xml\r\nContent-ID: <s>\r\n" + xml + b"\r\n--b--\r\n"
    swa = parse_swa(body, "multipart/related; boundary=b; type=text/xml; start=<s>")
    assert swa.soap == xml and swa.leniencies == (L.NO_BLANK_LINE,)


def test_header_only_part_before_a_boundary_holding_a_colon() -> None:
    # RFC 2046 allows ':' in boundaries: "--a:b" must end the header block, not join it.
    body = (
        b"--a:b\r\nContent-Type: text/xml\r\n\r\n" + ENV + b"\r\n"
        b"--a:b\r\nContent-Type: text/plain\r\nContent-ID: <e>\r\n"
        b"--a:b\r\nContent-Type: image/gif\r\nContent-ID: <g>\r\n\r\nGIF\r\n--a:b--\r\n"
    )
    swa = parse_swa(body, 'multipart/related; boundary="a:b"; type="text/xml"; start="<x>"')
    assert [summary(p) for p in swa.parts] == [
        ("e", "text/plain", b""),
        ("g", "image/gif", b"GIF"),
    ]
    assert swa.leniencies == (L.START_UNRESOLVED,)


def test_close_delimiter_only_gives_parse_error() -> None:
    with pytest.raises(ParseError, match="no parts"):
        parse_swa(b"--b--\r\n", "multipart/related; boundary=b")


# --------------------------------------------------------------------------- nesting


def _nested_body(close_inner: bool) -> bytes:
    inner_close = b"--in--\r\n" if close_inner else b""
    return (
        b"--out\r\nContent-Type: text/xml\r\nContent-ID: <s>\r\n\r\n" + ENV + b"\r\n"
        b"--out\r\nContent-Type: multipart/mixed; boundary=in\r\nContent-ID: <c>\r\n\r\n"
        b"--in\r\nContent-Type: text/plain\r\n\r\nhello\r\n" + inner_close + b"\r\n"
        b"--out\r\nContent-Type: image/jpeg\r\nContent-ID: <img>\r\n\r\n" + JPEG + b"\r\n"
        b"--out--\r\n"
    )


OUT_CT = 'multipart/related; boundary=out; type="text/xml"; start="<s>"'


def test_nested_multipart_with_epilogue() -> None:
    swa = parse_swa(_nested_body(close_inner=True), OUT_CT)
    assert [summary(p) for p in swa.parts] == [
        ("c", "multipart/mixed", ((None, "text/plain", b"hello"),)),
        IMG,
    ]
    assert swa.leniencies == ()


def test_nested_multipart_missing_its_close_is_bounded_by_the_outer_delimiter() -> None:
    swa = parse_swa(_nested_body(close_inner=False), OUT_CT)
    assert [summary(p) for p in swa.parts] == [
        ("c", "multipart/mixed", ((None, "text/plain", b"hello"),)),
        IMG,
    ]
    assert swa.leniencies == (L.MISSING_CLOSE_DELIMITER,)


def test_nested_multipart_without_boundary_param() -> None:
    body = _nested_body(close_inner=True).replace(
        b"multipart/mixed; boundary=in", b"multipart/mixed"
    )
    swa = parse_swa(body, OUT_CT)
    assert summary(swa.parts[0]) == ("c", "multipart/mixed", ((None, "text/plain", b"hello"),))
    assert swa.leniencies == (L.BOUNDARY_FROM_BODY,)


def test_large_binary_in_nested_content() -> None:
    big = os.urandom(200_000) + b"\r\n--mm7-almost\r\n" + os.urandom(1000)
    img = make_part(big, "image/jpeg", content_id="img", transfer_encoding="binary")
    content = make_multipart([img], params={"type": "image/jpeg"}, content_id="c")
    soap = make_part(ENV, "text/xml", content_id="s")
    ct, body = build_multipart([soap, content], params={"type": "text/xml", "start": "<s>"})
    swa = parse_swa(body, ct)
    assert swa.parts == (content,) and swa.parts[0].children[0].body == big


# --------------------------------------------------------------------------- round trips

CTES = ["binary", "8bit", "base64", "quoted-printable", "7bit"]
TEXT = "Grüße aus Zagreb\r\nline two  \r\n=3D and a very long line ".encode() + b"x" * 120


@pytest.mark.parametrize("cte", CTES)
def test_round_trip_related_with_smil_start(cte: str) -> None:
    media_cte = "base64" if cte == "7bit" else cte  # 7bit is for text only
    smil = make_part(SMIL, "application/smil", content_id="<smil>", transfer_encoding=cte)
    text = make_part(
        TEXT if cte != "7bit" else b"plain ascii\r\ntext",
        'text/plain; charset="utf-8"',
        content_id="txt",
        content_location="text.txt",
        transfer_encoding=cte,
    )
    img = make_part(JPEG, "image/jpeg", content_id="img", transfer_encoding=media_cte)
    content = make_multipart(
        [smil, text, img],
        params={"type": "application/smil", "start": "<smil>"},
        content_id="content",
    )
    soap = make_part(ENV, 'text/xml; charset="utf-8"', content_id="soap-start")
    ct, body = build_multipart(
        [soap, content], params={"type": "text/xml", "start": "<soap-start>"}
    )
    swa = parse_swa(body, ct)
    assert swa.soap == ENV and swa.soap_charset == "utf-8"
    assert swa.parts == (content,)
    assert swa.leniencies == ()
    (got,) = swa.parts
    assert [c.transfer_encoding for c in got.children] == [cte, cte, media_cte]
    assert got.children[1].content_location == "text.txt"


@pytest.mark.parametrize("cte", CTES)
def test_round_trip_mixed_and_flat(cte: str) -> None:
    parts = [
        make_part(b"hello\r\n", "text/plain", content_id="a", transfer_encoding=cte),
        make_multipart(
            [make_part(b"<p>x</p>", "text/html", transfer_encoding=cte)],
            "alternative",
            content_id="b",
        ),
    ]
    mixed = make_multipart(parts, "mixed", content_id="mixed")
    soap = make_part(ENV, "text/xml", content_id="s")
    ct, body = build_multipart([soap, mixed, *parts], params={"type": "text/xml", "start": "<s>"})
    swa = parse_swa(body, ct)
    assert swa.parts == (mixed, *parts) and swa.leniencies == ()


def test_round_trip_unbracketed_content_ids() -> None:
    soap = make_part(ENV, "text/xml", content_id="s")
    img = make_part(JPEG, "image/jpeg", content_id="img")
    ct, body = build_multipart(
        [soap, img], params={"type": "text/xml", "start": "s"}, bracket_content_id=False
    )
    assert b"\r\nContent-ID: img\r\n" in body
    swa = parse_swa(body, ct)
    assert swa.parts == (img,)
    assert set(swa.leniencies) == {L.CONTENT_ID_UNBRACKETED, L.START_UNBRACKETED}


def test_serialize_part_parse_entity_round_trip() -> None:
    content = make_multipart(
        [
            make_part(SMIL, "application/smil", content_id="smil"),
            make_part(JPEG, "image/jpeg", content_id="img", transfer_encoding="base64"),
        ],
        params={"type": "application/smil", "start": "<smil>"},
        content_id="content",
    )
    raw = serialize_part(content)
    part, lens = parse_entity(raw)
    assert part == content and lens == []
    leaf, lens = parse_entity(serialize_part(make_part(b"x\r\n", "text/plain; charset=ascii")))
    assert (leaf.body, leaf.charset, lens) == (b"x\r\n", "ascii", [])


def test_parse_entity_headerless_and_lf() -> None:
    _, body = load("headerless_body")
    part, lens = parse_entity(body)
    assert part.content_type.mime_type == "multipart/mixed"
    assert [c.content_id for c in part.children] == ["soap-start", "img"]
    assert lens == [L.HEADERLESS_BODY]
    part, lens = parse_entity(b"Content-Type: text/plain\nContent-ID: <a>\n\nhi\n")
    assert (part.body, part.content_id, lens) == (b"hi\n", "a", [L.LF_LINE_ENDINGS])


def test_reserialising_a_parsed_part_reuses_its_boundary() -> None:
    ct, body = load("strict")
    (content,) = parse_swa(body, ct).parts
    assert content.content_type.param("boundary") == "inner-1"
    raw = serialize_part(content)
    assert raw.startswith(
        b'Content-Type: multipart/related; boundary="inner-1"; type="application/smil"; '
        b'start="<smil>"\r\nContent-ID: <content>\r\n\r\n--inner-1\r\n'
    )
    assert parse_entity(raw)[0] == content


# --------------------------------------------------------------------------- emission details


def test_build_multipart_is_byte_exact() -> None:
    soap = make_part(b"<e/>", 'text/xml; charset="utf-8"', content_id="soap")
    img = make_part(b"\x00\xff", "image/gif", content_id="i", headers=[("X-Tag", "a b")])
    ct, body = build_multipart(
        [soap, img], params={"type": "text/xml", "start": "<soap>"}, boundary="B=_1 x"
    )
    assert ct == 'multipart/related; boundary="B=_1 x"; type="text/xml"; start="<soap>"'
    assert body == (
        b"--B=_1 x\r\n"
        b"Content-Type: text/xml; charset=utf-8\r\nContent-ID: <soap>\r\n\r\n<e/>\r\n"
        b"--B=_1 x\r\n"
        b"Content-Type: image/gif\r\nContent-ID: <i>\r\nX-Tag: a b\r\n\r\n\x00\xff\r\n"
        b"--B=_1 x--\r\n"
    )


def test_generated_boundaries_are_random_and_quoted() -> None:
    ct1, _ = build_multipart([make_part(b"x", "text/plain")])
    ct2, _ = build_multipart([make_part(b"x", "text/plain")])
    assert re.fullmatch(r'multipart/related; boundary="mm7-[0-9a-f]{24}"', ct1)
    assert ct1 != ct2


def test_serialize_part_headers() -> None:
    part = make_part(
        b"abc",
        "image/png",
        content_id="<p1>",
        content_location="pic.png",
        transfer_encoding="base64",
        headers=[("Content-Disposition", "inline"), ("Content-Length", "999")],
    )
    assert part.content_id == "p1"
    assert serialize_part(part, bracket_content_id=False) == (
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\nContent-ID: p1\r\n"
        b"Content-Location: pic.png\r\nContent-Disposition: inline\r\nContent-Length: 4\r\n\r\n"
        b"YWJj"
    )


def test_emit_errors() -> None:
    with pytest.raises(EmitError, match="occurs inside"):
        build_multipart([make_part(b"a\r\n--clash\r\n", "text/plain")], boundary="clash")
    with pytest.raises(EmitError, match="not a valid"):
        build_multipart([make_part(b"a", "text/plain")], boundary="x" * 71)
    with pytest.raises(EmitError, match="line break"):
        serialize_part(make_part(b"a", "text/plain", content_id="a\r\nX-Evil: 1"))
    with pytest.raises(EmitError, match="line break"):
        serialize_part(make_part(b"a", "text/plain", headers=[("X-A", "1\nX-B: 2")]))
    with pytest.raises(EmitError, match="not a token"):
        serialize_part(make_part(b"a", "text/plain", headers=[("X A", "1")]))
    with pytest.raises(EmitError, match="own argument"):
        make_part(b"a", "text/plain", headers=[("content-id", "<x>")])
    bad = make_multipart([make_part(b"a", "text/plain")])
    with pytest.raises(EmitError, match="multipart entity"):
        serialize_part(Part(bad.content_type, children=bad.children, transfer_encoding="base64"))


def test_reused_boundary_that_collides_is_replaced() -> None:
    inner = make_part(b"x\r\n--old\r\n", "text/plain")
    part = Part(ContentType("multipart/mixed", {"boundary": "old"}), children=(inner,))
    raw = serialize_part(part)
    assert b'boundary="old"' not in raw
    assert parse_entity(raw)[0] == part


def test_encode_body_base64_lines() -> None:
    data = bytes(range(256)) * 3
    enc = encode_body(data, "base64")
    lines = enc.split(b"\r\n")
    assert all(len(line) == 76 for line in lines[:-1]) and 0 < len(lines[-1]) <= 76
    assert b"\n" not in enc.replace(b"\r\n", b"")
    assert base64.b64decode(enc) == data
    assert encode_body(b"", "base64") == b""
    assert encode_body(b"x" * 57 * 64, "BASE64").count(b"\r\n") == 63


def test_encode_body_quoted_printable() -> None:
    enc = encode_body(TEXT, "quoted-printable")
    assert all(len(line) <= 76 for line in enc.split(b"\r\n"))
    assert b"\n" not in enc.replace(b"\r\n", b"")
    assert binascii.a2b_qp(enc) == TEXT
    mixed = b"a\nb\r\nc\rd"
    assert decode_body(encode_body(mixed, "quoted-printable"), "quoted-printable", []) == mixed


@pytest.mark.parametrize("cte", [None, "binary", "8bit", "7bit", "x-unknown"])
def test_encode_body_identity(cte: str | None) -> None:
    assert encode_body(JPEG, cte) is JPEG


# --------------------------------------------------------------------------- decode_body


def test_decode_body_cases() -> None:
    lens: list[L] = []
    assert decode_body(b"YWJj\r\nZGVm\r\n", "base64", lens) == b"abcdef" and lens == []
    assert decode_body(b" YW Jj\tZA== ", "base64", lens) == b"abcd" and lens == []
    assert decode_body(b"YWJjZA", "base64", lens) == b"abcd" and lens == [L.BASE64_MALFORMED]
    lens = []
    assert decode_body(b"YQ==Yg==", "Base64", lens) == b"ab"
    assert lens == [L.CTE_CASE, L.BASE64_MALFORMED]
    lens = []
    assert decode_body(b"a=3Db=\r\nc", "Quoted-Printable", lens) == b"a=bc"
    assert lens == [L.CTE_CASE]
    lens = []
    assert decode_body(b"raw", "x-uuencode", lens) == b"raw" and lens == [L.CTE_UNKNOWN]
    lens = []
    assert decode_body(b"raw", "8BIT", lens) == b"raw" and lens == [L.CTE_CASE]
    with pytest.raises(ParseError, match="base64"):
        decode_body(b"YWJjZ", "base64", [])


def test_undecodable_base64_names_the_part() -> None:
    body = (
        b"--b\r\nContent-Type: text/xml\r\n\r\n" + ENV + b"\r\n"
        b"--b\r\nContent-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJDQ\r\n--b--"
    )
    with pytest.raises(ParseError, match=r"^MIME part 2: .*base64"):
        parse_swa(body, "multipart/related; boundary=b; type=text/xml")


# --------------------------------------------------------------------------- Content-Type


def test_parse_content_type_variants() -> None:
    lens: list[L] = []
    ct = parse_content_type(
        'Multipart/Related ; Boundary = "a b;c" ;Type=text/xml; start="<x\\"y>";', lens
    )
    assert ct.mime_type == "multipart/related"
    assert dict(ct.params) == {"boundary": "a b;c", "type": "text/xml", "start": '<x"y>'}
    assert ct.param("BOUNDARY") == "a b;c" and ct.param("charset") is None
    assert lens == [L.PARAM_CASE]
    lens = []
    ct = parse_content_type("text/xml;\r\n\tcharset=utf-8", lens)
    assert (ct.param("charset"), lens) == ("utf-8", [L.HEADER_FOLDED])
    assert parse_content_type("").mime_type == "text/plain"
    assert parse_content_type(";;; =x; y").mime_type == "text/plain"
    lens = []
    assert parse_content_type("multipart/related; boundary=----=_Part_1", lens).param(
        "boundary"
    ) == ("----=_Part_1")
    assert lens == [L.BOUNDARY_UNQUOTED]
    assert parse_content_type('a/b; x="unterminated').param("x") == "unterminated"


def test_parse_content_type_cache_reports_leniencies_every_time() -> None:
    lens1: list[L] = []
    first = parse_content_type("text/plain; Charset=x", lens1)
    lens2: list[L] = []
    second = parse_content_type("text/plain; Charset=x", lens2)
    assert first == second == ContentType("text/plain", {"charset": "x"})
    assert lens1 == lens2 == [L.PARAM_CASE]


def test_content_type_equality_ignores_boundary() -> None:
    a = ContentType("multipart/related", {"boundary": "1", "type": "application/smil"})
    b = ContentType("Multipart/Related", {"Type": "application/smil", "boundary": "2"})
    assert a == b and hash(a) == hash(b)
    assert a != ContentType("multipart/related", {"type": "text/xml"})
    assert a.header_value() == 'multipart/related; boundary="1"; type="application/smil"'
    assert ContentType("text/plain", {"name": 'a "q"', "e": ""}).header_value() == (
        'text/plain; name="a \\"q\\""; e=""'
    )


def test_part_properties() -> None:
    p = make_part(b"x", "text/plain; charset=UTF-8", headers=[("X-A", "1")])
    assert (p.charset, p.is_multipart, p.header("x-a")) == ("UTF-8", False, "1")
    assert make_multipart([p]).is_multipart
    assert make_part(b"x", "text/plain", transfer_encoding="Binary").transfer_encoding == "binary"


# --------------------------------------------------------------------------- find_content

SMIL_P = make_part(SMIL, "application/smil", content_id="smil")
IMG_P = make_part(JPEG, "image/jpeg", content_id="img", content_location="photo.jpg")
XML_P = make_part(b"<x/>", "text/xml", content_id="extra")
CONTENT_P = make_multipart([SMIL_P, IMG_P], content_id="content")


@pytest.mark.parametrize(
    ("href", "expected", "lens"),
    [
        ("cid:img", IMG_P, []),
        ("  CID:img ", IMG_P, []),
        ("cid: img", IMG_P, [L.HREF_CID_SPACE]),
        ("img", IMG_P, [L.HREF_NO_CID]),
        ("cid:<img>", IMG_P, [L.HREF_FULL_CONTENT_ID]),
        ("<img>", IMG_P, [L.HREF_NO_CID, L.HREF_FULL_CONTENT_ID]),
        ("photo.jpg", IMG_P, [L.HREF_NO_CID, L.HREF_CONTENT_LOCATION]),
        ("cid:photo.jpg", IMG_P, [L.HREF_CONTENT_LOCATION]),
        ("cid:IMG", IMG_P, [L.HREF_UNRESOLVED]),  # Content-IDs compare case-sensitively
        ("cid:nothing", IMG_P, [L.HREF_UNRESOLVED]),
    ],
)
def test_find_content_href_forms(href: str, expected: Part, lens: list[L]) -> None:
    got: list[L] = []
    assert find_content([XML_P, IMG_P], href, got) is expected
    assert got == lens


def test_find_content_percent_encoded_cid() -> None:
    part = make_part(b"x", "image/gif", content_id="a@b.c")
    lens: list[L] = []
    assert find_content([part], "cid:a%40b.c", lens) is part and lens == []


def test_find_content_unresolved_with_only_xml_parts() -> None:
    lens: list[L] = []
    assert find_content([XML_P], "cid:x", lens) is None


def test_find_content_without_content_element() -> None:
    lens: list[L] = []
    assert find_content([], None, lens) is None and lens == []
    assert find_content([IMG_P], None, lens) is IMG_P
    assert lens == [L.CONTENT_ELEMENT_MISSING]
    lens = []
    got = find_content([SMIL_P, IMG_P], None, lens)
    assert got == make_multipart([SMIL_P, IMG_P], "related")
    assert lens == [L.CONTENT_ELEMENT_MISSING, L.CONTENT_FLATTENED]


def test_find_content_nested_content_is_returned_whole() -> None:
    lens: list[L] = []
    assert find_content([CONTENT_P, XML_P], "cid:content", lens) is CONTENT_P and lens == []


def test_find_content_flattened_media() -> None:
    lens: list[L] = []
    got = find_content([SMIL_P, IMG_P], "cid:smil", lens)
    assert got is not None and got.content_type.mime_type == "multipart/related"
    assert dict(got.content_type.params) == {"type": "application/smil", "start": "<smil>"}
    assert got.children == (SMIL_P, IMG_P)
    assert lens == [L.CONTENT_FLATTENED]
    lens = []
    got = find_content([XML_P, SMIL_P, IMG_P], "cid:smil", lens)  # an XML part is not media
    assert got is not None and got.children == (SMIL_P, IMG_P) and lens == [L.CONTENT_FLATTENED]
    lens = []
    got = find_content([IMG_P, SMIL_P], "cid:img", lens)
    assert got == make_multipart([IMG_P, SMIL_P], "related") and lens == [L.CONTENT_FLATTENED]


def test_find_content_on_a_parsed_flattened_fixture() -> None:
    ct, body = load("combined_nokia")
    swa = parse_swa(body, ct)
    lens: list[L] = []
    got = find_content(swa.parts, "cid:smil", lens)
    assert got is not None and [c.content_id for c in got.children] == ["smil", "img"]
    assert got.content_type.param("start") == "<smil>" and lens == [L.CONTENT_FLATTENED]


# --------------------------------------------------------------------------- bounds and errors


def _strict() -> tuple[str | None, bytes]:
    return load("strict")


def test_limit_total_bytes() -> None:
    ct, body = _strict()
    with pytest.raises(LimitExceededError, match=rf"{len(body)} bytes, over max_total_bytes=100"):
        parse_swa(body, ct, Limits(max_total_bytes=100))
    with pytest.raises(LimitExceededError, match="max_total_bytes"):
        parse_entity(body, Limits(max_total_bytes=100))


def test_limit_parts_counts_every_level() -> None:
    ct, body = _strict()  # SOAP + content + smil + img = 4 parts
    parse_swa(body, ct, Limits(max_parts=4))
    with pytest.raises(LimitExceededError, match="max_parts=3"):
        parse_swa(body, ct, Limits(max_parts=3))


def test_limit_many_tiny_parts() -> None:
    body = b"--b\r\n\r\n\r\n" * 100_000 + b"--b--"
    started = time.perf_counter()
    with pytest.raises(LimitExceededError, match="max_parts=64"):
        parse_swa(body, "multipart/related; boundary=b")
    assert time.perf_counter() - started < 1.0


def test_limit_depth() -> None:
    ct, body = _strict()  # SwA entity (1) holding a multipart/related (2)
    parse_swa(body, ct, Limits(max_depth=2))
    with pytest.raises(LimitExceededError, match="nesting depth 2 is over max_depth=1"):
        parse_swa(body, ct, Limits(max_depth=1))


def test_limit_depth_deep_nesting() -> None:
    part = make_part(b"leaf", "text/plain")
    for _ in range(10):
        part = make_multipart([part], "mixed")
    soap = make_part(ENV, "text/xml", content_id="s")
    ct, body = build_multipart([soap, part], params={"type": "text/xml", "start": "<s>"})
    with pytest.raises(LimitExceededError, match="over max_depth=4"):
        parse_swa(body, ct)
    assert parse_swa(body, ct, Limits(max_depth=11)).parts == (part,)


@pytest.mark.parametrize("shape", ["one long line", "many lines"])
def test_limit_header_bytes(shape: str) -> None:
    header = (
        b"X-Long: " + b"a" * 2000 if shape == "one long line" else b"X-A: 1\r\n" * 299 + b"X: 1"
    )
    body = (
        b"--b\r\nContent-Type: text/xml\r\n\r\n" + ENV + b"\r\n"
        b"--b\r\nContent-Type: text/plain\r\n" + header + b"\r\n\r\nbody\r\n--b--\r\n"
    )
    ct = "multipart/related; boundary=b; type=text/xml"
    assert parse_swa(body, ct).parts[0].body == b"body"
    with pytest.raises(LimitExceededError, match="max_header_bytes=1024") as info:
        parse_swa(body, ct, Limits(max_header_bytes=1024))
    assert info.value.where == "MIME part 2 headers"


def test_limit_decoded_bytes() -> None:
    ct, body = _strict()
    with pytest.raises(LimitExceededError, match="over max_decoded_bytes=500"):
        parse_swa(body, ct, Limits(max_decoded_bytes=500))


@pytest.mark.parametrize(
    ("body", "content_type", "where"),
    [
        (b"", "text/xml", "HTTP body"),
        (b"  \r\n", None, "HTTP body"),
        (b"hello world", "text/plain", "HTTP body"),
        (b"hello world", "multipart/related; boundary=b", "MIME multipart body"),
        (
            b"--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c--\r\n--b--",
            None,
            "HTTP body",
        ),
    ],
)
def test_malformed_input_raises_parse_error(
    body: bytes, content_type: str | None, where: str
) -> None:
    with pytest.raises(ParseError) as info:
        parse_swa(body, content_type)
    assert info.value.where == where and info.value.status_code == 2007


# --------------------------------------------------------------------------- property tests


def _valid_bodies() -> list[bytes]:
    return [load(name)[1] for name in ("strict", "combined_nokia", "lf_line_endings")]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_valid_bodies())))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(
                st.sampled_from([b"\r\n", b"\n", b"--", b"\r\n--", b":", b" ", b'"', b"="])
                | st.binary(min_size=1, max_size=8)
            )
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            del data[pos:]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=mutated(),
    content_type=st.sampled_from(
        [
            None,
            'multipart/related; boundary="NextPart_000_0028_01C19839.84698430"; type="text/xml"',
            "multipart/related",
            "text/xml",
        ]
    ),
)
def test_mutated_bodies_raise_only_parse_errors(body: bytes, content_type: str | None) -> None:
    started = time.perf_counter()
    try:
        swa = parse_swa(body, content_type, Limits(max_parts=16))
    except ParseError:
        pass
    else:
        assert isinstance(swa.soap, bytes)
    with contextlib.suppress(ParseError):
        parse_entity(body, Limits(max_parts=16))
    assert time.perf_counter() - started < 2.0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_parse_content_type_never_raises(value: str) -> None:
    ct = parse_content_type(value, [])
    assert ct.mime_type and ct.mime_type == ct.mime_type.lower()
    assert parse_content_type(ct.header_value()) == ct or "\r" in value or "\n" in value


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600), cte=st.sampled_from(CTES[:-1] + ["7bit"]))
def test_encode_decode_body_round_trip(data: bytes, cte: str) -> None:
    lens: list[L] = []
    assert decode_body(encode_body(data, cte), cte, lens) == data and lens == []


@settings(max_examples=100, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    cte=st.sampled_from(CTES[:-1]),
)
def test_random_parts_round_trip(bodies: list[bytes], cte: str) -> None:
    parts = [
        make_part(b, "application/octet-stream", content_id=f"p{i}", transfer_encoding=cte)
        for i, b in enumerate(bodies)
    ]
    soap = make_part(ENV, "text/xml", content_id="s")
    ct, body = build_multipart(
        [soap, make_multipart(parts, "mixed", content_id="m")],
        params={"type": "text/xml", "start": "<s>"},
    )
    swa = parse_swa(body, ct)
    assert swa.parts[0].children == tuple(parts) and swa.leniencies == ()


# --------------------------------------------------------------------------------------------------
# header blocks read before (multipart.read_part_head)
# --------------------------------------------------------------------------------------------------


def _two_part_body(soap_head: bytes, inner: str, tag: bytes = b"x") -> tuple[str, bytes]:
    body = (
        b"--outer\r\n" + soap_head + b"\r\n\r\n" + ENV + b"\r\n"
        b"--outer\r\nContent-Type: multipart/mixed; boundary=" + inner.encode() + b"\r\n\r\n"
        b"--" + inner.encode() + b"\r\nContent-Type: text/plain\r\n\r\n" + tag + b"\r\n"
        b"--" + inner.encode() + b"--\r\n"
        b"\r\n--outer--\r\n"
    )
    return 'multipart/related; boundary=outer; type="text/xml"', body


def test_a_header_block_read_again_notes_its_leniencies_again() -> None:
    # Content-Id spelled so, unbracketed: two leniencies classify notes for this block
    content_type, body = _two_part_body(b"Content-Type: text/xml\r\nContent-Id: soap-1", "in")
    first = parse_swa(body, content_type)
    second = parse_swa(body, content_type)
    assert L.CONTENT_ID_SPELLING in first.leniencies
    assert L.CONTENT_ID_UNBRACKETED in first.leniencies
    assert second == first


def test_multipart_header_blocks_are_read_each_time_and_not_kept() -> None:
    from mm7.core.mime import multipart

    # what earlier tests left (a fuzzed block naming multipart/ that reads as another type is
    # rightly kept) is not this test's: it looks at what these messages add
    multipart._HEAD_CACHE.clear()
    # The same headers but for the boundary, new on every message: not worth keeping
    for inner, tag in (("b-one", b"first"), ("b-two", b"second"), ("b-one", b"third")):
        content_type, body = _two_part_body(b"Content-Type: text/xml", inner, tag)
        swa = parse_swa(body, content_type)
        assert [p.body for p in swa.parts[0].children] == [tag]
        assert swa.parts[0].content_type.param("boundary") == inner
    assert not any(b"multipart/" in block for block in multipart._HEAD_CACHE)


def test_header_blocks_read_before_obey_a_smaller_header_limit() -> None:
    content_type, body = _two_part_body(b"Content-Type: text/xml; charset=utf-8", "in")
    parse_swa(body, content_type)  # read with the default limits first
    with pytest.raises(LimitExceededError, match="max_header_bytes=16"):
        parse_swa(body, content_type, Limits(max_header_bytes=16))


def test_header_blocks_read_before_are_bounded() -> None:
    from mm7.core.mime import multipart

    for n in range(multipart._HEAD_CACHE_MAX + 50):
        content_type, body = _two_part_body(f"Content-Type: text/xml\r\nX-N: {n}".encode(), "in")
        swa = parse_swa(body, content_type)
        assert swa.soap == ENV
    assert 0 < len(multipart._HEAD_CACHE) <= multipart._HEAD_CACHE_MAX
