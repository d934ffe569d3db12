"""The hosted pages' routes on the API's listener: ``GET /m/{token}`` and ``/m/{token}/{position}``.

No API key: the token is the authorisation (``mm7.service.hosting.links``), so a recipient's
browser opens the link from the text message. Answers:

- the page (``page.render_page``, HTML with ``page.PAGE_HEADERS``), or a part's original bytes
  as the application sent them, with ``mm7.transport.safe_media``'s headers (sandboxed, nosniff,
  active types as attachments; byte ranges for players);
- 403 for a token this gateway did not sign (or a mangled one), 410 for one that expired or
  whose message retention removed, 404 for a part the message does not have: each a short HTML
  notice under the page's headers, never saying more.

How a stored message becomes a presentation is the MT path's business
(``mm7.service.mt.submit_build.stored_presentation``, the same reading the dispatcher sends):
the runtime passes it in as ``load``, so this room stays below the MT path. Rendered pages are
kept in a small LRU by token; the message is looked up on every request, so a removed message's
page is gone at once.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, Mapping

import structlog
from aiohttp import web

from mm7.content.model import Presentation
from mm7.core.errors import MM7Error
from mm7.service.hosting.links import PAGE_PATH, HostedLinks
from mm7.service.hosting.page import PAGE_HEADERS, notice_page, render_page
from mm7.service.store.base import Store
from mm7.service.store.records import JSONObject, MessageContent, PartRecord
from mm7.transport.safe_media import media_response

__all__ = ["PresentationLoader", "add_hosting_routes"]

#: a stored message's presentation (unfitted) and each item's part position, by Content-ID
PresentationLoader = Callable[
    [Store, JSONObject, tuple[PartRecord, ...]],
    Awaitable[tuple[Presentation, Mapping[str, int]]],
]

log = structlog.get_logger("mm7.service.hosting.routes")

_INVALID = (403, "This link is not valid", "Check that the whole link was opened.")
_GONE = (410, "This message is no longer available", "Its link has expired.")
_NO_PART = (404, "Not found", "This message has no such part.")
_BROKEN = (500, "This message cannot be shown", "Please try again later.")


class _Pages:
    """The routes' state: the links, the store, the loader and the LRU of rendered pages."""

    def __init__(
        self, links: HostedLinks, store: Store, load: PresentationLoader, cache: int
    ) -> None:
        self.links = links
        self.store = store
        self.load = load
        self.cache: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.cache_size = cache

    async def message(self, token: str) -> MessageContent | web.Response:
        """The message a token opens, or the notice to answer instead."""
        hosted = self.links.read(token)
        if hosted is None:
            return _notice(*_INVALID)
        if hosted.expired():
            return _notice(*_GONE)
        content = await self.store.message_content(hosted.message_id)
        if content is None:
            self.cache.pop(token, None)
            return _notice(*_GONE)
        return content

    async def page(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        content = await self.message(token)
        if isinstance(content, web.Response):
            return content
        html = self.cache.get(token)
        if html is None:
            try:
                presentation, positions = await self.load(self.store, content.fields, content.parts)
            except MM7Error as exc:
                log.error("mm7.hosting.page_failed", message_id=content.id, error=str(exc))
                return _notice(*_BROKEN)
            subject = content.fields.get("subject")
            html = render_page(
                presentation, positions, token, subject if isinstance(subject, str) else None
            )
            self.cache[token] = html
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(token)
        return web.Response(
            text=html, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
        )

    async def part(self, request: web.Request) -> web.Response:
        content = await self.message(request.match_info["token"])
        if isinstance(content, web.Response):
            return content
        text = request.match_info["position"]
        part = None
        if text.isdigit() and len(text) < 6:
            part = next((p for p in content.parts if p.position == int(text)), None)
        blob = await self.store.get_media(part.sha256) if part is not None else None
        if part is None or blob is None:
            return _notice(*_NO_PART)
        return media_response(request, blob.data, part.content_type, part.content_location)


def _notice(status: int, title: str, text: str) -> web.Response:
    return web.Response(
        status=status,
        text=notice_page(title, text),
        content_type="text/html",
        charset="utf-8",
        headers=PAGE_HEADERS,
    )


def add_hosting_routes(
    app: web.Application,
    links: HostedLinks,
    store: Store,
    load: PresentationLoader,
    *,
    cache: int = 64,
) -> None:
    """Serve the hosted pages and their parts on ``app`` (the API's application)."""
    pages = _Pages(links, store, load, cache)
    app.router.add_get(PAGE_PATH + "/{token}", pages.page)
    app.router.add_get(PAGE_PATH + "/{token}/{position}", pages.part)
