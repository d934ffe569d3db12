"""The simulator's messages page (``/ui/messages``; the console at ``/ui`` links to it): every
received message shown as a person would see it on a phone, slides in order with images, text,
audio and video players. Server-rendered HTML (no script), so it works in any browser and a
headless browser test can read it directly.

Media are served by the control API (``/control/messages/<id>/parts/<n>``); everything a peer
sent is escaped, and the page's Content-Security-Policy loads nothing from elsewhere.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from mm7.content.builder import from_part
from mm7.core.jsonview import leaf_parts
from mm7.simulator.store import Received

#: the page loads only its own media and inline style: a peer's content cannot run script
PAGE_CSP = (
    "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)
#: longest text shown on a slide
MAX_TEXT = 8192

_STYLE = """
body{font-family:sans-serif;background:#eee;margin:1em}
.msg{background:#fff;border-radius:8px;padding:1em;margin:0 0 1em;max-width:28em}
.meta{color:#555;font-size:.85em}
.slide{border:1px solid #ccc;border-radius:6px;margin:.5em 0;padding:.5em}
.slide img,.slide video{max-width:100%;display:block;margin:0 auto .5em}
.slide .text{white-space:pre-wrap}
"""


def render_page(messages: Iterable[Received], control_path: str, persona: str) -> str:
    """The whole page, newest message first."""
    body = [_message(m, control_path.rstrip("/")) for m in reversed(list(messages))]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>MM7 simulator ({_e(persona)})</title><style>{_STYLE}</style></head><body>"
        f"<h1>Messages received by the MM7 simulator ({_e(persona)})</h1>"
        + ("".join(body) or '<p id="empty">No messages yet.</p>')
        + "</body></html>\n"
    )


def _message(received: Received, control: str) -> str:
    message = received.message
    subject = getattr(message, "subject", None)
    sender: Any = getattr(message, "sender_address", None) or getattr(message, "sender", None)
    recipients = getattr(message, "recipients", None)
    to = ", ".join(a.value for a in recipients.all) if recipients is not None else ""
    meta = (
        f"{_e(received.operation)} #{received.id} &middot; MessageID {_e(received.message_id)}"
        f" &middot; from {_e(getattr(sender, 'value', ''))} to {_e(to)}"
        f" &middot; {_e(received.at.isoformat(timespec='seconds'))}"
    )
    parts = [f'<div class="msg" id="message-{received.id}"><div class="meta">{meta}</div>']
    if subject:
        parts.append(f'<h2 class="subject">{_e(subject)}</h2>')
    if received.content is not None:
        parts.append(_slides(received, control))
    parts.append("</div>")
    return "".join(parts)


def _slides(received: Received, control: str) -> str:
    assert received.content is not None
    leaves = leaf_parts(received.content)
    index_of = {id(p.body): i for i, p in enumerate(leaves)}
    presentation = from_part(received.content)
    out: list[str] = []
    for number, slide in enumerate(presentation.slides, start=1):
        cells = [f'<div class="slide" data-slide="{number}">']
        for slot in ("visual", "text", "audio"):
            cid = getattr(slide, slot)
            if cid is None:
                continue
            try:
                item = presentation.item(cid)
            except KeyError:
                continue
            index = index_of.get(id(item.data))
            src = f"{control}/messages/{received.id}/parts/{index}" if index is not None else ""
            if item.kind == "image" and src:
                cells.append(f'<img src="{_e(src)}" alt="{_e(item.content_location)}">')
            elif item.kind == "video" and src:
                cells.append(f'<video controls src="{_e(src)}"></video>')
            elif item.kind == "audio" and src:
                cells.append(f'<audio controls src="{_e(src)}"></audio>')
            elif item.kind == "text":
                text = item.data[:MAX_TEXT].decode(item.charset or "utf-8", errors="replace")
                cells.append(f'<div class="text">{_e(text)}</div>')
        cells.append("</div>")
        out.append("".join(cells))
    return "".join(out)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)
