"""MIME / SOAP-with-Attachments codec for MM7: parse and emit multipart HTTP bodies, sans I/O.

Parsing is lenient in the ways real MMSCs and VASPs need (see ``Leniency``) and strict about bounds
(``Limits``). Bodies are split with ``bytes.find`` on the delimiter, never line by line, so binary
media costs one copy. Malformed input raises ``ParseError`` (MM7 status 2007), never anything else.

- ``content_type``: ``ContentType`` and ``parse_content_type``;
- ``part``: the ``Part`` value and ``make_part`` / ``make_multipart`` to build one;
- ``transfer``: Content-Transfer-Encodings (``encode_body``, ``decode_body``);
- ``emit``: ``serialize_part`` and ``build_multipart`` (an SwA HTTP body);
- ``parse``: ``parse_swa`` (an HTTP body into ``SwA``) and ``parse_entity``;
- ``multipart``: the multipart reader both parsers use (delimiters, header blocks, limits);
- ``reference``: ``find_content``, the part an MM7 ``Content href`` names;
- ``common``: the leniency recorder and character sets the others share.
"""

from mm7.core.mime.content_type import ContentType, parse_content_type
from mm7.core.mime.emit import build_multipart, serialize_part
from mm7.core.mime.parse import SwA, parse_entity, parse_swa
from mm7.core.mime.part import Part, make_multipart, make_part
from mm7.core.mime.reference import find_content
from mm7.core.mime.transfer import decode_body, encode_body

__all__ = [
    "ContentType",
    "Part",
    "SwA",
    "build_multipart",
    "decode_body",
    "encode_body",
    "find_content",
    "make_multipart",
    "make_part",
    "parse_content_type",
    "parse_entity",
    "parse_swa",
    "serialize_part",
]
