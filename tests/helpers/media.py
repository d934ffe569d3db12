"""Media bytes made at test time, so no fixture files are needed: images built with the
standard library alone (valid PNG, JPEG, GIF, BMP, WAV and ISO headers), real images encoded by
Pillow, and hand-made audio frames, ISO media boxes, vCard and vCalendar text."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

# --------------------------------------------------------------------------- standard library only


def png_bytes(width: int = 2, height: int = 2) -> bytes:
    """A valid RGB PNG (signature, IHDR, zlib IDAT, IEND with correct CRCs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def jpeg_bytes() -> bytes:
    """A valid baseline JPEG: 1x1 grey pixel, one quant table, DC/AC tables with one code each.

    The scan holds the DC code '0' (difference 0) and the AC code '0' (end of block), padded
    with 1-bits to a byte: 0b00111111.
    """

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload

    dqt = segment(0xDB, b"\x00" + b"\x01" * 64)
    sof0 = segment(0xC0, b"\x08\x00\x01\x00\x01\x01\x01\x11\x00")
    one_code = b"\x01" + b"\x00" * 15  # BITS: one code of length 1
    dht_dc = segment(0xC4, b"\x00" + one_code + b"\x00")
    dht_ac = segment(0xC4, b"\x10" + one_code + b"\x00")
    sos = segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    return b"\xff\xd8" + dqt + sof0 + dht_dc + dht_ac + sos + b"\x3f" + b"\xff\xd9"


#: the classic 1x1 transparent GIF89a (43 bytes)
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def bmp_bytes() -> bytes:
    """A 1x1 24-bit BMP: file header, BITMAPINFOHEADER (40 bytes), one padded pixel row."""
    pixel_row = b"\x00\x00\xff\x00"
    info = struct.pack("<IiiHHIIiiII", 40, 1, 1, 1, 24, 0, len(pixel_row), 2835, 2835, 0, 0)
    size = 14 + len(info) + len(pixel_row)
    return b"BM" + struct.pack("<IHHI", size, 0, 0, 14 + len(info)) + info + pixel_row


def wav_bytes() -> bytes:
    """A valid PCM WAV with four silent samples."""
    data = b"\x00\x00" * 4
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data"
    body += struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def ftyp(brand: bytes) -> bytes:
    """The start of an ISO base media file (MP4/3GP/HEIC) with major brand ``brand``."""
    box = b"ftyp" + brand + b"\x00\x00\x00\x00" + brand + b"isom"
    return struct.pack(">I", len(box) + 4) + box + b"\x00\x00\x00\x08free"


# --------------------------------------------------------------------------- Pillow and by hand


def pillow(fmt: str, size: tuple[int, int] = (64, 48), **save: object) -> bytes:
    """A real image in ``fmt`` (JPEG, PNG, GIF, BMP) of ``size``, encoded by Pillow."""
    mode = "P" if fmt == "GIF" else "RGB"
    image = Image.new(mode, size, 3 if mode == "P" else (200, 40, 20))
    buf = io.BytesIO()
    image.save(buf, fmt, **save)
    return buf.getvalue()


def animated_gif(frames: int = 3) -> bytes:
    images = [Image.new("RGB", (16, 16), (60 * n, 0, 255 - 60 * n)) for n in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return buf.getvalue()


def amr(frames: int = 10) -> bytes:
    """AMR-NB storage format: magic, then 12.2 kbit/s frames (header 0x3C, 31 bytes of speech)."""
    return b"#!AMR\n" + (b"\x3c" + bytes(range(31))) * frames


def amr_wb(frames: int = 10) -> bytes:
    """AMR-WB: magic, then 23.85 kbit/s frames (mode 8: header 0x44, 60 bytes)."""
    return b"#!AMR-WB\n" + (b"\x44" + bytes(60)) * frames


def mp3(frames: int = 5) -> bytes:
    """MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding: 417-byte frames, no ID3 tag."""
    return (b"\xff\xfb\x90\x64" + bytes(413)) * frames


def adts(frames: int = 5) -> bytes:
    """AAC-LC ADTS frames (44.1 kHz, stereo), each 16 bytes long including its 7-byte header."""
    length = 16
    header = bytes(
        [
            0xFF,
            0xF1,
            0x50,
            0x80 | (length >> 11),
            (length >> 3) & 0xFF,
            ((length & 7) << 5) | 0x1F,
            0xFC,
        ]
    )
    return (header + bytes(length - 7)) * frames


def midi() -> bytes:
    track = b"\x00\x90\x3c\x40\x60\x80\x3c\x40\x00\xff\x2f\x00"
    return (
        b"MThd"
        + struct.pack(">IHHH", 6, 0, 1, 96)
        + b"MTrk"
        + struct.pack(">I", len(track))
        + track
    )


def wbmp(width: int = 8, height: int = 2) -> bytes:
    """A type-0 WBMP: width and height as one-byte uintvars, one bit per pixel."""
    return b"\x00\x00" + bytes([width, height]) + b"\xaa" * ((width + 7) // 8 * height)


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def iso_media(brand: bytes, handlers: tuple[bytes, ...]) -> bytes:
    """An ISO base media file: ftyp, moov with one trak per handler (vide, soun), mdat."""
    traks = b"".join(
        box(
            b"trak",
            box(b"tkhd", bytes(84))
            + box(
                b"mdia", box(b"mdhd", bytes(24)) + box(b"hdlr", bytes(8) + h + bytes(12) + b"\0")
            ),
        )
        for h in handlers
    )
    return (
        box(b"ftyp", brand + b"\x00\x00\x02\x00" + brand + b"isom")
        + box(b"moov", box(b"mvhd", bytes(100)) + traks)
        + box(b"mdat", bytes(256))
    )


VCARD = b"BEGIN:VCARD\r\nVERSION:2.1\r\nN:Doe;Jane\r\nTEL;CELL:+15551230001\r\nEND:VCARD\r\n"
VCAL = (
    b"BEGIN:VCALENDAR\r\nVERSION:1.0\r\nBEGIN:VEVENT\r\nSUMMARY:Lunch\r\n"
    b"DTSTART:20260101T120000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)
