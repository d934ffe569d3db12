"""Presentations: the default slide rule, explicit slides and caller SMIL (checked), the content
entity the codec sends, and the round trip build -> to_part -> encode -> decode -> from_part
for every dialect; inbound content with and without SMIL, as real MMSCs send it."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from mm7.content.builder import (
    build_presentation,
    check_slides,
    default_slides,
    find_smil,
    from_part,
    to_part,
)
from mm7.content.model import Layout, MediaItem, Presentation, Slide
from mm7.content.parts import MAX_ITEMS, ContentError, Source, make_items
from mm7.content.smil import SmilError, check_smil
from mm7.core.capture import read_capture
from mm7.core.codec import decode, encode
from mm7.core.dialect import DIALECTS, get_dialect
from mm7.core.mime import Part, make_multipart, make_part
from mm7.core.model import Address, DeliverReq, Recipients, SubmitReq
from tests.helpers.media import VCARD, amr, animated_gif, iso_media, mp3, pillow

SOAP_FIXTURES = Path(__file__).parent / "fixtures" / "soap"


def _kinds(*kinds: str) -> tuple[MediaItem, ...]:
    """Items of the given kinds in order: image, video, text, audio, vcard."""
    media = {
        "image": lambda n: Source(pillow("PNG", (8 + n, 8))),
        "video": lambda n: Source(iso_media(b"3gp5", (b"vide",))),
        "text": lambda n: Source(f"text number {n}".encode(), media_type="text/plain"),
        "audio": lambda n: Source(amr(n + 1)),
        "vcard": lambda n: Source(VCARD),
    }
    return make_items([media[k](n) for n, k in enumerate(kinds)])


def _shape(presentation: Presentation) -> list[tuple[str, ...]]:
    """Each slide as the kinds it shows, for readable expectations."""
    out = []
    for slide in presentation.slides:
        shown = []
        if slide.visual:
            shown.append(presentation.item(slide.visual).kind)
        if slide.text:
            shown.append("text")
        if slide.audio:
            shown.append("audio")
        shown.extend("ref" for _ in slide.refs)
        out.append(tuple(shown))
    return out


# --------------------------------------------------------------------------- the default rule


@pytest.mark.parametrize(
    ("kinds", "slides"),
    [
        (("image", "text", "audio"), [("image", "text", "audio")]),
        (("image", "image", "text"), [("image",), ("image", "text")]),
        (("text", "image"), [("text",), ("image",)]),  # before the first visual: its own slide
        (("text", "audio", "image", "text"), [("text", "audio"), ("image", "text")]),
        (("image", "text", "text"), [("image", "text"), ("text",)]),  # a second text: new slide
        (("image", "audio", "audio"), [("image", "audio"), ("audio",)]),
        (("video", "text", "image"), [("video", "text"), ("image",)]),
        (("image", "vcard", "text"), [("image", "text", "ref")]),
        (("vcard",), [("ref",)]),
        (("text",), [("text",)]),
    ],
)
def test_default_slide_rule(kinds: tuple[str, ...], slides: list[tuple[str, ...]]) -> None:
    presentation = build_presentation(_kinds(*kinds))
    assert _shape(presentation) == slides
    assert all(s.duration_ms == 5000 for s in presentation.slides)
    assert presentation.smil is None
    assert check_smil(to_part(presentation).children[0].body, presentation.items) == []


def test_slide_duration_and_layout_are_applied() -> None:
    presentation = build_presentation(
        _kinds("image", "image"), layout=Layout.LANDSCAPE_TEXT_LEFT, slide_duration_ms=2500
    )
    assert [s.duration_ms for s in presentation.slides] == [2500, 2500]
    assert presentation.layout is Layout.LANDSCAPE_TEXT_LEFT
    assert default_slides(presentation.items, 100)[0].duration_ms == 100


# --------------------------------------------------------------------------- explicit slides


def test_explicit_slides_are_used_as_given() -> None:
    img, txt, snd = _kinds("image", "text", "audio")
    slides = (
        Slide(1000, text=txt.content_id),
        Slide(9000, visual=img.content_id, audio=snd.content_id),
    )
    presentation = build_presentation([img, txt, snd], slides=slides)
    assert presentation.slides == slides
    assert check_smil(to_part(presentation).children[0].body, presentation.items) == []


def test_explicit_slides_are_checked() -> None:
    img, txt, snd = _kinds("image", "text", "audio")
    bad = (
        Slide(0, visual=txt.content_id),
        Slide(1000, text="nope", audio=img.content_id, refs=("gone",)),
    )
    problems = check_slides(bad, [img, txt, snd])
    assert problems == [
        "slide 1: duration 0 ms is out of range",
        f"slide 1: visual {txt.content_id!r} is text/plain, not image or video",
        "slide 2: text 'nope' is not one of the items",
        f"slide 2: audio {img.content_id!r} is image/png, not audio",
        "slide 2: ref 'gone' is not one of the items",
        f"item {snd.content_id} (audio/amr) is on no slide",
    ]
    with pytest.raises(ContentError, match="the slides do not fit the items: slide 1: duration"):
        build_presentation([img, txt, snd], slides=bad)
    assert check_slides((), [img]) == [
        "no slides",
        f"item {img.content_id} (image/png) is on no slide",
    ]


def test_items_are_checked() -> None:
    img, txt = _kinds("image", "text")
    with pytest.raises(ContentError, match="at least one item"):
        build_presentation([])
    with pytest.raises(ContentError, match="is used twice"):
        build_presentation([img, img])
    with pytest.raises(ContentError, match="give slides or SMIL, not both"):
        build_presentation([img], slides=(), smil=b"<smil/>")
    with pytest.raises(ContentError, match="slide duration 0 ms is out of range"):
        build_presentation([img], slide_duration_ms=0)
    smil_item = MediaItem(b"<smil/>", "application/smil", "s", "s.smil")
    with pytest.raises(ContentError, match=r"item 2 \(s.smil\) is SMIL: pass it as smil="):
        build_presentation([img, smil_item])


def test_too_many_items_are_refused_and_the_most_allowed_still_decode() -> None:
    items = make_items([f"line {n}" for n in range(MAX_ITEMS)])
    many = MediaItem(b"x", "text/plain", "extra", "extra.txt", "utf-8")
    with pytest.raises(ContentError, match=f"too many items: {MAX_ITEMS + 1}, at most {MAX_ITEMS}"):
        build_presentation([*items, many])
    presentation = build_presentation(items)
    decoded = _through_the_wire(presentation, "3gpp")
    assert len(decoded.items) == MAX_ITEMS  # the default parser limits still take it


# --------------------------------------------------------------------------- the caller's SMIL

CALLER_SMIL = b"""<?xml version="1.0"?>
<smil><head><layout><root-layout width="240" height="320"/>
<region id="Image" left="0" top="0" width="240" height="240"/>
<region id="Text" left="0" top="240" width="240" height="80"/></layout></head>
<body><par dur="3s"><text src="caption.txt" region="Text"/>
<img src="photo.jpg" region="Image"/></par>
<par dur="6000ms"><audio src="cid:%s"/></par></body></smil>"""


def _caller_items() -> tuple[MediaItem, ...]:
    return make_items(
        [
            Source(pillow("JPEG"), filename="photo.jpg"),
            Source(b"Look!", filename="caption.txt"),
            amr(),
        ]
    )


def test_caller_smil_is_checked_and_sent_as_it_is() -> None:
    items = _caller_items()
    smil = CALLER_SMIL % items[2].content_id.encode()
    presentation = build_presentation(items, smil=smil, layout=Layout.LANDSCAPE_TEXT_RIGHT)
    assert presentation.smil == smil
    assert presentation.slides == (
        Slide(3000, visual=items[0].content_id, text=items[1].content_id),
        Slide(6000, audio=items[2].content_id),
    )
    assert presentation.layout is Layout.PORTRAIT_TEXT_BELOW  # the SMIL's own layout wins
    part = to_part(presentation)
    assert part.children[0].body == smil
    back = _through_the_wire(presentation, "nokia")
    assert (back.slides, back.items, back.smil) == (presentation.slides, items, None)


def test_caller_smil_that_breaks_the_rules_is_refused_with_every_problem() -> None:
    items = _caller_items()
    smil = CALLER_SMIL.replace(b"caption.txt", b"missing.txt") % b"nothing"
    with pytest.raises(SmilError) as caught:
        build_presentation(items, smil=smil)
    message = str(caught.value)
    assert message.startswith("the SMIL breaks the MMS SMIL rules: ")
    assert "slide 1: <text src='missing.txt'> names no part" in message
    assert "slide 2: <audio src='cid:nothing'> names no part" in message
    assert f"part {items[1].content_id} (text/plain) is not referenced by any slide" in message


def test_to_part_refuses_smil_that_no_longer_matches_the_items() -> None:
    items = _caller_items()
    presentation = build_presentation(items, smil=CALLER_SMIL % items[2].content_id.encode())
    changed = Presentation(items[:2], presentation.slides[:1], smil=presentation.smil)
    with pytest.raises(SmilError, match="no longer matches its items: slide 2: <audio"):
        to_part(changed)


# --------------------------------------------------------------------------- the content entity


def test_content_entity_shape() -> None:
    items = make_items([pillow("JPEG"), "Grüße", mp3(), Source(VCARD, filename="me.vcf")])
    part = to_part(build_presentation(items))
    assert part.content_type.mime_type == "multipart/related"
    smil = part.children[0]
    assert part.content_type.param("type") == "application/smil"
    assert part.content_type.param("start") == f"<{smil.content_id}>"
    assert smil.content_type.mime_type == "application/smil"
    assert smil.content_location == "presentation.smil"
    assert [
        (c.content_type.mime_type, c.content_id, c.content_location, c.charset, c.body)
        for c in part.children[1:]
    ] == [(i.media_type, i.content_id, i.content_location, i.charset, i.data) for i in items]
    assert part.children[2].content_type.param("charset") == "utf-8"
    srcs = {e.get("src") for e in etree.fromstring(smil.body).iter() if e.get("src")}
    assert srcs == {f"cid:{c.content_id}" for c in part.children[1:]}
    assert to_part(build_presentation(items)) == part  # deterministic: same IDs every time


def _through_the_wire(presentation: Presentation, dialect: str) -> Presentation:
    """to_part, a SubmitReq encoded by ``dialect``, decoded back, from_part."""
    message = SubmitReq(
        transaction_id="tx-content-1",
        recipients=Recipients(to=(Address.guess("+15551230001"),)),
        content=to_part(presentation),
    )
    encoded = encode(message, get_dialect(dialect))
    decoded = decode(encoded.body, encoded.content_type)
    content = decoded.message.content  # type: ignore[attr-defined]
    assert isinstance(content, Part)
    return from_part(content)


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize("layout", list(Layout))
def test_round_trip_keeps_slides_items_and_layout(dialect: str, layout: Layout) -> None:
    items = make_items(
        [
            Source(pillow("JPEG", (120, 90)), filename="Straße 1.jpg"),
            "Hallo 👋",
            Source(amr(20), filename="voice.amr"),
            Source(animated_gif(), filename="dance.gif"),
            Source("Ça va?".encode("latin-1"), media_type="text/plain; charset=ISO-8859-1"),
            Source(iso_media(b"3gp5", (b"vide", b"soun")), filename="clip.3gp"),
            Source(VCARD, filename="me.vcf"),
        ]
    )
    presentation = build_presentation(items, layout=layout, slide_duration_ms=3500)
    back = _through_the_wire(presentation, dialect)
    assert back == presentation  # items (bytes, types, IDs, names, charsets), slides, layout
    assert [i.data for i in back.items] == [i.data for i in items]


# --------------------------------------------------------------------------- inbound content


def _inbound(path: str) -> Part:
    capture = read_capture((SOAP_FIXTURES / path).read_bytes())
    message = decode(capture.body, capture.content_type).message
    content = getattr(message, "content", None)
    assert isinstance(content, Part)
    return content


def test_nokia_deliver_req_reads_as_one_slide() -> None:
    presentation = from_part(_inbound("nokia-mc5-deliverreq.http"))
    assert presentation.slides == (Slide(5000, visual="image", text="text"),)
    assert presentation.item("text").data == b"Glasam za broj 7"
    assert presentation.item("image").media_type == "image/jpeg"
    # no Content-Location on the wire: the name= parameter of the Content-Type stands in
    assert [i.content_location for i in presentation.items] == ["text.txt", "image.jpg"]
    assert presentation.layout is Layout.PORTRAIT_TEXT_BELOW
    assert presentation.smil is None  # sent on, it gets SMIL written from its slides
    assert to_part(presentation).children[0].content_type.mime_type == "application/smil"


def test_smil_naming_a_missing_part_keeps_what_resolves() -> None:
    """instantcom's sample SMIL names cid:text, which the message does not carry."""
    presentation = from_part(_inbound("instantcom-submitreq.http"))
    assert presentation.slides == (Slide(5000, visual="image"),)


def test_inbound_without_smil_uses_the_default_rule() -> None:
    parts = [
        make_part(pillow("PNG"), "image/png", content_id="<a>"),
        make_part(b"caption", "text/plain"),
        make_part(pillow("GIF"), "image/gif", content_id="b"),
    ]
    presentation = from_part(make_multipart(parts, "mixed"))
    assert presentation.smil is None
    text_cid = presentation.items[1].content_id
    assert text_cid.startswith("text2-")  # generated where the part had none
    assert presentation.slides == (Slide(visual="a", text=text_cid), Slide(visual="b"))
    single = from_part(make_part(b"just text", "text/plain; charset=us-ascii"))
    assert single.slides == (Slide(text=single.items[0].content_id),)
    assert single.items[0].charset == "us-ascii"


def test_inbound_smil_is_found_by_label_or_bytes_and_locations_are_made_safe() -> None:
    smil = (
        '<smil><body><par dur="2s"><img src="../My Pics/été.jpg"/>'
        '<text src="note"/></par></body></smil>'
    ).encode()
    parts = [
        make_part(smil, "application/octet-stream", content_id="s"),  # SMIL by its bytes
        make_part(
            pillow("JPEG"), "image/jpeg", content_id="p", content_location="../My Pics/été.jpg"
        ),
        make_part(b"hi", "text/plain", content_id="note", content_location="note"),
    ]
    presentation = from_part(make_multipart(parts, "related", params={"start": "<elsewhere>"}))
    assert presentation.slides == (Slide(2000, visual="p", text="note"),)
    assert [i.content_location for i in presentation.items] == ["ete.jpg", "note.txt"]
    assert find_smil(make_multipart(parts, "related")) is parts[0]


def test_unreadable_inbound_smil_falls_back_to_the_default_rule() -> None:
    parts = [
        make_part(b"<smil><body><par", "application/smil", content_id="s"),
        make_part(pillow("PNG"), "image/png", content_id="p"),
        make_part(b"caption", "text/plain", content_id="t"),
    ]
    presentation = from_part(make_multipart(parts, "related", params={"start": "<s>"}))
    assert presentation.slides == (Slide(visual="p", text="t"),)


def test_inbound_duplicate_content_ids_are_renamed() -> None:
    parts = [
        make_part(pillow("PNG"), "image/png", content_id="x"),
        make_part(b"t", "text/plain", content_id="x"),
    ]
    presentation = from_part(make_multipart(parts, "related"))
    ids = [i.content_id for i in presentation.items]
    assert ids[0] == "x" and ids[1].startswith("text2-")
    assert len(presentation.slides) == 1


def test_deliver_req_built_by_us_reads_back() -> None:
    """The inbound direction on our own output: a DeliverReq carrying a built presentation."""
    items = _kinds("image", "text", "audio", "image")
    presentation = build_presentation(items)
    message = DeliverReq(
        transaction_id="d1",
        sender=Address.guess("+15551230001"),
        content=to_part(presentation),
    )
    encoded = encode(message)
    decoded = decode(encoded.body, encoded.content_type)
    assert from_part(decoded.message.content) == presentation  # type: ignore[attr-defined]
