"""The MM7 codec: message object <-> HTTP body bytes (SOAP 1.1 envelope, with attachments when
the message carries content). Sans-I/O: no sockets, no clock, no disk.

    encoded = encode(SubmitReq(...), dialect)      # .content_type, .body
    decoded = decode(body, content_type)           # .message, .leniencies, .parts
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from lxml import etree

from mm7.core.dialect import STRICT_3GPP, Dialect
from mm7.core.emit import CONTENT_ID, write_envelope
from mm7.core.errors import EmitError, MM7Error
from mm7.core.leniency import Leniency
from mm7.core.limits import DEFAULT_LIMITS, Limits
from mm7.core.mime import Part, build_multipart, parse_content_type, parse_swa
from mm7.core.model import Message
from mm7.core.read import local, namespace, read_envelope
from mm7.core.versions import LATEST, Version, version_for_namespace
from mm7.core.xmlsafe import parse_xml

__all__ = [
    "UNSAFE_NAMESPACE_CHARS",
    "Decoded",
    "Encoded",
    "decode",
    "encode",
    "safe_echo",
    "salvage_envelope",
]

#: stdlib logging, silent unless the application enables it (a library must not print)
log = logging.getLogger("mm7.codec")


@dataclass(frozen=True, slots=True)
class Encoded:
    """An HTTP body ready to send: its Content-Type header value and its bytes."""

    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a body held: the typed message, the leniencies applied, and the raw pieces."""

    message: Message
    #: the schema version of the body's namespace; None when the namespace is unknown
    version: Version | None
    leniencies: tuple[Leniency, ...]
    #: every top-level MIME part besides the SOAP part, as received
    parts: tuple[Part, ...]
    soap: bytes
    #: elements the schema requires that the body lacks, read anyway because the message can
    #: be acted on without them (``Leniency.REQUIRED_ELEMENT_MISSING``)
    missing: tuple[str, ...] = ()
    #: the SOAP part's parsed tree, as ``read_envelope`` read it (never changed by reading), so
    #: a caller that validates the envelope against its schema need not parse it a second time
    root: etree._Element | None = field(default=None, repr=False, compare=False)

    @property
    def operation(self) -> str:
        op = getattr(self.message, "operation", None)
        return op if isinstance(op, str) else self.message.OPERATION


def encode(message: Message, dialect: Dialect = STRICT_3GPP) -> Encoded:
    """Serialise ``message`` for the wire as ``dialect`` writes it (EmitError when it cannot)."""
    version = dialect.version
    namespace = None
    if message.namespace:
        found = version_for_namespace(message.namespace)
        if found is not None:
            version = found
        elif dialect.strict:
            raise EmitError(
                f"unknown MM7 namespace {message.namespace!r}: strict dialects write only the "
                "published schemas; a non-strict dialect echoes it with the latest element set"
            )
        else:
            version, namespace = LATEST, message.namespace
    envelope = write_envelope(message, dialect, version, namespace)
    content: Part | None = getattr(message, "content", None)
    if content is None:
        return Encoded(dialect.soap_content_type, envelope)
    if content.content_id is None:
        content = dataclasses.replace(content, content_id=CONTENT_ID)
    soap_part = Part(
        parse_content_type(dialect.soap_content_type),
        envelope,
        content_id=dialect.soap_content_id,
        # "" = no Content-Transfer-Encoding header (None would let the dialect pick one)
        transfer_encoding=dialect.soap_transfer_encoding or "",
    )
    params: dict[str, str] = {}
    if dialect.emit_type:
        params["type"] = "text/xml"
    if dialect.emit_start:
        cid = dialect.soap_content_id
        params["start"] = f"<{cid}>" if dialect.start_brackets else cid
    content_type, body = build_multipart(
        [soap_part, content],
        subtype="related",
        params=params,
        bracket_content_id=dialect.content_id_brackets,
        transfer_encoding_for=dialect.transfer_encoding_for,
    )
    return Encoded(content_type, body)


def decode(
    body: bytes, content_type: str | None, limits: Limits = DEFAULT_LIMITS, *, strict: bool = False
) -> Decoded:
    """Parse an HTTP body (bare SOAP or SwA multipart) into a typed message.

    Reading asks "can we act on it?": an element the schema requires but the message can do
    without is read as absent (``Decoded.missing``, ``REQUIRED_ELEMENT_MISSING``); ``strict``
    asks "does it conform?" and refuses it (4004) as the schema does.

    Raises ParseError (status 2007), ValidationError (4004), UnsafeXMLError or
    LimitExceededError, each naming where and what was expected.
    """
    swa = parse_swa(body, content_type, limits)
    leniencies = list(swa.leniencies)
    missing: list[str] = []
    root = parse_xml(swa.soap, mime_charset=swa.soap_charset, limits=limits, leniencies=leniencies)
    message, version = read_envelope(root, swa.parts, leniencies, strict=strict, missing=missing)
    applied = tuple(dict.fromkeys(leniencies))
    if applied and log.isEnabledFor(logging.DEBUG):
        log.debug(
            "mm7.codec.leniencies operation=%s transaction_id=%s leniencies=%s",
            message.OPERATION,
            message.transaction_id,
            ",".join(applied),
        )
    return Decoded(
        message, version, applied, swa.parts, swa.soap, tuple(dict.fromkeys(missing)), root
    )


#: characters that make a namespace unsafe to echo into an xmlns attribute
UNSAFE_NAMESPACE_CHARS = frozenset("\"<>&'") | {chr(c) for c in range(0x20)} | {" ", "\x7f"}


def safe_echo(message: Message) -> Message:
    """``message`` with a namespace we cannot write back verbatim replaced by the dialect's."""
    ns = message.namespace
    if ns is not None and (not ns or any(c in UNSAFE_NAMESPACE_CHARS for c in ns)):
        return dataclasses.replace(message, namespace=None)
    return message


def salvage_envelope(body: bytes, content_type: str | None, limits: Limits) -> Message | None:
    """TransactionID, namespace and MM7Version of a request the codec refused, when readable.

    Lets a 2007/4004/4003 fault still echo what the peer sent (it correlates answers by
    TransactionID). None when the body is not even XML.
    """
    try:
        swa = parse_swa(body, content_type, limits)
        root = parse_xml(swa.soap, mime_charset=swa.soap_charset, limits=limits)
    except MM7Error:
        return None
    transaction_id = ""
    ns: str | None = None
    mm7_version: str | None = None
    for child in root:
        name = local(child)
        if name == "Header" and not transaction_id:
            for h in child.iter():
                if local(h) == "TransactionID":
                    transaction_id = (h.text or "").strip()
                    ns = namespace(h)
                    break
        elif name == "Body":
            first = next((k for k in child if isinstance(k.tag, str)), None)
            if first is not None:
                ns = namespace(first) or ns
                for el in first.iter():
                    if local(el) == "MM7Version":
                        mm7_version = (el.text or "").strip() or None
                        break
    if not transaction_id and ns is None:
        return None
    return safe_echo(Message(transaction_id=transaction_id, namespace=ns, mm7_version=mm7_version))
