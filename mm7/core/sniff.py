"""Media type from the bytes (magic numbers), never from the file name.

A file called ``photo.jpg`` that holds a PNG must go out as image/png: MMSCs and handsets decode
by the declared type, and a wrong one gets the part dropped or the message refused (2004). Each
signature checks enough structure that ordinary text cannot pass for a binary format ("BMW ..."
is not a bitmap, "ID3 tags" is not an MP3). Formats with few fixed bytes are checked whole:
a WBMP's length must match its declared size, and an MP4/3GP whose tracks are all sound is
audio. ``structural_problem`` (a cut JPEG/PNG/GIF) and ``is_animated_gif`` walk headers and
blocks only, never pixels.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator

__all__ = [
    "OCTET_STREAM",
    "WBMP",
    "gif_frame_count",
    "is_animated_gif",
    "sniff",
    "structural_problem",
]

OCTET_STREAM = "application/octet-stream"
WBMP = "image/vnd.wap.wbmp"

#: (prefix, media type) pairs that are distinctive enough on their own
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"#!AMR-WB\n", "audio/amr-wb"),
    (b"#!AMR-WB_MC1.0\n", "audio/amr-wb"),
    (b"#!AMR\n", "audio/amr"),
    (b"#!AMR_MC1.0\n", "audio/amr"),
    (b"MThd\x00\x00\x00\x06", "audio/midi"),
    (b"OggS\x00", "audio/ogg"),
    (b"%PDF-", "application/pdf"),
)
#: ISO base media file format brands (bytes 8..12, after "ftyp")
_BRANDS: tuple[tuple[bytes, str], ...] = (
    (b"3g2", "video/3gpp2"),
    (b"3g", "video/3gpp"),
    (b"M4A ", "audio/mp4"),
    (b"M4B ", "audio/mp4"),
    (b"M4P ", "audio/mp4"),
    (b"F4A ", "audio/mp4"),
    (b"qt  ", "video/quicktime"),
    (b"heic", "image/heic"),
    (b"heix", "image/heic"),
    (b"mif1", "image/heif"),
    (b"avif", "image/avif"),
)
#: container types whose files may hold sound only, and what such a file is
_AUDIO_ONLY = {"video/mp4": "audio/mp4", "video/3gpp": "audio/3gpp", "video/3gpp2": "audio/3gpp2"}
#: RIFF form types (bytes 8..12)
_RIFF_FORMS = {
    b"WEBP": "image/webp",
    b"WAVE": "audio/wav",
    b"AVI ": "video/x-msvideo",
    b"RMID": "audio/midi",
}
#: text directory formats by their first line (compared upper-cased)
_DIRECTORY = ((b"BEGIN:VCARD", "text/x-vCard"), (b"BEGIN:VCALENDAR", "text/x-vCalendar"))
_MAX_BOXES = 256  # ISO boxes looked at per level: real files have a handful
_WBMP_MAX_SIDE = 4096
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
        return _iso_media(data)
    if head.startswith(b"RIFF") and len(head) >= 12:
        return _RIFF_FORMS.get(head[8:12], OCTET_STREAM)
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if _is_bmp(head):
        return "image/bmp"
    if _is_id3(head):
        return "audio/mpeg"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return OCTET_STREAM  # UTF-16 text: no charset to label it with here, and not MPEG audio
    if len(head) >= 7 and head[0] == 0xFF:
        if _is_adts(head):
            return "audio/aac"
        if _is_mpeg_audio_frame(head):
            return "audio/mpeg"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "video/mpeg"
    if _is_wbmp(data):
        return WBMP
    directory = _directory_type(head)
    if directory is not None:
        return directory
    xml_root = _xml_root(data)
    if xml_root is not None:
        return _XML_ROOTS.get(xml_root.lower(), "application/xml")
    if _is_text(data):
        return "text/plain"
    return OCTET_STREAM


def is_animated_gif(data: bytes) -> bool:
    """True when ``data`` is a GIF with more than one frame (walks the blocks, decodes nothing)."""
    return _gif_walk(data, stop_at=2)[0] >= 2


def gif_frame_count(data: bytes) -> int:
    """The number of image frames in a GIF (0 for anything else)."""
    return _gif_walk(data, stop_at=None)[0]


def structural_problem(data: bytes, media_type: str) -> str | None:
    """Why ``data`` cannot be a whole ``media_type`` file (cut short, or a broken structure), else
    None. Cheap: walks headers and blocks, never decodes pixels; only JPEG, PNG and GIF are checked.

    A truncated JPEG keeps its magic number, so sniffing alone calls it image/jpeg; handsets then
    show half a picture, and Pillow refuses to re-encode it when a profile needs a smaller one.
    """
    mime = media_type.lower()
    if mime == "image/jpeg":
        return _jpeg_problem(data)
    if mime == "image/png":
        if data[12:16] != b"IHDR":
            return "PNG without an IHDR chunk first"
        if data.rfind(b"IEND", 33) == -1:
            return "truncated PNG: no IEND chunk"
        return None
    if mime == "image/gif":
        frames, complete = _gif_walk(data, stop_at=None)
        if frames == 0:
            return "GIF without any image"
        if not complete:
            return "truncated GIF: the blocks end before the trailer"
    return None


def _iso_media(data: bytes) -> str:
    """An ISO base media file (MP4, 3GP, M4A ...) by its major brand; a 3GP or MP4 file whose
    tracks are all sound is audio (an AMR or AAC recording in a .3gp/.mp4 box)."""
    brand = data[8:12]
    mime = "video/mp4"
    for prefix, found in _BRANDS:
        if brand.startswith(prefix):
            mime = found
            break
    audio = _AUDIO_ONLY.get(mime)
    if audio is not None:
        handlers = _track_handlers(data)
        if handlers and b"soun" in handlers and b"vide" not in handlers:
            return audio
    return mime


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the ISO boxes between start and end; a box cut
    short by the end of the data is yielded clipped and ends the walk."""
    pos = start
    for _ in range(_MAX_BOXES):
        if pos + 8 > end:
            return
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            return
        yield kind, pos + header, min(pos + size, end)
        pos += size


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for found, s, e in _boxes(data, start, end):
        if found == kind:
            return s, e
    return None


def _track_handlers(data: bytes) -> set[bytes]:
    """The handler types (vide, soun, hint ...) of the tracks in the moov box, if it is there."""
    handlers: set[bytes] = set()
    moov = _child(data, 0, len(data), b"moov")
    if moov is None:
        return handlers
    for kind, s, e in _boxes(data, *moov):
        if kind != b"trak":
            continue
        mdia = _child(data, s, e, b"mdia")
        hdlr = _child(data, *mdia, b"hdlr") if mdia else None
        if hdlr is not None and hdlr[1] - hdlr[0] >= 12:
            handlers.add(data[hdlr[0] + 8 : hdlr[0] + 12])
    return handlers


def _is_adts(head: bytes) -> bool:
    """An AAC ADTS frame header: sync, layer 0, a known sample rate, a frame longer than it."""
    frame_length = ((head[3] & 0x03) << 11) | (head[4] << 3) | (head[5] >> 5)
    return head[1] & 0xF6 == 0xF0 and (head[2] >> 2) & 0x0F < 13 and frame_length >= 7


def _is_wbmp(data: bytes) -> bool:
    """A type-0 WBMP: two zero bytes, width and height as uintvars, then exactly one bit per
    pixel (rows padded to bytes). Few bytes are fixed, so the length must match exactly."""
    if len(data) < 5 or data[0] != 0 or data[1] != 0:
        return False
    pos = 2
    dims: list[int] = []
    for _ in range(2):
        value = 0
        for _ in range(3):  # up to 2**21 pixels a side; real WBMPs are tiny
            if pos >= len(data):
                return False
            byte = data[pos]
            pos += 1
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        else:
            return False
        dims.append(value)
    width, height = dims
    if not (0 < width <= _WBMP_MAX_SIDE and 0 < height <= _WBMP_MAX_SIDE):
        return False
    return len(data) - pos == (width + 7) // 8 * height


def _directory_type(head: bytes) -> str | None:
    """vCard and vCalendar/iCalendar text (any case, after a BOM or blank lines)."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().upper()
    for begin, mime in _DIRECTORY:
        if text.startswith(begin) and text[len(begin) : len(begin) + 1] in (b"", b"\r", b"\n"):
            return mime
    return None


def _jpeg_problem(data: bytes) -> str | None:
    """Walk the marker segments to the first scan, then look for the end-of-image marker after
    it (entropy-coded data stuffs every 0xFF, so FF D9 there is the real EOI)."""
    pos, end = 2, len(data)
    frame = False
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return f"broken JPEG: no marker at byte {pos}"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return "JPEG ends before any image data"
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        if marker == 0xDA:
            if not frame:
                return "broken JPEG: scan data before a frame header"
            if data.find(b"\xff\xd9", pos) == -1:
                return "truncated JPEG: no end-of-image marker after the scan data"
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            frame = True
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return "truncated JPEG: the data ends inside the headers"


def _gif_walk(data: bytes, stop_at: int | None) -> tuple[int, bool]:
    """(image frames seen, whether the trailer was reached), stopping after ``stop_at`` frames."""
    end = len(data)
    if end < 13 or not data.startswith((b"GIF87a", b"GIF89a")):
        return 0, False
    pos = 13
    if data[10] & 0x80:  # global colour table
        pos += 3 << ((data[10] & 0x07) + 1)
    frames = 0
    while pos < end:
        block = data[pos]
        if block == 0x3B:
            return frames, True
        if block == 0x21:  # extension: label, then data sub-blocks
            pos = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C:  # image descriptor, local colour table, LZW code size, sub-blocks
            if pos + 10 > end:
                break
            flags = data[pos + 9]
            pos += 10
            if flags & 0x80:
                pos += 3 << ((flags & 0x07) + 1)
            pos = _skip_sub_blocks(data, pos + 1)
            if pos > end:
                break
            frames += 1
            if stop_at is not None and frames >= stop_at:
                return frames, False
        else:
            break
    return frames, False


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    """The position after a chain of GIF data sub-blocks; past the end when it is cut short."""
    end = len(data)
    while pos < end:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos
    return end + 1


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
