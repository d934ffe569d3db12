"""Named byte-level changes real MMSCs make to the requests they send, applied to what mm7's
writers produced (``Encoded``), so that every deviation the VASP suite sends has a name.

    body = apply(Quirk.NO_NAMESPACE, encode(deliver_req, dialect), "DeliverReq")

Each change touches the SOAP envelope (or the Content-Type labels around it) only, never the
media, and says what it did in its docstring.
"""

from __future__ import annotations

import re
from enum import StrEnum

from mm7.core.codec import Encoded
from mm7.core.versions import NAMESPACE_BASE
from mm7.interop.errors import InteropError

__all__ = ["Quirk", "QuirkError", "apply"]

_ENVELOPE = re.compile(rb"<([A-Za-z_][\w.\-]*):Envelope\b")
_MM7_PREFIX = re.compile(rb'xmlns:([A-Za-z_][\w.\-]*)="' + re.escape(NAMESPACE_BASE.encode()))


class QuirkError(InteropError):
    """A quirk that cannot be applied to this body (a bug in the case table, not the peer's)."""


class Quirk(StrEnum):
    """The deviations, each named as the field knows it."""

    #: the body element keeps its namespace, its children are in none (VectorCore, CMCC)
    NO_NAMESPACE = "no-namespace"
    #: the SOAP XML labelled application/xml instead of text/xml (HTTP header or SOAP part)
    APPLICATION_XML = "application-xml"
    #: the envelope cut in half: not XML any more (a truncated request)
    CUT_ENVELOPE = "cut-envelope"


def apply(quirk: Quirk, encoded: Encoded, operation: str) -> Encoded:
    """``encoded`` changed as ``quirk`` says; ``operation`` is the body element's name."""
    start, end = _envelope_span(encoded.body)
    envelope = encoded.body[start:end]
    if quirk is Quirk.NO_NAMESPACE:
        changed = _children_in_no_namespace(envelope, operation)
        return Encoded(encoded.content_type, encoded.body[:start] + changed + encoded.body[end:])
    if quirk is Quirk.APPLICATION_XML:
        return _labelled_application_xml(encoded, start)
    cut = envelope[: len(envelope) // 2]
    return Encoded(encoded.content_type, encoded.body[:start] + cut + encoded.body[end:])


def _envelope_span(body: bytes) -> tuple[int, int]:
    """Where the SOAP envelope (with its XML declaration, if any) starts and ends in ``body``."""
    found = _ENVELOPE.search(body)
    if found is None:
        raise QuirkError("no SOAP envelope in the body")
    close = b"</" + found.group(1) + b":Envelope>"
    end = body.find(close, found.start())
    if end < 0:
        raise QuirkError("the SOAP envelope is not closed")
    declaration = body.rfind(b"<?xml", 0, found.start())
    start = declaration if declaration >= 0 else found.start()
    return start, end + len(close)


def _children_in_no_namespace(envelope: bytes, operation: str) -> bytes:
    """Every element inside the ``operation`` element written without the MM7 prefix."""
    prefix_match = _MM7_PREFIX.search(envelope)
    if prefix_match is None:
        raise QuirkError("no prefixed MM7 namespace declaration in the envelope")
    prefix = prefix_match.group(1)
    open_tag = re.compile(
        rb"<" + re.escape(prefix) + rb":" + re.escape(operation.encode()) + rb"\b"
    )
    opened = open_tag.search(envelope)
    close = b"</" + prefix + b":" + operation.encode() + b">"
    end = envelope.rfind(close)
    if opened is None or end < 0:
        raise QuirkError(f"no {operation} element in the envelope")
    head_end = envelope.index(b">", opened.start()) + 1
    inner = re.sub(rb"(</?)" + re.escape(prefix) + rb":", rb"\1", envelope[head_end:end])
    return envelope[:head_end] + inner + envelope[end:]


def _labelled_application_xml(encoded: Encoded, envelope_start: int) -> Encoded:
    """text/xml -> application/xml on the HTTP Content-Type (a bare body) or on the SOAP part's
    header and the multipart's ``type`` parameter (an SwA body)."""
    content_type = encoded.content_type
    if not content_type.lower().startswith("multipart/"):
        return Encoded(re.sub("text/xml", "application/xml", content_type, count=1), encoded.body)
    content_type = content_type.replace('type="text/xml"', 'type="application/xml"')
    head = encoded.body[:envelope_start]
    label = re.compile(rb"(Content-Type:\s*)text/xml", re.IGNORECASE)
    if label.search(head) is None:
        raise QuirkError("no text/xml label on the SOAP part")
    head = label.sub(rb"\1application/xml", head, count=1)
    return Encoded(content_type, head + encoded.body[envelope_start:])
