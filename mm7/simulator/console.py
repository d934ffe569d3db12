"""The simulator's console page: a table of every exchange, newest first, updated live by
server-sent events, with filters, a detail view (headers, SOAP, parts, slides) and the controls
of the persona, the faults and the scenarios, all through the control API.

Plain HTML with a script and a style sheet served by the simulator from the package
(``mm7/simulator/static``): no CDN, no build step. The script writes what came from the wire
with ``textContent`` only, and the page's Content-Security-Policy runs no inline script and
loads nothing from elsewhere, so a hostile Subject stays text.
"""

from __future__ import annotations

import html
from importlib.resources import files

#: scripts and styles from the simulator only; fetch and EventSource to it only
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
#: the files the page loads, with their media types
ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}

_STATIC = files("mm7.simulator").joinpath("static")


def console_asset(name: str) -> tuple[bytes, str] | None:
    """The bytes and media type of one of ``ASSETS``; None for any other name."""
    content_type = ASSETS.get(name)
    if content_type is None:
        return None
    return _STATIC.joinpath(name).read_bytes(), content_type


def console_page(control_path: str, ui_path: str, persona: str) -> str:
    """The page, naming where the control API and the assets are."""
    template = _STATIC.joinpath("console.html").read_text(encoding="utf-8")
    return (
        template.replace("{control}", html.escape(control_path.rstrip("/"), quote=True))
        .replace("{ui}", html.escape(ui_path, quote=True))
        .replace("{persona}", html.escape(persona, quote=True))
    )
