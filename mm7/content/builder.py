"""Presentations: build one from media items (default slide rule, explicit slides, or the
caller's SMIL), turn it into the multipart/related content entity the codec sends, and read one
back from inbound content.

    items = make_items([photo, "Hello", voice])
    content = to_part(build_presentation(items))      # SubmitReq(content=content)
    presentation = from_part(decoded.message.content)  # inbound: slides, not a bag of parts

Default slide rule: each image or video starts a slide; text and audio join the current slide,
and a second text (or audio) starts a new one; items before the first visual form the first
slide; other items (vCard, vCalendar ...) join the current slide as refs.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

from mm7.content.model import Layout, MediaItem, Presentation, Slide
from mm7.content.parts import (
    MAX_ITEMS,
    ContentError,
    content_id_for,
    item_from_part,
    safe_location,
    unique_location,
)
from mm7.content.smil import (
    DEFAULT_DURATION_MS,
    SmilError,
    check_smil,
    generate_smil,
    read_smil,
)
from mm7.core.mime import ContentType, Part, make_multipart, make_part
from mm7.core.sniff import sniff

__all__ = [
    "SMIL_TYPE",
    "build_presentation",
    "check_slides",
    "default_slides",
    "find_smil",
    "from_part",
    "to_part",
]

SMIL_TYPE = "application/smil"
_SMIL_TYPES = frozenset({SMIL_TYPE, "application/smil+xml", "application/x-smil"})
_SMIL_LOCATION = "presentation.smil"
_MAX_DURATION_MS = 24 * 3_600_000
_SLOTS = (("visual", ("image", "video")), ("text", ("text",)), ("audio", ("audio",)))


def build_presentation(
    items: Sequence[MediaItem],
    *,
    slides: Sequence[Slide] | None = None,
    smil: bytes | None = None,
    layout: Layout = Layout.PORTRAIT_TEXT_BELOW,
    slide_duration_ms: int = DEFAULT_DURATION_MS,
) -> Presentation:
    """A presentation of ``items`` in order: slides by the default rule, or the caller's
    ``slides`` (checked), or the caller's ``smil`` (checked, sent as it is; its own layout wins).

    ContentError (SmilError for SMIL) naming every problem: no items, too many, duplicate
    Content-IDs, a slide naming a missing item or one of the wrong kind, an item on no slide.
    """
    if slides is not None and smil is not None:
        raise ContentError("give slides or SMIL, not both")
    _check_items(items)
    if not 0 < slide_duration_ms <= _MAX_DURATION_MS:
        raise ContentError(f"slide duration {slide_duration_ms} ms is out of range (1 ms to 24 h)")
    if smil is not None:
        problems = check_smil(smil, items)
        if problems:
            raise SmilError("the SMIL breaks the MMS SMIL rules: " + "; ".join(problems))
        document = read_smil(smil, items, default_duration_ms=slide_duration_ms)
        return Presentation(tuple(items), document.slides, document.layout, smil=bytes(smil))
    if slides is None:
        chosen = default_slides(items, slide_duration_ms)
    else:
        chosen = tuple(slides)
        problems = check_slides(chosen, items)
        if problems:
            raise ContentError("the slides do not fit the items: " + "; ".join(problems))
    return Presentation(tuple(items), chosen, Layout(layout))


def default_slides(
    items: Sequence[MediaItem], duration_ms: int = DEFAULT_DURATION_MS
) -> tuple[Slide, ...]:
    """The default slide rule (module docstring) over ``items`` in order."""
    slides: list[Slide] = []
    for item in items:
        kind = item.kind
        current = slides[-1] if slides else None
        cid = item.content_id
        if kind in ("image", "video"):
            slides.append(Slide(duration_ms, visual=cid))
        elif kind == "text" and current is not None and current.text is None:
            slides[-1] = _with(current, text=cid)
        elif kind == "text":
            slides.append(Slide(duration_ms, text=cid))
        elif kind == "audio" and current is not None and current.audio is None:
            slides[-1] = _with(current, audio=cid)
        elif kind == "audio":
            slides.append(Slide(duration_ms, audio=cid))
        elif current is not None:
            slides[-1] = _with(current, refs=(*current.refs, cid))
        else:
            slides.append(Slide(duration_ms, refs=(cid,)))
    return tuple(slides)


def _with(
    slide: Slide,
    *,
    text: str | None = None,
    audio: str | None = None,
    refs: tuple[str, ...] | None = None,
) -> Slide:
    return Slide(
        slide.duration_ms,
        slide.visual,
        text if text is not None else slide.text,
        audio if audio is not None else slide.audio,
        refs if refs is not None else slide.refs,
    )


def check_slides(slides: Sequence[Slide], items: Sequence[MediaItem]) -> list[str]:
    """Every way explicit ``slides`` do not fit ``items``; empty when they do."""
    by_id = {it.content_id: it for it in items}
    problems: list[str] = []
    used: set[str] = set()
    if not slides:
        problems.append("no slides")
    for number, slide in enumerate(slides, start=1):
        where = f"slide {number}"
        if not 0 < slide.duration_ms <= _MAX_DURATION_MS:
            problems.append(f"{where}: duration {slide.duration_ms} ms is out of range")
        for slot, kinds in _SLOTS:
            cid = getattr(slide, slot)
            if cid is None:
                continue
            item = by_id.get(cid)
            if item is None:
                problems.append(f"{where}: {slot} {cid!r} is not one of the items")
            elif item.kind not in kinds:
                problems.append(
                    f"{where}: {slot} {cid!r} is {item.media_type}, not {' or '.join(kinds)}"
                )
            used.add(cid)
        for cid in slide.refs:
            if cid not in by_id:
                problems.append(f"{where}: ref {cid!r} is not one of the items")
            used.add(cid)
    for item in items:
        if item.content_id not in used:
            problems.append(f"item {item.content_id} ({item.media_type}) is on no slide")
    return problems


def _check_items(items: Sequence[MediaItem]) -> None:
    if not items:
        raise ContentError("a presentation needs at least one item")
    if len(items) > MAX_ITEMS:
        raise ContentError(f"too many items: {len(items)}, at most {MAX_ITEMS}")
    seen: set[str] = set()
    for n, item in enumerate(items, start=1):
        if item.content_id in seen:
            raise ContentError(f"item {n}: Content-ID {item.content_id!r} is used twice")
        seen.add(item.content_id)
        if item.media_type.lower() in _SMIL_TYPES:
            raise ContentError(
                f"item {n} ({item.content_location}) is SMIL: pass it as smil=, not as an item"
            )


# --------------------------------------------------------------------------- to and from MIME


def to_part(presentation: Presentation) -> Part:
    """The content entity: multipart/related; type="application/smil"; start=<smil cid>, the
    SMIL first, then every item with its Content-ID, Content-Location and charset.

    The caller's SMIL is checked again (SmilError when the items changed under it, e.g. by
    fitting); otherwise SMIL is generated from the slides.
    """
    smil = presentation.smil
    if smil is None:
        smil = generate_smil(presentation)
    else:
        problems = check_smil(smil, presentation.items)
        if problems:
            raise SmilError(
                "the presentation's SMIL no longer matches its items: " + "; ".join(problems)
            )
    taken = {it.content_id for it in presentation.items}
    smil_cid = "smil-" + hashlib.sha256(smil).hexdigest()[:8]
    while smil_cid in taken:
        smil_cid += "-0"
    children = [make_part(smil, SMIL_TYPE, content_id=smil_cid, content_location=_SMIL_LOCATION)]
    for item in presentation.items:
        params = {"charset": item.charset} if item.charset else {}
        children.append(
            make_part(
                item.data,
                ContentType(item.media_type, params),
                content_id=item.content_id,
                content_location=item.content_location,
            )
        )
    return make_multipart(children, "related", params={"type": SMIL_TYPE, "start": f"<{smil_cid}>"})


def from_part(part: Part) -> Presentation:
    """The presentation inbound content holds: its SMIL's slides and layout when there is
    readable SMIL, else one slide per visual (the default rule) over the parts in order.

    Lenient and never refuses: types follow the bytes when a label is wrong, missing Content-IDs
    are generated, and Content-Locations are made safe file names after SMIL resolution. The
    result carries no ``smil``: sent on (to_part), it gets SMIL written from its slides, since
    real-world SMIL rarely passes the checker that a caller's SMIL must pass.
    """
    leaves = _leaves(part)
    smil_part = find_smil(part)
    media = [p for p in leaves if p is not smil_part]
    items = _inbound_items(media)
    slides: tuple[Slide, ...] = ()
    layout = Layout.PORTRAIT_TEXT_BELOW
    if smil_part is not None:
        try:
            document = read_smil(smil_part.body, items)
        except SmilError:
            document = None
        if document is not None:
            slides = tuple(s for s in document.slides if s.visual or s.text or s.audio or s.refs)
            layout = document.layout
    items = _safe_locations(items)
    if not slides:
        slides = default_slides(items)
    return Presentation(tuple(items), slides, layout)


def _leaves(part: Part) -> list[Part]:
    if not part.children:
        return [part] if not part.is_multipart else []
    out: list[Part] = []
    for child in part.children:
        out.extend(_leaves(child))
    return out


def find_smil(container: Part) -> Part | None:
    """The SMIL part of multipart content: the one ``start`` names, else the first labelled
    SMIL, else the first whose bytes are SMIL (some peers label it text/xml or octet-stream);
    None for a single part or content without SMIL."""
    if not container.is_multipart:
        return None
    leaves = _leaves(container)
    start = container.content_type.param("start")
    if start:
        key = start.strip().removeprefix("<").removesuffix(">").strip()
        for leaf in leaves:
            if leaf.content_id == key and _is_smil(leaf):
                return leaf
    for leaf in leaves:
        if leaf.content_type.mime_type in _SMIL_TYPES:
            return leaf
    for leaf in leaves:
        if _is_smil(leaf):
            return leaf
    return None


def _is_smil(part: Part) -> bool:
    return part.content_type.mime_type in _SMIL_TYPES or sniff(part.body) == SMIL_TYPE


def _inbound_items(parts: Sequence[Part]) -> list[MediaItem]:
    """MediaItems of inbound parts, with a generated Content-ID where one is missing or repeated."""
    items: list[MediaItem] = []
    seen: set[str] = set()
    for index, p in enumerate(parts, start=1):
        item = item_from_part(p, index)
        if item.content_id in seen:
            cid = content_id_for(item.media_type, index, item.data)
            item = MediaItem(item.data, item.media_type, cid, item.content_location, item.charset)
        seen.add(item.content_id)
        items.append(item)
    return items


def _safe_locations(items: Sequence[MediaItem]) -> list[MediaItem]:
    """The items with Content-Locations that are safe, unique file names (idempotent for ours)."""
    taken: set[str] = set()
    out: list[MediaItem] = []
    for index, item in enumerate(items, start=1):
        location = safe_location(item.content_location, item.media_type, f"part{index}")
        location = unique_location(location, index, taken)
        out.append(dataclasses.replace(item, content_location=location))
    return out
