"""The multipart reader: delimiter lines, part header blocks and bodies.

A multipart body (RFC 2046 section 5.1.1) is a preamble, then ``--boundary`` lines each followed
by a part (header block, blank line, body), then the close line ``--boundary--`` and an epilogue.
The reader never splits the body into lines: the end of each part is found with one
``bytes.find`` for a line break followed by ``--boundary``, and each candidate is checked where it
is found, so a part's bytes are scanned once and copied once (binary media included).

A nested multipart part is read as a stream, to its own close line, rather than by first finding
the enclosing delimiter after it, which would scan its bytes once per nesting level. When the
nested body does not close cleanly before the enclosing delimiter, the streaming read gives up,
its counts and notes are undone, and the part is read again bounded by that delimiter.

Each deviation met is noted as a ``Leniency``; counts and sizes are checked against ``Limits``
as the parts are found.
"""

from __future__ import annotations

from typing import NamedTuple

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
        """Add a part's decoded size; raises LimitExceededError over ``max_decoded_bytes``."""
        self.decoded += n
        if self.decoded > self.limits.max_decoded_bytes:
            raise LimitExceededError(
                f"decoded bodies total {self.decoded} bytes, over "
                f"max_decoded_bytes={self.limits.max_decoded_bytes}",
                where=where,
            )

    def snapshot(self) -> tuple[int, int, int]:
        """The totals now, for ``restore`` to go back to if a streaming read gives up."""
        return self.parts, self.decoded, len(self.lens)

    def restore(self, snap: tuple[int, int, int]) -> None:
        """Forget the parts, bytes and leniencies counted since ``snap``."""
        self.parts, self.decoded, n = snap
        del self.lens[n:]


def _dash_boundary(boundary: str) -> bytes:
    """The RFC 2046 dash-boundary, ``--`` then the boundary: how every delimiter line starts."""
    return b"--" + boundary.encode("utf-8", "surrogateescape")


class Delimiter(NamedTuple):
    """A delimiter line: the dash-boundary, ``--`` if it is the close one, and a line break."""

    #: index of the dash-boundary (the line break just before it belongs to the delimiter too)
    start: int
    #: index just past the line (past its line break, or the end of the body)
    after: int
    #: the close delimiter ``--boundary--``: no part follows it
    close: bool
    #: spaces or tabs between the dash-boundary and the line break
    trailing_space: bool
    #: the line ends in a bare LF rather than CRLF
    lf_only: bool


# Builds a Delimiter from a tuple without NamedTuple's Python-level __new__; one per part, so this
# keeps the cursor as fast as the plain tuples it replaced.
_new_delimiter = tuple.__new__


def _delimiter_at(buf: bytes, i: int, end: int, dash: bytes) -> Delimiter | None:
    """Check that ``dash`` at ``i`` starts a delimiter line; None when the line goes on with other
    text (a longer boundary, or data that merely starts with it)."""
    j = i + len(dash)
    close = buf.startswith(b"--", j, end)
    if close:
        j += 2
    # RFC 2046 lets a delimiter line end in linear whitespace (transport padding) before CRLF.
    k = j
    while k < end and buf[k] in (32, 9):
        k += 1
    space = k > j
    if k >= end:  # the body ends on the delimiter line itself
        return _new_delimiter(Delimiter, (i, end, close, space, False))
    c = buf[k]
    if c == 13 and k + 1 < end and buf[k + 1] == 10:
        return _new_delimiter(Delimiter, (i, k + 2, close, space, False))
    if c == 10:
        return _new_delimiter(Delimiter, (i, k + 1, close, space, True))
    if close:  # "--b--" followed by epilogue text on the same line
        nl = buf.find(b"\n", k, end)
        return _new_delimiter(Delimiter, (i, end if nl < 0 else nl + 1, True, space, False))
    # Other text on the line: "--b" is only the start of a longer boundary or of body data.
    return None


def _boundary_from_body(buf: bytes, start: int, end: int) -> str | None:
    """The boundary named by the first line that starts with ``--``, if any."""
    i = start
    while i < end and buf[i] in b" \t\r\n":
        i += 1
    if not buf.startswith(b"--", i, end):  # a preamble first: the first "--" that begins a line
        i = buf.find(b"\n--", start, end)
        if i < 0:
            return None
        i += 1
    nl = buf.find(b"\n", i, end)
    line = buf[i + 2 : end if nl < 0 else nl].rstrip(b" \t\r")
    if line.endswith(b"--") and len(line) > 2:  # the first delimiter is already the close one
        line = line[:-2]
    return line.decode("utf-8", "surrogateescape") if line else None


class MultipartReader:
    """A cursor over one multipart body: the buffer, where the body ends and its delimiter.

    ``read`` returns the body's parts. A nested multipart part gets a reader of its own, one
    level deeper, sharing the ``ParseState`` of the whole parse.
    """

    __slots__ = ("buf", "end", "boundary", "dash", "line_dash", "state", "where", "path", "depth")

    def __init__(
        self,
        buf: bytes,
        end: int,
        boundary: str | None,
        state: ParseState,
        *,
        where: str,
        path: str = "",
        depth: int = 1,
    ) -> None:
        self.buf = buf
        #: the body ends here: at the end of the buffer, or where the enclosing delimiter was found
        self.end = end
        #: the boundary the Content-Type declared, if any
        self.boundary = boundary
        #: the dash-boundary of the delimiter lines: of the declared boundary until the body is
        #: found to use another one (empty while none is known)
        self.dash = _dash_boundary(boundary) if boundary else b""
        #: a delimiter after the first always follows a line break, so it is searched for with it
        self.line_dash = b"\n" + self.dash
        self.state = state
        #: names the body in error messages
        self.where = where
        #: the number of the part holding this body ("2", "2.1"); its parts are numbered under it
        self.path = path
        #: nesting level, the top-level body being 1
        self.depth = depth

    def read(self, start: int, *, headerless: bool = False, stream: bool = True) -> list[Part]:
        """The parts of the body from ``start`` to ``end``.

        ``headerless``: the body came without a Content-Type (its boundary is not declared, so
        taking it from the body is no deviation). ``stream``: nested bodies may be read as
        streams (see the module docstring).
        """
        result = self._read(start, enclosing=None, stream=stream, headerless=headerless)
        if result is None:  # pragma: no cover - only a read with an enclosing delimiter gives up
            raise ParseError("multipart body could not be parsed", where=self.where)
        return result[0]

    def first_delimiter(self, start: int) -> Delimiter | None:
        """The first delimiter line in the body at or after ``start``."""
        buf, end, dash = self.buf, self.end, self.dash
        i = start
        while True:
            i = buf.find(dash, i, end)
            if i < 0:
                return None
            # A delimiter begins a line; the first may also be the very start of the body, with
            # no line break before it.
            if i == start or buf[i - 1] == 10:
                found = _delimiter_at(buf, i, end, dash)
                if found is not None:
                    return found
            i += 1

    def next_delimiter(self, pos: int) -> Delimiter | None:
        """The next delimiter line that begins at or after ``pos``."""
        buf, end, dash, line_dash = self.buf, self.end, self.dash, self.line_dash
        # From pos - 1: a delimiter right at pos (an empty body) follows the line break there.
        i = pos - 1
        while True:
            i = buf.find(line_dash, i, end)
            if i < 0:
                return None
            found = _delimiter_at(buf, i + 1, end, dash)
            if found is not None:
                return found
            i += 1

    def body_end(self, body_start: int, delimiter: Delimiter) -> int:
        """Where a body followed by ``delimiter`` ends."""
        # RFC 2046: the CRLF before a delimiter belongs to the delimiter, not to the body.
        lf = delimiter.start - 1
        if lf <= body_start:
            return body_start
        if self.buf[lf - 1] == 13:
            return lf - 1
        note(self.state.lens, Leniency.LF_LINE_ENDINGS)
        return lf

    def _read(
        self, start: int, *, enclosing: bytes | None, stream: bool, headerless: bool = False
    ) -> tuple[list[Part], int] | None:
        """Read the parts from ``start``; returns them and the index after the close line.

        With ``enclosing`` (the enclosing body's ``line_dash``) this body's end is not known yet:
        the read streams to the body's own close line. It returns None, for the caller to bound
        the body and read it again, rather than guess when the body does not close cleanly.
        """
        buf, end, state = self.buf, self.end, self.state
        lens = state.lens
        if self.depth > state.limits.max_depth:
            raise LimitExceededError(
                f"multipart nesting depth {self.depth} is over max_depth={state.limits.max_depth}",
                where=self.where,
            )
        delimiter = self.first_delimiter(start) if self.dash else None
        # The enclosing body's delimiter before this body's first one: this body is empty or
        # broken, and where it ends is for the caller to say.
        if enclosing is not None and (
            delimiter is None or buf.find(enclosing, start - 1, delimiter.start) >= 0
        ):
            return None
        if delimiter is None:
            delimiter = self._delimiter_from_body(start, headerless)
            if delimiter is None:
                return [], end
        if delimiter.start > start and buf[start : delimiter.start].strip():
            note(lens, Leniency.PREAMBLE)
        prefix = f"{self.path}." if self.path else ""
        max_parts = state.limits.max_parts
        parts: list[Part] = []
        while True:
            if delimiter.trailing_space:
                note(lens, Leniency.DELIMITER_TRAILING_SPACE)
            if delimiter.lf_only:
                note(lens, Leniency.LF_LINE_ENDINGS)
            if delimiter.close:
                return parts, delimiter.after
            part_start = delimiter.after
            number = f"{prefix}{len(parts) + 1}"
            part_where = f"MIME part {number}"
            state.parts += 1
            if state.parts > max_parts:
                raise LimitExceededError(
                    f"more than max_parts={max_parts} MIME parts", where=self.where
                )
            has_headers, body_start, ct, cid, location, te, cte, others = read_part_head(
                buf, part_start, end, part_where, state, self.dash
            )
            if ct.mime_type.startswith("multipart/"):
                nested = self._read_nested(
                    body_start, ct.param("boundary"), number, enclosing=enclosing, stream=stream
                )
                if nested is None:
                    return None
                children, next_delimiter = nested
                part = Part(ct, b"", cid, location, tuple(children), te, others)
            else:
                next_delimiter = self.next_delimiter(body_start)
                if next_delimiter is None and enclosing is not None:
                    return None  # not closed before the buffer ends: the caller bounds it
                body = self._leaf_body(body_start, next_delimiter, te, cte, part_where)
                part = Part(ct, body, cid, location, (), te, others)
            if next_delimiter is None:
                note(lens, Leniency.MISSING_CLOSE_DELIMITER)
                if has_headers or part.body or part.children or buf[part_start:end].strip():
                    parts.append(part)
                else:
                    state.parts -= 1  # only whitespace after the last delimiter: no part there
                return parts, end
            parts.append(part)
            delimiter = next_delimiter

    def _delimiter_from_body(self, start: int, headerless: bool) -> Delimiter | None:
        """The first delimiter when no boundary is declared, or not the one the body uses: the
        first line that starts with ``--`` names it. None when the body is blank."""
        buf, end = self.buf, self.end
        delimiter = None
        guessed = _boundary_from_body(buf, start, end)
        if guessed is not None:
            self.dash = _dash_boundary(guessed)
            self.line_dash = b"\n" + self.dash
            delimiter = self.first_delimiter(start)
        if delimiter is None:
            if not buf[start:end].strip():
                return None
            raise ParseError(
                f"expected a delimiter line '--{self.boundary or '<boundary>'}', found none",
                where=self.where,
            )
        if not headerless:  # a body sent without headers declares no boundary: nothing to note
            note(self.state.lens, Leniency.BOUNDARY_FROM_BODY)
        return delimiter

    def _read_nested(
        self,
        body_start: int,
        boundary: str | None,
        number: str,
        *,
        enclosing: bytes | None,
        stream: bool,
    ) -> tuple[list[Part], Delimiter | None] | None:
        """Read the body of multipart part ``number``; returns its parts and this body's next
        delimiter (None: there is none), or None when this body gives up (see ``_read``)."""
        state = self.state
        where = f"MIME part {number} body"
        depth = self.depth + 1
        if stream:
            snapshot = state.snapshot()
            inner = MultipartReader(
                self.buf, self.end, boundary, state, where=where, path=number, depth=depth
            )
            nested = inner._read(body_start, enclosing=self.line_dash, stream=True)
            if nested is not None:
                children, inner_end = nested
                # Between the nested close line and our next delimiter lies only its epilogue.
                next_delimiter = self.next_delimiter(inner_end)
                if next_delimiter is None and enclosing is not None:
                    return None
                return children, next_delimiter
            # The nested body did not close cleanly: forget what the attempt counted and noted.
            state.restore(snapshot)
        next_delimiter = self.next_delimiter(body_start)
        if next_delimiter is None and enclosing is not None:
            return None
        end = self.end if next_delimiter is None else self.body_end(body_start, next_delimiter)
        inner = MultipartReader(
            self.buf, end, boundary, state, where=where, path=number, depth=depth
        )
        return inner.read(body_start, stream=False), next_delimiter

    def _leaf_body(
        self,
        body_start: int,
        next_delimiter: Delimiter | None,
        te: str | None,
        cte: str | None,
        where: str,
    ) -> bytes:
        """The decoded body of a leaf part: from ``body_start`` to its delimiter, or the end."""
        buf = self.buf
        if next_delimiter is None:
            end = self.end
            # The last line break would have belonged to the missing delimiter.
            if buf.endswith(b"\n", body_start, end):
                end -= 2 if buf.endswith(b"\r\n", body_start, end) else 1
        else:
            end = self.body_end(body_start, next_delimiter)
        # An identity encoding declared in lower case: nothing to undo or note, one slice.
        if te is None or (te in IDENTITY_CTES and te == cte):
            body = buf[body_start:end]
        else:
            try:
                body = decode_body(buf[body_start:end], cte, self.state.lens)
            except ParseError as exc:
                raise ParseError(str(exc), where=where) from None
        self.state.count_decoded(len(body), where)
        return body


def _decode_header(raw: bytes) -> str:
    """Header text as sent: UTF-8 in practice, else Latin-1, which decodes any bytes."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _simple_block_end(buf: bytes, start: int, end: int, limit: int) -> int:
    """Where the header block at ``start`` ends (its blank line), when it is a CRLF block within
    ``limit`` bytes with no line starting with "--" (boundaries may hold ':', so such a line may
    be a delimiter, which only parse_headers' slow path checks); -1 otherwise."""
    stop = buf.find(b"\r\n\r\n", start, min(end, start + limit + 4))
    if stop > start and not buf.startswith(b"--", start) and buf.find(b"\n--", start, stop) < 0:
        return stop
    return -1


def _simple_headers(block: bytes) -> list[tuple[str, str]] | None:
    """The headers of a block of plain "Name: value" lines joined by CRLF; None otherwise."""
    headers: list[tuple[str, str]] = []
    for text in _decode_header(block).split("\r\n"):
        key, sep, val = text.partition(":")
        if not sep or not key or key.strip(TOKEN_STR) or "\n" in text or "\r" in text:
            return None
        headers.append((key, val.strip()))
    return headers


#: What a part's header block says: whether it held any header, where the body starts, then
#: classify's (content type, Content-ID, Content-Location, CTE lower-cased, CTE as declared,
#: other headers)
PartHead = tuple[
    bool, int, ContentType, str | None, str | None, str | None, str | None,
    tuple[tuple[str, str], ...],
]  # fmt: skip
_Classified = tuple[
    ContentType, str | None, str | None, str | None, str | None, tuple[tuple[str, str], ...]
]

# Simple header blocks read before -> classify's answer and the leniencies it noted: the SOAP
# part's headers are the same on every message from a peer, and so are many media parts' (a
# multipart part's are not: its boundary is new each time, so those are not kept). Bounded in
# entries and in block size; cleared when full.
_HEAD_CACHE: dict[bytes, tuple[_Classified, tuple[Leniency, ...]]] = {}
_HEAD_CACHE_MAX = 256
_HEAD_CACHED_BYTES = 1024


def read_part_head(
    buf: bytes, start: int, end: int, where: str, state: ParseState, dash: bytes
) -> PartHead:
    """``parse_headers`` then ``classify`` for the part at ``start``; a simple header block seen
    before is not parsed again (its leniencies are noted again)."""
    lens = state.lens
    stop = _simple_block_end(
        buf, start, end, min(state.limits.max_header_bytes, _HEAD_CACHED_BYTES)
    )
    if stop >= 0:
        block = buf[start:stop]
        known = _HEAD_CACHE.get(block)
        if known is None:
            simple = _simple_headers(block)  # never empty: the block holds a line
            if simple is not None:
                found: list[Leniency] = []
                known = classify(simple, found), tuple(found)
                if not known[0][0].mime_type.startswith("multipart/"):
                    if len(_HEAD_CACHE) >= _HEAD_CACHE_MAX:
                        _HEAD_CACHE.clear()
                    _HEAD_CACHE[block] = known
        if known is not None:
            classified, noted = known
            for item in noted:
                note(lens, item)
            return (True, stop + 4, *classified)
    headers, body_start = parse_headers(buf, start, end, where, state, dash)
    return (bool(headers), body_start, *classify(headers, lens))


def parse_headers(
    buf: bytes, start: int, end: int, where: str, state: ParseState, dash: bytes
) -> tuple[list[tuple[str, str]], int]:
    """Read a header block at ``start``; returns the unfolded headers and where the body starts.

    The block ends at a blank line, at a delimiter line ``dash`` (a part with no body), or
    (NO_BLANK_LINE) at the first line that is not a header.
    """
    limit = state.limits.max_header_bytes
    stop = _simple_block_end(buf, start, end, limit)
    if stop >= 0:
        simple = _simple_headers(buf[start:stop])
        if simple is not None:
            return simple, stop + 4
    headers: list[tuple[str, str]] = []
    lens = state.lens
    # Continuation lines of the last header, joined once when it is complete: joining them one by
    # one made a header folded over N lines cost O(N^2).
    folds: list[str] = []

    def unfold() -> list[tuple[str, str]]:
        if folds:
            name, value = headers[-1]
            headers[-1] = (name, " ".join(p for p in (value, *folds) if p).strip())
            folds.clear()
        return headers

    pos = start
    while pos < end:
        # A delimiter line where a header line was due: the part ends here, with no body.
        if dash and buf.startswith(dash, pos, end) and _delimiter_at(buf, pos, end, dash):
            return unfold(), pos
        nl = buf.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl
        nxt = end if nl < 0 else nl + 1
        line = buf[pos : min(line_end, pos + limit + 1)]  # an overlong line: copy no more
        lf = nl >= 0 and not line.endswith(b"\r")
        line = line.rstrip(b"\r")
        if not line.strip(b" \t"):
            if lf:
                note(lens, Leniency.LF_LINE_ENDINGS)
            return unfold(), nxt
        if line[0] in b" \t":  # RFC 5322 folding: white space continues the header above
            if not headers:
                note(lens, Leniency.NO_BLANK_LINE)
                return headers, pos
            note(lens, Leniency.HEADER_FOLDED)
            folds.append(_decode_header(line.strip()))
        else:
            unfold()
            colon = line.find(b":")
            name_b = line[:colon].rstrip(b" \t") if colon > 0 else b""
            if not name_b or name_b.translate(None, TOKEN_BYTES):
                # Not "token:": the headers ended without their blank line and this is the body.
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
    return unfold(), end


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
