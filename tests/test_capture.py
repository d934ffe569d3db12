"""read_capture: every shape of saved traffic becomes (start line, headers, unframed body), and
every broken shape is a ParseError that says where and what was expected."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest

from mm7.core.capture import MAX_HEADER_BLOCK, max_capture_bytes, read_capture
from mm7.core.codec import decode
from mm7.core.errors import LimitExceededError, MM7Error, ParseError
from mm7.core.leniency import Leniency
from mm7.core.limits import Limits

FIXTURES = Path(__file__).parent / "fixtures" / "cli"
SOAP = (
    b'<?xml version="1.0"?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<env:Body/></env:Envelope>"
)


def chunked(body: bytes, size: int = 7, *, eol: bytes = b"\r\n") -> bytes:
    """``body`` in chunked transfer coding, with a chunk extension on every size line."""
    out = b"".join(
        b"%x;name=value" % len(body[i : i + size]) + eol + body[i : i + size] + eol
        for i in range(0, len(body), size)
    )
    return out + b"0" + eol + b"Trailer-Field: x" + eol + eol


# --------------------------------------------------------------------------- shapes


def test_bare_xml_is_passed_through() -> None:
    cap = read_capture(SOAP)
    assert (cap.kind, cap.start_line, cap.headers, cap.body) == ("xml", "", (), SOAP)
    assert cap.content_type is None and cap.http_status is None and cap.method is None


def test_blank_lines_before_xml_are_dropped_but_the_bom_is_kept() -> None:
    cap = read_capture(b"\xef\xbb\xbf\r\n\n  " + SOAP)
    assert cap.kind == "xml"
    assert cap.body == b"\xef\xbb\xbf" + SOAP


def test_utf16_xml_is_left_untouched() -> None:
    raw = "\ufeff" + SOAP.decode()
    for data in (
        raw.encode("utf-16-le"),
        raw.encode("utf-16-be"),
        SOAP.decode().encode("utf-16-le"),
    ):
        cap = read_capture(data)
        assert cap.kind == "xml" and cap.body == data


def test_http_request() -> None:
    raw = (
        b"POST /mm7/vasp HTTP/1.1\r\nHost: mmsc.example.net\r\n"
        b'Content-Type: text/xml; charset="utf-8"\r\nSOAPAction: ""\r\n\r\n' + SOAP
    )
    cap = read_capture(raw)
    assert cap.kind == "http-request"
    assert cap.start_line == "POST /mm7/vasp HTTP/1.1"
    assert cap.method == "POST"
    assert cap.header("host") == "mmsc.example.net"
    assert cap.header("SOAPACTION") == '""'
    assert cap.content_type == 'text/xml; charset="utf-8"'
    assert cap.body == SOAP
    assert cap.leniencies == ()
    assert cap.http_status is None


def test_http_response_status() -> None:
    cap = read_capture(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/xml\r\n\r\n" + SOAP
    )
    assert cap.kind == "http-response"
    assert cap.http_status == 500
    assert cap.body == SOAP
    cap2 = read_capture(b"HTTP/2 200\r\ncontent-type: text/xml\r\n\r\n" + SOAP)
    assert cap2.http_status == 200 and cap2.content_type == "text/xml"


def test_interim_100_continue_is_skipped() -> None:
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 102 Processing\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n" + SOAP
    )
    cap = read_capture(raw)
    assert cap.start_line == "HTTP/1.1 200 OK"
    assert cap.body == SOAP


def test_too_many_interim_responses() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\n" * 20 + b"HTTP/1.1 200 OK\r\n\r\n" + SOAP
    with pytest.raises(ParseError, match="interim"):
        read_capture(raw)


def test_interim_response_must_be_followed_by_a_response() -> None:
    with pytest.raises(ParseError, match="not followed by the final response"):
        read_capture(b"HTTP/1.1 100 Continue\r\n\r\n" + SOAP)


def test_mime_entity_and_headerless_multipart() -> None:
    cap = read_capture(b"Content-Type: text/xml\r\nMIME-Version: 1.0\r\n\r\n" + SOAP)
    assert (cap.kind, cap.start_line, cap.content_type) == ("mime-entity", "", "text/xml")
    assert cap.header("mime-version") == "1.0"
    body = b"--b\r\nContent-Type: text/xml\r\n\r\n" + SOAP + b"\r\n--b--\r\n"
    cap2 = read_capture(b"\r\n" + body)
    assert cap2.kind == "multipart-body" and cap2.body == body and cap2.headers == ()


def test_folded_and_lf_only_headers_are_named_leniencies() -> None:
    raw = b'Content-Type: multipart/related;\n\tboundary="b";\n type="text/xml"\n\nbody'
    cap = read_capture(raw)
    assert cap.content_type == 'multipart/related; boundary="b"; type="text/xml"'
    assert cap.leniencies == (Leniency.LF_LINE_ENDINGS, Leniency.HEADER_FOLDED)
    assert cap.body == b"body"


def test_header_value_keeps_colons_and_latin1() -> None:
    cap = read_capture(b"X-Time: 12:30:00\r\nX-Name: caf\xe9\r\nContent-Type: text/xml\r\n\r\n<a/>")
    assert cap.header("x-time") == "12:30:00"
    assert cap.header("x-name") == "café"


# --------------------------------------------------------------------------- codings


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_chunked_body(eol: bytes) -> None:
    raw = (
        b"POST /mm7 HTTP/1.1\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(SOAP, eol=eol)
    )
    assert read_capture(raw).body == SOAP


def test_gzip_then_chunked_transfer_codings() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        + chunked(gzip.compress(SOAP), size=10)
    )
    assert read_capture(raw).body == SOAP


@pytest.mark.parametrize(
    ("coding", "packed"),
    [
        ("gzip", gzip.compress(SOAP)),
        ("x-gzip", gzip.compress(SOAP)),
        ("deflate", zlib.compress(SOAP)),  # RFC 9110: zlib format
        ("deflate", zlib.compress(SOAP, wbits=-15)),  # raw deflate, as some servers send
        ("identity", SOAP),
    ],
)
def test_content_encodings(coding: str, packed: bytes) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Encoding: {coding}\r\n\r\n"
    assert read_capture(head.encode() + packed).body == SOAP


def test_decoded_capture_feeds_the_codec() -> None:
    plain = read_capture((FIXTURES / "deliver-req-plain.http").read_bytes())
    chunk = read_capture((FIXTURES / "deliver-req-chunked.http").read_bytes())
    assert chunk.header("Transfer-Encoding") == "chunked"
    assert chunk.body == plain.body
    decoded = decode(chunk.body, chunk.content_type)
    assert decoded.operation == "DeliverReq"
    assert decoded.message.transaction_id == "mmsc-0100"


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("raw", "where", "expected"),
    [
        (b"", "input", "empty"),
        (b" \r\n\t\r\n", "input", "empty"),
        (b"\x8f\x00\x13binary\x01", "input, line 1", "expected an HTTP request line"),
        (b"hello world\r\n\r\n<a/>", "input, line 1", "'Name: value' MIME header"),
        (b"Content-Type: text/xml\r\nX-No-Blank: 1\r\n", "mime-entity headers", "no blank line"),
        (b"Content-Type: text/xml\r\nnot a header\r\n\r\n<a/>", "mime-entity headers", "line 2"),
        (b"Content-Type: text/xml\r\nBad Name: x\r\n\r\n<a/>", "mime-entity headers", "line 2"),
        (b"POST /mm7\r\nHost: x\r\n\r\n<a/>", "HTTP request line", "POST /path HTTP/1.1"),
        (b"HTTP/1.1 OK\r\n\r\n<a/>", "HTTP status line", "HTTP/1.1 200 OK"),
        (b"HTTP/1.1 200 OK\r\n continued\r\n\r\n<a/>", "http-response headers", "continuation"),
    ],
)
def test_malformed_framing(raw: bytes, where: str, expected: str) -> None:
    with pytest.raises(ParseError) as info:
        read_capture(raw)
    assert info.value.where == where
    assert expected in str(info.value)


def test_header_block_without_end() -> None:
    raw = b"Content-Type: text/xml\r\n" + b"X-Pad: " + b"a" * (MAX_HEADER_BLOCK + 10) + b"\r\n\r\n"
    with pytest.raises(ParseError, match=f"within {MAX_HEADER_BLOCK} bytes"):
        read_capture(raw)
    many = b"Content-Type: text/xml\r\n" + b"X-Pad: aaaaaaaaaaaaaaaa\r\n" * 5000 + b"\r\n<a/>"
    with pytest.raises(ParseError, match=f"over {MAX_HEADER_BLOCK} bytes"):
        read_capture(many)


CHUNK_HEAD = b"POST /mm7 HTTP/1.1\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"zz\r\nabc\r\n0\r\n\r\n", "bad chunk size b'zz': expected hexadecimal digits"),
        (b"-5\r\nabc\r\n0\r\n\r\n", "bad chunk size"),
        (b"\r\nabc\r\n0\r\n\r\n", "bad chunk size b''"),
        (b"10\r\nabc", "chunk of 16 bytes is cut short: only 3 bytes follow"),
        (b"3\r\nabcdef\r\n0\r\n\r\n", "expected CRLF after the 3-byte chunk"),
        (b"3\r\nabc\r\n", "ends before its last (zero-size) chunk"),
    ],
)
def test_malformed_chunked_bodies(body: bytes, expected: str) -> None:
    with pytest.raises(ParseError) as info:
        read_capture(CHUNK_HEAD + body)
    assert expected in str(info.value)
    assert info.value.where.startswith("chunked HTTP body")


def test_unsupported_and_corrupt_codings() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
    with pytest.raises(ParseError, match="unsupported coding 'br'"):
        read_capture(head + b"Content-Encoding: br\r\n\r\n" + SOAP)
    with pytest.raises(ParseError, match="unsupported coding 'compress'"):
        read_capture(head + b"Transfer-Encoding: compress\r\n\r\n" + SOAP)
    with pytest.raises(ParseError, match="gzip data is corrupt"):
        read_capture(head + b"Content-Encoding: gzip\r\n\r\n" + b"\x1f\x8bnot really gzip")
    with pytest.raises(ParseError, match="gzip data is cut short"):
        read_capture(head + b"Content-Encoding: gzip\r\n\r\n" + gzip.compress(SOAP)[:20])


def test_compression_bomb_stops_at_the_limit() -> None:
    limits = Limits(max_total_bytes=64 * 1024)
    bomb = gzip.compress(b"\x00" * (4 * 1024 * 1024))  # 4 MiB of zeros in about 4 KiB
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + bomb
    with pytest.raises(LimitExceededError, match="expands past max_total_bytes=65536"):
        read_capture(raw, limits)


def test_chunked_body_over_the_limit() -> None:
    limits = Limits(max_total_bytes=100)
    with pytest.raises(LimitExceededError, match="max_total_bytes=100"):
        read_capture(CHUNK_HEAD + chunked(b"x" * 150, size=50), limits)


def test_capture_over_the_limit() -> None:
    limits = Limits(max_total_bytes=1000)
    assert max_capture_bytes(limits) == 2000 + MAX_HEADER_BLOCK
    with pytest.raises(LimitExceededError, match="over the limit"):
        read_capture(b"<" + b"a" * max_capture_bytes(limits), limits)


@pytest.mark.parametrize(
    "raw",
    [
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n\r\n\x78\x9c\x00",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 abc\r\n\r\n",
        b"GET\r\n\r\n",
        b"HTTP/1.1 200 OK",
    ],
)
def test_odd_framings_fail_as_mm7_errors(raw: bytes) -> None:
    """The CLI catches the MM7Error family only: a capture must never raise anything else."""
    with pytest.raises(MM7Error):
        read_capture(raw)
