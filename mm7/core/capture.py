"""Reading saved traffic: a raw HTTP request or response, a MIME entity with headers, or bare XML.

Interop work starts from captures; this turns any of those shapes into (Content-Type, body)
for the codec. Sans-I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from mm7.core.errors import ParseError

_HTTP_METHODS = (b"POST ", b"GET ", b"PUT ", b"HEAD ", b"OPTIONS ", b"DELETE ", b"PATCH ")
MAX_HEADER_BLOCK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Capture:
    """One captured message: what it was, its start line and headers, and its body."""

    kind: str  # "http-request", "http-response", "mime-entity" or "xml"
    start_line: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    @property
    def content_type(self) -> str | None:
        return self.header("Content-Type")

    @property
    def http_status(self) -> int | None:
        if self.kind != "http-response":
            return None
        fields = self.start_line.split()
        return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def read_capture(raw: bytes) -> Capture:
    """Split a capture into start line, headers and body; ParseError if it is none of the shapes."""
    stripped = raw.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped:
        raise ParseError("the input is empty", where="input")
    if stripped.startswith(b"<") or raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return Capture("xml", "", (), raw)
    if stripped.startswith(_HTTP_METHODS):
        kind = "http-request"
    elif stripped.startswith(b"HTTP/"):
        kind = "http-response"
    elif stripped[:1] == b"-" and stripped.startswith(b"--"):
        return Capture("mime-entity", "", (), stripped)
    else:
        kind = "mime-entity"
    head, body = _split_head(stripped)
    lines = head.decode("latin-1").split("\n")
    start_line = ""
    if kind != "mime-entity":
        start_line = lines.pop(0).strip()
    headers = _parse_headers(lines, kind)
    cap = Capture(kind, start_line, headers, body)
    te = cap.header("Transfer-Encoding")
    if te is not None and "chunked" in te.lower():
        cap = Capture(kind, start_line, headers, _dechunk(body))
    return cap


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf == -1 and lf == -1:
        raise ParseError(
            "no blank line after the headers: expected headers, an empty line, then the body",
            where="capture headers",
        )
    if crlf != -1 and (lf == -1 or crlf < lf):
        head, body = data[:crlf], data[crlf + 4 :]
    else:
        head, body = data[:lf], data[lf + 2 :]
    if len(head) > MAX_HEADER_BLOCK:
        raise ParseError(f"header block over {MAX_HEADER_BLOCK} bytes", where="capture headers")
    return head.replace(b"\r\n", b"\n"), body


def _parse_headers(lines: list[str], kind: str) -> tuple[tuple[str, str], ...]:
    headers: list[list[str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if line[0] in " \t" and headers:
            headers[-1][1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            raise ParseError(
                f"line {number} is not a 'Name: value' header: {line[:60]!r}",
                where=f"{kind} headers",
            )
        headers.append([name.strip(), value.strip()])
    return tuple((k, v) for k, v in headers)


def _dechunk(body: bytes) -> bytes:
    out = []
    pos = 0
    while True:
        end = body.find(b"\n", pos)
        if end == -1:
            raise ParseError("chunked body ends inside a chunk-size line", where="HTTP body")
        size_text = body[pos:end].strip().split(b";")[0]
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ParseError(f"bad chunk size {size_text[:20]!r}", where="HTTP body") from None
        if size == 0:
            return b"".join(out)
        start = end + 1
        out.append(body[start : start + size])
        pos = start + size
        if body[pos : pos + 2] == b"\r\n":
            pos += 2
        elif body[pos : pos + 1] == b"\n":
            pos += 1
