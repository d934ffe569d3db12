"""Caller parts to MediaItems: real types from real media made at test time (Pillow images,
hand-made AMR/MP3/AAC frames, ISO boxes, vCard text: tests.helpers.media), declared types
corrected or refused, stable Content-IDs, safe Content-Locations, and bad input refused with the
part named."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib

import pytest
from PIL import Image

from mm7.content.model import MediaItem
from mm7.content.parts import (
    MAX_ITEMS,
    ContentError,
    PartError,
    Source,
    canonical_type,
    content_id_for,
    extension_for,
    item_from_part,
    make_item,
    make_items,
    resolve_type,
    safe_location,
    text_source,
)
from mm7.core.mime import make_part
from mm7.core.sniff import (
    OCTET_STREAM,
    gif_frame_count,
    is_animated_gif,
    sniff,
    structural_problem,
)
from tests.helpers.media import (
    VCAL,
    VCARD,
    adts,
    amr,
    amr_wb,
    animated_gif,
    box,
    iso_media,
    midi,
    mp3,
    pillow,
    wbmp,
)

# --------------------------------------------------------------------------- media made here

# (name, bytes, media type, kind, extension)
MEDIA = [
    ("jpeg", pillow("JPEG"), "image/jpeg", "image", "jpg"),
    ("png", pillow("PNG"), "image/png", "image", "png"),
    ("gif", pillow("GIF"), "image/gif", "image", "gif"),
    ("animated gif", animated_gif(), "image/gif", "image", "gif"),
    ("bmp", pillow("BMP"), "image/bmp", "image", "bmp"),
    ("wbmp", wbmp(), "image/vnd.wap.wbmp", "image", "wbmp"),
    ("amr", amr(), "audio/amr", "audio", "amr"),
    ("amr-wb", amr_wb(), "audio/amr-wb", "audio", "awb"),
    ("mp3", mp3(), "audio/mpeg", "audio", "mp3"),
    ("aac adts", adts(), "audio/aac", "audio", "aac"),
    ("m4a", iso_media(b"M4A ", (b"soun",)), "audio/mp4", "audio", "m4a"),
    ("mp4 sound only", iso_media(b"isom", (b"soun",)), "audio/mp4", "audio", "m4a"),
    ("3gp sound only", iso_media(b"3gp4", (b"soun",)), "audio/3gpp", "audio", "3gp"),
    ("midi", midi(), "audio/midi", "audio", "mid"),
    ("3gp video", iso_media(b"3gp5", (b"vide", b"soun")), "video/3gpp", "video", "3gp"),
    ("3g2 video", iso_media(b"3g2a", (b"vide",)), "video/3gpp2", "video", "3g2"),
    ("mp4 video", iso_media(b"mp42", (b"vide", b"soun")), "video/mp4", "video", "mp4"),
    ("vcard", VCARD, "text/x-vcard", "other", "vcf"),
    ("vcalendar", VCAL, "text/x-vcalendar", "other", "vcs"),
    ("utf-8 text", "Grüße 👋".encode(), "text/plain", "text", "txt"),
    (
        "pdf",
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        "application/pdf",
        "other",
        "pdf",
    ),
]


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("name", "data", "media_type", "kind", "ext"), MEDIA, ids=[m[0] for m in MEDIA]
)
def test_every_media_kind_is_typed_from_its_bytes(
    name: str, data: bytes, media_type: str, kind: str, ext: str
) -> None:
    item = make_item(Source(data, filename="upload"), 1)
    assert item.media_type == media_type
    assert item.kind == kind
    assert item.content_location == f"upload.{ext}"
    assert item.data == data
    assert re.fullmatch(r"[a-z]+1-[0-9a-f]{8}", item.content_id)


def test_images_are_those_pillow_can_open() -> None:
    """The test media are real: Pillow reads every image the sniffer types."""
    for name, data, media_type, kind, _ in MEDIA:
        if kind == "image" and media_type != "image/vnd.wap.wbmp":
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                assert image.size in ((64, 48), (16, 16)), name


def test_animated_gif_helpers() -> None:
    assert is_animated_gif(animated_gif(3))
    assert gif_frame_count(animated_gif(3)) == 3
    assert not is_animated_gif(pillow("GIF"))
    assert gif_frame_count(pillow("GIF")) == 1
    assert gif_frame_count(pillow("PNG")) == 0


def test_text_look_alikes_are_not_binary_formats() -> None:
    assert sniff(b"BEGIN:VCARDS are a thing\r\n") == "text/plain"
    assert sniff(b"\x00\x00\x08\x02" + b"\xaa") == OCTET_STREAM  # WBMP header, one byte short
    assert sniff(b"\xef\xbb\xbf\r\nbegin:vcard\r\nEND:VCARD\r\n") == "text/x-vCard"


def test_iso_file_without_moov_in_reach_keeps_its_brand_type() -> None:
    """moov after a large mdat that is cut off: the brand decides, never a guess at audio."""
    head = box(b"ftyp", b"mp42\x00\x00\x00\x00mp42isom") + struct.pack(">I", 10**6) + b"mdat"
    assert sniff(head + bytes(100)) == "video/mp4"


# --------------------------------------------------------------------------- declared types


def test_declared_type_that_disagrees_is_corrected_by_default() -> None:
    item = make_item(Source(pillow("JPEG"), filename="photo.png", media_type="image/png"), 2)
    assert item.media_type == "image/jpeg"
    assert item.content_location == "photo.jpg"


def test_declared_type_that_disagrees_is_refused_on_request() -> None:
    with pytest.raises(PartError) as caught:
        make_item(
            Source(pillow("JPEG"), filename="photo.png", media_type="image/png"),
            2,
            on_mismatch="refuse",
        )
    assert str(caught.value) == (
        "part 2 (photo.png): declared image/png but the bytes are image/jpeg "
        "(refused: on_mismatch='refuse')"
    )
    assert (caught.value.index, caught.value.filename) == (2, "photo.png")


@pytest.mark.parametrize("policy", ["correct", "refuse"])
def test_a_file_claiming_png_that_is_not_is_refused_under_both_policies(policy: str) -> None:
    for data, looks in ((b"just some words", "text"), (bytes(range(256)) * 4, "no format")):
        with pytest.raises(
            PartError,
            match=f"part 3 \\(fake.png\\): declared image/png but the "
            f"bytes are not image/png \\(they look like {looks}",
        ):
            make_item(
                Source(data, filename="fake.png", media_type="image/png"), 3, on_mismatch=policy
            )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("declared", "data", "expected"),
    [
        ("image/jpg", pillow("JPEG"), "image/jpeg"),  # alias: the registered name goes out
        ("IMAGE/PJPEG", pillow("JPEG"), "image/jpeg"),
        ("audio/mp3", mp3(), "audio/mpeg"),
        ("audio/x-amr", amr(), "audio/amr"),
        ("audio/sp-midi", midi(), "audio/sp-midi"),  # a refinement of what the bytes show: kept
        ("video/3gpp", iso_media(b"mp42", (b"vide",)), "video/3gpp"),  # ISO family: brand a hint
        ("video/3gpp", iso_media(b"3gp4", (b"soun",)), "video/3gpp"),
        ("text/vcard", VCARD, "text/vcard"),
        ("application/vnd.example.thing", bytes(range(256)), "application/vnd.example.thing"),
        ("text/plain", b"<b>not markup, a message</b>", "text/plain"),
        ("application/octet-stream", pillow("PNG"), "image/png"),
    ],
)
def test_declared_types_that_agree_with_the_bytes(
    declared: str, data: bytes, expected: str
) -> None:
    assert (
        make_item(Source(data, media_type=declared), 1, on_mismatch="refuse").media_type == expected
    )


def test_resolve_type_is_the_one_rule() -> None:
    assert resolve_type(midi(), "audio/sp-midi", on_mismatch="refuse") == "audio/sp-midi"
    assert resolve_type(iso_media(b"3gp4", (b"soun",)), None) == "audio/3gpp"
    with pytest.raises(ContentError, match="declared audio/amr but the bytes are audio/mpeg"):
        resolve_type(mp3(), "audio/amr", on_mismatch="refuse")
    assert resolve_type(mp3(), "audio/amr", on_mismatch="correct") == "audio/mpeg"
    assert resolve_type(b"words", "image/png", on_mismatch=None) == "image/png"  # inbound


def test_unknown_bytes_without_a_declared_type_are_octet_stream() -> None:
    item = make_item(Source(bytes(range(256)), filename="blob.dat"), 4)
    assert (item.media_type, item.kind, item.content_location) == (
        OCTET_STREAM,
        "other",
        "blob.dat",  # unknown type: the caller's (safe) extension stays,
    )
    assert item.content_id.startswith("part4-")


def test_canonical_type_and_extension() -> None:
    assert canonical_type(" Image/JPG ; name=x") == "image/jpeg"
    assert extension_for("audio/x-m4a") == "m4a"
    assert extension_for("application/vnd.unknown") == "bin"


# --------------------------------------------------------------------------- text and charsets


def test_text_in_another_charset_on_request() -> None:
    item = make_item(text_source("Grüße, café", charset="ISO-8859-1"), 1)
    assert (item.media_type, item.charset) == ("text/plain", "iso-8859-1")
    assert item.data == "Grüße, café".encode("latin-1")
    shift_jis = make_item(
        Source("こんにちは".encode("shift_jis"), media_type="text/plain; charset=Shift_JIS"), 2
    )
    assert shift_jis.charset == "shift_jis"


def test_plain_strings_are_utf8_text() -> None:
    (item,) = make_items(["Привет 👋"])
    assert (item.media_type, item.charset, item.data) == (
        "text/plain",
        "utf-8",
        "Привет 👋".encode(),
    )
    assert item.content_location == "text1.txt"


def test_utf16_text_with_a_bom_is_text() -> None:
    item = make_item(Source("hi there".encode("utf-16"), media_type="text/plain"), 1)
    assert (item.media_type, item.charset) == ("text/plain", "utf-16")


def test_text_errors_name_the_part() -> None:
    with pytest.raises(ContentError, match="cannot be written in iso-8859-1"):
        text_source("日本", charset="iso-8859-1")
    with pytest.raises(ContentError, match="unknown charset 'klingon'"):
        text_source("x", charset="klingon")
    with pytest.raises(PartError, match=r"part 1 \(note.txt\): text/plain that is not UTF-8"):
        make_item(Source("café".encode("latin-1"), filename="note.txt", media_type="text/plain"), 1)
    with pytest.raises(PartError, match="not valid utf-8 text"):
        make_item(Source(b"caf\xe9", media_type="text/plain; charset=utf-8"), 1)


def test_vcard_is_not_shown_as_text_and_keeps_its_charset_when_not_ascii() -> None:
    ascii_card = make_item(VCARD, 1)
    assert (ascii_card.kind, ascii_card.charset) == ("other", None)
    utf8_card = make_item(VCARD.replace(b"Doe", "Døe".encode()), 1)
    assert utf8_card.charset == "utf-8"
    assert MediaItem(VCARD, "text/x-vCard", "v", "v.vcf").kind == "other"  # case-insensitive


# --------------------------------------------------------------------------- bad input


def test_empty_part_is_refused() -> None:
    with pytest.raises(PartError, match=r"^part 2 \(empty.jpg\): empty \(0 bytes\)"):
        make_items([pillow("PNG"), Source(b"", filename="empty.jpg")])


def test_truncated_jpeg_is_still_jpeg_but_refused() -> None:
    """Decision: sniffing says image/jpeg (the magic survives); the cheap structure check then
    refuses it, because the fitter could not re-encode it and handsets show half a picture."""
    photo = pillow("JPEG", (320, 240), quality=90)
    cut = photo[: len(photo) * 2 // 3]
    assert sniff(cut) == "image/jpeg"
    assert structural_problem(cut, "image/jpeg") == (
        "truncated JPEG: no end-of-image marker after the scan data"
    )
    with pytest.raises(PartError, match=r"part 1 \(cut.jpg\): truncated JPEG"):
        make_item(Source(cut, filename="cut.jpg"), 1)
    assert make_item(Source(cut), 1, check_structure=False).media_type == "image/jpeg"
    assert "ends inside the headers" in str(structural_problem(photo[:40], "image/jpeg"))


def test_other_truncated_images_are_refused() -> None:
    assert structural_problem(pillow("PNG")[:-12], "image/png") == "truncated PNG: no IEND chunk"
    gif = animated_gif()
    assert structural_problem(gif[:-1], "image/gif") == (
        "truncated GIF: the blocks end before the trailer"
    )
    assert structural_problem(gif, "image/gif") is None
    with pytest.raises(PartError, match="truncated PNG"):
        make_item(pillow("PNG")[:-12], 1)


def test_huge_image_header_is_accepted_without_decoding() -> None:
    """A PNG declaring 20000 x 20000 pixels: typing reads headers only (Pillow never runs), so
    memory stays bounded; refusing it by resolution is the carrier profile's job."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )
    assert make_item(png, 1).media_type == "image/png"


def test_500_parts_are_refused_with_the_limit() -> None:
    sources = [f"line {n}" for n in range(500)]
    with pytest.raises(ContentError, match=f"too many parts: more than {MAX_ITEMS}"):
        make_items(sources)
    assert len(make_items(sources[:MAX_ITEMS])) == MAX_ITEMS


def test_bad_policy_value_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="on_mismatch"):
        make_item(b"x", 1, on_mismatch="ignore")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- IDs and names


def test_content_ids_are_stable_and_distinct() -> None:
    photo = pillow("JPEG")
    first = make_items([photo, "hi", photo])
    again = make_items([photo, "hi", photo])
    assert [i.content_id for i in first] == [i.content_id for i in again]
    assert first[0].content_id != first[2].content_id  # same bytes, another position
    assert first[0].content_id.split("-")[1] == first[2].content_id.split("-")[1]
    assert content_id_for("image/jpeg", 1, photo) == first[0].content_id
    other = make_items([pillow("JPEG", (65, 48)), "hi", photo])
    assert other[0].content_id != first[0].content_id


def test_a_digest_the_caller_took_is_used_not_taken_again() -> None:
    photo = pillow("JPEG")
    digest = hashlib.sha256(photo).hexdigest()
    plain = make_item(Source(photo), 1)
    assert plain.sha256 == digest
    # a digest handed over is trusted as is: the item (and its Content-ID) carry it
    given = make_item(Source(photo, sha256="ab" * 32), 1)
    assert given.sha256 == "ab" * 32
    assert given.content_id == "img1-abababab" != plain.content_id


@pytest.mark.parametrize(
    ("filename", "media_type", "expected"),
    [
        ("photo.jpg", "image/jpeg", "photo.jpg"),
        ("Photo.JPEG", "image/jpeg", "Photo.jpeg"),
        ("../../etc/passwd", "text/plain", "passwd.txt"),
        ("C:\\Users\\x\\My Pictures\\beach day.png", "image/png", "beach_day.png"),
        ('say "cheese"; rm -rf.gif', "image/gif", "say_cheese_rm_-rf.gif"),
        ("bell\x07\r\nInjected: yes.jpg", "image/jpeg", "bell_Injected_yes.jpg"),
        ("Jürgen Müller.vcf", "text/x-vcard", "Jurgen_Muller.vcf"),
        ("Straße Øresund.jpg", "image/jpeg", "Strasse_Oresund.jpg"),
        ("日本語.jpg", "image/jpeg", "fallback.jpg"),
        ("..", "image/png", "fallback.png"),
        (".hidden.amr", "audio/amr", "hidden.amr"),
        ("song.mp3", "audio/amr", "song.amr"),  # the extension follows the real type
        ("report.final.docx", "application/vnd.openxmlformats", "report.final.docx"),
        ("weird.ex e", "application/x-thing", "weird.bin"),
        (None, "video/3gpp", "fallback.3gp"),
        ("x" * 300 + ".png", "image/png", "x" * 48 + ".png"),
    ],
)
def test_content_locations_are_safe_ascii_file_names(
    filename: str | None, media_type: str, expected: str
) -> None:
    location = safe_location(filename, media_type, "fallback")
    assert location == expected
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.[a-z0-9]+", location)


def test_content_locations_are_unique_within_a_message() -> None:
    photo = pillow("JPEG")
    items = make_items(
        [
            Source(photo, filename="a.jpg"),
            Source(photo, filename="dir/A.jpg"),
            Source(photo, filename="a.jpg"),
        ]
    )
    assert [i.content_location for i in items] == ["a.jpg", "A-2.jpg", "a-3.jpg"]


# --------------------------------------------------------------------------- inbound parts


def test_inbound_parts_keep_their_ids_and_follow_the_bytes() -> None:
    part = make_part(pillow("PNG"), "image/jpeg", content_id="<pic>", content_location="pic.jpg")
    item = item_from_part(part, 1)
    assert (item.media_type, item.content_id, item.content_location) == (
        "image/png",
        "pic",
        "pic.jpg",
    )
    text = item_from_part(make_part("é".encode("latin-1"), "text/plain; charset=ISO-8859-1"), 2)
    assert (text.media_type, text.charset) == ("text/plain", "iso-8859-1")
    assert text.content_id.startswith("text2-")
    # inbound never refuses: a label the bytes cannot confirm is trusted
    odd = item_from_part(make_part(b"not really", "image/png"), 3)
    assert odd.media_type == "image/png"


def test_an_items_digest_is_the_sha256_of_its_bytes() -> None:
    import hashlib

    from mm7.content.parts import Source, make_items

    (item,) = make_items([Source(b"hello there", filename="t.txt")])
    assert item.sha256 == hashlib.sha256(item.data).hexdigest()
    assert item.sha256[:8] in item.content_id
