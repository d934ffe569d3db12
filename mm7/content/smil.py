"""MMS SMIL: write it for a presentation, check it against the OMA MMS SMIL rules, and read the
slides out of inbound SMIL (sans-I/O; XML is parsed only through ``mm7.core.xmlsafe``).

The profile written and checked (OMA-MMS-CONF, as every real sample shows it): one root-layout
and at most two regions (``Image`` and ``Text``); ``<body>`` holds only ``<par>`` slides, none
nested; per slide at most one image-or-video, one text and one audio; a ``region`` names a
declared region and audio has none; every ``src`` resolves to a part and every part is used.
Generated SMIL always places visuals in ``Image`` and text in ``Text``; the checker accepts a
caller's SMIL without any layout (handsets then stack the media), as minimal generators write it.
Reading is lenient: real handsets nest, omit durations and point at parts by file name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from lxml import etree

from mm7.content.model import Layout, MediaItem, Presentation, Slide
from mm7.content.parts import ContentError
from mm7.core.errors import MM7Error
from mm7.core.limits import Limits
from mm7.core.xmlsafe import parse_xml

__all__ = [
    "DEFAULT_DURATION_MS",
    "SmilDocument",
    "SmilError",
    "check_smil",
    "generate_smil",
    "parse_duration",
    "parse_slides",
    "read_smil",
    "resolve_src",
]

DEFAULT_DURATION_MS = 5000
#: SMIL documents are small; a generous bound that still refuses a pathological one
SMIL_LIMITS = Limits(max_xml_bytes=256 * 1024, max_xml_depth=16)
_MEDIA = frozenset({"img", "video", "text", "audio", "ref"})
#: media elements that ``ref`` stands in for in some generators, read like ``ref``
_OTHER_MEDIA = frozenset({"animation", "textstream", "brush"})
_CONTAINERS = frozenset({"par", "seq", "excl"})
#: element -> the MediaItem kinds it may reference
_KINDS = {
    "img": ("image",),
    "video": ("video",),
    "text": ("text",),
    "audio": ("audio",),
}
_MAX_REGIONS = 2
_NOMINAL_ROOT = 100.0
#: (root width, height), and (left, top, width, height) of the Image and Text regions
_ROOTS = {"portrait": (176, 208), "landscape": (208, 176)}
_SPLITS: dict[Layout, tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    Layout.PORTRAIT_TEXT_BELOW: ((0, 0, 176, 144), (0, 144, 176, 64)),
    Layout.PORTRAIT_TEXT_ABOVE: ((0, 64, 176, 144), (0, 0, 176, 64)),
    Layout.LANDSCAPE_TEXT_RIGHT: ((0, 0, 128, 176), (128, 0, 80, 176)),
    Layout.LANDSCAPE_TEXT_LEFT: ((80, 0, 128, 176), (0, 0, 80, 176)),
}
_CLOCK = re.compile(r"(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)")
_TIMECOUNT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(h|min|s|ms)?")
_UNIT_MS = {"h": 3_600_000, "min": 60_000, "s": 1000, "ms": 1, None: 1000}
_MAX_DURATION_MS = 24 * 3_600_000
_DOCTYPE = re.compile(rb"<!DOCTYPE[^>\[]*>")
_PROLOG_SKIP = re.compile(rb"(?:\s+|<\?.*?\?>|<!--.*?-->)*", re.DOTALL)
_CID_SAFE = "!$&'()*+,;=:@-._~"


class SmilError(ContentError):
    """SMIL that cannot be read, or a presentation that cannot be written as SMIL."""


@dataclass(frozen=True, slots=True)
class SmilDocument:
    """What inbound SMIL says: the slides in order, and the layout its regions describe."""

    slides: tuple[Slide, ...]
    layout: Layout


# --------------------------------------------------------------------------- writing


def generate_smil(presentation: Presentation) -> bytes:
    """SMIL for ``presentation``'s slides and layout: one ``<par dur>`` per slide, media by
    ``cid:`` (SmilError when a slide names an item that is not there)."""
    items = {it.content_id: it for it in presentation.items}
    has_visual = any(s.visual for s in presentation.slides)
    has_text = any(s.text for s in presentation.slides)
    smil = etree.Element("smil")
    layout = etree.SubElement(etree.SubElement(smil, "head"), "layout")
    _write_layout(layout, presentation.layout, has_visual, has_text)
    body = etree.SubElement(smil, "body")
    for number, slide in enumerate(presentation.slides, start=1):
        par = etree.SubElement(body, "par", dur=f"{slide.duration_ms}ms")
        if slide.visual:
            item = _slide_item(items, slide.visual, number)
            element = "video" if item.kind == "video" else "img"
            etree.SubElement(par, element, src=_cid_url(item), region="Image")
        if slide.text:
            item = _slide_item(items, slide.text, number)
            etree.SubElement(par, "text", src=_cid_url(item), region="Text")
        if slide.audio:
            etree.SubElement(par, "audio", src=_cid_url(_slide_item(items, slide.audio, number)))
        for ref in slide.refs:
            etree.SubElement(par, "ref", src=_cid_url(_slide_item(items, ref, number)))
    return etree.tostring(smil, pretty_print=True)


def _slide_item(items: dict[str, MediaItem], cid: str, number: int) -> MediaItem:
    try:
        return items[cid]
    except KeyError:
        raise SmilError(f"slide {number} names {cid!r}, which is not one of the items") from None


def _cid_url(item: MediaItem) -> str:
    return "cid:" + quote(item.content_id, safe=_CID_SAFE)


def _write_layout(layout: etree._Element, kind: Layout, has_visual: bool, has_text: bool) -> None:
    """Root-layout and the regions the slides use: Image and Text split as ``kind`` says, or one
    region over the whole root when only one of them is used."""
    orientation = "landscape" if kind.value.startswith("landscape") else "portrait"
    width, height = _ROOTS[orientation]
    etree.SubElement(layout, "root-layout", width=str(width), height=str(height))
    image_box, text_box = _SPLITS[kind]
    if not (has_visual and has_text):
        image_box = text_box = (0, 0, width, height)
    for name, box, fit, used in (
        ("Image", image_box, "meet", has_visual),
        ("Text", text_box, "scroll", has_text),
    ):
        if used:
            left, top, w, h = box
            etree.SubElement(
                layout,
                "region",
                id=name,
                left=str(left),
                top=str(top),
                width=str(w),
                height=str(h),
                fit=fit,
            )


# --------------------------------------------------------------------------- checking


def check_smil(smil: bytes, items: Sequence[MediaItem]) -> list[str]:
    """Every way ``smil`` breaks the MMS SMIL rules for these items; empty when it conforms.

    Used on caller-supplied SMIL before it is sent, and in tests on everything generated.
    """
    try:
        root = _parse(smil)
    except MM7Error as exc:
        return [f"unreadable SMIL: {exc}"]
    if _local(root) != "smil":
        return [f"the root element is <{_local(root)}>, expected <smil>"]
    problems: list[str] = []
    regions = _check_head(root, problems)
    body = _first(root, "body")
    if body is None:
        return [*problems, "no <body>"]
    used: set[str] = set()
    region_used = False
    number = 0
    for child in _elements(body):
        name = _local(child)
        if name != "par":
            problems.append(f"<{name}> directly in <body>: MMS SMIL allows only <par> slides")
            continue
        number += 1
        region_used |= _check_par(child, number, items, regions, used, problems)
    if number == 0:
        problems.append("no <par> slides in <body>")
    if region_used and not _has_root_layout(root):
        problems.append("regions are used but <head><layout> has no <root-layout>")
    for item in items:
        if item.content_id not in used:
            problems.append(
                f"part {item.content_id} ({item.media_type}) is not referenced by any slide"
            )
    return problems


def _check_head(root: etree._Element, problems: list[str]) -> set[str]:
    """Check <head><layout>; the ids of the regions it declares."""
    regions: set[str] = set()
    head = _first(root, "head")
    layout = _first(head, "layout") if head is not None else None
    if layout is None:
        return regions
    roots = [e for e in _elements(layout) if _local(e) == "root-layout"]
    if len(roots) > 1:
        problems.append(f"{len(roots)} <root-layout> elements, expected one")
    for region in (e for e in _elements(layout) if _local(e) == "region"):
        rid = region.get("id")
        if not rid:
            problems.append("a <region> without an id")
        elif rid in regions:
            problems.append(f"region {rid!r} declared twice")
        else:
            regions.add(rid)
    if len(regions) > _MAX_REGIONS:
        problems.append(
            f"{len(regions)} regions declared; MMS SMIL allows at most {_MAX_REGIONS} "
            "(Image and Text)"
        )
    return regions


def _check_par(
    par: etree._Element,
    number: int,
    items: Sequence[MediaItem],
    regions: set[str],
    used: set[str],
    problems: list[str],
) -> bool:
    """Check one slide; returns whether it names a region."""
    where = f"slide {number}"
    dur = par.get("dur")
    if dur is not None and parse_duration(dur) is None:
        problems.append(f"{where}: dur={dur!r} is not a SMIL duration (5000ms, 5s)")
    counts = {"visual": 0, "text": 0, "audio": 0}
    region_used = False
    for element in _elements(par):
        name = _local(element)
        if name in _CONTAINERS:
            problems.append(f"{where}: nested <{name}>; MMS SMIL slides are flat")
            continue
        if name not in _MEDIA:
            problems.append(f"{where}: <{name}> is not an MMS SMIL media element")
            continue
        slot = "visual" if name in ("img", "video") else name
        if slot in counts:
            counts[slot] += 1
        src = element.get("src")
        item = resolve_src(src, items) if src else None
        if not src:
            problems.append(f"{where}: <{name}> without src")
        elif item is None:
            problems.append(f"{where}: <{name} src={src!r}> names no part")
        else:
            used.add(item.content_id)
            allowed = _KINDS.get(name)
            if allowed is not None and item.kind not in allowed:
                problems.append(
                    f"{where}: <{name} src={src!r}> is {item.media_type}, not {allowed[0]}"
                )
        region = element.get("region")
        if region is not None:
            region_used = True
            if name == "audio":
                problems.append(f"{where}: <audio> has region={region!r}; audio takes no region")
            elif region not in regions:
                problems.append(f"{where}: <{name}> region={region!r} is not declared")
    if counts["visual"] > 1:
        problems.append(f"{where}: {counts['visual']} images/videos; at most one per slide")
    for slot in ("text", "audio"):
        if counts[slot] > 1:
            problems.append(f"{where}: {counts[slot]} <{slot}> elements; at most one per slide")
    return region_used


def _has_root_layout(root: etree._Element) -> bool:
    head = _first(root, "head")
    layout = _first(head, "layout") if head is not None else None
    return layout is not None and _first(layout, "root-layout") is not None


# --------------------------------------------------------------------------- reading


def parse_slides(
    smil: bytes, items: Sequence[MediaItem], *, default_duration_ms: int = DEFAULT_DURATION_MS
) -> tuple[Slide, ...]:
    """The slides of inbound ``smil`` over these items (SmilError when it is not SMIL at all)."""
    return read_smil(smil, items, default_duration_ms=default_duration_ms).slides


def read_smil(
    smil: bytes, items: Sequence[MediaItem], *, default_duration_ms: int = DEFAULT_DURATION_MS
) -> SmilDocument:
    """Slides and layout of inbound ``smil``, leniently.

    Each ``<par>`` is a slide (nested containers are flattened into it; media directly in
    ``<body>`` or a ``<seq>`` are a slide each). ``dur`` may be "5000ms", "5s", "5", "0:05";
    missing, the longest ``dur``/``end`` of its media, else ``default_duration_ms``. ``src`` may
    be ``cid:...``, a bare Content-ID or a Content-Location; one naming no part is skipped, and a
    second visual/text/audio in a slide is kept as a ref rather than dropped.
    """
    try:
        root = _parse(smil)
    except MM7Error as exc:
        raise SmilError(f"unreadable SMIL: {exc}") from None
    if _local(root) != "smil":
        raise SmilError(f"not SMIL: the root element is <{_local(root)}>")
    body = _first(root, "body")
    slides: list[Slide] = []
    if body is not None:
        for group in _slide_groups(body):
            slides.append(_read_slide(group, items, default_duration_ms))
    return SmilDocument(tuple(slides), _read_layout(root))


def _slide_groups(container: etree._Element) -> Iterator[etree._Element | list[etree._Element]]:
    """The slides under a sequential container: each <par>, and each bare media element."""
    for element in _elements(container):
        name = _local(element)
        if name == "par":
            yield element
        elif name in ("seq", "body"):
            yield from _slide_groups(element)
        elif name in _MEDIA or name in _OTHER_MEDIA or name in ("switch", "excl"):
            yield [element]


def _media_in(group: etree._Element | list[etree._Element]) -> Iterator[etree._Element]:
    """Media elements of one slide in document order, through nested containers; a <switch>
    contributes its first choice."""
    elements = group if isinstance(group, list) else list(_elements(group))
    for element in elements:
        name = _local(element)
        if name in _MEDIA or name in _OTHER_MEDIA:
            yield element
        elif name == "switch":
            first = next(iter(_media_in(element)), None)
            if first is not None:
                yield first
        elif name in _CONTAINERS:
            yield from _media_in(element)


def _read_slide(
    group: etree._Element | list[etree._Element], items: Sequence[MediaItem], default: int
) -> Slide:
    visual = text = audio = None
    refs: list[str] = []
    longest: int | None = None
    for element in _media_in(group):
        longest = _max(longest, _element_duration(element))
        src = element.get("src")
        item = resolve_src(src, items) if src else None
        if item is None:
            continue
        cid = item.content_id
        name = _local(element)
        if name in ("img", "video") or (name not in _KINDS and item.kind in ("image", "video")):
            slot = "visual"
        elif name == "text" or (name not in _KINDS and item.kind == "text"):
            slot = "text"
        elif name == "audio" or (name not in _KINDS and item.kind == "audio"):
            slot = "audio"
        else:
            slot = "ref"
        if slot == "visual" and visual is None:
            visual = cid
        elif slot == "text" and text is None:
            text = cid
        elif slot == "audio" and audio is None:
            audio = cid
        elif cid not in refs and cid not in (visual, text, audio):
            refs.append(cid)
    duration = None
    if not isinstance(group, list):
        duration = _element_duration(group)
    if duration is None:
        duration = longest if longest is not None else default
    return Slide(duration, visual, text, audio, tuple(refs))


def _element_duration(element: etree._Element) -> int | None:
    """``dur``, else ``end`` minus ``begin`` (both clock values), in milliseconds."""
    dur = element.get("dur")
    if dur is not None:
        found = parse_duration(dur)
        if found is not None:
            return found
    end = element.get("end")
    if end is not None:
        stop = parse_duration(end)
        start = parse_duration(element.get("begin") or "0")
        if stop is not None:
            return max(stop - (start or 0), 0)
    return None


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def parse_duration(value: str) -> int | None:
    """A SMIL clock value in milliseconds: "5000ms", "5s", "5" (seconds), "1.5s", "2min",
    "0:05", "00:00:05.5"; None for "indefinite", "media", negative or unreadable values."""
    text = value.strip().lower()
    match = _CLOCK.fullmatch(text)
    if match is not None:
        hours, minutes, seconds = match.groups()
        ms = ((int(hours or 0) * 60 + int(minutes)) * 60 + float(seconds)) * 1000
    else:
        match = _TIMECOUNT.fullmatch(text)
        if match is None:
            return None
        ms = float(match.group(1)) * _UNIT_MS[match.group(2)]
    return round(ms) if ms <= _MAX_DURATION_MS else None


def resolve_src(src: str, items: Sequence[MediaItem]) -> MediaItem | None:
    """The item a SMIL ``src`` names: ``cid:X`` or a bare Content-ID (with or without ``<>``,
    %-encoded or not), else a Content-Location (exact, then case-insensitive, then by the last
    path component); None when nothing matches."""
    key = src.strip()
    is_cid = key[:4].lower() == "cid:"
    if is_cid:
        key = key[4:].strip()
    bare = key[1:-1].strip() if key.startswith("<") and key.endswith(">") else key
    for candidate in dict.fromkeys((bare, unquote(bare))):
        for item in items:
            if item.content_id == candidate:
                return item
    for candidate in dict.fromkeys((key, unquote(key))):
        for item in items:
            if item.content_location == candidate:
                return item
    folded = unquote(key).casefold()
    name = folded.rsplit("/", 1)[-1]
    for item in items:
        if item.content_location.casefold() in (folded, name):
            return item
    return None


def _read_layout(root: etree._Element) -> Layout:
    """The Layout the root-layout and regions describe (which region the visuals and the text
    are shown in, and where it sits); portrait with text below when they say nothing."""
    head = _first(root, "head")
    layout = _first(head, "layout") if head is not None else None
    if layout is None:
        return Layout.PORTRAIT_TEXT_BELOW
    root_layout = _first(layout, "root-layout")
    # a root without pixel sizes (missing, or "100%") is taken as 100 x 100 units
    width = height = _NOMINAL_ROOT
    if root_layout is not None:
        width = _length(root_layout.get("width"), _NOMINAL_ROOT) or _NOMINAL_ROOT
        height = _length(root_layout.get("height"), _NOMINAL_ROOT) or _NOMINAL_ROOT
    boxes: dict[str, tuple[float, float, float, float]] = {}
    for region in (e for e in _elements(layout) if _local(e) == "region"):
        rid = region.get("id")
        if rid:
            left = _length(region.get("left"), width) or 0.0
            top = _length(region.get("top"), height) or 0.0
            w = _length(region.get("width"), width) or max(width - left, 0.0)
            h = _length(region.get("height"), height) or max(height - top, 0.0)
            boxes[rid] = (left + w / 2, top + h / 2, w, h)
    image = _region_for(root, boxes, ("img", "video"), "image")
    text = _region_for(root, boxes, ("text",), "text")
    if image is not None and text is not None and image != text:
        dx = boxes[text][0] - boxes[image][0]
        dy = boxes[text][1] - boxes[image][1]
        if abs(dx) > abs(dy):
            return Layout.LANDSCAPE_TEXT_RIGHT if dx > 0 else Layout.LANDSCAPE_TEXT_LEFT
        return Layout.PORTRAIT_TEXT_BELOW if dy >= 0 else Layout.PORTRAIT_TEXT_ABOVE
    if width > height:
        return Layout.LANDSCAPE_TEXT_RIGHT
    return Layout.PORTRAIT_TEXT_BELOW


def _region_for(
    root: etree._Element,
    boxes: dict[str, tuple[float, float, float, float]],
    elements: tuple[str, ...],
    name: str,
) -> str | None:
    """The region id the given media elements are shown in, else the one called ``name``."""
    body = _first(root, "body")
    if body is not None:
        for element in body.iter():
            if isinstance(element.tag, str) and _local(element) in elements:
                region = element.get("region")
                if region in boxes:
                    return region
    for rid in boxes:
        if rid.lower() == name:
            return rid
    return None


def _length(value: str | None, whole: float) -> float | None:
    """A region length: pixels ("176", "176px") or a percentage of ``whole``."""
    if value is None:
        return None
    text = value.strip().lower().removesuffix("px")
    try:
        if text.endswith("%"):
            return float(text[:-1]) * whole / 100
        return float(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------- XML helpers


def _parse(smil: bytes) -> etree._Element:
    """Parse SMIL through the hardened parser, first cutting a DOCTYPE that only names the
    public SMIL DTD (handsets write one; it declares nothing, and no DTD is ever loaded). A
    DOCTYPE with an internal subset is left in place, so that parse_xml refuses it."""
    return parse_xml(_without_external_doctype(smil), limits=SMIL_LIMITS, where="SMIL part")


def _without_external_doctype(data: bytes) -> bytes:
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    skipped = _PROLOG_SKIP.match(data, start)
    position = skipped.end() if skipped is not None else start
    doctype = _DOCTYPE.match(data, position)
    if doctype is None:
        return data
    return data[: doctype.start()] + data[doctype.end() :]


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname.lower()


def _elements(parent: etree._Element) -> Iterator[etree._Element]:
    """Child elements (comments and processing instructions skipped)."""
    for child in parent:
        if isinstance(child.tag, str):
            yield child


def _first(parent: etree._Element, name: str) -> etree._Element | None:
    for child in _elements(parent):
        if _local(child) == name:
            return child
    return None
