"""The hosted page of a message: its slides in order as one small, self-contained HTML document.

Each slide is a section: its image inline (``<img>``) or its video (``<video controls>``), its
text, its audio (``<audio controls>``), and its other parts (a vCard ...) as download links. The
media are the message's parts, linked relative to the page (``<token>/<position>``), so the page
works under whatever base URL it is served at. Every text is escaped; the page loads nothing
from anywhere else, runs no script, and its Content-Security-Policy (``PAGE_CSP``) allows only
its own style block (by hash) and media from its own origin.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from html import escape

from mm7.content.model import MediaItem, Presentation

__all__ = ["PAGE_CSP", "PAGE_HEADERS", "notice_page", "render_page"]

_STYLE = (
    "body{margin:0;background:#f4f4f4;color:#111;font:16px/1.45 system-ui,sans-serif}"
    "main{max-width:40rem;margin:0 auto;padding:1rem}"
    "h1{font-size:1.25rem;margin:.5rem 0 1rem}"
    ".slide{background:#fff;border-radius:.5rem;padding:.75rem;margin:0 0 1rem}"
    "img,video{display:block;max-width:100%;height:auto;margin:0 auto .5rem}"
    "audio{width:100%}"
    ".text{white-space:pre-wrap;overflow-wrap:anywhere;margin:.25rem 0}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
#: the page's policy: nothing but its own style block, and images and media of its own origin
PAGE_CSP = (
    f"default-src 'none'; img-src 'self'; media-src 'self'; style-src 'sha256-{_STYLE_HASH}'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: the headers every answer of the page route carries (pages and notices alike)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "Cache-Control": "private, max-age=300",
}


def render_page(
    presentation: Presentation,
    positions: Mapping[str, int],
    token: str,
    subject: str | None,
) -> str:
    """The page of ``presentation``; ``positions`` maps an item's Content-ID to the position of
    the stored part it came from (items without one, such as a text given only as a field,
    are shown but not linked)."""
    items = {item.content_id: item for item in presentation.items}
    body: list[str] = []
    if subject:
        body.append(f"<h1>{escape(subject)}</h1>")
    for number, slide in enumerate(presentation.slides, start=1):
        lines = [f'<section class="slide" id="slide-{number}">']
        for cid in (slide.visual, slide.text, slide.audio, *slide.refs):
            item = items.get(cid) if cid is not None else None
            if item is not None:
                lines.append(_item_html(item, positions.get(item.content_id), token, number))
        lines.append("</section>")
        body.append("\n".join(line for line in lines if line))
    return _document(subject or "Message", "\n".join(body))


def notice_page(title: str, text: str) -> str:
    """A page saying why there is nothing to show (an invalid, expired or removed link)."""
    return _document(title, f"<h1>{escape(title)}</h1>\n<p>{escape(text)}</p>")


def _item_html(item: MediaItem, position: int | None, token: str, slide: int) -> str:
    kind = item.kind
    if kind == "text":
        return f'<p class="text">{escape(_text(item))}</p>'
    if position is None:
        return ""
    src = escape(f"{token}/{position}")
    if kind == "image":
        return f'<img src="{src}" alt="{escape(f"Picture, slide {slide}")}">'
    if kind == "video":
        return f'<video src="{src}" controls playsinline preload="metadata"></video>'
    if kind == "audio":
        return f'<audio src="{src}" controls preload="none"></audio>'
    return f'<p><a href="{src}" download>{escape(item.content_location)}</a></p>'


def _text(item: MediaItem) -> str:
    try:
        return item.data.decode(item.charset or "utf-8")
    except (LookupError, UnicodeDecodeError):
        return item.data.decode("utf-8", "replace")


def _document(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="robots" content="noindex, nofollow">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
