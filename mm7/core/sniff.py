"""Media type from the bytes (magic numbers), never from the file name."""

from __future__ import annotations

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"BM", 0, "image/bmp"),
    (b"#!AMR-WB\n", 0, "audio/amr-wb"),
    (b"#!AMR\n", 0, "audio/amr"),
    (b"ID3", 0, "audio/mpeg"),
    (b"MThd", 0, "audio/midi"),
    (b"BEGIN:VCARD", 0, "text/x-vCard"),
    (b"BEGIN:VCALENDAR", 0, "text/x-vCalendar"),
    (b"<smil", 0, "application/smil"),
    (b"OggS", 0, "audio/ogg"),
    (b"RIFF", 0, "audio/wav"),  # refined below for WEBP
)


def sniff(data: bytes) -> str:
    """The media type ``data`` really is; application/octet-stream when nothing matches."""
    head = data[:64]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand.startswith(b"3g"):
            return "video/3gpp"
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        return "video/mp4"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    for magic, offset, mime in _MAGIC:
        if head[offset:].startswith(magic):
            return mime
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio/mpeg"
    stripped = head.lstrip()
    if stripped.lower().startswith(b"<smil"):
        return "application/smil"
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain"
