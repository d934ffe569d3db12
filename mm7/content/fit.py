"""Fit a presentation to a carrier profile: shrink, convert and report, or refuse clearly.

``fit_to_profile(presentation, profile)`` returns a presentation the MMSC will take, plus one
``Change`` per part that was altered, saying what it was and what it became. In order:

1. **Checks** (nothing is altered yet): the part count (SMIL included) against ``max_parts``;
   SMIL present when ``smil_required``; every part non-empty and really of its declared type
   (magic numbers, mm7.core.sniff): a mismatch is corrected or refused as the profile says, and
   a part declared as an image whose bytes are no image is always refused; every image's headers
   read and every image decoded once (a JPEG at 1/8 scale) to catch truncation, within the
   profile's pixel budget.
2. **Required changes**: text re-encoded to the profile's charset; images of a type the profile
   does not take converted (JPEG first, then PNG, then GIF; transparency flattened onto white;
   an animated GIF where GIF is not allowed becomes its first frame); images over the profile's
   resolution scaled down into it; audio and video of a type it does not take transcoded with
   ffmpeg, or refused when there is no ffmpeg.
3. **Size**: while the message is over the limit *as the MMSC counts it* (mm7.content.profile),
   the largest part that can still shrink is given a byte target, and the best rendition under
   that target is taken from its ladder (images: mm7.content.images.Reducer, scale steps of 0.8
   per side x JPEG qualities 85/75/65/55, then 45/35/25 at the smallest size; audio/video: ffmpeg
   at bitrates computed from the target). The target is the larger of "this part absorbs the whole
   excess" and "this part's share of what is left, in proportion to its size", so one big photo
   shrinks alone, and several similar ones shrink together. Parts are always re-made from their
   original bytes, never from an earlier rendition. Animations are given up for their first
   frame only once every other part is as small as it gets ("when nothing else fits").
4. **No fit**: ``FitError`` saying by how many bytes the message is over and which parts could not
   shrink; or, when the profile says ``on_no_fit = "link"`` and the caller passed a URL, the
   text-only fallback from ``link_fallback`` (hosting the media is the gateway's job).

Sizes are measured by serialising the content entity with mm7.core.mime, exactly as it goes on
the wire, with the link's Content-Transfer-Encoding applied. ``to_part`` lets the caller supply
the builder that will really be used (mm7.content.builder.to_part); without it a minimal builder
here lays the parts out the same way (SMIL first as the start of a multipart/related).
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit
from xml.sax.saxutils import quoteattr

from mm7.content.images import (
    ImageError,
    ImageInfo,
    Reducer,
    Rendition,
    check_budget,
    decodable,
    probe,
    verify,
)
from mm7.content.model import Layout, MediaItem, Presentation, Slide
from mm7.content.profile import Profile
from mm7.core.dialect import Dialect
from mm7.core.emit import CONTENT_ID
from mm7.core.errors import MM7Error
from mm7.core.mime import Part, build_multipart, encode_body, make_multipart, make_part
from mm7.core.mime import serialize_part as _serialize
from mm7.core.sniff import OCTET_STREAM, sniff

__all__ = [
    "Action",
    "Change",
    "FitError",
    "FitResult",
    "MediaError",
    "FFMPEG",
    "PartState",
    "content_entity",
    "fit_to_profile",
    "link_fallback",
    "message_size",
    "transcode_targets",
]

#: the SMIL part's Content-Location in the minimal builder (its Content-ID is "smil-" and the
#: first 8 hex digits of the SMIL's SHA-256, as mm7.content.builder names it)
SMIL_LOCATION = "presentation.smil"
_MAX_ROUNDS = 400
#: file name extensions for Content-Location when a part changes type
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "audio/amr": "amr",
    "audio/mp4": "m4a",
    "audio/mpeg": "mp3",
    "video/3gpp": "3gp",
    "video/mp4": "mp4",
}
_MEDIA_KINDS = ("image", "audio", "video")
#: the ffmpeg executable audio and video are transcoded with (None: there is none here)
FFMPEG: str | None = shutil.which("ffmpeg")


class FitError(MM7Error):
    """The presentation cannot be made to fit the profile. ``over_by`` says by how many bytes
    (as the MMSC counts them) when size is the reason; ``content_id`` names the part at fault
    when one is; ``link_fallback_advised`` is set when the profile wants the text + link
    fallback and the caller gave no URL to build it from."""

    def __init__(
        self,
        message: str,
        *,
        profile: str,
        size: int | None = None,
        limit: int | None = None,
        content_id: str | None = None,
        link_fallback_advised: bool = False,
    ) -> None:
        self.profile = profile
        self.size = size
        self.limit = limit
        self.content_id = content_id
        self.link_fallback_advised = link_fallback_advised
        super().__init__(message)

    @property
    def over_by(self) -> int | None:
        """Bytes over the limit, when the message's size is known."""
        if self.size is None or self.limit is None:
            return None
        return self.size - self.limit


class MediaError(FitError):
    """A part whose bytes cannot be used as they are: empty, truncated, not the type they claim,
    too many pixels to decode safely, or of a type the profile refuses and nothing can convert."""


class Action(StrEnum):
    """What was done to a part."""

    RETYPE = "retype"  # the declared media type was wrong and is corrected (bytes unchanged)
    RECODE = "recode"  # text re-encoded to the profile's charset
    CONVERT = "convert"  # re-encoded as another media type (PNG -> JPEG ...)
    RESIZE = "resize"  # scaled down (images)
    RECOMPRESS = "recompress"  # same type and size, fewer bytes (lower quality, fewer colours)
    FIRST_FRAME = "first-frame"  # an animation replaced by its first frame
    TRANSCODE = "transcode"  # audio/video re-encoded by ffmpeg
    DROP = "drop"  # removed (link fallback)
    ADD = "add"  # added (the link fallback's text)


@dataclass(frozen=True, slots=True)
class PartState:
    """A part as it was or became: type, body bytes (before transfer encoding), image size."""

    media_type: str
    bytes: int
    width: int | None = None
    height: int | None = None
    #: frames of an animated image (None for non-images, 1 for stills)
    frames: int | None = None
    charset: str | None = None

    def describe(self) -> str:
        """``image/jpeg 123,456 B 1280x960`` (plus frames/charset when they matter)."""
        text = f"{self.media_type} {self.bytes:,} B"
        if self.width is not None and self.height is not None:
            text += f" {self.width}x{self.height}"
        if self.frames is not None and self.frames > 1:
            text += f" {self.frames} frames"
        if self.charset:
            text += f" {self.charset}"
        return text


@dataclass(frozen=True, slots=True)
class Change:
    """What happened to one part: ``before`` -> ``after`` (None for an added/dropped part)."""

    content_id: str
    actions: tuple[Action, ...]
    before: PartState | None
    after: PartState | None
    #: how the new form was made ("JPEG q65", "PNG 256 colours", "ffmpeg aac 32 kbit/s") or why
    detail: str = ""

    @property
    def action(self) -> str:
        """The actions joined with "+": ``convert+resize``."""
        return "+".join(a.value for a in self.actions)

    def describe(self) -> str:
        """One line for people: ``photo: convert+resize image/png ... -> image/jpeg ... (q75)``."""
        before = self.before.describe() if self.before else "-"
        after = self.after.describe() if self.after else "-"
        tail = f" ({self.detail})" if self.detail else ""
        return f"{self.content_id}: {self.action} {before} -> {after}{tail}"


@dataclass(frozen=True, slots=True)
class FitResult:
    """The fitted presentation and what was changed to get it (empty when it already fitted)."""

    presentation: Presentation
    changes: tuple[Change, ...]
    #: the message's size as the profile counts it, and the profile's limit
    size: int = 0
    limit: int = 0
    #: True when the result is the text + link fallback
    fallback: bool = False


# --------------------------------------------------------------------------- measuring


def content_entity(presentation: Presentation) -> Part:
    """The MM content entity a minimal builder makes: multipart/related with the SMIL part as its
    start (type="application/smil") when there is SMIL or there are slides, else multipart/mixed;
    then each item in order with its Content-ID, Content-Location and charset.

    SMIL for slides without caller SMIL is written by ``_smil_for``, an OMA MMS SMIL of the
    same shape the real builder writes (one root-layout, Image and Text regions, a par per slide).
    """
    leaves = [_leaf(item) for item in presentation.items]
    smil = presentation.smil
    if smil is None and presentation.slides:
        smil = _smil_for(presentation)
    if smil is None:
        return make_multipart(leaves, "mixed")
    used = {item.content_id for item in presentation.items}
    cid = "smil-" + hashlib.sha256(smil).hexdigest()[:8]
    while cid in used:
        cid += "-0"
    smil_part = make_part(smil, "application/smil", content_id=cid, content_location=SMIL_LOCATION)
    params = {"type": "application/smil", "start": f"<{cid}>"}
    return make_multipart([smil_part, *leaves], "related", params=params)


def message_size(
    presentation: Presentation,
    profile: Profile,
    *,
    to_part: Callable[[Presentation], Part] | None = None,
    dialect: Dialect | None = None,
    envelope_bytes: int | None = None,
) -> int:
    """The presentation's size as ``profile`` counts it (see mm7.content.profile): the serialised
    content entity (``to_part`` or ``content_entity``) with the link's transfer encodings, plus,
    for count="swa", the SOAP part of ``envelope_bytes`` (default the profile's allowance) and the
    outer SwA framing the codec adds."""
    part = (to_part or content_entity)(presentation)
    return _Meter(profile, dialect, envelope_bytes).size(part)


class _Meter:
    """Measures content entities the way the profile counts them."""

    def __init__(self, profile: Profile, dialect: Dialect | None, envelope_bytes: int | None):
        self.profile = profile
        self.dialect = dialect
        self.envelope_bytes = envelope_bytes

    def cte(self, media_type: str) -> str:
        """The Content-Transfer-Encoding a leaf of ``media_type`` travels in."""
        if self.dialect is not None:
            return self.dialect.transfer_encoding_for(media_type)
        cte = self.profile.transfer_encoding
        if media_type.startswith("text/") or media_type == "application/smil":
            return "8bit" if cte in ("base64", "quoted-printable") else cte
        return cte

    def wire(self, item: MediaItem) -> int:
        """Bytes ``item``'s body takes on the wire (after transfer encoding)."""
        cte = self.cte(item.media_type)
        n = len(item.data)
        if cte == "base64":  # as mime.encode_body writes it: 76-character lines joined by CRLF
            chars = -(-n // 3) * 4
            return chars + 2 * max(0, -(-chars // 76) - 1)
        if cte == "quoted-printable":
            return len(encode_body(item.data, cte))
        return n

    def raw_budget(self, media_type: str, wire_bytes: int) -> int:
        """The most body bytes that take at most ``wire_bytes`` on the wire."""
        cte = self.cte(media_type)
        if cte == "base64":  # 57 bytes -> one 76-character line + CRLF
            return max(0, wire_bytes * 57 // 78 - 3)
        if cte == "quoted-printable":  # binary can triple; a bound, not an estimate
            return max(0, wire_bytes // 3)
        return max(0, wire_bytes)

    def size(self, part: Part) -> int:
        """The counted size of content entity ``part``, framed as mm7.core.codec.encode frames
        it (with the dialect's Content-ID brackets, SOAP part and start/type parameters)."""
        part = self._with_cte(part)
        if part.content_id is None:  # the codec names the entity so <Content href> can point at it
            part = dataclasses.replace(part, content_id=CONTENT_ID)
        d = self.dialect
        brackets = d.content_id_brackets if d is not None else True
        if self.profile.count == "content":
            return len(_serialize(part, bracket_content_id=brackets))
        envelope = self.envelope_bytes
        if envelope is None:
            envelope = self.profile.soap_allowance_bytes
        soap_cid = d.soap_content_id if d is not None else "mm7-soap"
        soap = make_part(
            b" " * envelope,
            d.soap_content_type if d is not None else 'text/xml; charset="utf-8"',
            content_id=soap_cid,
            transfer_encoding=d.soap_transfer_encoding if d is not None else None,
        )
        params: dict[str, str] = {}
        if d is None or d.emit_type:
            params["type"] = "text/xml"
        if d is None or d.emit_start:
            params["start"] = f"<{soap_cid}>" if d is None or d.start_brackets else soap_cid
        _, body = build_multipart([soap, part], params=params, bracket_content_id=brackets)
        return len(body)

    def _with_cte(self, part: Part) -> Part:
        if part.children:
            kids = tuple(self._with_cte(c) for c in part.children)
            return dataclasses.replace(part, children=kids)
        if part.transfer_encoding is not None:
            return part
        return dataclasses.replace(part, transfer_encoding=self.cte(part.content_type.mime_type))


def _leaf(item: MediaItem) -> Part:
    ct = item.media_type if not item.charset else f"{item.media_type}; charset={item.charset}"
    return make_part(
        item.data, ct, content_id=item.content_id, content_location=item.content_location
    )


def _smil_for(presentation: Presentation) -> bytes:
    """A SMIL document for ``presentation.slides`` in the OMA MMS shape (for measuring)."""
    landscape = presentation.layout in (Layout.LANDSCAPE_TEXT_RIGHT, Layout.LANDSCAPE_TEXT_LEFT)
    if landscape:
        root = 'width="480" height="320"'
        img = 'left="0" top="0" width="320" height="320"'
        txt = 'left="320" top="0" width="160" height="320"'
    else:
        root = 'width="320" height="480"'
        img = 'left="0" top="0" width="320" height="320"'
        txt = 'left="0" top="320" width="320" height="160"'
    lines = [
        "<smil>",
        "<head>",
        "<layout>",
        f"<root-layout {root}/>",
        f'<region id="Image" {img} fit="meet"/>',
        f'<region id="Text" {txt} fit="scroll"/>',
        "</layout>",
        "</head>",
        "<body>",
    ]
    kinds = {item.content_id: item.kind for item in presentation.items}
    for slide in presentation.slides:
        lines.append(f'<par dur="{slide.duration_ms}ms">')
        if slide.visual is not None:
            tag = "video" if kinds.get(slide.visual) == "video" else "img"
            lines.append(f'<{tag} src={quoteattr("cid:" + slide.visual)} region="Image"/>')
        if slide.text is not None:
            lines.append(f'<text src={quoteattr("cid:" + slide.text)} region="Text"/>')
        if slide.audio is not None:
            lines.append(f"<audio src={quoteattr('cid:' + slide.audio)}/>")
        lines.extend(f"<ref src={quoteattr('cid:' + ref)}/>" for ref in slide.refs)
        lines.append("</par>")
    lines += ["</body>", "</smil>", ""]
    return "\r\n".join(lines).encode("utf-8")


# --------------------------------------------------------------------------- link fallback


def link_fallback(
    presentation: Presentation,
    url: str,
    *,
    text: str | None = None,
    charset: str = "utf-8",
    duration_ms: int = 5000,
) -> Presentation:
    """A text-only presentation pointing at ``url``, where the gateway hosts the media.

    The text is ``text`` (``{url}`` in it is replaced by the URL, else the URL follows on its own
    line), or by default the presentation's own text parts followed by the URL. ``url`` must be an
    absolute http(s) URL without spaces or control characters: it is shown to the recipient.
    """
    _check_url(url)
    if text is None:
        texts = [_decode_text(item) for item in presentation.items if item.kind == "text"]
        body = "\n".join(t.strip() for t in texts if t.strip())
        message = f"{body}\n\n{url}" if body else f"View this message: {url}"
    elif "{url}" in text:
        message = text.replace("{url}", url)
    else:
        message = f"{text.rstrip()}\n{url}" if text.strip() else url
    try:
        data = message.encode(charset)
    except (LookupError, UnicodeEncodeError) as exc:
        raise ValueError(f"the fallback text cannot be written in {charset!r}: {exc}") from None
    item = MediaItem(data, "text/plain", "link", "link.txt", codecs.lookup(charset).name)
    return Presentation(
        (item,), (Slide(duration_ms=duration_ms, text="link"),), presentation.layout
    )


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the fallback URL must be an absolute http(s) URL, got {url!r}")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url) or len(url) > 2048:
        raise ValueError(
            "the fallback URL must hold no spaces or control characters and be at most 2048 "
            f"characters: {url!r}"
        )


def _decode_text(item: MediaItem) -> str:
    try:
        return item.data.decode(item.charset or "utf-8")
    except (LookupError, UnicodeDecodeError):
        return item.data.decode("utf-8", "replace")


# --------------------------------------------------------------------------- ffmpeg


class _Shrinkable(Protocol):
    """A part with a ladder of smaller forms (an image Reducer or an ffmpeg transcoder)."""

    @property
    def has_last_resort(self) -> bool: ...

    def first(self, *, fast: bool = False) -> Rendition: ...

    def under(self, max_bytes: int, *, last_resort: bool = False) -> Rendition | None: ...

    def smallest(self, *, last_resort: bool = False) -> Rendition: ...

    def release(self) -> None: ...


#: (media type, ffmpeg muxer, encoder, extra args, bitrates to try in bit/s, best first)
_AUDIO_OUT: tuple[tuple[str, str, str, tuple[str, ...], tuple[int, ...]], ...] = (
    ("audio/amr", "amr", "libopencore_amrnb", ("-ar", "8000", "-ac", "1"), (12200, 7950, 4750)),
    ("audio/mp4", "ipod", "aac", ("-ac", "1"), (96000, 64000, 48000, 32000, 24000, 16000)),
    ("audio/mpeg", "mp3", "libmp3lame", ("-ac", "1"), (96000, 64000, 48000, 32000, 24000, 16000)),
)
#: (media type, muxer, video encoder, audio encoder) for video, best first
_VIDEO_OUT: tuple[tuple[str, str, str, str], ...] = (
    ("video/3gpp", "3gp", "mpeg4", "aac"),
    ("video/mp4", "mp4", "libx264", "aac"),
    ("video/mp4", "mp4", "mpeg4", "aac"),
)
_DURATION = re.compile(rb"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")


def transcode_targets(kind: str, profile: Profile, ffmpeg: str | None) -> tuple[str, ...]:
    """The ``kind`` ("audio" or "video") media types ``profile`` takes that ``ffmpeg`` can make,
    best first: empty when audio or video of a type the profile refuses can never go out."""
    if ffmpeg is None:
        return ()
    encoders = _encoders(ffmpeg)
    if kind == "audio":
        out = (o[0] for o in _AUDIO_OUT if profile.allows(o[0]) and o[2] in encoders)
    elif kind == "video":
        out = (
            o[0]
            for o in _VIDEO_OUT
            if profile.allows(o[0]) and o[2] in encoders and o[3] in encoders
        )
    else:
        return ()
    return tuple(dict.fromkeys(out))


@lru_cache(maxsize=8)
def _encoders(ffmpeg: str) -> frozenset[str]:
    """The encoder names the ffmpeg at ``ffmpeg`` was built with."""
    try:
        out = subprocess.run(
            [ffmpeg, "-hide_banner", "-encoders"], capture_output=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    names = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 2 and len(fields[0]) == 6 and fields[0][:1] in (b"A", b"V", b"S"):
            names.add(fields[1].decode("ascii", "replace"))
    return frozenset(names)


class _Transcoder:
    """Audio or video re-encoded by ffmpeg into a type the profile takes, at a byte target.

    Audio goes to AMR-NB (12.2/7.95/4.75 kbit/s), else AAC in M4A, else MP3, whichever the profile
    takes first and the ffmpeg build has. Video goes to 3GPP (MPEG-4 Part 2 + AAC, at most 320 px
    wide), else MP4 (H.264 or MPEG-4 + AAC). Bitrates come from the byte target and the duration
    ffmpeg reports (92% of the target, the rest for the container); each try that comes out too
    big is retried at 80% of its bitrate, three times, then at 176x144 for video.
    """

    has_last_resort = False

    def __init__(
        self, item: MediaItem, profile: Profile, ffmpeg: str, *, timeout: float = 300.0
    ) -> None:
        self.item = item
        self.ffmpeg = ffmpeg
        self.timeout = timeout
        self.video = item.kind == "video"
        encoders = _encoders(ffmpeg)
        self._audio = [o for o in _AUDIO_OUT if profile.allows(o[0]) and o[2] in encoders]
        self._videos = [
            o for o in _VIDEO_OUT if profile.allows(o[0]) and o[2] in encoders and o[3] in encoders
        ]
        if (self.video and not self._videos) or (not self.video and not self._audio):
            raise FitError(
                f"part {item.content_id!r} ({item.media_type}): ffmpeg at {ffmpeg} has no encoder "
                f"for any {item.kind} type the profile {profile.name!r} takes",
                profile=profile.name,
                content_id=item.content_id,
            )
        self._duration: float | None = None
        self._smallest: Rendition | None = None

    def first(self, *, fast: bool = False) -> Rendition:
        out = self._run(None, small=False)
        if out is None:
            raise self._failed()
        return out

    def under(self, max_bytes: int, *, last_resort: bool = False) -> Rendition | None:
        duration = self.duration()
        if duration is None or duration <= 0:
            for rate in self._ladder_rates():
                out = self._run(rate, small=False)
                if out is not None and len(out.data) <= max_bytes:
                    return out
            return None
        bps = int(max_bytes * 8 * 0.92 / duration)
        for small in (False, True) if self.video else (False,):
            rate = bps
            for _ in range(4):
                out = self._run(rate, small=small)
                if out is not None and len(out.data) <= max_bytes:
                    return out
                rate = int(rate * 0.8)
        return None

    def smallest(self, *, last_resort: bool = False) -> Rendition:
        if self._smallest is None:
            rates = self._ladder_rates()
            out = self._run(rates[-1], small=True)
            if out is None:
                raise self._failed()
            self._smallest = out
        return self._smallest

    def release(self) -> None:
        return None

    def duration(self) -> float | None:
        """The duration ffmpeg reads from the input's headers, in seconds."""
        if self._duration is None:
            with tempfile.TemporaryDirectory(prefix="mm7-ffmpeg-") as tmp:
                src = Path(tmp) / "in"
                src.write_bytes(self.item.data)
                try:
                    proc = subprocess.run(
                        [self.ffmpeg, "-hide_banner", "-nostdin", "-i", str(src)],
                        capture_output=True,
                        timeout=60,
                        check=False,
                    )
                except (OSError, subprocess.SubprocessError):
                    return None
            m = _DURATION.search(proc.stderr)
            if m is None:
                return None
            h, mi, s = m.groups()
            self._duration = int(h) * 3600 + int(mi) * 60 + float(s)
        return self._duration

    def _ladder_rates(self) -> tuple[int, ...]:
        if self.video:
            return (384000, 256000, 128000, 64000, 32000)
        return self._audio[0][4]

    def _failed(self) -> FitError:
        return FitError(
            f"part {self.item.content_id!r} ({self.item.media_type}): ffmpeg could not transcode "
            "it (see the ffmpeg log by running it by hand)",
            profile="",
            content_id=self.item.content_id,
        )

    def _run(self, bitrate: int | None, *, small: bool) -> Rendition | None:
        """One ffmpeg run at ``bitrate`` (bit/s; None = the encoder's default quality)."""
        if self.video:
            media_type, muxer, vcodec, acodec = self._videos[0]
            width = 176 if small else 320
            audio_rate = 12000 if small else 24000
            args = [
                "-c:v",
                vcodec,
                "-vf",
                f"scale='min({width},iw)':-2",
                "-c:a",
                acodec,
                "-ac",
                "1",
                "-b:a",
                str(audio_rate),
            ]
            if bitrate is not None:
                args += ["-b:v", str(max(16000, bitrate - audio_rate))]
            note = f"ffmpeg {vcodec}+{acodec}" + (f" {bitrate // 1000} kbit/s" if bitrate else "")
        else:
            media_type, muxer, codec, extra, rates = self._audio[0]
            args = ["-vn", "-c:a", codec, *extra]
            if bitrate is not None:
                if codec == "libopencore_amrnb":  # AMR has fixed modes: the nearest not above
                    bitrate = next((r for r in rates if r <= bitrate), rates[-1])
                args += ["-b:a", str(bitrate)]
            note = f"ffmpeg {codec}" + (f" {bitrate / 1000:g} kbit/s" if bitrate else "")
        with tempfile.TemporaryDirectory(prefix="mm7-ffmpeg-") as tmp:
            src = Path(tmp) / "in"
            dst = Path(tmp) / f"out.{_EXTENSIONS.get(media_type, 'bin')}"
            src.write_bytes(self.item.data)
            cmd = [self.ffmpeg, "-hide_banner", "-nostdin", "-y", "-i", str(src), *args]
            cmd += ["-map_metadata", "-1", "-f", muxer, str(dst)]
            try:
                proc = subprocess.run(cmd, capture_output=True, timeout=self.timeout, check=False)
            except (OSError, subprocess.SubprocessError):
                return None
            if proc.returncode != 0 or not dst.is_file():
                return None
            data = dst.read_bytes()
        if not data:
            return None
        return Rendition(data, media_type, 0, 0, 0, note)


# --------------------------------------------------------------------------- the fitter


@dataclass(slots=True)
class _Slot:
    """One item while fitting: where it started, where it is, and how it may still shrink."""

    original: MediaItem
    item: MediaItem
    before: PartState
    actions: list[Action] = dataclasses.field(default_factory=list)
    detail: str = ""
    info: ImageInfo | None = None
    shrink: _Shrinkable | None = None
    exhausted: bool = False
    #: the current form is a fast encode of rung 1, to be written optimised if it is kept
    provisional: bool = False
    after_dims: tuple[int, int, int] | None = None  # width, height, frames of the current form

    @property
    def content_id(self) -> str:
        return self.item.content_id


def fit_to_profile(
    presentation: Presentation,
    profile: Profile,
    *,
    ffmpeg: str | None = FFMPEG,
    to_part: Callable[[Presentation], Part] | None = None,
    dialect: Dialect | None = None,
    envelope_bytes: int | None = None,
    fallback_url: str | None = None,
    fallback_text: str | None = None,
) -> FitResult:
    """Make ``presentation`` fit ``profile`` (see the module docstring for the steps).

    ``ffmpeg``: the ffmpeg executable for audio/video that must change (None: refuse instead).
    ``to_part``: the builder whose entity is measured (default ``content_entity``).
    ``dialect``: take transfer encodings (and the SOAP part) from it instead of the profile.
    ``envelope_bytes``: the SOAP envelope's real size, for count="swa" profiles.
    ``fallback_url``/``fallback_text``: where the gateway hosts the media, for the text + link
    fallback when the profile's ``on_no_fit`` is "link".

    Raises MediaError for unusable parts and FitError when nothing makes the message fit.
    """
    fitter = _Fitter(
        presentation, profile, ffmpeg, to_part, _Meter(profile, dialect, envelope_bytes)
    )
    try:
        return fitter.run(fallback_url, fallback_text)
    finally:
        fitter.release()


class _Fitter:
    def __init__(
        self,
        presentation: Presentation,
        profile: Profile,
        ffmpeg: str | None,
        to_part: Callable[[Presentation], Part] | None,
        meter: _Meter,
    ) -> None:
        self.p = presentation
        self.profile = profile
        self.ffmpeg = ffmpeg
        self.to_part = to_part or content_entity
        self.meter = meter
        self.slots: list[_Slot] = []
        self.hot: _Shrinkable | None = None
        self.smil = presentation.smil

    # ------------------------------------------------------------------ driver

    def run(self, fallback_url: str | None, fallback_text: str | None) -> FitResult:
        profile = self.profile
        limit = profile.max_message_bytes
        has_smil = self.p.smil is not None or bool(self.p.slides)
        if profile.smil_required and not has_smil:
            raise FitError(
                f"profile {profile.name!r} requires SMIL in every message, and this presentation "
                "has neither slides nor SMIL: build it with slides (SMIL auto) or supply SMIL",
                profile=profile.name,
            )
        parts = len(self.p.items) + (1 if has_smil else 0)
        if parts > profile.max_parts:
            return self._no_fit(
                f"the message has {parts} MIME parts (SMIL included) and profile "
                f"{profile.name!r} allows at most {profile.max_parts}",
                None,
                fallback_url,
                fallback_text,
            )
        if not self.p.items:
            raise FitError("the presentation has no parts", profile=profile.name)
        for item in self.p.items:
            self.slots.append(self._check(item))
        for slot in self.slots:
            self._required(slot)
        size = self._shrink()
        self._verify_untouched()
        if size <= limit:
            size = self._finish()
        if size > limit:
            return self._no_fit(self._over_message(size), size, fallback_url, fallback_text)
        return FitResult(self._presentation(), self._changes(), size, limit)

    def release(self) -> None:
        for slot in self.slots:
            if slot.shrink is not None:
                slot.shrink.release()

    # ------------------------------------------------------------------ checks

    def _media_error(self, item: MediaItem, declared: str, reason: str) -> MediaError:
        return MediaError(
            f"part {item.content_id!r} ({declared}): {reason}",
            profile=self.profile.name,
            content_id=item.content_id,
        )

    def _check(self, item: MediaItem) -> _Slot:
        """Validate ``item`` and correct its type label; nothing else changes here."""
        declared = item.media_type.split(";", 1)[0].strip().lower()
        if not item.data:
            raise self._media_error(item, declared, "the part is empty (0 bytes)")
        before = PartState(declared, len(item.data), charset=item.charset)
        real = sniff(item.data).lower()
        actions: list[Action] = []
        declared_kind = declared.split("/", 1)[0]
        real_kind = real.split("/", 1)[0]
        media_type = declared
        if real != declared and (declared_kind in _MEDIA_KINDS or real_kind in _MEDIA_KINDS):
            if real == OCTET_STREAM and declared_kind != "image":
                pass  # sniffing does not know every audio/video codec: trust the label
            elif declared_kind == "image" and real_kind != "image":
                what = "no known image signature" if real == OCTET_STREAM else real
                raise self._media_error(
                    item, declared, f"declared as an image, but the bytes are not one ({what})"
                )
            elif declared_kind in _MEDIA_KINDS and real_kind not in _MEDIA_KINDS:
                raise self._media_error(item, declared, f"the bytes are {real}, not {declared}")
            elif self.profile.on_type_mismatch == "refuse":
                raise self._media_error(
                    item,
                    declared,
                    f"the bytes are {real}, not {declared}, and profile "
                    f"{self.profile.name!r} refuses mislabelled parts",
                )
            else:
                media_type = real
                actions.append(Action.RETYPE)
        if media_type != item.media_type:
            item = dataclasses.replace(item, media_type=media_type)
        slot = _Slot(item, item, before, actions)
        if media_type.startswith("image/"):
            self._check_image(slot)
        return slot

    def _check_image(self, slot: _Slot) -> None:
        item = slot.item
        if not decodable(item.media_type):
            if self.profile.allows(item.media_type):
                return  # passes through untouched if it fits; it cannot be scaled
            raise self._media_error(
                item,
                item.media_type,
                f"profile {self.profile.name!r} does not take {item.media_type}, and it cannot "
                "be decoded here to convert it",
            )
        try:
            info = probe(item.data, item.media_type)
            check_budget(info, self.profile.max_decode_pixels)
        except ImageError as exc:
            raise self._media_error(item, item.media_type, str(exc)) from None
        slot.info = info
        slot.before = dataclasses.replace(
            slot.before, width=info.width, height=info.height, frames=info.frames
        )
        slot.after_dims = (info.width, info.height, info.frames)

    def _finish(self) -> int:
        """Write the images still in their fast rung-1 encode optimised (only ever smaller, so
        the message still fits); the message's size afterwards."""
        for slot in self.slots:
            if slot.provisional and slot.shrink is not None:
                with self._reading(slot):
                    out = self._shrinker(slot).first()
                if len(out.data) < len(slot.item.data):
                    self._apply(slot, out)
                slot.provisional = False
        return self._measure()

    def _verify_untouched(self) -> None:
        """Decode the images that go out as they came (a JPEG at 1/8 scale, every GIF frame), to
        refuse truncated or corrupt ones; re-made images were decoded in full already."""
        for slot in self.slots:
            if slot.info is not None and slot.item.data is slot.original.data:
                try:
                    verify(slot.item.data, slot.info, self.profile.max_decode_pixels)
                except ImageError as exc:
                    item = slot.item
                    raise self._media_error(item, item.media_type, str(exc)) from None

    @contextmanager
    def _reading(self, slot: _Slot) -> Iterator[None]:
        """ImageError from re-making ``slot``'s image becomes a MediaError naming the part."""
        try:
            yield
        except ImageError as exc:
            item = slot.original
            raise self._media_error(item, item.media_type, str(exc)) from None

    # ------------------------------------------------------------------ required changes

    def _required(self, slot: _Slot) -> None:
        item = slot.item
        profile = self.profile
        kind = item.kind
        if kind == "text" and item.media_type.startswith("text/"):
            self._recode(slot)
            if not profile.allows(slot.item.media_type):
                raise self._refused(slot)
            return
        if slot.info is not None:
            info = slot.info
            needs = (
                not profile.allows(item.media_type)
                or not profile.fits_box(info.width, info.height)
                or (info.animated and not profile.allows("image/gif"))
            )
            if needs:
                with self._reading(slot):
                    self._apply(slot, self._shrinker(slot).first(fast=True))
                slot.provisional = True
            return
        if kind in ("audio", "video"):
            if not profile.allows(item.media_type):
                if self.ffmpeg is None:
                    raise FitError(
                        f"part {item.content_id!r} ({item.media_type}): profile "
                        f"{profile.name!r} does not take this type, and ffmpeg is not available "
                        "to transcode it",
                        profile=profile.name,
                        content_id=item.content_id,
                    )
                self._apply(slot, self._shrinker(slot).first())
            return
        if not profile.allows(item.media_type):
            raise self._refused(slot)

    def _refused(self, slot: _Slot) -> FitError:
        return FitError(
            f"part {slot.content_id!r} ({slot.item.media_type}): profile {self.profile.name!r} "
            f"does not take this type (it takes {', '.join(self.profile.allowed_types)})",
            profile=self.profile.name,
            content_id=slot.content_id,
        )

    def _recode(self, slot: _Slot) -> None:
        item = slot.item
        target = codecs.lookup(self.profile.text_charset).name
        source = item.charset
        if source is None:
            if item.data.isascii():
                return
            source = "utf-8"
        try:
            current = codecs.lookup(source).name
        except LookupError:
            raise self._media_error(item, item.media_type, f"unknown charset {source!r}") from None
        if current == target and item.charset is not None:
            return
        try:
            text = item.data.decode(current)
        except UnicodeDecodeError as exc:
            raise self._media_error(
                item,
                item.media_type,
                f"the text is not valid {current} ({exc.reason} at byte {exc.start})",
            ) from None
        try:
            data = text.encode(target)
        except UnicodeEncodeError as exc:
            raise self._media_error(
                item,
                item.media_type,
                f"the text holds {exc.object[exc.start : exc.end]!r}, which the profile's charset "
                f"{target} cannot hold",
            ) from None
        if data.startswith(codecs.BOM_UTF8) and target == "utf-8":
            data = data[len(codecs.BOM_UTF8) :]
        slot.item = dataclasses.replace(item, data=data, charset=target, sha256=None)
        slot.actions.append(Action.RECODE)
        slot.detail = f"{current} -> {target}"

    def _shrinker(self, slot: _Slot) -> _Shrinkable:
        if slot.shrink is None:
            item = slot.original
            if slot.info is not None:
                box = self.profile.image_box(slot.info.width, slot.info.height)
                try:
                    slot.shrink = Reducer(
                        item.data,
                        slot.info,
                        allows=self.profile.allows,
                        box=box,
                        max_pixels=self.profile.max_decode_pixels,
                    )
                except ImageError as exc:
                    raise self._media_error(item, item.media_type, str(exc)) from None
            else:
                assert self.ffmpeg is not None
                slot.shrink = _Transcoder(item, self.profile, self.ffmpeg)
        self._heat(slot.shrink)
        return slot.shrink

    def _heat(self, shrink: _Shrinkable) -> None:
        """Keep decoded pixels of one image at a time (bounded memory)."""
        if self.hot is not None and self.hot is not shrink:
            self.hot.release()
        self.hot = shrink

    def _apply(self, slot: _Slot, out: Rendition) -> None:
        """Make ``out`` the slot's current form, and name what that changed."""
        original = slot.original
        actions: list[Action] = [a for a in slot.actions if a in (Action.RETYPE, Action.RECODE)]
        if slot.info is not None:
            info = slot.info
            if out.first_frame:
                actions.append(Action.FIRST_FRAME)
            if out.media_type != original.media_type:
                actions.append(Action.CONVERT)
            if (out.width, out.height) != (info.width, info.height):
                actions.append(Action.RESIZE)
            if len(actions) == len([a for a in actions if a is Action.RETYPE]):
                actions.append(Action.RECOMPRESS)
            slot.after_dims = (out.width, out.height, out.frames)
        else:
            actions.append(Action.TRANSCODE)
        location = original.content_location
        if out.media_type != original.media_type:
            location = _relocate(location, out.media_type)
        slot.item = dataclasses.replace(
            original,
            data=out.data,
            media_type=out.media_type,
            content_location=location,
            sha256=None,  # new bytes
        )
        slot.actions = actions
        slot.detail = out.note

    # ------------------------------------------------------------------ size

    def _measure(self) -> int:
        return self.meter.size(self.to_part(self._presentation()))

    def _shrinkable(self, slot: _Slot) -> bool:
        if slot.info is not None:
            return decodable(slot.original.media_type)
        return slot.item.kind in ("audio", "video") and self.ffmpeg is not None

    def _shrink(self) -> int:
        """Shrink the largest parts until the message fits or nothing shrinks further."""
        limit = self.profile.max_message_bytes
        size = self._measure()
        if size <= limit:
            return size
        for last_resort in (False, True):
            if last_resort:
                again = [s for s in self.slots if s.shrink is not None and s.shrink.has_last_resort]
                if not again:
                    break
                for slot in again:
                    slot.exhausted = False
            for _ in range(_MAX_ROUNDS):
                if size <= limit:
                    return size
                live = [s for s in self.slots if not s.exhausted and self._shrinkable(s)]
                if last_resort:
                    live = [s for s in live if s.shrink is not None and s.shrink.has_last_resort]
                if not live:
                    break
                wire = {id(s): self.meter.wire(s.item) for s in self.slots}
                live.sort(key=lambda s: wire[id(s)], reverse=True)
                slot = live[0]
                current = wire[id(slot)]
                excess = size - limit
                live_total = sum(wire[id(s)] for s in live)
                # what the live parts may take in total: the limit less everything else
                room = limit - (size - live_total)
                share = room * current // live_total if live_total else 0
                target = min(max(current - excess, share), current * 95 // 100)
                budget = self.meter.raw_budget(slot.item.media_type, target)
                with self._reading(slot):
                    shrink = self._shrinker(slot)
                    out = shrink.under(budget, last_resort=last_resort) if budget > 0 else None
                    if out is None:
                        slot.exhausted = True
                        out = shrink.smallest(last_resort=last_resort)
                if len(out.data) >= len(slot.item.data):
                    slot.exhausted = True
                    continue  # already this small: nothing to gain
                self._apply(slot, out)
                slot.provisional = False
                size = self._measure()
        return size

    # ------------------------------------------------------------------ results

    def _presentation(self) -> Presentation:
        items = tuple(slot.item for slot in self.slots) if self.slots else self.p.items
        smil = self.smil
        if smil is not None:
            for slot in self.slots:
                old = slot.original.content_location
                new = slot.item.content_location
                if old != new and old:
                    smil = _rewrite_src(smil, old, new)
        return Presentation(items, self.p.slides, self.p.layout, smil)

    def _changes(self) -> tuple[Change, ...]:
        changes: list[Change] = []
        for slot in self.slots:
            if not slot.actions:
                continue
            item = slot.item
            after = PartState(item.media_type, len(item.data), charset=item.charset)
            if slot.after_dims is not None:
                w, h, frames = slot.after_dims
                after = dataclasses.replace(after, width=w, height=h, frames=frames)
            changes.append(
                Change(slot.content_id, tuple(slot.actions), slot.before, after, slot.detail)
            )
        return tuple(changes)

    def _over_message(self, size: int) -> str:
        limit = self.profile.max_message_bytes
        stuck = [
            s
            for s in sorted(self.slots, key=lambda s: len(s.item.data), reverse=True)
            if not self._shrinkable(s) and s.item.kind in ("audio", "video", "other", "image")
        ]
        text = (
            f"the message is {size:,} bytes as profile {self.profile.name!r} counts it "
            f"({self.profile.count}), {size - limit:,} bytes over its limit of {limit:,}"
        )
        if stuck:
            names = ", ".join(
                f"{s.content_id!r} ({s.item.media_type}, {len(s.item.data):,} bytes)"
                for s in stuck[:3]
            )
            why = " without ffmpeg" if any(s.item.kind in ("audio", "video") for s in stuck) else ""
            text += f"; parts that cannot be reduced{why}: {names}"
        elif any(s.info is not None for s in self.slots):
            text += "; every image is already at its smallest rendition"
        return text

    def _no_fit(
        self, reason: str, size: int | None, url: str | None, text: str | None
    ) -> FitResult:
        profile = self.profile
        limit = profile.max_message_bytes
        if profile.on_no_fit != "link":
            raise FitError(reason, profile=profile.name, size=size, limit=limit)
        if url is None:
            raise FitError(
                f"{reason}; profile {profile.name!r} falls back to a text message with a link: "
                "host the media and pass fallback_url (or call link_fallback)",
                profile=profile.name,
                size=size,
                limit=limit,
                link_fallback_advised=True,
            )
        fallback = link_fallback(self.p, url, text=text, charset=profile.text_charset)
        fallback_size = self.meter.size(self.to_part(fallback))
        if fallback_size > limit:
            raise FitError(
                f"{reason}; even the text + link fallback is {fallback_size:,} bytes",
                profile=profile.name,
                size=fallback_size,
                limit=limit,
            )
        changes = [
            Change(
                item.content_id,
                (Action.DROP,),
                PartState(item.media_type, len(item.data), charset=item.charset),
                None,
                "replaced by the link fallback",
            )
            for item in self.p.items
        ]
        link = fallback.items[0]
        changes.append(
            Change(
                link.content_id,
                (Action.ADD,),
                None,
                PartState(link.media_type, len(link.data), charset=link.charset),
                f"link to {url}",
            )
        )
        return FitResult(fallback, tuple(changes), fallback_size, limit, fallback=True)


def _relocate(location: str, media_type: str) -> str:
    """``location`` with the file name extension of ``media_type`` (photo.png -> photo.jpg)."""
    ext = _EXTENSIONS.get(media_type)
    if not ext:
        return location
    stem, dot, old = location.rpartition(".")
    if dot and stem and "/" not in old and len(old) <= 5:
        return f"{stem}.{ext}"
    return f"{location}.{ext}"


def _rewrite_src(smil: bytes, old: str, new: str) -> bytes:
    """Caller SMIL that referred to a part by its old Content-Location refers to the new one."""
    pattern = re.compile(rb"""(src\s*=\s*)(["'])""" + re.escape(old.encode("utf-8")) + rb"\2")
    return pattern.sub(lambda m: m.group(1) + m.group(2) + new.encode("utf-8") + m.group(2), smil)
