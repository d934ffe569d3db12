"""The multipart reader: delimiter lines, part header blocks and bodies, found with
``bytes.find`` on the delimiter rather than line by line, so binary media costs one copy.

Every count and size is checked against ``Limits`` as the parts are found.
"""

from __future__ import annotations

from mm7.core.errors import LimitExceededError, ParseError
from mm7.core.leniency import Leniency
from mm7.core.limits import Limits
from mm7.core.mime.common import IDENTITY_CTES, TOKEN_BYTES, TOKEN_STR, note
from mm7.core.mime.content_type import TEXT_PLAIN, ContentType, parse_content_type
from mm7.core.mime.part import Part, normalise_cid
from mm7.core.mime.transfer import decode_body


class ParseState:
    """Running totals for one parse, checked against the limits as parts are found."""

    __slots__ = ("limits", "lens", "parts", "decoded")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.lens: list[Leniency] = []
        self.parts = 0
        self.decoded = 0

    def count_decoded(self, n: int, where: str) -> None:
        self.decoded += n
        if self.decoded > self.limits.max_decoded_bytes:
            raise LimitExceededError(
                f"decoded bodies total {self.decoded} bytes, over "
                f"max_decoded_bytes={self.limits.max_decoded_bytes}",
                where=where,
            )

    def snapshot(self) -> tuple[int, int, int]:
        return self.parts, self.decoded, len(self.lens)

    def restore(self, snap: tuple[int, int, int]) -> None:
        self.parts, self.decoded, n = snap
        del self.lens[n:]


def dash_boundary(boundary: str) -> bytes:
    """The RFC 2046 dash-boundary, ``--`` then the boundary: how every delimiter line starts."""
    return b"--" + boundary.encode("utf-8", "surrogateescape")


# A checked delimiter line: (index after the line, is_close, had_trailing_space, lf_only).
_Delimiter = tuple[int, bool, bool, bool]


def _delimiter_at(buf: bytes, i: int, end: int, dash: bytes) -> _Delimiter | None:
    """Check that ``dash`` at ``i`` starts a delimiter line; None when the line goes on with other
    text (a longer boundary, or data that merely starts with it)."""
    j = i + len(dash)
    close = buf.startswith(b"--", j, end)
    if close:
        j += 2
    k = j
    while k < end and buf[k] in (32, 9):
        k += 1
    space = k > j
    if k >= end:
        return end, close, space, False
    c = buf[k]
    if c == 13 and k + 1 < end and buf[k + 1] == 10:
        return k + 2, close, space, False
    if c == 10:
        return k + 1, close, space, True
    if close:  # "--b--" followed by epilogue text on the same line
        nl = buf.find(b"\n", k, end)
        return (end if nl < 0 else nl + 1), True, space, False
    return None


def first_delimiter(buf: bytes, start: int, end: int, dash: bytes) -> tuple[int, _Delimiter] | None:
    """The first delimiter line that starts a line in ``buf[start:end]``, with its index."""
    i = start
    while True:
        i = buf.find(dash, i, end)
        if i < 0:
            return None
        if i == start or buf[i - 1] == 10:
            d = _delimiter_at(buf, i, end, dash)
            if d is not None:
                return i, d
        i += 1


def _next_delimiter(
    buf: bytes, frm: int, end: int, dash: bytes, nl_dash: bytes
) -> tuple[int, _Delimiter | None]:
    """The next delimiter line after a line break at or after ``frm``: (index of that LF, line).

    ``nl_dash`` is ``b"\\n" + dash``."""
    k = frm
    while True:
        k = buf.find(nl_dash, k, end)
        if k < 0:
            return -1, None
        d = _delimiter_at(buf, k + 1, end, dash)
        if d is not None:
            return k, d
        k += 1


def _boundary_from_body(buf: bytes, start: int, end: int) -> str | None:
    """The boundary named by the first line that starts with ``--``, if any."""
    i = start
    while i < end and buf[i] in b" \t\r\n":
        i += 1
    if not buf.startswith(b"--", i, end):
        i = buf.find(b"\n--", start, end)
        if i < 0:
            return None
        i += 1
    nl = buf.find(b"\n", i, end)
    line = buf[i + 2 : end if nl < 0 else nl].rstrip(b" \t\r")
    if line.endswith(b"--") and len(line) > 2:  # the first delimiter is already the close one
        line = line[:-2]
    return line.decode("utf-8", "surrogateescape") if line else None


def _body_end(buf: bytes, body_start: int, k: int, lens: list[Leniency]) -> int:
    """End of a body whose delimiter's line break is at ``k``: the CRLF (or LF) belongs to it."""
    if k <= body_start:
        return body_start
    if buf[k - 1] == 13:
        return k - 1
    note(lens, Leniency.LF_LINE_ENDINGS)
    return k


def parse_multipart(
    buf: bytes,
    start: int,
    end: int,
    boundary: str | None,
    where: str,
    path: str,
    depth: int,
    st: ParseState,
    *,
    headerless: bool = False,
    stream: bool = True,
) -> list[Part]:
    """Parse the body of a multipart entity in ``buf[start:end]`` at nesting ``depth``."""
    result = _multipart(
        buf, start, end, boundary, where, path, depth, st, headerless=headerless, stream=stream
    )
    if result is None:  # pragma: no cover - only a parse with a parent gives up
        raise ParseError("multipart body could not be parsed", where=where)
    return result[0]


def _multipart(
    buf: bytes,
    start: int,
    end: int,
    boundary: str | None,
    where: str,
    path: str,
    depth: int,
    st: ParseState,
    *,
    headerless: bool = False,
    parent: bytes | None = None,
    stream: bool = True,
) -> tuple[list[Part], int] | None:
    """Parse a multipart body at ``start``; returns its parts and the index after its close line.

    With ``parent`` (the enclosing entity's delimiter) the body's end is not known yet: the parse
    streams to this entity's own close delimiter, so the bytes of a nested entity are scanned
    once. It returns None, for the caller to bound the body and parse again, rather than guess
    when the entity does not close cleanly. ``stream`` allows nested entities to stream.
    """
    lens = st.lens
    if depth > st.limits.max_depth:
        raise LimitExceededError(
            f"multipart nesting depth {depth} is over max_depth={st.limits.max_depth}",
            where=where,
        )
    dash = dash_boundary(boundary) if boundary else b""
    found = first_delimiter(buf, start, end, dash) if dash else None
    if parent is not None and (found is None or buf.find(parent, start - 1, found[0]) >= 0):
        return None
    if found is None:
        guessed = _boundary_from_body(buf, start, end)
        if guessed is not None:
            dash = dash_boundary(guessed)
            found = first_delimiter(buf, start, end, dash)
        if found is None:
            if not buf[start:end].strip():
                return [], end
            raise ParseError(
                f"expected a delimiter line '--{boundary or '<boundary>'}', found none",
                where=where,
            )
        if not headerless:
            note(lens, Leniency.BOUNDARY_FROM_BODY)
    first, d = found
    if first > start and buf[start:first].strip():
        note(lens, Leniency.PREAMBLE)
    prefix = f"{path}." if path else ""
    nl_dash = b"\n" + dash
    max_parts = st.limits.max_parts
    parts: list[Part] = []
    while True:
        after, close, space, lf = d
        if space:
            note(lens, Leniency.DELIMITER_TRAILING_SPACE)
        if lf:
            note(lens, Leniency.LF_LINE_ENDINGS)
        if close:
            return parts, after
        s = after
        number = f"{prefix}{len(parts) + 1}"
        pwhere = f"MIME part {number}"
        st.parts += 1
        if st.parts > max_parts:
            raise LimitExceededError(f"more than max_parts={max_parts} MIME parts", where=where)
        headers, body_start = parse_headers(buf, s, end, pwhere, st, dash)
        ct, cid, location, te, cte, others = classify(headers, lens)
        if ct.mime_type.startswith("multipart/"):
            inner = ct.param("boundary")
            nested = None
            if stream:
                snap = st.snapshot()
                nested = _multipart(
                    buf,
                    body_start,
                    end,
                    inner,
                    f"{pwhere} body",
                    number,
                    depth + 1,
                    st,
                    parent=nl_dash,
                )
                if nested is None:
                    st.restore(snap)
            if nested is not None:
                children, inner_end = nested
                k, nd = _next_delimiter(buf, inner_end - 1, end, dash, nl_dash)  # only the epilogue
                if nd is None and parent is not None:
                    return None
            else:
                k, nd = _next_delimiter(buf, body_start - 1, end, dash, nl_dash)
                if nd is None and parent is not None:
                    return None
                e = end if nd is None else _body_end(buf, body_start, k, lens)
                children = parse_multipart(
                    buf,
                    body_start,
                    e,
                    inner,
                    f"{pwhere} body",
                    number,
                    depth + 1,
                    st,
                    stream=False,
                )
            part = Part(ct, b"", cid, location, tuple(children), te, others)
        else:
            k, nd = _next_delimiter(buf, body_start - 1, end, dash, nl_dash)
            if nd is None:
                if parent is not None:
                    return None
                e = end
                if buf.endswith(b"\n", body_start, e):
                    e -= 2 if buf.endswith(b"\r\n", body_start, e) else 1
            else:
                e = _body_end(buf, body_start, k, lens)
            if te is None or (te in IDENTITY_CTES and te == cte):
                body = buf[body_start:e]
            else:
                try:
                    body = decode_body(buf[body_start:e], cte, lens)
                except ParseError as exc:
                    raise ParseError(str(exc), where=pwhere) from None
            st.count_decoded(len(body), pwhere)
            part = Part(ct, body, cid, location, (), te, others)
        if nd is None:
            note(lens, Leniency.MISSING_CLOSE_DELIMITER)
            if headers or part.body or part.children or buf[s:end].strip():
                parts.append(part)
            else:
                st.parts -= 1  # only whitespace after the last delimiter: no part there
            return parts, end
        parts.append(part)
        d = nd


def _decode_header(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_headers(
    buf: bytes, start: int, end: int, where: str, st: ParseState, dash: bytes
) -> tuple[list[tuple[str, str]], int]:
    """Read a header block at ``start``; returns the unfolded headers and where the body starts.

    The block ends at a blank line, at a delimiter line ``dash`` (a part with no body), or
    (NO_BLANK_LINE) at the first line that is not a header.
    """
    limit = st.limits.max_header_bytes
    headers: list[tuple[str, str]] = []
    # Fast path: a CRLF block of plain "Name: value" lines ending in a blank line. A line starting
    # with "--" may be a delimiter (boundaries may hold ':'), which only the slow path checks.
    stop = buf.find(b"\r\n\r\n", start, min(end, start + limit + 4))
    if stop > start and not buf.startswith(b"--", start) and buf.find(b"\n--", start, stop) < 0:
        for text in _decode_header(buf[start:stop]).split("\r\n"):
            key, sep, val = text.partition(":")
            if not sep or not key or key.strip(TOKEN_STR) or "\n" in text or "\r" in text:
                headers.clear()
                break
            headers.append((key, val.strip()))
        else:
            return headers, stop + 4
    lens = st.lens
    pos = start
    while pos < end:
        if dash and buf.startswith(dash, pos, end) and _delimiter_at(buf, pos, end, dash):
            return headers, pos
        nl = buf.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl
        nxt = end if nl < 0 else nl + 1
        line = buf[pos : min(line_end, pos + limit + 1)]
        lf = nl >= 0 and not line.endswith(b"\r")
        line = line.rstrip(b"\r")
        if not line.strip(b" \t"):
            if lf:
                note(lens, Leniency.LF_LINE_ENDINGS)
            return headers, nxt
        if line[0] in b" \t":
            if not headers:
                note(lens, Leniency.NO_BLANK_LINE)
                return headers, pos
            note(lens, Leniency.HEADER_FOLDED)
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {_decode_header(line.strip())}".strip())
        else:
            colon = line.find(b":")
            name_b = line[:colon].rstrip(b" \t") if colon > 0 else b""
            if not name_b or name_b.translate(None, TOKEN_BYTES):
                note(lens, Leniency.NO_BLANK_LINE)
                return headers, pos
            headers.append((name_b.decode("ascii"), _decode_header(line[colon + 1 :].strip())))
        if nxt - start > limit:
            raise LimitExceededError(
                f"header block is over max_header_bytes={limit} ({nxt - start} bytes read)",
                where=f"{where} headers",
            )
        if lf:
            note(lens, Leniency.LF_LINE_ENDINGS)
        pos = nxt
    return headers, end


def classify(
    headers: list[tuple[str, str]], lens: list[Leniency]
) -> tuple[
    ContentType, str | None, str | None, str | None, str | None, tuple[tuple[str, str], ...]
]:
    """Pick out (content type, Content-ID, Content-Location, CTE lower-cased, CTE as declared,
    other headers) from a part's headers; the first of each wins."""
    ct: ContentType | None = None
    cte: str | None = None
    cid: str | None = None
    location: str | None = None
    others: list[tuple[str, str]] = []
    for name, value in headers:
        key = name.lower()
        if key == "content-type":
            if ct is None:
                ct = parse_content_type(value, lens)
        elif key == "content-transfer-encoding":
            if cte is None:
                cte = value
        elif key == "content-id":
            if name != "Content-ID":
                note(lens, Leniency.CONTENT_ID_SPELLING)
            v = value.strip()
            if cid is None and v:
                if not (v.startswith("<") and v.endswith(">")):
                    note(lens, Leniency.CONTENT_ID_UNBRACKETED)
                cid = normalise_cid(v)
        elif key == "content-location":
            if location is None:
                location = value.strip() or None
        else:
            others.append((name, value))
    te = (cte.strip().strip('"').lower() or None) if cte else None
    return ct or TEXT_PLAIN, cid, location, te, cte, tuple(others)
