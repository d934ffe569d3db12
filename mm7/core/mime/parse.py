"""The parser's entry points: an MM7 HTTP body split into its SOAP envelope and other parts
(``parse_swa``), and a MIME entity read with its own headers (``parse_entity``).

They tell bare XML from a multipart body and choose the SOAP part; ``multipart`` reads the
parts themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from mm7.core.errors import LimitExceededError, ParseError
from mm7.core.leniency import Leniency
from mm7.core.limits import DEFAULT_LIMITS, Limits
from mm7.core.mime.common import XML_TYPES, note
from mm7.core.mime.content_type import ContentType, parse_content_type
from mm7.core.mime.multipart import MultipartReader, ParseState, classify, parse_headers
from mm7.core.mime.part import Part, normalise_cid
from mm7.core.mime.transfer import decode_body

__all__ = ["SwA", "parse_entity", "parse_swa"]

_SOAP_ROOT_TYPES = frozenset({"text/xml", "application/xop+xml"})  # acceptable type= values
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_SNIFF = 1024  # bytes looked at to tell bare XML from a multipart body


@dataclass(frozen=True, slots=True)
class SwA:
    """The HTTP body of an MM7 message, split into its SOAP envelope and the other parts."""

    soap: bytes
    soap_charset: str | None
    parts: tuple[Part, ...]
    leniencies: tuple[Leniency, ...]


def _check_total(body: bytes, limits: Limits) -> None:
    if len(body) > limits.max_total_bytes:
        raise LimitExceededError(
            f"body is {len(body)} bytes, over max_total_bytes={limits.max_total_bytes}",
            where="HTTP body",
        )


def _sniff(body: bytes) -> bytes:
    """The start of ``body`` without byte-order mark and leading whitespace."""
    head = body[:_SNIFF]
    for bom in _BOMS:
        if head.startswith(bom):
            head = head[len(bom) :]
            break
    return head.lstrip(b" \t\r\n\x00")


def parse_swa(body: bytes, content_type: str | None, limits: Limits = DEFAULT_LIMITS) -> SwA:
    """Split an MM7 HTTP body into the SOAP envelope and the remaining top-level parts.

    Accepts bare XML (Cancel, reports, responses) and multipart bodies with the deviations named
    in ``Leniency``; raises ParseError when no envelope is found, LimitExceededError over bounds.
    """
    _check_total(body, limits)
    st = ParseState(limits)
    ct = parse_content_type(content_type, st.lens) if content_type is not None else None
    head = _sniff(body)
    if not head:
        raise ParseError(
            "empty body: expected a SOAP envelope or a multipart body", where="HTTP body"
        )
    where = "MIME multipart body"
    if ct is not None and ct.mime_type.startswith("multipart/"):
        boundary = ct.param("boundary")
        reader = MultipartReader(body, len(body), boundary, st, where=where)
        if head.startswith(b"<") and (not boundary or reader.first_delimiter(0) is None):
            note(st.lens, Leniency.MULTIPART_BUT_BARE_XML)
            return SwA(body, ct.param("charset"), (), tuple(st.lens))
        parts = reader.read(0)
    elif head.startswith(b"--"):
        note(st.lens, Leniency.HEADERLESS_BODY)
        parts = MultipartReader(body, len(body), None, st, where=where).read(0, headerless=True)
        ct = None
    elif head.startswith(b"<"):
        if ct is None or ct.mime_type not in ("text/xml", "application/xml"):
            note(st.lens, Leniency.BARE_XML_NO_MULTIPART)
        return SwA(body, ct.param("charset") if ct else None, (), tuple(st.lens))
    else:
        declared = ct.mime_type if ct else "no Content-Type"
        raise ParseError(
            f"expected a SOAP envelope ('<') or a multipart body ('--'), got {declared} "
            f"starting {head[:16]!r}",
            where="HTTP body",
        )
    if not parts:
        raise ParseError("multipart body holds no parts: expected a SOAP part", where="HTTP body")
    soap_index = _resolve_start(parts, ct, st.lens)
    soap = parts[soap_index]
    rest = parts[:soap_index] + parts[soap_index + 1 :]
    return SwA(soap.body, soap.charset, tuple(rest), tuple(st.lens))


def _resolve_start(parts: list[Part], ct: ContentType | None, lens: list[Leniency]) -> int:
    """Index of the SOAP part: the ``start`` param, else the first XML part, else the first part."""
    related = ct is not None and ct.mime_type == "multipart/related"
    if ct is not None and not related:
        note(lens, Leniency.MULTIPART_NOT_RELATED)
    if related and ct is not None:
        type_ = ct.param("type")
        if type_ is None:
            note(lens, Leniency.TYPE_MISSING)
        elif type_.strip().lower() not in _SOAP_ROOT_TYPES:
            note(lens, Leniency.TYPE_WRONG)
    start = ct.param("start") if ct is not None else None
    if start is not None:
        s = start.strip()
        bracketed = s.startswith("<") and s.endswith(">")
        key = normalise_cid(s)
        for i, p in enumerate(parts):
            if key is not None and p.content_id == key and not p.is_multipart:
                if not bracketed:
                    note(lens, Leniency.START_UNBRACKETED)
                return i
        note(lens, Leniency.START_UNRESOLVED)
    elif related:
        note(lens, Leniency.START_MISSING)
    for i, p in enumerate(parts):
        if p.content_type.mime_type in XML_TYPES:
            return i
    for i, p in enumerate(parts):
        if not p.is_multipart:
            return i
    raise ParseError("every top-level part is multipart: expected a SOAP part", where="HTTP body")


def parse_entity(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[Part, list[Leniency]]:
    """Parse a MIME entity that starts with its own header block (e.g. a saved message file).

    A file that starts with ``--`` is read as a multipart body with no headers (HEADERLESS_BODY)
    and comes back as a multipart/mixed part.
    """
    _check_total(raw, limits)
    st = ParseState(limits)
    end = len(raw)
    if raw.lstrip(b" \t\r\n")[:2] == b"--":
        note(st.lens, Leniency.HEADERLESS_BODY)
        reader = MultipartReader(raw, end, None, st, where="MIME entity body")
        children = reader.read(0, headerless=True)
        return Part(ContentType("multipart/mixed", {}), children=tuple(children)), st.lens
    headers, body_start = parse_headers(raw, 0, end, "MIME entity", st, b"")
    ct, cid, location, te, cte, others = classify(headers, st.lens)
    if ct.mime_type.startswith("multipart/"):
        reader = MultipartReader(raw, end, ct.param("boundary"), st, where="MIME entity body")
        children = reader.read(body_start)
        return Part(ct, b"", cid, location, tuple(children), te, others), st.lens
    try:
        body = decode_body(raw[body_start:], cte, st.lens)
    except ParseError as exc:
        raise ParseError(str(exc), where="MIME entity") from None
    st.count_decoded(len(body), "MIME entity")
    return Part(ct, body, cid, location, (), te, others), st.lens
