"""Caller input to MediaItems: the real type from the bytes, a stable Content-ID and a safe
Content-Location for every part (sans-I/O).

    items = make_items([photo_bytes, "Hello", Source(amr, filename="voice.amr")])

A declared type that disagrees with the bytes is corrected or refused (``on_mismatch``, the
carrier profile's choice); every error names the part by position and file name.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from mm7.content.model import MediaItem
from mm7.core.errors import MM7Error
from mm7.core.limits import DEFAULT_LIMITS
from mm7.core.mime import Part, parse_content_type
from mm7.core.sniff import OCTET_STREAM, WBMP, sniff, structural_problem

__all__ = [
    "MAX_ITEMS",
    "ContentError",
    "OnMismatch",
    "PartError",
    "Source",
    "canonical_type",
    "content_id_for",
    "extension_for",
    "item_from_part",
    "make_item",
    "make_items",
    "resolve_type",
    "safe_location",
    "text_source",
    "unique_location",
]

OnMismatch = Literal["correct", "refuse"]

#: media items one message may hold: the parser's default part count (SOAP part, content
#: container, SMIL part and the items, all levels) must still accept what we build
MAX_ITEMS = DEFAULT_LIMITS.max_parts - 3

#: non-standard spellings peers and applications use, and the registered type they mean
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
    "image/wbmp": WBMP,
    "image/x-wap-wbmp": WBMP,
    "audio/x-amr": "audio/amr",
    "audio/amr-nb": "audio/amr",
    "audio/x-amr-wb": "audio/amr-wb",
    "audio/mp3": "audio/mpeg",
    "audio/mpeg3": "audio/mpeg",
    "audio/x-mp3": "audio/mpeg",
    "audio/x-mpeg": "audio/mpeg",
    "audio/mpg": "audio/mpeg",
    "audio/x-aac": "audio/aac",
    "audio/aacp": "audio/aac",
    "audio/m4a": "audio/mp4",
    "audio/x-m4a": "audio/mp4",
    "audio/mid": "audio/midi",
    "audio/x-mid": "audio/midi",
    "audio/x-midi": "audio/midi",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "video/3gp": "video/3gpp",
    "text/directory": "text/x-vcard",
    "application/smil+xml": "application/smil",
    "application/x-smil": "application/smil",
}
#: the same format under a more specific name: the caller's spelling is kept
_REFINEMENTS = frozenset(
    {
        ("audio/midi", "audio/sp-midi"),
        ("text/x-vcard", "text/vcard"),
        ("text/x-vcalendar", "text/calendar"),
    }
)
#: ISO base media files: the major brand is only a hint, so any of these names any other
_ISO_FAMILY = frozenset(
    {"video/mp4", "video/3gpp", "video/3gpp2", "audio/mp4", "audio/3gpp", "audio/3gpp2"}
)
#: file name extensions by type; the first is the one given to new names
_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image/jpeg": ("jpg", "jpeg", "jpe"),
    "image/png": ("png",),
    "image/gif": ("gif",),
    "image/bmp": ("bmp",),
    WBMP: ("wbmp",),
    "image/webp": ("webp",),
    "image/heic": ("heic",),
    "image/heif": ("heif",),
    "image/avif": ("avif",),
    "image/svg+xml": ("svg",),
    "audio/amr": ("amr",),
    "audio/amr-wb": ("awb",),
    "audio/mpeg": ("mp3",),
    "audio/aac": ("aac",),
    "audio/mp4": ("m4a", "m4b", "mp4"),
    "audio/midi": ("mid", "midi"),
    "audio/sp-midi": ("mid", "midi"),
    "audio/3gpp": ("3gp",),
    "audio/3gpp2": ("3g2",),
    "audio/ogg": ("ogg", "oga"),
    "audio/wav": ("wav",),
    "video/3gpp": ("3gp",),
    "video/3gpp2": ("3g2",),
    "video/mp4": ("mp4", "m4v"),
    "video/quicktime": ("mov",),
    "video/mpeg": ("mpg", "mpeg"),
    "video/x-msvideo": ("avi",),
    "text/plain": ("txt",),
    "text/x-vcard": ("vcf",),
    "text/vcard": ("vcf",),
    "text/x-vcalendar": ("vcs",),
    "text/calendar": ("ics",),
    "text/html": ("html", "htm"),
    "application/smil": ("smil", "smi"),
    "application/xml": ("xml",),
    "application/pdf": ("pdf",),
}
_XML_TEXT = frozenset({"application/xml", "application/smil", "image/svg+xml", "application/json"})
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
#: letters NFKD does not split into an ASCII base letter and an accent
_FOLD = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "œ": "oe",
        "Œ": "OE",
        "đ": "d",
        "Đ": "D",
        "ł": "l",
        "Ł": "L",
        "þ": "th",
        "Þ": "Th",
    }
)
_SAFE_EXTENSION = re.compile(r"[A-Za-z0-9]{1,8}")
_MAX_STEM = 48
_CID_PREFIXES = {"image": "img", "video": "video", "audio": "audio", "text": "text"}


def _is_textual(media_type: str) -> bool:
    return media_type.startswith("text/") or media_type in _XML_TEXT


#: types sniff() recognises by a binary signature: bytes without it are not that type
_SIGNED = frozenset(t for t in _EXTENSIONS if not _is_textual(t))


class ContentError(MM7Error):
    """Content that cannot be built as asked (bad part, bad slides, bad SMIL)."""


class PartError(ContentError):
    """One input part is unusable; the message names it by position (1-based) and file name."""

    def __init__(self, message: str, *, index: int, filename: str | None = None) -> None:
        self.index = index
        self.filename = filename
        label = f"part {index}" + (f" ({filename})" if filename else "")
        super().__init__(f"{label}: {message}")


@dataclass(frozen=True, slots=True)
class Source:
    """One part as the caller hands it over: bytes plus what the caller says about them."""

    data: bytes
    #: the caller's file name (any characters; made safe for Content-Location)
    filename: str | None = None
    #: the declared Content-Type, checked against the bytes; may carry ``charset=``
    media_type: str | None = None
    #: the charset of text bytes (overrides a charset parameter in ``media_type``)
    charset: str | None = None
    #: the SHA-256 (hex) of ``data`` when the caller took it already (not hashed again)
    sha256: str | None = None


def text_source(text: str, *, charset: str = "utf-8", filename: str | None = None) -> Source:
    """A text/plain part from a string in ``charset`` (ContentError when it cannot be encoded)."""
    try:
        data = text.encode(charset)
    except LookupError:
        raise ContentError(f"unknown charset {charset!r}") from None
    except UnicodeEncodeError as exc:
        raise ContentError(
            f"the text cannot be written in {charset}: {exc.object[exc.start : exc.end]!r} "
            f"at character {exc.start}"
        ) from None
    return Source(data, filename=filename, media_type="text/plain", charset=charset.lower())


def canonical_type(media_type: str) -> str:
    """``media_type`` lower-cased, without parameters, with known aliases (image/jpg, audio/mp3,
    audio/x-amr ...) replaced by the registered name."""
    mt = media_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(mt, mt)


def extension_for(media_type: str) -> str:
    """The usual file name extension of ``media_type`` (``bin`` when there is none)."""
    return _EXTENSIONS.get(canonical_type(media_type), ("bin",))[0]


def content_id_for(media_type: str, index: int, data: bytes, digest: str | None = None) -> str:
    """A stable Content-ID: kind prefix, position and a content hash prefix ("img1-1a2b3c4d").

    The same input always gets the same IDs (reproducible messages, comparable captures); the
    position keeps two identical attachments apart. ``digest``: the data's SHA-256 (hex) when
    the caller has it.
    """
    prefix = _prefix(media_type)
    return f"{prefix}{index}-{(digest or hashlib.sha256(data).hexdigest())[:8]}"


def _prefix(media_type: str) -> str:
    mt = canonical_type(media_type)
    if mt in ("text/x-vcard", "text/vcard"):
        return "vcard"
    if mt in ("text/x-vcalendar", "text/calendar"):
        return "vcal"
    if mt == "application/smil":
        return "smil"
    return _CID_PREFIXES.get(mt.split("/", 1)[0], "part")


def safe_location(filename: str | None, media_type: str, fallback: str) -> str:
    """A Content-Location that is a plain ASCII file name: the last path component of
    ``filename`` with accents folded, anything but letters, digits, ``._-`` replaced, and an
    extension that matches ``media_type``; ``fallback`` (a safe stem) when nothing is left.

    Receivers save parts under this name and some echo it in headers unquoted, so path
    separators, quotes, spaces, controls and non-ASCII never get through.
    """
    name = re.split(r"[\\/]", filename or "")[-1]
    name = unicodedata.normalize("NFKD", name.translate(_FOLD))
    name = name.encode("ascii", "ignore").decode("ascii")
    stem, dot, given = name.rpartition(".")
    if not dot:
        stem, given = name, ""
    stem = _UNSAFE_NAME.sub("_", stem).strip("._-")[:_MAX_STEM].rstrip("._-")
    mt = canonical_type(media_type)
    known = _EXTENSIONS.get(mt)
    if known is not None:
        ext = given.lower() if given.lower() in known else known[0]
    elif _SAFE_EXTENSION.fullmatch(given):
        ext = given.lower()
    else:
        ext = "bin"
    return f"{stem or fallback}.{ext}"


def make_item(
    source: Source | bytes | str,
    index: int,
    *,
    on_mismatch: OnMismatch = "correct",
    check_structure: bool = True,
) -> MediaItem:
    """One caller part as a MediaItem (``index`` is its 1-based position, used in its IDs).

    A ``str`` is UTF-8 text; ``bytes`` are typed by sniffing. PartError when the part is empty,
    its declared type disagrees with the bytes and ``on_mismatch`` is "refuse" (or the bytes are
    no recognisable media at all), text does not decode in its charset, or (``check_structure``)
    a JPEG/PNG/GIF is cut short.
    """
    src = text_source(source) if isinstance(source, str) else source
    if isinstance(src, bytes | bytearray | memoryview):
        src = Source(bytes(src))
    if on_mismatch not in ("correct", "refuse"):
        raise ValueError(f"on_mismatch must be 'correct' or 'refuse', got {on_mismatch!r}")
    data = bytes(src.data)
    if not data:
        raise PartError("empty (0 bytes); a part needs content", index=index, filename=src.filename)
    declared_charset = None
    declared = None
    if src.media_type:
        ct = parse_content_type(src.media_type)
        declared, declared_charset = ct.mime_type, ct.param("charset")
    charset = src.charset or declared_charset
    try:
        media_type = resolve_type(data, declared, charset, on_mismatch)
        charset = _text_charset(data, media_type, charset)
        if check_structure:
            problem = structural_problem(data, media_type)
            if problem is not None:
                raise ContentError(problem)
    except ContentError as exc:
        raise PartError(str(exc), index=index, filename=src.filename) from None
    digest = src.sha256 or hashlib.sha256(data).hexdigest()
    cid = content_id_for(media_type, index, data, digest)
    location = safe_location(src.filename, media_type, f"{_prefix(media_type)}{index}")
    return MediaItem(data, media_type, cid, location, charset, digest)


def make_items(
    sources: Iterable[Source | bytes | str],
    *,
    on_mismatch: OnMismatch = "correct",
    check_structure: bool = True,
    max_items: int = MAX_ITEMS,
) -> tuple[MediaItem, ...]:
    """Every caller part as a MediaItem, in order, with unique Content-Locations.

    ContentError when there are more than ``max_items`` parts; PartError for a bad part.
    """
    items: list[MediaItem] = []
    taken: set[str] = set()
    for index, source in enumerate(sources, start=1):
        if index > max_items:
            raise ContentError(
                f"too many parts: more than {max_items} (a message holds at most {max_items} "
                "media parts besides the SMIL)"
            )
        item = make_item(source, index, on_mismatch=on_mismatch, check_structure=check_structure)
        location = unique_location(item.content_location, index, taken)
        if location != item.content_location:
            item = dataclasses.replace(item, content_location=location)
        items.append(item)
    return tuple(items)


def unique_location(location: str, index: int, taken: set[str]) -> str:
    """``location``, or ``stem-<index>.ext`` when an earlier part took that name (case-folded,
    since receivers save parts on case-insensitive file systems); records the result."""
    if location.lower() in taken:
        stem, _, ext = location.rpartition(".")
        location = f"{stem}-{index}.{ext}"
        n = index
        while location.lower() in taken:
            n += 1000
            location = f"{stem}-{n}.{ext}"
    taken.add(location.lower())
    return location


def item_from_part(part: Part, index: int) -> MediaItem:
    """An inbound leaf part as a MediaItem, leniently: the sniffed type when the bytes are a
    recognised format that disagrees with the label, else the declared type; the part's own
    Content-ID and Content-Location (else its ``name``/``filename`` parameter) are kept, and
    generated when missing. Never raises."""
    data = part.body
    declared = part.content_type.mime_type
    charset = part.charset
    media_type = resolve_type(data, declared, charset, None)
    if charset is None and media_type.startswith("text/") and _decodes(data, "utf-8"):
        # as make_item labels it: text/plain always, other text only when it is not ASCII
        charset = "utf-8" if media_type == "text/plain" or not data.isascii() else None
    cid = part.content_id or content_id_for(media_type, index, data)
    location = part.content_location or _part_file_name(part)
    if not location:
        location = safe_location(None, media_type, f"part{index}")
    return MediaItem(data, media_type, cid, location, charset.lower() if charset else None)


def _part_file_name(part: Part) -> str | None:
    """The file name a part without Content-Location carries in ``Content-Type; name=`` (Nokia,
    instantcom) or ``Content-Disposition; filename=``."""
    name = part.content_type.param("name")
    if not name:
        disposition = part.header("Content-Disposition")
        name = parse_content_type(disposition).param("filename") if disposition else None
    return name.strip() if name and name.strip() else None


def resolve_type(
    data: bytes,
    declared: str | None,
    charset: str | None = None,
    on_mismatch: OnMismatch | None = "correct",
) -> str:
    """The type bytes labelled ``declared`` go out as: the sniffed type, or the label when it
    names the same format (an alias, a refinement such as audio/sp-midi for MIDI, another ISO
    media brand, text labelled as some text, a type sniffing cannot check).

    ContentError when the label is a format we recognise and the bytes are not it (always), or
    when they are another format and ``on_mismatch`` is "refuse"; None is inbound mode, which
    never raises. This is THE rule for "declared type agrees with the bytes" in mm7.content.
    """
    sniffed = canonical_type(sniff(data))
    if sniffed == "text/plain" and data.startswith((b"\xff\xfe", b"\xfe\xff")):
        sniffed = OCTET_STREAM
    if declared is None or canonical_type(declared) == OCTET_STREAM:
        if sniffed == OCTET_STREAM and _looks_like_text(data, charset):
            return "text/plain"  # bytes in another charset, or UTF-16 with a BOM
        return sniffed
    wanted = canonical_type(declared)
    if wanted == sniffed:
        return sniffed
    if (sniffed, wanted) in _REFINEMENTS or (sniffed in _ISO_FAMILY and wanted in _ISO_FAMILY):
        return wanted
    bytes_are_text = sniffed == "text/plain" or _is_textual(sniffed)
    if _is_textual(wanted) and (bytes_are_text or sniffed == OCTET_STREAM):
        return wanted  # text labelled as text of some kind: the label is the caller's intent
    if bytes_are_text or sniffed == OCTET_STREAM:
        if on_mismatch is None or wanted not in _SIGNED:
            return wanted  # a type we cannot check by its bytes, or inbound: trust the label
        what = "text" if bytes_are_text else "no format we recognise"
        raise ContentError(
            f"declared {wanted} but the bytes are not {wanted} (they look like {what})"
        )
    if on_mismatch == "refuse":
        raise ContentError(
            f"declared {wanted} but the bytes are {sniffed} (refused: on_mismatch='refuse')"
        )
    return sniffed


def _text_charset(data: bytes, media_type: str, charset: str | None) -> str | None:
    """The charset a textual part is labelled with, checked against its bytes (ContentError)."""
    if not media_type.startswith("text/"):
        return None
    if charset is None:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            charset = "utf-16"
        elif _decodes(data, "utf-8"):
            return "utf-8" if media_type == "text/plain" or not data.isascii() else None
        else:
            raise ContentError(
                f"{media_type} that is not UTF-8: say which charset it is in (charset=...)"
            )
    try:
        codecs.lookup(charset)
    except LookupError:
        raise ContentError(f"unknown charset {charset!r}") from None
    if not _decodes(data, charset):
        raise ContentError(f"the bytes are not valid {charset} text")
    return charset.lower()


def _decodes(data: bytes, charset: str) -> bool:
    try:
        data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _looks_like_text(data: bytes, charset: str | None) -> bool:
    if charset is not None:
        return _decodes(data, charset)
    return data.startswith((b"\xff\xfe", b"\xfe\xff")) and _decodes(data, "utf-16")
