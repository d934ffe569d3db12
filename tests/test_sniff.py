"""Media types from bytes: real images built here (stdlib only), headers of the other formats,
and text that must not pass for a binary format (or the reverse)."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from mm7.core.sniff import OCTET_STREAM, sniff

# --------------------------------------------------------------------------- real media builders


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


# --------------------------------------------------------------------------- images


def test_real_images_by_their_bytes() -> None:
    assert sniff(png_bytes()) == "image/png"
    assert sniff(jpeg_bytes()) == "image/jpeg"
    assert sniff(GIF) == "image/gif"
    assert sniff(GIF.replace(b"GIF89a", b"GIF87a", 1)) == "image/gif"
    assert sniff(bmp_bytes()) == "image/bmp"


def test_riff_containers_are_told_apart() -> None:
    assert sniff(wav_bytes()) == "audio/wav"
    assert sniff(b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 20) == "image/webp"
    assert sniff(b"RIFF\x24\x00\x00\x00AVI LIST" + b"\x00" * 20) == "video/x-msvideo"
    # RIFF with an unknown form type is not guessed to be audio
    assert sniff(b"RIFF\x24\x00\x00\x00XXXXdata" + b"\x00" * 20) == OCTET_STREAM


@pytest.mark.parametrize(
    ("brand", "expected"),
    [
        (b"3gp5", "video/3gpp"),
        (b"3gp4", "video/3gpp"),
        (b"3g2a", "video/3gpp2"),
        (b"M4A ", "audio/mp4"),
        (b"isom", "video/mp4"),
        (b"mp42", "video/mp4"),
        (b"qt  ", "video/quicktime"),
        (b"heic", "image/heic"),
    ],
)
def test_iso_media_brands(brand: bytes, expected: str) -> None:
    assert sniff(ftyp(brand)) == expected


# --------------------------------------------------------------------------- audio and others


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"#!AMR\n" + b"\x3c" * 32, "audio/amr"),
        (b"#!AMR-WB\n" + b"\x04" * 32, "audio/amr-wb"),
        (b"ID3\x03\x00\x00\x00\x00\x0f\x76" + b"\x00" * 20, "audio/mpeg"),
        (b"\xff\xfb\x90\x64" + b"\x00" * 40, "audio/mpeg"),  # MPEG-1 layer III frame
        (b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x00" * 20, "audio/aac"),  # ADTS
        (b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60", "audio/midi"),
        (b"OggS\x00\x02" + b"\x00" * 30, "audio/ogg"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
        (b"BEGIN:VCARD\r\nVERSION:2.1\r\nN:Doe;John\r\nEND:VCARD\r\n", "text/x-vCard"),
        (b"BEGIN:VCALENDAR\r\nVERSION:1.0\r\nEND:VCALENDAR\r\n", "text/x-vCalendar"),
    ],
)
def test_signatures(data: bytes, expected: str) -> None:
    assert sniff(data) == expected


# --------------------------------------------------------------------------- XML and SMIL

SMIL_BODY = b'<smil><body><par dur="5s"><img src="cid:image1"/></par></body></smil>'


@pytest.mark.parametrize(
    "data",
    [
        SMIL_BODY,
        b"  \r\n" + SMIL_BODY,
        b'<?xml version="1.0" encoding="UTF-8"?>\n' + SMIL_BODY,
        b"\xef\xbb\xbf<?xml version='1.0'?>" + SMIL_BODY,
        b'<?xml version="1.0"?><!-- made by hand -->'
        b'<!DOCTYPE smil PUBLIC "-//W3C//DTD SMIL 2.0//EN"'
        b' "http://www.w3.org/2001/SMIL20/SMIL20.dtd">' + SMIL_BODY,
        b'<!DOCTYPE smil [ <!ENTITY a "b"> ]>' + SMIL_BODY,
        b'<SMIL xmlns="http://www.w3.org/2001/SMIL20/Language"><body/></SMIL>',
        b'<s:smil xmlns:s="http://www.w3.org/2001/SMIL20/Language"/>',
    ],
)
def test_smil_in_every_dress(data: bytes) -> None:
    assert sniff(data) == "application/smil"


def test_other_xml_roots() -> None:
    assert sniff(b'<?xml version="1.0"?><note><to>x</to></note>') == "application/xml"
    assert sniff(b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>') == (
        "image/svg+xml"
    )
    # a '<' that opens no element is just text
    assert sniff(b"<3 you, see you at 5") == "text/plain"


# --------------------------------------------------------------------------- text versus binary


def test_utf8_text() -> None:
    assert sniff("Hello wörld, 你好\n".encode()) == "text/plain"
    assert sniff(b"tab\tseparated\r\nlines\x0c") == "text/plain"


def test_multibyte_character_cut_at_the_sample_edge_is_still_text() -> None:
    # 4095 ASCII bytes then a 2-byte character: the 4096-byte sample ends inside it
    data = b"a" * 4095 + "é".encode() + b" more text"
    assert sniff(data) == "text/plain"


def test_words_that_start_like_magic_numbers_are_text() -> None:
    assert sniff(b"BMW drivers meet on Sunday at noon, bring snacks") == "text/plain"
    assert sniff(b"ID3 tags are metadata in MP3 files") == "text/plain"
    assert sniff(b"RIFF raff") == "text/plain"


def test_binary_is_never_text() -> None:
    assert sniff(b"") == OCTET_STREAM
    assert sniff(b"abc\x00def") == OCTET_STREAM  # NUL
    assert sniff(b"\x01\x02\x03 header") == OCTET_STREAM
    assert sniff(b"caf\xe9 latin-1") == OCTET_STREAM  # not UTF-8
    assert sniff(b"\xff\xfeh\x00i\x00") == OCTET_STREAM  # UTF-16 text, not MPEG audio
    junk = bytes(random.Random(5).randrange(256) for _ in range(2048))
    assert sniff(b"\x8f" + junk) == OCTET_STREAM
