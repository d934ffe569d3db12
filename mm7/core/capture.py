"""Reading saved traffic: a raw HTTP request or response, a MIME entity with headers, a bare
multipart body, or bare XML.

Interop work starts from captures (tcpdump/Wireshark "follow stream", proxy logs, files a carrier
mailed over). This turns any of those shapes into (Content-Type, body) for the codec, undoing the
HTTP framing on the way: interim ``100 Continue`` responses, ``Transfer-Encoding: chunked`` and
``Content-Encoding: gzip/deflate`` (bounded, so a compression bomb is refused, not expanded).
Malformed input raises ParseError saying where and what was expected. Sans-I/O.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from mm7.core.errors import LimitExceededError, ParseError
from mm7.core.leniency import Leniency
from mm7.core.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "MAX_HEADER_BLOCK",
    "MAX_INTERIM_RESPONSES",
    "Capture",
    "max_capture_bytes",
    "read_capture",
]

#: the largest header block (start line and headers) read before giving up
MAX_HEADER_BLOCK = 64 * 1024
#: interim (1xx) responses skipped before the final one; more is not a real capture
MAX_INTERIM_RESPONSES = 8

_UTF8_BOM = b"\xef\xbb\xbf"
#: byte-order marks and BOM-less starts of UTF-16/32 XML: such input is passed through untouched
_WIDE_STARTS = (
    b"\xff\xfe",
    b"\xfe\xff",
    b"\x00\x00\xfe\xff",
    b"\x00<",
    b"<\x00",
    b"\x00\x00\x00<",
)
_HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
_REQUEST_LINE = re.compile(r"([A-Z][A-Z-]*) (\S+) (HTTP/\d(?:\.\d)?)")
_STATUS_LINE = re.compile(r"(HTTP/\d(?:\.\d)?) (\d{3})(?: (.*))?")
#: RFC 9110 token: the characters a header field name may use
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_WHITESPACE = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class Capture:
    """One captured message: what it was, its start line and headers, and its (unframed) body."""

    #: "http-request", "http-response", "mime-entity", "multipart-body" or "xml"
    kind: str
    start_line: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    #: deviations tolerated while reading the framing (LF-only or folded header lines)
    leniencies: tuple[Leniency, ...] = ()

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    @property
    def content_type(self) -> str | None:
        """The Content-Type header: what the codec needs besides the body."""
        return self.header("Content-Type")

    @property
    def http_status(self) -> int | None:
        """The status code of an HTTP response capture; None for everything else."""
        if self.kind != "http-response":
            return None
        match = _STATUS_LINE.fullmatch(self.start_line)
        return int(match.group(2)) if match else None

    @property
    def method(self) -> str | None:
        """The method of an HTTP request capture (POST for MM7); None for everything else."""
        if self.kind != "http-request":
            return None
        return self.start_line.split(" ", 1)[0]


def max_capture_bytes(limits: Limits = DEFAULT_LIMITS) -> int:
    """The largest capture read: twice the body limit (chunk framing, compression) plus headers."""
    return 2 * limits.max_total_bytes + MAX_HEADER_BLOCK


def read_capture(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Capture:
    """Split a capture into start line, headers and body; ParseError if it is none of the shapes.

    The body comes back with its HTTP transfer and content codings removed; LimitExceededError
    when the capture, or a decoded body, is over ``limits``.
    """
    if len(raw) > max_capture_bytes(limits):
        raise LimitExceededError(
            f"capture is {len(raw)} bytes, over the limit of {max_capture_bytes(limits)}",
            where="input",
        )
    if raw.startswith(_WIDE_STARTS):
        return Capture("xml", "", (), raw)
    bom = _UTF8_BOM if raw.startswith(_UTF8_BOM) else b""
    data = raw[len(bom) :].lstrip(_WHITESPACE)
    if not data:
        raise ParseError(
            "the input is empty: expected an HTTP request or response, MIME headers, "
            "a multipart body or a SOAP XML document",
            where="input",
        )
    if data.startswith(b"<"):
        # Leading blank lines before the XML declaration are a saving artefact: drop them.
        return Capture("xml", "", (), bom + data)
    if data.startswith(b"--"):
        return Capture("multipart-body", "", (), data)
    first = data[: data.find(b"\n")] if b"\n" in data else data
    first_line = first.rstrip(b"\r").decode("latin-1")
    token = first_line.split(" ", 1)[0]
    if first_line.startswith("HTTP/"):
        return _read_response(data, limits)
    if token in _HTTP_METHODS:
        if not _REQUEST_LINE.fullmatch(first_line):
            raise ParseError(
                f"request line {first_line[:80]!r} is malformed: expected 'POST /path HTTP/1.1'",
                where="HTTP request line",
            )
        return _read_message("http-request", data, limits)
    name, colon, _ = first_line.partition(":")
    if not colon or not _TOKEN.fullmatch(name):
        raise ParseError(
            f"input starts with {first[:24]!r}: expected an HTTP request line (POST /path "
            "HTTP/1.1), a status line (HTTP/1.1 200 OK), a 'Name: value' MIME header, "
            "a '--boundary' line or '<' (XML)",
            where="input, line 1",
        )
    return _read_message("mime-entity", data, limits)


def _read_response(data: bytes, limits: Limits) -> Capture:
    """The final response of a capture, skipping interim 1xx responses (100 Continue)."""
    for _ in range(MAX_INTERIM_RESPONSES + 1):
        cap = _read_message("http-response", data, limits, decode_body=False)
        match = _STATUS_LINE.fullmatch(cap.start_line)
        if match is None:
            raise ParseError(
                f"status line {cap.start_line[:80]!r} is malformed: expected 'HTTP/1.1 200 OK'",
                where="HTTP status line",
            )
        if not match.group(2).startswith("1"):
            return _decoded(cap, limits)
        data = cap.body.lstrip(_WHITESPACE)
        if not data.startswith(b"HTTP/"):
            raise ParseError(
                f"interim response {cap.start_line!r} is not followed by the final response",
                where="HTTP response",
            )
    raise ParseError(
        f"more than {MAX_INTERIM_RESPONSES} interim (1xx) responses", where="HTTP response"
    )


def _read_message(kind: str, data: bytes, limits: Limits, *, decode_body: bool = True) -> Capture:
    """One message: start line (HTTP only), headers, then the body, decoded unless told not to."""
    lines, body, lens = _split_head(data, kind)
    start_line = lines.pop(0) if kind != "mime-entity" else ""
    headers = _parse_headers(lines, kind, lens, first_number=2 if start_line else 1)
    cap = Capture(kind, start_line, headers, body, tuple(dict.fromkeys(lens)))
    return _decoded(cap, limits) if decode_body and kind != "mime-entity" else cap


def _split_head(data: bytes, kind: str) -> tuple[list[str], bytes, list[Leniency]]:
    """The header lines (unfolded later) and the body after the first empty line."""
    lines: list[str] = []
    lens: list[Leniency] = []
    pos = 0
    while True:
        end = data.find(b"\n", pos, pos + MAX_HEADER_BLOCK + 2)
        if end == -1:
            if len(data) - pos > MAX_HEADER_BLOCK or pos > MAX_HEADER_BLOCK:
                raise ParseError(
                    f"no end of the header block within {MAX_HEADER_BLOCK} bytes",
                    where=f"{kind} headers",
                )
            raise ParseError(
                f"no blank line after the headers (line {len(lines) + 1} runs to the end of the "
                "input): expected headers, an empty line, then the body",
                where=f"{kind} headers",
            )
        line = data[pos:end]
        if line.endswith(b"\r"):
            line = line[:-1]
        else:
            lens.append(Leniency.LF_LINE_ENDINGS)
        pos = end + 1
        if not line:
            return lines, data[pos:], lens
        if pos > MAX_HEADER_BLOCK:
            raise ParseError(f"header block over {MAX_HEADER_BLOCK} bytes", where=f"{kind} headers")
        lines.append(line.decode("latin-1"))


def _parse_headers(
    lines: list[str], kind: str, lens: list[Leniency], *, first_number: int
) -> tuple[tuple[str, str], ...]:
    """'Name: value' lines, folded lines joined; a line that is neither names its number."""
    headers: list[list[str]] = []
    for number, line in enumerate(lines, start=first_number):
        if line[0] in " \t":
            if not headers:
                raise ParseError(
                    f"line {number} is a continuation line with no header before it",
                    where=f"{kind} headers",
                )
            headers[-1][1] = f"{headers[-1][1]} {line.strip()}".strip()
            lens.append(Leniency.HEADER_FOLDED)
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name.rstrip()):
            raise ParseError(
                f"line {number} is not a 'Name: value' header: {line[:60]!r}",
                where=f"{kind} headers",
            )
        headers.append([name.rstrip(), value.strip()])
    return tuple((k, v) for k, v in headers)


def _codings(value: str | None) -> list[str]:
    """The coding names of a Transfer-/Content-Encoding header, lower-cased, in order."""
    if value is None:
        return []
    return [c.strip().split(";", 1)[0].strip().lower() for c in value.split(",") if c.strip()]


def _decoded(cap: Capture, limits: Limits) -> Capture:
    """``cap`` with the transfer codings, then the content codings, of its body undone."""
    body = cap.body
    for coding in reversed(_codings(cap.header("Transfer-Encoding"))):
        body = _undo(coding, body, "Transfer-Encoding", limits)
    for coding in reversed(_codings(cap.header("Content-Encoding"))):
        body = _undo(coding, body, "Content-Encoding", limits)
    if body is cap.body:
        return cap
    return Capture(cap.kind, cap.start_line, cap.headers, body, cap.leniencies)


def _undo(coding: str, body: bytes, header: str, limits: Limits) -> bytes:
    """``body`` with one coding removed; an unknown coding is a ParseError naming it."""
    if coding in ("identity", ""):
        return body
    if coding == "chunked" and header == "Transfer-Encoding":
        return _dechunk(body, limits)
    if coding in ("gzip", "x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, coding, limits)
    if coding == "deflate":
        # RFC 9110 deflate is zlib-wrapped; some servers send raw deflate.
        if body[:1] and body[0] & 0x0F == 8 and int.from_bytes(body[:2], "big") % 31 == 0:
            return _inflate(body, zlib.MAX_WBITS, coding, limits)
        return _inflate(body, -zlib.MAX_WBITS, coding, limits)
    raise ParseError(
        f"unsupported coding {coding!r}: expected chunked, gzip, deflate or identity",
        where=header,
    )


def _inflate(body: bytes, wbits: int, coding: str, limits: Limits) -> bytes:
    """Decompress with an output bound: a compression bomb stops at the body limit."""
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limits.max_total_bytes + 1)
    except zlib.error as exc:
        raise ParseError(f"{coding} data is corrupt: {exc}", where="HTTP body") from None
    if len(out) > limits.max_total_bytes or inflater.unconsumed_tail:
        raise LimitExceededError(
            f"{coding} body expands past max_total_bytes={limits.max_total_bytes}",
            where="HTTP body",
        )
    if not inflater.eof:
        raise ParseError(f"{coding} data is cut short", where="HTTP body")
    return out


def _dechunk(body: bytes, limits: Limits) -> bytes:
    """Undo ``Transfer-Encoding: chunked``; chunk extensions and trailers are ignored."""
    out: list[bytes] = []
    total = 0
    pos = 0
    while True:
        end = body.find(b"\n", pos)
        if end == -1:
            raise ParseError(
                "chunked body ends before its last (zero-size) chunk",
                where=f"chunked HTTP body, byte {pos}",
            )
        size_text = body[pos:end].rstrip(b"\r").split(b";", 1)[0].strip()
        if (
            not size_text
            or len(size_text) > 16
            or not all(c in b"0123456789abcdefABCDEF" for c in size_text)
        ):
            raise ParseError(
                f"bad chunk size {size_text[:20]!r}: expected hexadecimal digits",
                where=f"chunked HTTP body, byte {pos}",
            )
        size = int(size_text, 16)
        if size == 0:
            return b"".join(out)
        start = end + 1
        if start + size > len(body):
            raise ParseError(
                f"chunk of {size} bytes is cut short: only {len(body) - start} bytes follow",
                where=f"chunked HTTP body, byte {start}",
            )
        total += size
        if total > limits.max_total_bytes:
            raise LimitExceededError(
                f"chunked body is over max_total_bytes={limits.max_total_bytes}",
                where="chunked HTTP body",
            )
        out.append(body[start : start + size])
        pos = start + size
        if body.startswith(b"\r\n", pos):
            pos += 2
        elif body.startswith(b"\n", pos):
            pos += 1
        else:
            raise ParseError(
                f"expected CRLF after the {size}-byte chunk, found {body[pos : pos + 8]!r}",
                where=f"chunked HTTP body, byte {pos}",
            )
