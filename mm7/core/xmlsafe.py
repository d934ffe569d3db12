"""The only way the project parses XML: no DTDs, no entities, no network, bounded size and depth.

``parse_xml`` refuses any document that declares a DTD before libxml2 sees it (libxml2 expands
internal entities inside attribute values even with ``resolve_entities=False``), checks the parsed
document again, bounds size and nesting depth, and falls back to the MIME charset when the XML
declaration or BOM does not describe the bytes (a named leniency). Every failure is a ParseError.
"""

from __future__ import annotations

import codecs
import os
import re
import threading

from lxml import etree

from mm7.core.errors import LimitExceededError, ParseError, UnsafeXMLError
from mm7.core.leniency import Leniency
from mm7.core.limits import DEFAULT_LIMITS, Limits
from mm7.core.values import lookup_charset

__all__ = ["hardened_parser", "parse_schema_document", "parse_xml"]

_local = threading.local()


def hardened_parser() -> etree.XMLParser:
    """This thread's parser: no DTD loading or validation, no network, entities left unexpanded.

    Not enough on its own: libxml2 still expands internal entities inside attribute values, which
    is why parse_xml refuses DTDs before parsing. lxml parsers are not thread-safe: one per thread.
    """
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            attribute_defaults=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
        _local.parser = parser
    return parser


# --------------------------------------------------------------------------------------------------
# DTD refusal
# --------------------------------------------------------------------------------------------------

_CLEAN, _DTD, _ENTITY, _UNKNOWN = range(4)
_SPACE = re.compile(rb"[ \t\r\n]*")
_WIDE_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _scan_prolog(data: bytes) -> int:
    """Walk the prolog of ASCII-compatible bytes up to the root start tag.

    Returns _DTD or _ENTITY if the prolog declares one, _CLEAN if the root element is reached
    first, and _UNKNOWN if something other than ``<`` appears there (another encoding, or
    garbage): the caller must then not hand these bytes to libxml2 as they are.
    """
    position = 3 if data.startswith(codecs.BOM_UTF8) else 0
    end = len(data)
    while True:
        match = _SPACE.match(data, position)
        position = match.end() if match is not None else position
        if position >= end or data[position] != 0x3C:  # "<"
            return _UNKNOWN
        if data.startswith(b"<?", position):
            close = data.find(b"?>", position + 2)
        elif data.startswith(b"<!--", position):
            close = data.find(b"-->", position + 4)
        elif data.startswith(b"<!DOCTYPE", position):
            return _DTD
        elif data.startswith(b"<!ENTITY", position):
            return _ENTITY
        else:
            return _CLEAN  # the root start tag, or markup libxml2 will reject
        if close < 0:
            return _CLEAN  # unterminated: libxml2 reports the syntax error
        position = close + 2 if data[close] == 0x3F else close + 3  # "?>" or "-->"


def _wide_codec(data: bytes) -> str | None:
    """The UTF-16/32 codec these bytes start in (BOM or a NUL beside the first ``<``), if any."""
    if data.startswith(_WIDE_BOMS):
        return "utf-32" if data.startswith(_WIDE_BOMS[:2]) else "utf-16"
    head = data[:4]
    if head == b"\x00\x00\x00<":
        return "utf-32-be"
    if head == b"<\x00\x00\x00":
        return "utf-32-le"
    if head.startswith(b"\x00<"):
        return "utf-16-be"
    if head.startswith(b"<\x00"):
        return "utf-16-le"
    return None


def _refuse(verdict: int, where: str) -> None:
    if verdict == _DTD:
        raise UnsafeXMLError(
            "XML declares a DTD (<!DOCTYPE ...>); documents with DTDs or entities are refused",
            where=where,
        )
    if verdict == _ENTITY:
        raise UnsafeXMLError(
            "XML declares an entity (<!ENTITY ...>); documents with DTDs or entities are refused",
            where=where,
        )


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------

_POSITION_SUFFIX = re.compile(r", line \d+, column \d+$")
_XML_DECLARATION = re.compile(r"\A\ufeff?<\?xml[ \t\r\n][^>]*?\?>")
_LIBXML_DEPTH_ERROR = "Excessive depth in document"
_DECLARED_ENCODING = re.compile(
    rb"\A(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']"
)


def _syntax_error(exc: etree.XMLSyntaxError, where: str, limits: Limits) -> ParseError:
    line, column = exc.position
    message = _POSITION_SUFFIX.sub("", str(exc.msg or exc).strip())
    if message.startswith(_LIBXML_DEPTH_ERROR):
        return LimitExceededError(
            f"XML nesting deeper than {limits.max_xml_depth} elements (libxml2: {message})",
            where=where,
        )
    return ParseError(f"malformed XML at line {line}, column {column}: {message}", where=where)


def _blank(match: re.Match[str]) -> str:
    return re.sub(r"[^\n]", " ", match.group(0))


def _declared_encoding(data: bytes) -> str | None:
    match = _DECLARED_ENCODING.match(data)
    return match.group(1).decode("ascii") if match is not None else None


def _decode_fallback(data: bytes, mime_charset: str | None) -> str:
    """The bytes as text: MIME charset, else UTF-8, else the declared label, else ISO-8859-1.

    The declared label is tried through lookup_charset because libxml2 lacks some labels Korean
    carriers use (ksc5601) or maps them to a narrower codec (ks_c_5601-1987 as euc-kr). A UTF-16/32
    label is skipped for bytes that are not UTF-16/32: decoding would "succeed" into garbage.
    """
    declared = lookup_charset(_declared_encoding(data))
    if declared is not None and declared.startswith(("utf-16", "utf-32")):
        declared = declared if _wide_codec(data) is not None else None
    for codec in (lookup_charset(mime_charset), "utf-8", declared):
        if codec is None:
            continue
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("iso-8859-1")


def _parse_text(text: str, where: str) -> etree._Element:
    """Parse decoded text; its XML declaration is blanked (lxml refuses str with an encoding)."""
    text = _XML_DECLARATION.sub(_blank, text, count=1)
    # Walk the prolog again on the decoded text: that is what libxml2 is about to read.
    _refuse(_scan_prolog(text.encode("utf-8", "surrogatepass")), where)
    return etree.fromstring(text, hardened_parser())


def _too_deep(root: etree._Element, max_depth: int) -> bool:
    """Whether an element sits deeper than max_depth (the root is depth 1); one C-level XPath."""
    paths: dict[int, etree.XPath] | None = getattr(_local, "depth_paths", None)
    if paths is None:
        paths = _local.depth_paths = {}
    path = paths.get(max_depth)
    if path is None:
        # XPath objects serialise evaluation with a lock; one per thread avoids contention.
        path = paths[max_depth] = etree.XPath("boolean(" + "/*" * (max_depth + 1) + ")")
    return bool(path(root))


#: encodings in which the byte 0x3C is "<" and nothing else, so counting bytes counts tags
_LT_IS_0X3C = frozenset({"UTF-8", "US-ASCII", "ASCII", "ISO-8859-1"})


def _few_elements(data: bytes, max_depth: int) -> bool:
    """Whether ``data`` holds too few elements to nest deeper than max_depth: then no walk is
    needed. Each start tag is a "<" not followed by "/"; an end tag's "</" counts once in each
    term, so the difference is never below the number of elements, whatever else holds a "<"."""
    return data.count(b"<") - data.count(b"</") <= max_depth


_LEADING_SPACE = (b" ", b"\t", b"\r", b"\n")


def parse_xml(
    data: bytes,
    *,
    mime_charset: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    leniencies: list[Leniency] | None = None,
    where: str = "SOAP part",
) -> etree._Element:
    """Parse one XML document safely and return its root element.

    Raises LimitExceededError (size, depth), UnsafeXMLError (DTD, entities) or ParseError (syntax,
    status 2007); lxml and codec exceptions never escape. Appends CHARSET_FALLBACK when libxml2
    could not read the bytes by their BOM/declaration and they were decoded here instead (MIME
    charset, then UTF-8, then the declared label via lookup_charset, then ISO-8859-1).
    """
    if len(data) > limits.max_xml_bytes:
        raise LimitExceededError(
            f"XML is {len(data)} bytes, over the limit of {limits.max_xml_bytes}", where=where
        )
    if data[:1] in _LEADING_SPACE and data.lstrip()[:5] == b"<?xml":
        # libxml2 refuses a declaration that is not at byte 0; peers do send blank lines first
        data = data.lstrip()
        if leniencies is not None:
            leniencies.append(Leniency.XML_LEADING_WHITESPACE)
    wide = _wide_codec(data)
    if wide is None:
        verdict = _scan_prolog(data)
    else:
        try:
            verdict = _scan_prolog(data.decode(wide).encode("utf-8", "surrogatepass"))
        except UnicodeDecodeError:
            verdict = _UNKNOWN
    _refuse(verdict, where)

    root: etree._Element | None = None
    native = False  # libxml2 read ``data`` itself (rather than text decoded here)
    native_error: etree.XMLSyntaxError | None = None
    if verdict == _CLEAN:
        # Let libxml2 honour the BOM and the XML declaration first.
        try:
            root = etree.fromstring(data, hardened_parser())
            native = True
        except etree.XMLSyntaxError as exc:
            if str(exc.msg).startswith(_LIBXML_DEPTH_ERROR):
                raise _syntax_error(exc, where, limits) from None
            native_error = exc
        except (ValueError, UnicodeError, LookupError):
            pass
    if root is None:
        try:
            root = _parse_text(_decode_fallback(data, mime_charset), where)
        except etree.XMLSyntaxError as exc:
            raise _syntax_error(exc, where, limits) from None
        except (ValueError, UnicodeError, LookupError) as exc:
            # lxml refuses str with NUL or other control characters before parsing
            if native_error is not None:
                raise _syntax_error(native_error, where, limits) from None
            raise ParseError(f"unreadable XML: {exc}", where=where) from None
        if leniencies is not None:
            leniencies.append(Leniency.CHARSET_FALLBACK)

    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None or docinfo.doctype:
        _refuse(_DTD, where)  # the prolog walk should have caught it: defence in depth
    # Only bytes libxml2 read as themselves, in an encoding where "<" and "</" are those bytes
    # and nothing else, can be counted; anything else (text decoded here, UTF-16, a UTF-7
    # declaration) gets the walk.
    countable = native and wide is None and (docinfo.encoding or "").upper() in _LT_IS_0X3C
    if not (countable and _few_elements(data, limits.max_xml_depth)) and _too_deep(
        root, limits.max_xml_depth
    ):
        raise LimitExceededError(
            f"XML nesting deeper than {limits.max_xml_depth} elements", where=where
        )
    return root


def parse_schema_document(path: str | os.PathLike[str]) -> etree._ElementTree:
    """Parse an XSD from disk for ``etree.XMLSchema``: local files (imports) allowed, no network.

    For the project's own trusted schemas; a missing file raises OSError.
    """
    parser = etree.XMLParser(no_network=True, load_dtd=False, huge_tree=False, remove_pis=True)
    try:
        return etree.parse(os.fspath(path), parser)
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, os.fspath(path), DEFAULT_LIMITS) from None
