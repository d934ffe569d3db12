"""MMS SMIL: what we generate parses with lxml and passes the checker for every layout; the
checker catches each rule a carrier enforces; inbound SMIL in the shapes handsets and MMSCs
write (Nokia, Sony Ericsson, Content-Location srcs, nested, no durations) reads into slides."""

from __future__ import annotations

import pytest
from lxml import etree

from mm7.content.builder import build_presentation
from mm7.content.model import Layout, MediaItem, Presentation, Slide
from mm7.content.parts import Source, make_items
from mm7.content.smil import (
    SmilError,
    check_smil,
    generate_smil,
    parse_duration,
    parse_slides,
    read_smil,
    resolve_src,
)
from tests.helpers.media import VCARD, amr, iso_media, pillow


def _items() -> tuple[MediaItem, ...]:
    return make_items(
        [
            Source(pillow("JPEG"), filename="beach.jpg"),
            "Greetings from the beach",
            Source(amr(), filename="waves.amr"),
            Source(iso_media(b"3gp5", (b"vide", b"soun")), filename="clip.3gp"),
            "and a clip",
            Source(VCARD, filename="me.vcf"),
        ]
    )


def _srcs(smil: bytes) -> list[str]:
    return [e.get("src") for e in etree.fromstring(smil).iter() if e.get("src") is not None]


# --------------------------------------------------------------------------- generation


@pytest.mark.parametrize("layout", list(Layout))
def test_generated_smil_parses_and_passes_the_checker(layout: Layout) -> None:
    items = _items()
    presentation = build_presentation(items, layout=layout, slide_duration_ms=4000)
    smil = generate_smil(presentation)
    root = etree.fromstring(smil)  # plain lxml, as a receiving MMSC would
    assert root.tag == "smil"
    assert check_smil(smil, items) == []
    by_cid = {i.content_id: i for i in items}
    srcs = _srcs(smil)
    assert all(s.startswith("cid:") and s[4:] in by_cid for s in srcs)
    assert sorted(s[4:] for s in srcs) == sorted(by_cid)
    pars = root.findall("body/par")
    assert [p.get("dur") for p in pars] == ["4000ms", "4000ms"]
    assert [[(e.tag, e.get("region")) for e in p] for p in pars] == [
        [("img", "Image"), ("text", "Text"), ("audio", None)],
        [("video", "Image"), ("text", "Text"), ("ref", None)],
    ]


@pytest.mark.parametrize(
    ("layout", "root", "image", "text"),
    [
        (
            Layout.PORTRAIT_TEXT_BELOW,
            ("176", "208"),
            ("0", "0", "176", "144"),
            ("0", "144", "176", "64"),
        ),
        (
            Layout.PORTRAIT_TEXT_ABOVE,
            ("176", "208"),
            ("0", "64", "176", "144"),
            ("0", "0", "176", "64"),
        ),
        (
            Layout.LANDSCAPE_TEXT_RIGHT,
            ("208", "176"),
            ("0", "0", "128", "176"),
            ("128", "0", "80", "176"),
        ),
        (
            Layout.LANDSCAPE_TEXT_LEFT,
            ("208", "176"),
            ("80", "0", "128", "176"),
            ("0", "0", "80", "176"),
        ),
    ],
)
def test_layout_geometry_and_it_reads_back(
    layout: Layout,
    root: tuple[str, str],
    image: tuple[str, str, str, str],
    text: tuple[str, str, str, str],
) -> None:
    items = _items()
    smil = generate_smil(build_presentation(items, layout=layout))
    tree = etree.fromstring(smil)
    root_layout = tree.find("head/layout/root-layout")
    assert root_layout is not None
    assert (root_layout.get("width"), root_layout.get("height")) == root
    regions = {r.get("id"): r for r in tree.findall("head/layout/region")}
    assert set(regions) == {"Image", "Text"}
    box = ("left", "top", "width", "height")
    assert tuple(regions["Image"].get(k) for k in box) == image
    assert tuple(regions["Text"].get(k) for k in box) == text
    assert read_smil(smil, items).layout is layout


def test_only_the_used_region_is_declared_and_fills_the_root() -> None:
    text_only = make_items(["one", "two"])
    smil = generate_smil(build_presentation(text_only))
    regions = etree.fromstring(smil).findall("head/layout/region")
    assert [(r.get("id"), r.get("width"), r.get("height")) for r in regions] == [
        ("Text", "176", "208")
    ]
    assert check_smil(smil, text_only) == []
    pictures = make_items([pillow("PNG"), pillow("GIF")])
    smil = generate_smil(build_presentation(pictures, layout=Layout.LANDSCAPE_TEXT_LEFT))
    regions = etree.fromstring(smil).findall("head/layout/region")
    assert [(r.get("id"), r.get("width"), r.get("height")) for r in regions] == [
        ("Image", "208", "176")
    ]


def test_generate_refuses_a_slide_naming_a_missing_item() -> None:
    items = make_items(["x"])
    with pytest.raises(SmilError, match="slide 1 names 'nope'"):
        generate_smil(Presentation(items, (Slide(visual="nope"),)))


def test_content_ids_with_odd_characters_are_percent_encoded_and_resolve() -> None:
    item = MediaItem(b"hello", "text/plain", "a b%c@example", "a.txt", "utf-8")
    smil = generate_smil(Presentation((item,), (Slide(text=item.content_id),)))
    assert _srcs(smil) == ["cid:a%20b%25c@example"]
    assert check_smil(smil, [item]) == []
    assert parse_slides(smil, [item]) == (Slide(text=item.content_id),)


# --------------------------------------------------------------------------- the checker

GOOD_HEAD = (
    '<head><layout><root-layout width="176" height="208"/>'
    '<region id="Image" top="0" left="0" width="176" height="144"/>'
    '<region id="Text" top="144" left="0" width="176" height="64"/></layout></head>'
)


def _smil(body: str, head: str = GOOD_HEAD) -> bytes:
    return f"<smil>{head}<body>{body}</body></smil>".encode()


def _check_items() -> tuple[MediaItem, ...]:
    img = MediaItem(pillow("PNG"), "image/png", "img", "a.png")
    txt = MediaItem(b"hi", "text/plain", "txt", "a.txt", "utf-8")
    snd = MediaItem(amr(), "audio/amr", "snd", "a.amr")
    return img, txt, snd


OK_PAR = (
    '<par dur="5s"><img src="cid:img" region="Image"/><text src="cid:txt" region="Text"/>'
    '<audio src="cid:snd"/></par>'
)


@pytest.mark.parametrize(
    ("smil", "problem"),
    [
        (
            _smil(OK_PAR.replace("cid:img", "cid:gone")),
            "slide 1: <img src='cid:gone'> names no part",
        ),
        (
            _smil(OK_PAR.replace('<audio src="cid:snd"/>', "")),
            "part snd (audio/amr) is not referenced",
        ),
        (
            _smil(OK_PAR.replace('region="Image"', 'region="Picture"')),
            "region='Picture' is not declared",
        ),
        (
            _smil(OK_PAR.replace("</par>", '<img src="cid:img" region="Image"/></par>')),
            "slide 1: 2 images/videos; at most one per slide",
        ),
        (
            _smil(OK_PAR.replace("</par>", '<video src="cid:img" region="Image"/></par>')),
            "slide 1: 2 images/videos",
        ),
        (
            _smil(OK_PAR.replace("</par>", '<text src="cid:txt" region="Text"/></par>')),
            "slide 1: 2 <text> elements",
        ),
        (
            _smil(OK_PAR.replace("</par>", '<audio src="cid:snd"/></par>')),
            "slide 1: 2 <audio> elements",
        ),
        (
            _smil(OK_PAR.replace("<audio", "<par><audio").replace("</par>", "</par></par>", 1)),
            "slide 1: nested <par>",
        ),
        (_smil(f"<seq>{OK_PAR}</seq>"), "<seq> directly in <body>"),
        (
            _smil(OK_PAR.replace('<audio src="cid:snd"/>', '<audio src="cid:snd" region="Text"/>')),
            "audio takes no region",
        ),
        (
            _smil(OK_PAR.replace('<img src="cid:img"', '<img src="cid:snd"')),
            "is audio/amr, not image",
        ),
        (_smil(OK_PAR.replace('dur="5s"', 'dur="soon"')), "dur='soon' is not a SMIL duration"),
        (
            _smil(OK_PAR.replace("<audio", "<blink/><audio")),
            "<blink> is not an MMS SMIL media element",
        ),
        (_smil(OK_PAR.replace('<audio src="cid:snd"/>', "<audio/>")), "<audio> without src"),
        (
            _smil(OK_PAR, GOOD_HEAD.replace("</layout>", '<region id="Extra"/></layout>')),
            "3 regions declared; MMS SMIL allows at most 2",
        ),
        (
            _smil(OK_PAR, GOOD_HEAD.replace("</layout>", '<region id="Text"/></layout>')),
            "region 'Text' declared twice",
        ),
        (
            _smil(OK_PAR, "<head><layout><region id='Image'/><region id='Text'/></layout></head>"),
            "no <root-layout>",
        ),
        (_smil(""), "no <par> slides"),
        (b"<smil><head/></smil>", "no <body>"),
        (b"<html><body/></html>", "the root element is <html>, expected <smil>"),
        (b"<smil><body><par>", "unreadable SMIL"),
        (
            b'<!DOCTYPE smil [<!ENTITY x "y">]><smil><body/></smil>',
            "unreadable SMIL: SMIL part: XML declares a DTD",
        ),
    ],
)
def test_checker_names_each_broken_rule(smil: bytes, problem: str) -> None:
    problems = check_smil(smil, _check_items())
    assert any(problem in p for p in problems), problems


def test_checker_accepts_the_forms_of_src_and_a_layoutless_smil() -> None:
    items = _check_items()
    assert check_smil(_smil(OK_PAR), items) == []
    by_location = (
        OK_PAR.replace("cid:img", "a.png").replace("cid:txt", "a.txt").replace("cid:snd", "snd")
    )
    assert check_smil(_smil(by_location), items) == []
    minimal = (
        b'<smil><body><par dur="5s"><img src="a.png"/><text src="cid:txt"/>'
        b'<audio src="cid:snd"/></par></body></smil>'
    )
    assert check_smil(minimal, items) == []


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("5000ms", 5000),
        ("5s", 5000),
        ("5", 5000),
        ("1.5s", 1500),
        (" 2500MS ", 2500),
        ("2min", 120_000),
        ("0:05", 5000),
        ("00:00:05.5", 5500),
        ("1h", 3_600_000),
        (".5s", 500),
        ("indefinite", None),
        ("media", None),
        ("-5s", None),
        ("5 seconds", None),
        ("", None),
        ("999h", None),
    ],
)
def test_parse_duration(value: str, ms: int | None) -> None:
    assert parse_duration(value) == ms


# --------------------------------------------------------------------------- inbound SMIL

NOKIA = b"""<smil><head><layout><root-layout width="176" height="144"/>
<region id="Image" top="0" left="0" height="75%" width="100%"/>
<region id="Text" top="75%" left="0" height="25%" width="100%"/></layout></head>
<body><par dur="5000ms"><img src="cid:image" region="Image"/>
<text src="cid:text" region="Text"/></par>
<par dur="3000ms"><text src="cid:text2" region="Text"/>
<audio src="cid:tune"/></par></body></smil>"""

SONY_ERICSSON = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE smil PUBLIC "-//W3C//DTD SMIL 2.0//EN" "http://www.w3.org/2001/SMIL20/SMIL20.dtd">
<smil xmlns="http://www.w3.org/2001/SMIL20/Language">
  <head>
    <meta name="title" content="My MMS"/>
    <layout>
      <root-layout width="208" height="176" background-color="#FFFFFF"/>
      <region id="Image" width="128" height="176" left="0" top="0" fit="meet"/>
      <region id="Text" width="80" height="176" left="128" top="0" fit="scroll"/>
    </layout>
  </head>
  <body>
    <par dur="8000ms">
      <img src="IMAGE0001.JPG" region="Image" alt="photo"/>
      <text src="text_0.txt" region="Text"><param name="foreground-color" value="#000000"/></text>
    </par>
    <par>
      <audio src="ringtone.mid" begin="0s" end="12s"/>
      <!-- no dur on this slide: the audio's end gives its length -->
    </par>
  </body>
</smil>"""


def _inbound() -> tuple[MediaItem, ...]:
    return (
        MediaItem(pillow("JPEG"), "image/jpeg", "image", "IMAGE0001.JPG"),
        MediaItem(b"Glasam za broj 7", "text/plain", "text", "text_0.txt", "utf-8"),
        MediaItem(b"second", "text/plain", "text2", "text_1.txt", "utf-8"),
        MediaItem(b"MThd\x00\x00\x00\x06" + bytes(6), "audio/midi", "tune", "ringtone.mid"),
    )


def test_nokia_style_smil() -> None:
    document = read_smil(NOKIA, _inbound())
    assert document.slides == (
        Slide(5000, visual="image", text="text"),
        Slide(3000, text="text2", audio="tune"),
    )
    assert document.layout is Layout.PORTRAIT_TEXT_BELOW  # regions in percent of the root


def test_sony_ericsson_style_smil_with_doctype_namespace_and_file_name_srcs() -> None:
    document = read_smil(SONY_ERICSSON, _inbound())
    assert document.slides == (
        Slide(8000, visual="image", text="text"),
        Slide(12000, audio="tune"),
    )
    assert document.layout is Layout.LANDSCAPE_TEXT_RIGHT


def test_regions_named_otherwise_are_found_by_what_they_show() -> None:
    smil = b"""<smil><head><layout><root-layout width="100%" height="100%"/>
    <region id="Bottom" top="70%" height="30%"/>
    <region id="Top" top="0" height="70%"/></layout></head>
    <body><par dur="2s"><text src="cid:text" region="Top"/>
    <img src="cid:image" region="Bottom"/></par></body></smil>"""
    assert read_smil(smil, _inbound()).layout is Layout.PORTRAIT_TEXT_ABOVE
    left = (
        smil.replace(b'top="70%" height="30%"', b'left="0" width="30%"')
        .replace(b'top="0" height="70%"', b'left="30%" width="70%"')
        .replace(b'root-layout width="100%" height="100%"', b'root-layout width="320" height="240"')
    )
    assert read_smil(left, _inbound()).layout is Layout.LANDSCAPE_TEXT_RIGHT


@pytest.mark.parametrize(
    "src",
    [
        "cid:image",
        "cid:<image>",
        "cid: image",
        "image",
        "<image>",
        "IMAGE0001.JPG",
        "image0001.jpg",
        "./media/IMAGE0001.JPG",
        "IMAGE0001%2EJPG",
    ],
)
def test_every_way_of_naming_a_part(src: str) -> None:
    item = resolve_src(src, _inbound())
    assert item is not None and item.content_id == "image"


def test_lenient_reading_of_odd_real_world_shapes() -> None:
    items = _inbound()
    smil = b"""<smil><body>
      <seq>
        <par dur="2s"><par><img src="cid:image"/></par><seq><text src="cid:text"/></seq></par>
        <par><img src="cid:image" dur="7s"/><img src="cid:missing"/><ref src="cid:text2"/></par>
      </seq>
      <text src="text_1.txt"/>
      <par dur="1s"><switch><audio src="cid:tune"/><audio src="cid:text"/></switch>
                    <ref src="cid:image"/><img src="cid:image"/></par>
      <par/>
    </body></smil>"""
    assert parse_slides(smil, items, default_duration_ms=4000) == (
        Slide(2000, visual="image", text="text"),  # nested containers flattened
        Slide(7000, visual="image", text="text2"),  # dur from the media; unresolved src skipped
        Slide(4000, text="text2"),  # media straight in <body>: a slide of its own
        Slide(1000, visual="image", audio="tune"),  # first choice of the switch; duplicates once
        Slide(4000),  # an empty par is a pause
    )


def test_second_media_of_a_kind_is_kept_as_a_ref() -> None:
    items = _inbound()
    smil = (
        b'<smil><body><par dur="1s"><text src="cid:text"/><text src="cid:text2"/></par>'
        b"</body></smil>"
    )
    assert parse_slides(smil, items) == (Slide(1000, text="text", refs=("text2",)),)


@pytest.mark.parametrize(
    ("smil", "message"),
    [
        (b"not xml at all", "unreadable SMIL"),
        (b"<html/>", "not SMIL: the root element is <html>"),
        (b'<!DOCTYPE smil [<!ENTITY a "b">]><smil/>', "declares a DTD"),
        (b"<smil>" + b"<par>" * 40 + b"</par>" * 40 + b"</smil>", "nesting deeper"),
        (b"<smil><body>" + b"<!--" + b"x" * 300_000 + b"--></body></smil>", "over the limit"),
    ],
)
def test_unreadable_smil_is_a_smil_error(smil: bytes, message: str) -> None:
    with pytest.raises(SmilError, match=message):
        parse_slides(smil, _inbound())
