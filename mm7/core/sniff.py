"""Media type from the bytes (magic numbers), never from the file name.

A file called ``photo.jpg`` that holds a PNG must go out as image/png: MMSCs and handsets decode
by the declared type, and a wrong one gets the part dropped or the message refused (2004). Each
signature checks enough structure that ordinary text cannot pass for a binary format ("BMW ..."
is not a bitmap, "ID3 tags" is not an MP3).
"""

from __future__ import annotations

import codecs

OCTET_STREAM = "application/octet-stream"

#: (prefix, media type) pairs that are distinctive enough on their own
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"#!AMR-WB\n", "audio/amr-wb"),
    (b"#!AMR\n", "audio/amr"),
    (b"MThd\x00\x00\x00\x06", "audio/midi"),
    (b"OggS\x00", "audio/ogg"),
    (b"%PDF-", "application/pdf"),
    (b"BEGIN:VCARD", "text/x-vCard"),
    (b"BEGIN:VCALENDAR", "text/x-vCalendar"),
)
#: ISO base media file format brands (bytes 8..12, after "ftyp")
_BRANDS: tuple[tuple[bytes, str], ...] = (
    (b"3g2", "video/3gpp2"),
    (b"3g", "video/3gpp"),
    (b"M4A ", "audio/mp4"),
    (b"M4B ", "audio/mp4"),
    (b"qt  ", "video/quicktime"),
    (b"heic", "image/heic"),
    (b"heix", "image/heic"),
    (b"mif1", "image/heif"),
    (b"avif", "image/avif"),
)
#: sizes of the BITMAPINFOHEADER variants a BMP file declares at offset 14
_BMP_DIB_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
#: C0 control characters that never occur in text (everything but TAB, LF, FF, CR and ESC)
_CONTROL = frozenset(range(0x20)) - {0x09, 0x0A, 0x0C, 0x0D, 0x1B}
_TEXT_SAMPLE = 4096
#: media types of XML documents by root element; any other root is application/xml
_XML_ROOTS = {"smil": "application/smil", "html": "text/html", "svg": "image/svg+xml"}


def sniff(data: bytes) -> str:
    """The media type ``data`` really is; application/octet-stream when nothing matches.

    Text is recognised only when it is valid UTF-8 without control characters, so that a
    binary format we do not know is never labelled text/plain.
    """
    head = data[:64]
    if not head:
        return OCTET_STREAM
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        for prefix, mime in _BRANDS:
            if brand.startswith(prefix):
                return mime
        return "video/mp4"
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(
            head[8:12], OCTET_STREAM
        )
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if _is_bmp(head):
        return "image/bmp"
    if _is_id3(head):
        return "audio/mpeg"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return OCTET_STREAM  # UTF-16 text: no charset to label it with here, and not MPEG audio
    if len(head) >= 3 and head[0] == 0xFF:
        if head[1] & 0xF6 == 0xF0:  # ADTS sync word, layer 0
            return "audio/aac"
        if _is_mpeg_audio_frame(head):
            return "audio/mpeg"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "video/mpeg"
    xml_root = _xml_root(data)
    if xml_root is not None:
        return _XML_ROOTS.get(xml_root.lower(), "application/xml")
    if _is_text(data):
        return "text/plain"
    return OCTET_STREAM


def _is_bmp(head: bytes) -> bool:
    return (
        head.startswith(b"BM")
        and len(head) >= 18
        and head[6:10] == b"\x00\x00\x00\x00"
        and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES
    )


def _is_id3(head: bytes) -> bool:
    """An ID3v2 tag: "ID3", major version 2-4, flags, then a 28-bit sync-safe size."""
    return (
        head.startswith(b"ID3")
        and len(head) >= 10
        and head[3] in (2, 3, 4)
        and all(b < 0x80 for b in head[6:10])
    )


def _is_mpeg_audio_frame(head: bytes) -> bool:
    """An MPEG audio frame header: sync, a known version and layer, valid bitrate/sample rate."""
    version = (head[1] >> 3) & 0x03
    layer = (head[1] >> 1) & 0x03
    bitrate = head[2] >> 4
    rate = (head[2] >> 2) & 0x03
    return head[1] & 0xE0 == 0xE0 and version != 1 and layer != 0 and bitrate != 15 and rate != 3


def _xml_root(data: bytes) -> str | None:
    """The root element name of an XML document (after BOM, declaration, comments, DOCTYPE)."""
    text = data[:_TEXT_SAMPLE].removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")
    pos = 0
    for _ in range(64):
        pos = len(text) - len(text[pos:].lstrip())
        if text.startswith("<?", pos):
            end = text.find("?>", pos)
            end = end + 1 if end != -1 else -1  # index of the closing '>'
        elif text.startswith("<!--", pos):
            end = text.find("-->", pos)
            end = end + 2 if end != -1 else -1
        elif text.startswith("<!", pos):
            end = text.find(">", pos)
            subset = text.find("[", pos)
            if subset != -1 and (end == -1 or subset < end):  # DOCTYPE with an internal subset
                close = text.find("]", subset)
                end = -1 if close == -1 else text.find(">", close)
        elif text.startswith("<", pos):
            name = text[pos + 1 :].split(None, 1)[0] if text[pos + 1 :].strip() else ""
            name = name.split(">", 1)[0].split("/", 1)[0]
            local = name.rpartition(":")[2]
            return local if local[:1].isalpha() else None
        else:
            return None
        if end == -1:
            return None
        pos = end + 1
    return None


def _is_text(data: bytes) -> bool:
    """Valid UTF-8 (a character cut at the end of the sample is fine) with no control bytes."""
    sample = data[:_TEXT_SAMPLE]
    if any(b in _CONTROL for b in sample):
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=len(data) <= _TEXT_SAMPLE)
    except UnicodeDecodeError:
        return False
    return True
