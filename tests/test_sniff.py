"""Media types from bytes: real images built with the standard library (tests.helpers.media),
headers of the other formats, and text that must not pass for a binary format (or the reverse)."""

from __future__ import annotations

import random

import pytest

from mm7.core.sniff import OCTET_STREAM, sniff
from tests.helpers.media import GIF, bmp_bytes, ftyp, jpeg_bytes, png_bytes, wav_bytes

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
