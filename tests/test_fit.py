"""Fitting presentations to carrier profiles, with real media made here by Pillow.

Sizes are checked the way the MMSC counts them, independently of the fitter: the test serialises
the fitted content entity itself with mm7.core.mime (SMIL first, each item with its headers and
the profile's transfer encoding; for count="swa" inside the SOAP-with-Attachments body) and
measures the bytes. Fitted images are opened with Pillow, and every Change is compared with what
the bytes really became.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import zlib
from pathlib import Path

import pytest
from PIL import Image

from mm7.content.fit import (
    Action,
    Change,
    FitError,
    FitResult,
    MediaError,
    PartState,
    content_entity,
    fit_to_profile,
    link_fallback,
    message_size,
)
from mm7.content.images import MIN_LONG_SIDE
from mm7.content.model import MediaItem, Presentation, Slide
from mm7.content.profile import Profile, available_profiles, load_profile
from mm7.core import codec
from mm7.core.dialect import get_dialect
from mm7.core.mime import (
    Part,
    build_multipart,
    make_multipart,
    make_part,
    parse_entity,
    serialize_part,
)
from mm7.core.spec import OPERATIONS
from mm7.core.versions import LATEST
from tests.helpers.samples import minimal_message

REPO = Path(__file__).resolve().parents[1]
SHIPPED = available_profiles([REPO / "mm7" / "conf" / "profiles"])
FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/bmp": "BMP"}

# --------------------------------------------------------------------------- media made here


@functools.cache
def photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """A photo-like RGB image: smooth gradients plus coarse noise, so that it neither compresses
    to nothing nor loses all its detail when scaled down. Deterministic for a seed."""
    rnd = random.Random(seed)
    cw, ch = max(1, width // 3), max(1, height // 3)
    channels = []
    for n in range(3):
        noise = Image.frombytes("L", (cw, ch), rnd.randbytes(cw * ch))
        noise = noise.resize((width, height), Image.Resampling.BICUBIC)
        base = Image.linear_gradient("L") if n != 1 else Image.radial_gradient("L")
        channels.append(Image.blend(noise, base.resize((width, height)), 0.35))
    return Image.merge("RGB", channels)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


@functools.cache
def big_jpeg() -> bytes:
    """A 2400x1600 photo at quality 95: about 2.7 MB."""
    return encode(photo(2400, 1600), "JPEG", quality=95)


@functools.cache
def alpha_png() -> bytes:
    """A 1000x750 RGBA PNG whose top-left 100x100 corner is fully transparent black."""
    im = photo(1000, 750, 2).convert("RGBA")
    alpha = Image.linear_gradient("L").resize((1000, 750)).point(lambda v: 128 + v // 2)
    alpha.paste(0, (0, 0, 100, 100))
    im.putalpha(alpha)
    im.paste((0, 0, 0, 0), (0, 0, 100, 100))
    return encode(im, "PNG")


@functools.cache
def bmp() -> bytes:
    return encode(photo(800, 600, 3), "BMP")


@functools.cache
def animated_gif(width: int = 320, height: int = 240, frames: int = 4) -> bytes:
    images = [photo(width, height, 10 + n).convert("P") for n in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=120, loop=0)


def amr(frames: int) -> bytes:
    """AMR-NB storage format: the magic, then 12.2 kbit/s frames (32 bytes each)."""
    return b"#!AMR\n" + (b"\x3c" + bytes(range(31))) * frames


def mp3(frames: int) -> bytes:
    """MPEG-1 layer III frames at 128 kbit/s, 44.1 kHz (417 bytes each, silence)."""
    return (b"\xff\xfb\x90\x64" + bytes(413)) * frames


def item(
    data: bytes, media_type: str, cid: str, location: str, charset: str | None = None
) -> MediaItem:
    return MediaItem(data, media_type, cid, location, charset)


def smil_for(slides: list[tuple[str, ...]]) -> bytes:
    """Caller SMIL: one par per slide, image region first, by cid."""
    pars = []
    for slide in slides:
        refs = []
        for ref in slide:
            tag, _, src = ref.partition(":")
            region = {"img": ' region="Image"', "text": ' region="Text"'}.get(tag, "")
            target = src if src.startswith("@") else f"cid:{src}"
            refs.append(f'<{tag} src="{target.lstrip("@")}"{region}/>')
        pars.append(f'<par dur="5000ms">{"".join(refs)}</par>')
    return (
        '<smil><head><layout><root-layout width="320" height="480"/>'
        '<region id="Image" top="0" left="0" width="320" height="320"/>'
        '<region id="Text" top="320" left="0" width="320" height="160"/></layout></head>'
        f"<body>{''.join(pars)}</body></smil>"
    ).encode()


def oversized() -> Presentation:
    """A photo, a transparent PNG, a BMP, an animated GIF and some text: ~4.5 MB."""
    items = (
        item(big_jpeg(), "image/jpeg", "photo", "photo.jpg"),
        item("Grüße aus Berlin".encode(), "text/plain", "text", "text.txt", "utf-8"),
        item(alpha_png(), "image/png", "logo", "logo.png"),
        item(bmp(), "image/bmp", "scan", "scan.bmp"),
        item(animated_gif(), "image/gif", "anim", "anim.gif"),
    )
    smil = smil_for([("img:photo", "text:text"), ("img:logo",), ("img:scan",), ("img:anim",)])
    return Presentation(items, smil=smil)


# --------------------------------------------------------------------------- the MMSC's count


def counted(presentation: Presentation, profile: Profile) -> tuple[int, Part]:
    """The message's size as the profile's MMSC counts it, built here from mm7.core.mime alone:
    (size, the content entity with transfer encodings as sent)."""
    media_cte = profile.transfer_encoding
    text_cte = "8bit" if media_cte in ("base64", "quoted-printable") else media_cte
    smil = presentation.smil
    assert smil is not None
    cid = "smil-" + hashlib.sha256(smil).hexdigest()[:8]
    kids = [
        make_part(
            smil,
            "application/smil",
            content_id=cid,
            content_location="presentation.smil",
            transfer_encoding=text_cte,
        )
    ]
    for it in presentation.items:
        ct = it.media_type + (f"; charset={it.charset}" if it.charset else "")
        kids.append(
            make_part(
                it.data,
                ct,
                content_id=it.content_id,
                content_location=it.content_location,
                transfer_encoding=text_cte if it.media_type.startswith("text/") else media_cte,
            )
        )
    params = {"type": "application/smil", "start": f"<{cid}>"}
    entity = make_multipart(kids, "related", params=params, content_id="mm7-content")
    if profile.count == "content":
        return len(serialize_part(entity)), entity
    soap = make_part(
        b" " * profile.soap_allowance_bytes, 'text/xml; charset="utf-8"', content_id="mm7-soap"
    )
    _, body = build_multipart([soap, entity], params={"type": "text/xml", "start": "<mm7-soap>"})
    return len(body), entity


def image_state(data: bytes) -> tuple[PartState, Image.Image]:
    im = Image.open(io.BytesIO(data))
    im.load()  # decodes: a truncated or broken output fails here
    media_type = Image.MIME[im.format or ""]
    frames = getattr(im, "n_frames", 1)
    return PartState(media_type, len(data), im.width, im.height, frames), im


def assert_report_matches(original: Presentation, result: FitResult) -> None:
    """Every changed part has exactly one Change whose before/after are what the bytes were and
    became; unchanged parts have none."""
    changes = {c.content_id: c for c in result.changes}
    assert len(changes) == len(result.changes)
    for before, after in zip(original.items, result.presentation.items, strict=True):
        assert after.content_id == before.content_id
        change = changes.get(before.content_id)
        if after == before:
            assert change is None, change
            continue
        assert change is not None, before.content_id
        if before.media_type.startswith("image/"):
            b_state, _ = image_state(before.data)
            a_state, _ = image_state(after.data)
            assert change.before == b_state
            assert change.after == a_state
        else:
            assert change.before is not None and change.after is not None
            assert change.before.bytes == len(before.data)
            assert change.after.bytes == len(after.data)
            assert change.after.media_type == after.media_type
        assert change.actions, change


# --------------------------------------------------------------------------- every profile


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_profile_takes_oversized_media(name: str) -> None:
    profile = load_profile(name)
    original = oversized()
    assert counted(original, profile)[0] > profile.max_message_bytes  # it really is too big
    result = fit_to_profile(original, profile, ffmpeg=None)

    size, entity = counted(result.presentation, profile)
    assert size <= profile.max_message_bytes
    assert size == result.size and result.limit == profile.max_message_bytes
    assert len(entity.children) <= profile.max_parts
    # the serialised entity parses back to the same bodies (transfer encodings undone)
    parsed, _ = parse_entity(b"Content-Type: " + _ct(entity) + b"\r\n\r\n" + _body(entity))
    bodies = {p.content_id: p.body for p in parsed.children}
    for it in result.presentation.items:
        assert bodies[it.content_id] == it.data
        assert profile.allows(it.media_type), (it.content_id, it.media_type)
        if it.media_type.startswith("image/"):
            state, im = image_state(it.data)
            assert state.media_type == it.media_type  # the label says what the bytes are
            assert profile.fits_box(im.width, im.height)
            assert max(im.size) >= min(MIN_LONG_SIDE, 120)
    assert_report_matches(original, result)
    # the text was fine as it was
    assert result.presentation.items[1] == original.items[1]
    # converted parts are renamed with their new type's extension, and only those
    for before, after in zip(original.items, result.presentation.items, strict=True):
        if after.media_type == "image/jpeg" and before.media_type != "image/jpeg":
            assert after.content_location == before.content_location.rsplit(".", 1)[0] + ".jpg"
        elif after.media_type == before.media_type:
            assert after.content_location == before.content_location


def _ct(entity: Part) -> bytes:
    head = serialize_part(entity).split(b"\r\n\r\n", 1)[0]
    return head.split(b"\r\n", 1)[0].removeprefix(b"Content-Type: ")


def _body(entity: Part) -> bytes:
    return serialize_part(entity).split(b"\r\n\r\n", 1)[1]


def test_every_shipped_profile_is_covered() -> None:
    assert {"mms-300k", "mms-600k", "mms-1m", "mms-3500k", "aggregator-smil"} <= set(SHIPPED)


def test_the_300k_report_in_detail() -> None:
    """The changes for mms-300k, action by action."""
    result = fit_to_profile(oversized(), load_profile("mms-300k"), ffmpeg=None)
    changes = {c.content_id: c for c in result.changes}
    assert set(changes) == {"photo", "logo", "scan", "anim"}
    assert changes["photo"].actions == (Action.RESIZE,)  # 2400x1600 > 1600x1200
    assert changes["photo"].detail.startswith("JPEG q")
    # PNG is allowed, but a photo-sized PNG has to shrink in bytes: it becomes JPEG
    assert Action.CONVERT in changes["logo"].actions
    assert changes["scan"].actions[0] is Action.CONVERT  # BMP is not allowed at all
    assert changes["scan"].after is not None and changes["scan"].after.media_type == "image/jpeg"
    # the animation shrank but stayed an animation: the others could make room
    anim = changes["anim"]
    assert anim.after is not None and anim.after.media_type == "image/gif"
    assert anim.after.frames == 4 and Action.FIRST_FRAME not in anim.actions
    line = changes["scan"].describe()
    assert (
        line.startswith("scan: convert") and "image/bmp 1,440,054 B 800x600 -> image/jpeg" in line
    )


def test_a_message_that_fits_is_returned_unchanged() -> None:
    small = encode(photo(320, 240), "JPEG", quality=80)
    p = Presentation(
        (item(small, "image/jpeg", "p", "p.jpg"), item(b"hi", "text/plain", "t", "t.txt")),
        smil=smil_for([("img:p", "text:t")]),
    )
    result = fit_to_profile(p, load_profile("mms-300k"), ffmpeg=None)
    assert result.presentation == p
    assert result.presentation.smil == p.smil
    assert result.changes == ()
    assert result.size == counted(p, load_profile("mms-300k"))[0]


def test_fitting_is_deterministic() -> None:
    profile = load_profile("oma-image-rich")
    a = fit_to_profile(oversized(), profile, ffmpeg=None)
    b = fit_to_profile(oversized(), profile, ffmpeg=None)
    assert a.presentation == b.presentation and a.changes == b.changes


# --------------------------------------------------------------------------- images


def test_transparency_is_flattened_onto_white() -> None:
    profile = Profile("jpeg-only", 200_000, allowed_types=("image/jpeg",), max_image_width=1000)
    p = Presentation((item(alpha_png(), "image/png", "logo", "logo.png"),), smil=smil_for([]))
    result = fit_to_profile(p, profile, ffmpeg=None)
    out = result.presentation.items[0]
    _, im = image_state(out.data)
    assert im.format == "JPEG" and im.mode == "RGB"
    r, g, b = im.getpixel((5, 5))  # the transparent black corner
    assert min(r, g, b) > 240
    assert result.changes[0].actions[0] is Action.CONVERT


def test_resolution_alone_is_enforced_keeping_the_type() -> None:
    wide = encode(Image.linear_gradient("L").resize((2000, 100)).convert("RGB"), "PNG")
    p = Presentation((item(wide, "image/png", "bar", "bar.png"),), smil=smil_for([("img:bar",)]))
    result = fit_to_profile(p, load_profile("mms-300k"), ffmpeg=None)
    out = result.presentation.items[0]
    state, _ = image_state(out.data)
    assert (state.media_type, state.width, state.height) == ("image/png", 1600, 80)
    assert result.changes[0].actions == (Action.RESIZE,)
    assert out.content_location == "bar.png"


def test_a_portrait_photo_within_the_box_is_not_touched() -> None:
    tall = encode(photo(1200, 1600, 4), "JPEG", quality=60)
    p = Presentation((item(tall, "image/jpeg", "t", "t.jpg"),), smil=smil_for([("img:t",)]))
    profile = load_profile("mms-1m")
    assert len(tall) < profile.max_message_bytes
    result = fit_to_profile(p, profile, ffmpeg=None)
    assert result.changes == () and result.presentation.items[0].data == tall


def test_exif_orientation_is_applied_to_the_pixels() -> None:
    stored = Image.new("RGB", (400, 300), (220, 0, 0))
    stored.paste((0, 0, 220), (200, 0, 400, 300))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: 300 wide, 400 high
    data = encode(stored, "JPEG", quality=90, exif=exif)
    profile = Profile("small", 50_000, allowed_types=("image/jpeg",), max_image_width=200,
                      max_image_height=150)  # fmt: skip
    p = Presentation((item(data, "image/jpeg", "r", "r.jpg"),), smil=smil_for([("img:r",)]))
    result = fit_to_profile(p, profile, ffmpeg=None)
    change = result.changes[0]
    assert change.before == PartState("image/jpeg", len(data), 300, 400, 1)
    _, im = image_state(result.presentation.items[0].data)
    assert im.size == (150, 200)
    assert not im.getexif().get(0x0112)  # metadata is not carried over
    top, bottom = im.getpixel((75, 10)), im.getpixel((75, 190))
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]  # stored left is now the top


def test_an_animation_is_kept_when_scaling_is_enough() -> None:
    gif = animated_gif()
    profile = Profile("gif", 300_000, allowed_types=("image/gif", "image/jpeg"),
                      max_image_width=160, max_image_height=120)  # fmt: skip
    p = Presentation((item(gif, "image/gif", "a", "a.gif"),), smil=smil_for([("img:a",)]))
    result = fit_to_profile(p, profile, ffmpeg=None)
    state, _ = image_state(result.presentation.items[0].data)
    assert (state.media_type, state.width, state.height, state.frames) == (
        "image/gif",
        160,
        120,
        4,
    )
    assert result.changes[0].actions == (Action.RESIZE,)


def test_an_animation_becomes_its_first_frame_only_when_nothing_else_fits() -> None:
    gif = animated_gif()
    profile = Profile("tiny", 6_000, allowed_types=("image/gif", "image/jpeg", "text/plain"),
                      max_image_width=320, max_image_height=240)  # fmt: skip
    p = Presentation((item(gif, "image/gif", "a", "a.gif"),), smil=smil_for([("img:a",)]))
    result = fit_to_profile(p, profile, ffmpeg=None)
    out = result.presentation.items[0]
    state, _ = image_state(out.data)
    assert state.frames == 1
    assert counted(result.presentation, profile)[0] <= 6_000
    change = result.changes[0]
    assert Action.FIRST_FRAME in change.actions
    assert change.before is not None and change.before.frames == 4
    assert change.after == state
    assert_report_matches(p, result)


def test_an_animation_where_gif_is_not_allowed_is_its_first_frame_as_jpeg() -> None:
    profile = Profile("no-gif", 300_000, allowed_types=("image/jpeg",))
    p = Presentation((item(animated_gif(), "image/gif", "a", "a.gif"),), smil=smil_for([]))
    result = fit_to_profile(p, profile, ffmpeg=None)
    out = result.presentation.items[0]
    assert out.media_type == "image/jpeg" and out.content_location == "a.jpg"
    assert result.changes[0].actions == (Action.FIRST_FRAME, Action.CONVERT)


def test_caller_smil_follows_a_renamed_part() -> None:
    """Caller SMIL that refers to a part by Content-Location is rewritten with the new name."""
    smil = smil_for([("img:@scan.bmp",)])
    p = Presentation((item(bmp(), "image/bmp", "scan", "scan.bmp"),), smil=smil)
    result = fit_to_profile(p, load_profile("mms-300k"), ffmpeg=None)
    assert result.presentation.items[0].content_location == "scan.jpg"
    assert result.presentation.smil is not None
    assert b'src="scan.jpg"' in result.presentation.smil
    assert b"scan.bmp" not in result.presentation.smil


def test_several_photos_shrink_together_largest_first() -> None:
    a = encode(photo(1600, 1200, 5), "JPEG", quality=95)
    b = encode(photo(800, 600, 6), "JPEG", quality=95)
    p = Presentation(
        (item(a, "image/jpeg", "a", "a.jpg"), item(b, "image/jpeg", "b", "b.jpg")),
        smil=smil_for([("img:a",), ("img:b",)]),
    )
    profile = load_profile("mms-300k")
    result = fit_to_profile(p, profile, ffmpeg=None)
    assert counted(result.presentation, profile)[0] <= profile.max_message_bytes
    after = {c.content_id: c.after for c in result.changes}
    assert "a" in after  # the largest contributor always shrinks
    sizes = {it.content_id: len(it.data) for it in result.presentation.items}
    assert sizes["a"] < len(a) // 4
    assert_report_matches(p, result)


# --------------------------------------------------------------------------- types and text


def test_a_mislabelled_part_is_corrected() -> None:
    jpeg = encode(photo(64, 48), "JPEG")
    p = Presentation((item(jpeg, "image/png", "x", "x.png"),), smil=smil_for([("img:x",)]))
    result = fit_to_profile(p, load_profile("mms-300k"), ffmpeg=None)
    out = result.presentation.items[0]
    assert out.media_type == "image/jpeg" and out.data == jpeg
    assert result.changes == (
        Change(
            "x",
            (Action.RETYPE,),
            PartState("image/png", len(jpeg), 64, 48, 1),
            PartState("image/jpeg", len(jpeg), 64, 48, 1),
        ),
    )


def test_a_mislabelled_part_is_refused_when_the_profile_says_so() -> None:
    jpeg = encode(photo(64, 48), "JPEG")
    profile = dataclasses.replace(load_profile("mms-300k"), on_type_mismatch="refuse")
    p = Presentation((item(jpeg, "image/png", "x", "x.png"),), smil=smil_for([]))
    with pytest.raises(MediaError, match=r"part 'x' \(image/png\): the bytes are image/jpeg"):
        fit_to_profile(p, profile, ffmpeg=None)


def test_text_is_recoded_to_the_profile_charset() -> None:
    text = "Grüße, 東京"
    p = Presentation(
        (item(text.encode("utf-16"), "text/plain", "t", "t.txt", "utf-16"),), smil=smil_for([])
    )
    result = fit_to_profile(p, load_profile("mms-300k"), ffmpeg=None)
    out = result.presentation.items[0]
    assert out.data == text.encode("utf-8") and out.charset == "utf-8"
    change = result.changes[0]
    assert change.actions == (Action.RECODE,) and change.detail == "utf-16 -> utf-8"
    ascii_only = dataclasses.replace(load_profile("mms-300k"), text_charset="us-ascii")
    with pytest.raises(MediaError, match="cannot hold"):
        fit_to_profile(p, ascii_only, ffmpeg=None)


def test_a_type_the_profile_refuses_is_named() -> None:
    pdf = b"%PDF-1.4\n" + bytes(100)
    p = Presentation((item(pdf, "application/pdf", "doc", "doc.pdf"),), smil=smil_for([]))
    with pytest.raises(FitError, match=r"part 'doc' \(application/pdf\).*does not take"):
        fit_to_profile(p, load_profile("mms-300k"), ffmpeg=None)


def test_smil_is_required_by_the_aggregator_profile() -> None:
    p = Presentation((item(b"hello", "text/plain", "t", "t.txt"),))
    with pytest.raises(FitError, match="requires SMIL"):
        fit_to_profile(p, load_profile("aggregator-smil"), ffmpeg=None)
    with_slides = Presentation(p.items, (Slide(text="t"),))
    assert fit_to_profile(with_slides, load_profile("aggregator-smil"), ffmpeg=None).changes == ()


# --------------------------------------------------------------------------- audio and video


def test_audio_that_fits_passes_through() -> None:
    voice = amr(300)  # 6 s, 9.6 KB
    p = Presentation((item(voice, "audio/amr", "v", "v.amr"),), smil=smil_for([("audio:v",)]))
    result = fit_to_profile(p, load_profile("mms-300k"), ffmpeg=None)
    assert result.changes == () and result.presentation.items[0].data == voice


def test_oversized_audio_without_ffmpeg_says_by_how_much() -> None:
    voice = amr(12_000)  # 384 KB
    p = Presentation((item(voice, "audio/amr", "v", "v.amr"),), smil=smil_for([("audio:v",)]))
    profile = load_profile("mms-300k")
    size = counted(p, profile)[0]
    with pytest.raises(FitError) as err:
        fit_to_profile(p, profile, ffmpeg=None)
    assert err.value.over_by == size - 300_000
    assert (err.value.size, err.value.limit) == (size, 300_000)
    message = str(err.value)
    assert f"{size - 300_000:,} bytes over" in message
    assert "without ffmpeg" in message and "'v' (audio/amr, 384,006 bytes)" in message
    assert not isinstance(err.value, MediaError)


def test_audio_of_a_type_the_profile_refuses_needs_ffmpeg() -> None:
    song = mp3(40)
    p = Presentation((item(song, "audio/mpeg", "s", "s.mp3"),), smil=smil_for([]))
    with pytest.raises(FitError, match=r"'s' \(audio/mpeg\).*ffmpeg is not available"):
        fit_to_profile(p, load_profile("oma-image-rich"), ffmpeg=None)


FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed here")


def _ffmpeg_media(*args: str, suffix: str) -> bytes:
    """Media made by ffmpeg into a file (MP4/3GP muxers need a seekable output, not a pipe)."""
    assert FFMPEG is not None
    with tempfile.TemporaryDirectory(prefix="mm7-test-") as tmp:
        target = Path(tmp) / f"media.{suffix}"
        subprocess.run(
            [FFMPEG, "-hide_banner", "-nostdin", "-y", *args, "-f", suffix, str(target)],
            capture_output=True,
            check=True,
            timeout=120,
        )
        return target.read_bytes()


@needs_ffmpeg
def test_ffmpeg_shrinks_oversized_audio() -> None:
    song = _ffmpeg_media(
        "-f", "lavfi", "-i", "sine=frequency=440:duration=40", "-b:a", "320k", suffix="mp3"
    )
    profile = load_profile("mms-600k")
    assert len(song) > profile.max_message_bytes
    p = Presentation((item(song, "audio/mpeg", "s", "s.mp3"),), smil=smil_for([("audio:s",)]))
    try:
        result = fit_to_profile(p, profile, ffmpeg=FFMPEG)
    except FitError as exc:
        if "no encoder" in str(exc):
            pytest.skip(f"this ffmpeg build lacks the encoders: {exc}")
        raise
    assert counted(result.presentation, profile)[0] <= profile.max_message_bytes
    assert result.changes[0].actions == (Action.TRANSCODE,)
    assert profile.allows(result.presentation.items[0].media_type)


@needs_ffmpeg
def test_ffmpeg_shrinks_oversized_video() -> None:
    clip = _ffmpeg_media(
        "-f", "lavfi", "-i", "testsrc=size=640x480:rate=25:duration=20",
        "-c:v", "mpeg4", "-b:v", "2M", suffix="3gp",
    )  # fmt: skip
    profile = load_profile("mms-300k")
    assert len(clip) > profile.max_message_bytes
    p = Presentation((item(clip, "video/3gpp", "c", "c.3gp"),), smil=smil_for([]))
    try:
        result = fit_to_profile(p, profile, ffmpeg=FFMPEG)
    except FitError as exc:
        if "no encoder" in str(exc):
            pytest.skip(f"this ffmpeg build lacks the encoders: {exc}")
        raise
    assert counted(result.presentation, profile)[0] <= profile.max_message_bytes
    assert result.changes[0].actions == (Action.TRANSCODE,)


# --------------------------------------------------------------------------- bad input


def bad(data: bytes, media_type: str) -> Presentation:
    return Presentation((item(data, media_type, "bad", "bad.bin"),), smil=smil_for([]))


def test_a_zero_byte_part_is_refused() -> None:
    with pytest.raises(MediaError, match=r"part 'bad' \(image/jpeg\): the part is empty"):
        fit_to_profile(bad(b"", "image/jpeg"), load_profile("mms-300k"), ffmpeg=None)


def test_a_truncated_jpeg_is_refused() -> None:
    data = big_jpeg()[: len(big_jpeg()) // 2]
    with pytest.raises(MediaError, match=r"part 'bad' \(image/jpeg\): truncated") as err:
        fit_to_profile(bad(data, "image/jpeg"), load_profile("mms-3500k"), ffmpeg=None)
    assert err.value.content_id == "bad"


def test_a_truncated_jpeg_that_must_shrink_is_refused() -> None:
    data = big_jpeg()[: len(big_jpeg()) * 3 // 4]
    with pytest.raises(MediaError, match=r"part 'bad' \(image/jpeg\): truncated or corrupt JPEG"):
        fit_to_profile(bad(data, "image/jpeg"), load_profile("mms-300k"), ffmpeg=None)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 header is patched to claim ``width`` x ``height``."""
    data = bytearray(encode(photo(64, 48), "JPEG", quality=80))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_a_jpeg_claiming_more_than_pillows_bomb_limit_is_refused_at_open() -> None:
    with pytest.raises(MediaError, match="decompression bomb"):
        fit_to_profile(
            bad(jpeg_claiming(60_000, 60_000), "image/jpeg"), load_profile("mms-300k"), ffmpeg=None
        )


def test_a_jpeg_claiming_169_megapixels_is_decoded_at_one_eighth() -> None:
    """13000x13000 with the data of a thumbnail: libjpeg fills what is missing, at 1/8 scale
    (1625x1625, within the 16 MP budget), and the fit goes on without a full decode."""
    data = jpeg_claiming(13_000, 13_000)
    profile = load_profile("mms-300k")
    result = fit_to_profile(bad(data, "image/jpeg"), profile, ffmpeg=None)
    change = result.changes[0]
    assert change.before == PartState("image/jpeg", len(data), 13_000, 13_000, 1)
    assert change.after is not None and (change.after.width, change.after.height) == (1200, 1200)
    assert result.size <= profile.max_message_bytes


def test_a_text_file_claiming_to_be_png_is_refused() -> None:
    with pytest.raises(MediaError, match=r"declared as an image, but the bytes are not one"):
        fit_to_profile(bad(b"just some words", "image/png"), load_profile("mms-300k"), ffmpeg=None)


def test_a_png_signature_with_garbage_is_refused() -> None:
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    with pytest.raises(MediaError, match=r"not a readable PNG"):
        fit_to_profile(bad(data, "image/png"), load_profile("mms-300k"), ffmpeg=None)


def test_a_truncated_animation_is_refused() -> None:
    gif = animated_gif()
    with pytest.raises(MediaError, match=r"truncated|not a readable GIF"):
        fit_to_profile(bad(gif[: len(gif) // 2], "image/gif"), load_profile("mms-1m"), ffmpeg=None)


def test_five_hundred_parts_are_refused_before_any_work() -> None:
    items = tuple(item(b"x", "text/plain", f"t{n}", f"t{n}.txt") for n in range(500))
    with pytest.raises(FitError, match="501 MIME parts.*at most 20"):
        fit_to_profile(Presentation(items, smil=smil_for([])), load_profile("mms-300k"))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header claiming ``width`` x ``height`` in front of one tiny IDAT: a decompression
    bomb's shape (only a full decode would find out the pixels are not there)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("w", "h"), [(7000, 7000), (20_000, 20_000), (100_000, 100_000)])
def test_a_huge_png_is_refused_unread(w: int, h: int) -> None:
    with pytest.raises(MediaError, match="megapixels|decompression bomb"):
        fit_to_profile(bad(png_claiming(w, h), "image/png"), load_profile("mms-300k"), ffmpeg=None)


def test_a_50_megapixel_jpeg_is_fitted_with_bounded_memory(tmp_path: Path) -> None:
    """A 8660x5774 JPEG is decoded at 1/4 scale (DCT scaling), never in full: the fit runs in a
    fresh interpreter whose peak RSS grows by far less than one full decode (50 MB grey)."""
    big = Image.linear_gradient("L").resize((8660, 5774), Image.Resampling.BILINEAR)
    path = tmp_path / "50mp.jpg"
    big.save(path, "JPEG", quality=70)
    big.close()
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        from pathlib import Path
        from PIL import Image
        from mm7.content.fit import fit_to_profile
        from mm7.content.model import MediaItem, Presentation, Slide
        from mm7.content.profile import load_profile
        data = Path({str(path)!r}).read_bytes()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        p = Presentation((MediaItem(data, "image/jpeg", "big", "big.jpg"),), (Slide(visual="big"),))
        result = fit_to_profile(p, load_profile("mms-300k"), ffmpeg=None)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = result.presentation.items[0]
        print(json.dumps({{"grew_kb": after - before, "size": result.size,
                           "dims": [result.changes[0].after.width, result.changes[0].after.height],
                           "before": [result.changes[0].before.width,
                                      result.changes[0].before.height]}}))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["before"] == [8660, 5774]
    assert report["dims"] == [1600, 1067]
    assert report["size"] <= 300_000
    # a full decode alone is 50,000 KB; the 1/4-scale decode is ~3,000 KB
    assert report["grew_kb"] < 30_000, report


# --------------------------------------------------------------------------- link fallback


def test_link_fallback_is_text_with_the_url() -> None:
    p = oversized()
    fb = link_fallback(p, "https://media.example.com/m/abc123")
    assert len(fb.items) == 1 and fb.slides == (Slide(text="link"),)
    only = fb.items[0]
    assert only.media_type == "text/plain" and only.charset == "utf-8"
    assert only.data.decode() == "Grüße aus Berlin\n\nhttps://media.example.com/m/abc123"
    custom = link_fallback(p, "https://x.example/1", text="See {url} for the photos")
    assert custom.items[0].data == b"See https://x.example/1 for the photos"
    plain = link_fallback(Presentation((item(bmp(), "image/bmp", "b", "b.bmp"),)), "http://h/x")
    assert plain.items[0].data == b"View this message: http://h/x"


@pytest.mark.parametrize(
    "url", ["ftp://host/x", "javascript:alert(1)", "https://host/a b", "/relative", "https://"]
)
def test_link_fallback_refuses_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        link_fallback(oversized(), url)


def test_the_aggregator_falls_back_to_a_link_when_nothing_fits() -> None:
    profile = load_profile("aggregator-smil")
    voice = amr(20_000)  # 640 KB of AMR, no ffmpeg to shrink it
    p = Presentation(
        (item(voice, "audio/amr", "v", "v.amr"), item(b"Listen!", "text/plain", "t", "t.txt")),
        (Slide(text="t", audio="v"),),
    )
    with pytest.raises(FitError) as err:
        fit_to_profile(p, profile, ffmpeg=None)
    assert err.value.link_fallback_advised and (err.value.over_by or 0) > 0
    result = fit_to_profile(p, profile, ffmpeg=None, fallback_url="https://m.example/v/1")
    assert result.fallback
    assert [it.data for it in result.presentation.items] == [b"Listen!\n\nhttps://m.example/v/1"]
    assert [(c.content_id, c.actions) for c in result.changes] == [
        ("v", (Action.DROP,)),
        ("t", (Action.DROP,)),
        ("link", (Action.ADD,)),
    ]
    assert result.size == message_size(result.presentation, profile)
    assert result.size <= profile.max_message_bytes


def test_too_many_parts_fall_back_too_when_the_profile_says_so() -> None:
    profile = load_profile("aggregator-smil")
    items = tuple(item(b"x", "text/plain", f"t{n}", f"t{n}.txt") for n in range(30))
    p = Presentation(items, (Slide(text="t0"),))
    result = fit_to_profile(p, profile, fallback_url="https://m.example/1")
    assert result.fallback and len(result.presentation.items) == 1


# --------------------------------------------------------------------------- counting


def test_swa_counting_includes_the_envelope() -> None:
    profile = load_profile("aggregator-smil")
    p = Presentation((item(b"hello", "text/plain", "t", "t.txt"),), (Slide(text="t"),))
    default = message_size(p, profile)
    assert message_size(p, profile, envelope_bytes=5096) - default == 1000
    content_only = dataclasses.replace(profile, count="content")
    assert default - message_size(p, content_only) > profile.soap_allowance_bytes


def test_base64_links_count_the_encoded_bytes() -> None:
    jpeg = encode(photo(640, 480), "JPEG", quality=90)
    p = Presentation((item(jpeg, "image/jpeg", "p", "p.jpg"),), (Slide(visual="p"),))
    binary = load_profile("mms-300k")
    b64 = dataclasses.replace(binary, transfer_encoding="base64")
    grew = message_size(p, b64) - message_size(p, binary)
    chars = -(-len(jpeg) // 3) * 4  # base64 in 76-character lines joined by CRLF
    crlfs = 2 * (-(-chars // 76) - 1)
    # the SMIL part's "Content-Transfer-Encoding: binary" becomes "8bit": 2 bytes fewer
    assert grew == chars + crlfs - len(jpeg) - 2
    # a dialect's own choice wins over the profile's (nokia-base64: base64 media)
    assert message_size(p, binary, dialect=get_dialect("nokia")) >= message_size(p, binary)


def test_the_minimal_entity_is_the_same_shape_as_counted_here() -> None:
    p = oversized()
    profile = load_profile("mms-1m")
    assert message_size(p, profile) == counted(p, profile)[0]
    entity = content_entity(p)
    assert entity.content_type.param("type") == "application/smil"
    assert entity.children[0].content_type.mime_type == "application/smil"
    no_smil = content_entity(Presentation(p.items))
    assert no_smil.content_type.mime_type == "multipart/mixed"


@pytest.mark.parametrize("dialect_name", ["3gpp", "nokia", "aggregator", "mbuni"])
def test_swa_counting_matches_the_codecs_http_body(dialect_name: str) -> None:
    """With the envelope's real size and the link's dialect, the swa count is exactly the length
    of the HTTP body mm7.core.codec.encode writes for a SubmitReq carrying the content."""
    dialect = get_dialect(dialect_name)
    jpeg = encode_jpeg_small()
    p = Presentation(
        (item(jpeg, "image/jpeg", "p", "p.jpg"), item(b"Hi", "text/plain", "t", "t.txt", "utf-8")),
        (Slide(visual="p", text="t"),),
    )
    submit = next(op for op in OPERATIONS if op.name == "SubmitReq")
    version = dialect.version if dialect.version is not None else LATEST
    message = dataclasses.replace(minimal_message(submit, version), content=content_entity(p))
    wire = codec.encode(message, dialect)
    envelope = len(codec.decode(wire.body, wire.content_type).soap)
    profile = dataclasses.replace(load_profile("aggregator-smil"), transfer_encoding="binary")
    assert message_size(p, profile, dialect=dialect, envelope_bytes=envelope) == len(wire.body)


def encode_jpeg_small() -> bytes:
    return encode(photo(160, 120), "JPEG", quality=80)


def test_fitted_items_never_carry_the_digest_of_the_bytes_they_replaced() -> None:
    given = oversized()
    hashed = Presentation(
        tuple(
            dataclasses.replace(i, sha256=hashlib.sha256(i.data).hexdigest()) for i in given.items
        ),
        smil=given.smil,
    )
    result = fit_to_profile(hashed, load_profile("mms-300k"), ffmpeg=None)
    changed = {c.content_id for c in result.changes}
    assert changed  # the photo at least was recompressed
    for item in result.presentation.items:
        assert item.sha256 in (None, hashlib.sha256(item.data).hexdigest()), item.content_id
