"""Image work for fitting (Pillow): probe without decoding, decode within a pixel budget, and a
ladder of ever smaller renditions (downscale, recompress, convert) to pick from.

Memory stays bounded: ``probe`` reads headers only (Pillow opens lazily), and no image is decoded
to more than ``max_pixels`` pixels. A JPEG bigger than that is decoded with libjpeg's DCT scaling
(``Image.draft``: 1/2, 1/4 or 1/8 of each side) straight to about the size it will be sent at, so a
50-megapixel photo costs a few megabytes, not 150. Anything else over the budget is refused with
an ImageError that says how big it is. Pillow's own process-wide decompression-bomb limit is left
alone (a library must not change it); ours is lower and is checked before any pixel is decoded.

Renditions carry no metadata: EXIF (with GPS position and camera serial numbers), ICC profiles
and comments are dropped, and the EXIF orientation is applied to the pixels instead, so that
handsets that ignore EXIF show the picture the right way up. JPEGs are written baseline (OMA MMS
lists baseline JPEG as the core image format) with optimised Huffman tables.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from PIL import Image, ImageSequence, UnidentifiedImageError

from mm7.core.errors import MM7Error

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FINAL_QUALITIES",
    "MIN_LONG_SIDE",
    "OUTPUT_TYPES",
    "QUALITIES",
    "SCALES",
    "ImageError",
    "ImageInfo",
    "Reducer",
    "Rendition",
    "check_budget",
    "decodable",
    "decoded_size",
    "fit_within",
    "probe",
    "verify",
]

WBMP = "image/vnd.wap.wbmp"
#: media type -> the Pillow plugin allowed to open it (no other plugin ever sees the bytes)
_PIL_FORMATS = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/webp": "WEBP",
}
#: output types in order of preference for a picture that must change type or shrink
_OUTPUTS = ("image/jpeg", "image/png", "image/gif")
#: what a decodable image of a type a profile refuses can be converted to (best first)
OUTPUT_TYPES = _OUTPUTS

#: images are never decoded to more pixels than this unless the caller says otherwise
DEFAULT_MAX_PIXELS = 16_000_000
#: per-side scale factors tried, relative to the largest size the profile allows (each ~0.8 of
#: the one before, i.e. about 2/3 of the pixels)
SCALES = (1.0, 0.8, 0.64, 0.5, 0.4, 0.32, 0.25, 0.2, 0.16, 0.125, 0.1, 0.08, 0.064, 0.05)
#: JPEG qualities tried at each scale, best first: below ~55 blocking shows, so the ladder
#: scales down rather than go lower...
QUALITIES = (85, 75, 65, 55)
#: ...except at the smallest scale, where these are tried too before giving up
FINAL_QUALITIES = (45, 35, 25)
#: the ladder stops when the long side would be shorter than this (OMA Image Basic is 160x120)
MIN_LONG_SIDE = 120
#: palette sizes tried for PNG/GIF output at each scale (None: PNG in full colour), and at the end
_PALETTES: tuple[int | None, ...] = (None, 256, 64)
_GIF_PALETTES: tuple[int | None, ...] = (256, 64)
#: for animations: the frames' own palettes (None), then 32 entries per frame
_ANIM_PALETTES: tuple[int | None, ...] = (None, 32)
_FINAL_PALETTES: tuple[int | None, ...] = (16,)
#: a scale is skipped when its best step is predicted to be over the target by more than this
#: factor: going from the best quality to the lowest at one scale saves ~2x on photos
_REACH = 2.2
_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_WHITE = (255, 255, 255)
#: what Pillow's plugins raise on malformed or cut-short input (besides their own errors)
_BROKEN = (OSError, EOFError, ValueError, SyntaxError, IndexError, KeyError, struct.error)


class ImageError(MM7Error):
    """Image bytes that cannot be used: empty, truncated, not what they claim, or too big to decode
    safely. The message says which and, for size, by how much."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What an image's headers say, read without decoding pixels."""

    media_type: str
    #: as displayed: the EXIF orientation is applied (a 4000x3000 JPEG rotated 90 is 3000x4000)
    width: int
    height: int
    #: 1 for a still image; the frame count of an animated GIF
    frames: int
    has_alpha: bool
    #: the EXIF orientation tag (1 = as stored)
    orientation: int = 1

    @property
    def animated(self) -> bool:
        """True for a multi-frame GIF."""
        return self.frames > 1

    @property
    def pixels(self) -> int:
        """Width times height of one frame."""
        return self.width * self.height


@dataclass(frozen=True, slots=True)
class Rendition:
    """One candidate form of an image: its bytes and what they are."""

    data: bytes
    media_type: str
    width: int
    height: int
    frames: int
    #: how it was made, for reports ("JPEG q75", "PNG 256 colours", "GIF 12 frames")
    note: str
    #: True when this is the first frame of an animation (the animation was given up)
    first_frame: bool = False


# --------------------------------------------------------------------------- probing


def decodable(media_type: str) -> bool:
    """True when this module can decode images of ``media_type``."""
    return media_type == WBMP or media_type in _PIL_FORMATS


def probe(data: bytes, media_type: str) -> ImageInfo:
    """Read an image's size, frame count and alpha from its headers; decodes no pixels.

    ``media_type`` is the type the bytes really are (from mm7.core.sniff); only the Pillow plugin
    for that type may open them. ImageError when the headers cannot be read.
    """
    if not data:
        raise ImageError("the image is empty (0 bytes)")
    if media_type == WBMP:
        w, h, _ = _wbmp_header(data)
        return ImageInfo(WBMP, w, h, 1, False)
    fmt = _PIL_FORMATS.get(media_type)
    if fmt is None:
        raise ImageError(f"{media_type} images cannot be decoded here")
    with _open(data, fmt) as im:
        w, h = im.size
        frames = 1
        if fmt == "GIF":
            try:
                frames = int(getattr(im, "n_frames", 1))
            except _BROKEN as exc:
                raise ImageError(f"not a readable GIF: {_reason(exc)}") from None
        orientation = 1
        if fmt in ("JPEG", "WEBP", "PNG"):
            try:
                value = im.getexif().get(_ORIENTATION, 1)
                orientation = value if isinstance(value, int) and value in range(1, 9) else 1
            except Exception:  # noqa: BLE001 - a broken EXIF block is ignored, not fatal
                orientation = 1
        alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    if w <= 0 or h <= 0:
        raise ImageError(f"the image claims a size of {w}x{h}")
    return ImageInfo(media_type, w, h, frames, alpha, orientation)


def verify(data: bytes, info: ImageInfo, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Decode the whole image (every frame of an animation) to prove it is not truncated or
    corrupt, within the pixel budget; ImageError if it is. A JPEG is decoded at 1/8 scale, which
    still reads every byte of its entropy-coded data."""
    if info.animated:
        with _open(data, "GIF") as im:
            _check_pixels(info.width * info.height, max_pixels, "one frame")
            try:
                for frame in ImageSequence.Iterator(im):
                    frame.load()
            except _BROKEN as exc:
                raise ImageError(f"truncated or corrupt GIF: {_reason(exc)}") from None
        return
    im = _decode(data, info, (1, 1), max_pixels)
    im.close()


def fit_within(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """``width`` x ``height`` scaled down (never up) to fit ``box``, keeping the aspect ratio."""
    bw, bh = box
    if width <= bw and height <= bh:
        return width, height
    scale = min(bw / width, bh / height)
    return max(1, min(bw, round(width * scale))), max(1, min(bh, round(height * scale)))


# --------------------------------------------------------------------------- the ladder


@dataclass(frozen=True, slots=True)
class _Step:
    """One rung: an output kind at a scale with a quality or palette size."""

    kind: str  # "jpeg", "png", "gif", "gif-anim", "bmp"
    scale: int  # index into the reducer's sizes
    param: int | None  # JPEG quality or palette size (None: PNG full colour / keep palette)
    last_resort: bool  # first frame of an animation, tried only when nothing else fits


class Reducer:
    """The renditions of one source image, best first, for the fitter to choose from.

    The ladder (documented in BENCHMARKS.md and the fitter's docstring):

    1. the largest size within ``box`` (never upscaled), in the source's own type when the profile
       allows it (an animated GIF keeps its animation; a PNG keeps its transparency), else JPEG
       (transparency flattened onto white), else PNG, else GIF;
    2. then, per scale in ``SCALES`` (down to ``MIN_LONG_SIDE``): JPEG at each of ``QUALITIES``
       (PNG/GIF output: full colour, 256 and 64 palette entries), and at the smallest scale also
       ``FINAL_QUALITIES`` (or a 16-colour palette);
    3. an animated GIF tries its animation at every scale first; only when the animation cannot
       fit anywhere (``last_resort``) does it become its first frame, which then follows 2.

    Scales that cannot reach a target are skipped by prediction (bytes scale with pixels), so a
    4 MB photo into 300 KB costs a handful of encodes, not the whole ladder. Every rung is encoded
    from decoded original pixels, never from an earlier rung's JPEG, so compression loss happens
    once; a smaller scale is resampled from the larger scale still in memory (Lanczos both times)
    rather than from the full-size source, which costs a fraction of the time. Sizes are compared
    on fast encodes; the rung that is kept is written again with optimised Huffman tables (a few
    percent smaller).
    """

    def __init__(
        self,
        data: bytes,
        info: ImageInfo,
        *,
        allows: Callable[[str], bool],
        box: tuple[int, int],
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.data = data
        self.info = info
        self.max_pixels = max_pixels
        self._allows = allows
        base = fit_within(info.width, info.height, box)
        dw, dh = decoded_size(info, box, max_pixels)
        if dw < base[0] or dh < base[1]:  # a huge JPEG decoded small to stay within budget
            base = fit_within(info.width, info.height, (dw, dh))
        self._sizes = _scaled_sizes(base)
        self._steps = self._ladder()
        if not self._steps:
            raise ImageError(
                f"the profile allows none of {', '.join(_OUTPUTS)}, so this "
                f"{info.media_type} image cannot be converted to a type it takes"
            )
        self._sizes_seen: dict[_Step, int] = {}
        self._source: Image.Image | None = None
        self._scaled: tuple[int, bool, Image.Image] | None = None

    # ------------------------------------------------------------------ public

    @property
    def base_size(self) -> tuple[int, int]:
        """The largest (w, h) the profile allows this image at."""
        return self._sizes[0]

    @property
    def has_last_resort(self) -> bool:
        """True when the ladder ends in last-resort rungs (an animation given up for one frame)."""
        return any(s.last_resort for s in self._steps)

    def first(self, *, fast: bool = False) -> Rendition:
        """The best rendition the profile takes (rung 1), whatever its byte size. ``fast`` skips
        the optimised re-encode, for a caller that may shrink it further anyway."""
        return self._render(self._steps[0], optimize=not fast)

    def under(self, max_bytes: int, *, last_resort: bool = False) -> Rendition | None:
        """The best rendition of at most ``max_bytes`` bytes, or None when no rung is that small.

        Last-resort rungs (giving up an animation) are considered only with ``last_resort``.
        """
        steps = [s for s in self._steps if last_resort or not s.last_resort]
        for step in self._candidates(steps, max_bytes):
            size = self._sizes_seen.get(step)
            if size is not None and size > max_bytes:
                continue
            rendition = self._render(step)
            if len(rendition.data) <= max_bytes:
                final = self._render(step, optimize=True)
                return final if len(final.data) <= len(rendition.data) else rendition
        return None

    def smallest(self, *, last_resort: bool = False) -> Rendition:
        """The last (smallest) rung the ladder has, with or without last-resort rungs."""
        steps = [s for s in self._steps if last_resort or not s.last_resort]
        return self._render(steps[-1], optimize=True)

    def release(self) -> None:
        """Free the decoded pixels (they are decoded again when needed)."""
        self._drop_scaled()
        if self._source is not None:
            self._source.close()
        self._source = None
        self._scaled = None

    # ------------------------------------------------------------------ ladder

    def _ladder(self) -> list[_Step]:
        info = self.info
        steps: list[_Step] = []
        last = len(self._sizes) - 1
        animated = info.animated and self._allows("image/gif")
        if animated:
            for i in range(len(self._sizes)):
                steps.extend(_Step("gif-anim", i, p, False) for p in _ANIM_PALETTES)
        elif self._allows(info.media_type):
            own = {"image/jpeg": "jpeg", "image/png": "png", "image/gif": "gif", "image/bmp": "bmp"}
            kind = own.get(info.media_type)
            if kind == "jpeg":
                pass  # the JPEG rungs below start at the same place
            elif kind is not None:
                steps.append(_Step(kind, 0, None if kind != "gif" else 256, False))
        out = next((t for t in _OUTPUTS if self._allows(t)), None)
        if out is None:
            return steps
        kind = out.split("/", 1)[1]
        for i in range(len(self._sizes)):
            if kind == "jpeg":
                params: tuple[int | None, ...] = QUALITIES + (FINAL_QUALITIES if i == last else ())
            else:
                params = _PALETTES if kind == "png" else _GIF_PALETTES
                params = params + (_FINAL_PALETTES if i == last else ())
            steps.extend(_Step(kind, i, p, animated) for p in params)
        return steps

    def _candidates(self, steps: list[_Step], max_bytes: int) -> Iterator[_Step]:
        """``steps`` in order, leaving out scales predicted to stay over ``max_bytes``.

        The prediction: at one kind and parameter, bytes grow with pixels. The last scale is never
        skipped (it holds the final rungs)."""
        known: dict[tuple[str, int | None], tuple[int, int]] = {}  # (kind, param) -> (scale, size)
        for step, size in self._sizes_seen.items():
            key = (step.kind, step.param)
            if key not in known or known[key][0] < step.scale:
                known[key] = (step.scale, size)
        last = len(self._sizes) - 1
        skip_scale: tuple[str, int] | None = None
        for step in steps:
            if skip_scale == (step.kind, step.scale):
                continue
            if step not in self._sizes_seen and step.scale < last:
                ref = known.get((step.kind, step.param))
                if ref is not None and ref[0] <= step.scale:
                    predicted = ref[1] * self._pixels(step.scale) / self._pixels(ref[0])
                    if predicted > _REACH * max_bytes:
                        skip_scale = (step.kind, step.scale)
                        continue
            yield step
            seen = self._sizes_seen.get(step)
            if seen is not None:
                size = seen
                known[(step.kind, step.param)] = (step.scale, size)
                first_of_scale = step.param in (None, QUALITIES[0], 256)
                if first_of_scale and size > _REACH * max_bytes and step.scale < last:
                    skip_scale = (step.kind, step.scale)

    def _pixels(self, scale: int) -> int:
        w, h = self._sizes[scale]
        return w * h

    # ------------------------------------------------------------------ rendering

    def _render(self, step: _Step, *, optimize: bool = False) -> Rendition:
        """Make one rung. Sizes are compared on fast encodes (standard Huffman tables, default
        zlib effort); the rung that is kept is written again with ``optimize``, which saves a few
        percent more at about twice the encoding time, so it is spent once."""
        w, h = self._sizes[step.scale]
        if step.kind == "gif-anim":
            data, frames = self._animation(step.scale, step.param)
            colours = f", {step.param} colours" if step.param else ""
            rendition = Rendition(data, "image/gif", w, h, frames, f"GIF {frames} frames{colours}")
        else:
            im = self._pixels_at(step.scale, keep_alpha=step.kind == "png")
            data, note = _encode(im, step.kind, step.param, optimize=optimize)
            media_type = "image/bmp" if step.kind == "bmp" else f"image/{step.kind}"
            rendition = Rendition(data, media_type, w, h, 1, note, first_frame=self.info.animated)
        if not optimize:
            self._sizes_seen[step] = len(rendition.data)
        return rendition

    def _decoded(self) -> Image.Image:
        if self._source is None:
            self._source = _decode(self.data, self.info, self._sizes[0], self.max_pixels)
        return self._source

    def _drop_scaled(self) -> None:
        """Close the cached scaled image unless it is the decoded source itself."""
        if self._scaled is not None and self._scaled[2] is not self._source:
            self._scaled[2].close()
        self._scaled = None

    def _pixels_at(self, scale: int, *, keep_alpha: bool) -> Image.Image:
        """The first frame at ``self._sizes[scale]``, flattened onto white unless ``keep_alpha``."""
        if self._scaled is not None and self._scaled[:2] == (scale, keep_alpha):
            return self._scaled[2]
        size = self._sizes[scale]
        cached = self._scaled
        if cached is not None and cached[1] == keep_alpha and cached[0] < scale:
            src = cached[2]  # the previous, larger scale: a fraction of the source's pixels
        else:
            src = _normalise(self._decoded(), keep_alpha=keep_alpha)
        im = src if src.size == size else src.resize(size, Image.Resampling.LANCZOS, None, 3.0)
        self._drop_scaled()
        self._scaled = (scale, keep_alpha, im)
        return im

    def _animation(self, scale: int, colours: int | None) -> tuple[bytes, int]:
        """Every frame of the GIF at ``self._sizes[scale]``, with its timing and loop count, each
        frame reduced to ``colours`` palette entries when given."""
        size = self._sizes[scale]
        frames = self.info.frames
        _check_pixels(frames * size[0] * size[1], self.max_pixels, f"{frames} frames")
        _check_pixels(self.info.pixels, self.max_pixels, "one frame")
        out: list[Image.Image] = []
        durations: list[int] = []
        with _open(self.data, "GIF") as src:
            loop = src.info.get("loop")
            try:
                for frame in ImageSequence.Iterator(src):
                    durations.append(int(frame.info.get("duration", 100) or 100))
                    rgba = frame.convert("RGBA")
                    if rgba.size != size:
                        rgba = rgba.resize(size, Image.Resampling.LANCZOS)
                    out.append(_quantize(rgba, colours) if colours else rgba)
            except _BROKEN as exc:
                raise ImageError(f"truncated or corrupt GIF: {_reason(exc)}") from None
        buf = io.BytesIO()
        extra: dict[str, object] = {"duration": durations, "disposal": 2, "optimize": True}
        if loop is not None:
            extra["loop"] = loop
        out[0].save(buf, "GIF", save_all=True, append_images=out[1:], **extra)
        for im in out:
            im.close()
        return buf.getvalue(), len(out)


def _scaled_sizes(base: tuple[int, int]) -> list[tuple[int, int]]:
    """``base`` times each of SCALES, down to MIN_LONG_SIDE (which ends the list exactly)."""
    w, h = base
    long_side = max(w, h)
    sizes: list[tuple[int, int]] = [base]
    for s in SCALES[1:]:
        if long_side * s < MIN_LONG_SIDE:
            break
        size = (max(1, round(w * s)), max(1, round(h * s)))
        if size != sizes[-1]:
            sizes.append(size)
    if long_side > MIN_LONG_SIDE and max(sizes[-1]) > MIN_LONG_SIDE:
        s = MIN_LONG_SIDE / long_side
        sizes.append((max(1, round(w * s)), max(1, round(h * s))))
    return sizes


# --------------------------------------------------------------------------- decoding


def _open(data: bytes, fmt: str) -> Image.Image:
    """Open ``data`` lazily with only the plugin for ``fmt``; ImageError when it will not open."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise ImageError(f"refused as a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"not a readable {fmt} image (the headers do not parse)") from None
    except _BROKEN as exc:
        raise ImageError(f"not a readable {fmt} image: {_reason(exc)}") from None


def _decode(data: bytes, info: ImageInfo, box: tuple[int, int], max_pixels: int) -> Image.Image:
    """The first frame's pixels, EXIF orientation applied, at least ``box`` big where a JPEG can be
    decoded smaller (DCT scaling), never more than ``max_pixels``."""
    if info.media_type == WBMP:
        _check_pixels(info.pixels, max_pixels, "the image")
        return _decode_wbmp(data)
    fmt = _PIL_FORMATS[info.media_type]
    im = _open(data, fmt)
    try:
        if fmt == "JPEG":
            s = _draft_scale(info, box, max_pixels)
            if s > 1:
                im.draft(im.mode, (im.size[0] // s, im.size[1] // s))
        _check_pixels(im.size[0] * im.size[1], max_pixels, "the image")
        try:
            im.load()
        except _BROKEN as exc:
            raise ImageError(f"truncated or corrupt {fmt}: {_reason(exc)}") from None
    except BaseException:
        im.close()
        raise
    method = _TRANSPOSE.get(info.orientation)
    if method is not None:
        turned = im.transpose(method)
        im.close()
        return turned
    return im


def _draft_scale(info: ImageInfo, box: tuple[int, int], max_pixels: int) -> int:
    """The DCT scale denominator (1, 2, 4 or 8) to decode a JPEG at: the largest that still gives
    at least ``box`` (as libjpeg's draft mode picks it), or a larger one when that is what keeps
    the decode within ``max_pixels``."""
    w, h = info.width, info.height
    bw, bh = box
    if info.orientation in (5, 6, 7, 8):  # stored sideways
        w, h, bw, bh = h, w, bh, bw
    scale = 1
    for s in (8, 4, 2):
        if w // s >= bw and h // s >= bh:
            scale = s
            break
    while scale < 8 and _ceil_div(w, scale) * _ceil_div(h, scale) > max_pixels:
        scale *= 2
    return scale


def decoded_size(info: ImageInfo, box: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """The (displayed) size the pixels of ``info`` are decoded at for ``box``: the full size,
    except JPEGs, which are decoded 1/2, 1/4 or 1/8 as big when that still covers ``box`` or is
    needed to stay within ``max_pixels``."""
    if info.media_type != "image/jpeg":
        return info.width, info.height
    s = _draft_scale(info, box, max_pixels)
    return _ceil_div(info.width, s), _ceil_div(info.height, s)


def check_budget(info: ImageInfo, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """ImageError, from the headers alone, when ``info`` cannot be decoded within ``max_pixels``
    (a JPEG not even at 1/8 scale; an animation: any one frame)."""
    if info.media_type == "image/jpeg":
        w, h = _ceil_div(info.width, 8), _ceil_div(info.height, 8)
        _check_pixels(w * h, max_pixels, "the image, even at 1/8 scale,")
    else:
        _check_pixels(info.pixels, max_pixels, "one frame" if info.animated else "the image")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _check_pixels(pixels: int, max_pixels: int, what: str) -> None:
    if pixels > max_pixels:
        raise ImageError(
            f"{what} would decode to {pixels / 1e6:.1f} megapixels, over the "
            f"{max_pixels / 1e6:.1f} MP limit (max_decode_pixels); refused unread"
        )


def _normalise(im: Image.Image, *, keep_alpha: bool) -> Image.Image:
    """``im`` as RGB or L (RGBA/LA when ``keep_alpha`` and it has transparency), with any
    transparency flattened onto white, 16-bit grey scaled to 8 bits and CMYK made RGB."""
    mode = im.mode
    if mode in ("RGB", "L"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey = im.convert("I") if mode != "F" else im
        return grey.point(lambda v: v * (1 / 256)).convert("L")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if not has_alpha:
        return im.convert("RGB")
    rgba = im.convert("RGBA")
    if keep_alpha:
        return rgba
    flat = Image.new("RGB", rgba.size, _WHITE)
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def _encode(
    im: Image.Image, kind: str, param: int | None, *, optimize: bool = True
) -> tuple[bytes, str]:
    """``im`` written as ``kind`` with a JPEG quality or palette size; (bytes, note).
    ``optimize``: optimal JPEG Huffman tables / maximum PNG compression effort."""
    buf = io.BytesIO()
    if kind == "jpeg":
        quality = param or QUALITIES[0]
        src = im if im.mode in ("RGB", "L") else _normalise(im, keep_alpha=False)
        src.save(buf, "JPEG", quality=quality, optimize=optimize, progressive=False)
        return buf.getvalue(), f"JPEG q{quality}"
    if kind == "bmp":
        im.save(buf, "BMP")
        return buf.getvalue(), "BMP"
    if kind == "png":
        if param is None:
            im.save(buf, "PNG", optimize=optimize)
            return buf.getvalue(), "PNG"
        _quantize(im, param).save(buf, "PNG", optimize=optimize)
        return buf.getvalue(), f"PNG {param} colours"
    colours = param or 256
    flat = im if im.mode in ("RGB", "L") else _normalise(im, keep_alpha=False)
    _quantize(flat, colours).save(buf, "GIF", optimize=True)
    return buf.getvalue(), f"GIF {colours} colours"


def _quantize(im: Image.Image, colours: int) -> Image.Image:
    """A palette image of at most ``colours`` entries (fast octree keeps an alpha channel)."""
    src = im if im.mode in ("RGB", "RGBA") else im.convert("RGBA" if "A" in im.mode else "RGB")
    return src.quantize(colours, method=Image.Quantize.FASTOCTREE)


# --------------------------------------------------------------------------- WBMP


def _uintvar(data: bytes, i: int) -> tuple[int, int]:
    """A WAP multi-byte integer at ``data[i:]``: (value, index after it)."""
    value = 0
    for n in range(5):
        if i >= len(data):
            raise ImageError("not a readable WBMP: the header is cut short")
        b = data[i]
        i += 1
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            return value, i
        if n == 4:
            break
    raise ImageError("not a readable WBMP: a size field is longer than 5 bytes")


def _wbmp_header(data: bytes) -> tuple[int, int, int]:
    """(width, height, offset of the pixel rows) of a type-0 WBMP (WAP-237)."""
    if len(data) < 4 or data[0] != 0 or data[1] & 0x9F:
        raise ImageError("not a readable WBMP: only type 0 (black and white) is defined")
    w, i = _uintvar(data, 2)
    h, i = _uintvar(data, i)
    if w <= 0 or h <= 0:
        raise ImageError(f"not a readable WBMP: it claims a size of {w}x{h}")
    return w, h, i


def _decode_wbmp(data: bytes) -> Image.Image:
    """A WBMP's pixels as a mode-1 image (1 = white, as WBMP defines)."""
    w, h, start = _wbmp_header(data)
    stride = (w + 7) // 8
    need = stride * h
    if len(data) - start < need:
        raise ImageError(
            f"truncated WBMP: {w}x{h} needs {need} bytes of rows, {len(data) - start} present"
        )
    return Image.frombytes("1", (w, h), data[start : start + need], "raw", "1", stride)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
