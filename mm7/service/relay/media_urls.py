"""Signed, expiring URLs of an MO's media, served by the gateway's API listener.

    GET {base}/media/{mo_id}/{index}?expires=<unix>&sig=<hex>

``sig`` is HMAC-SHA256 over ``"{mo_id}/{index}/{expires}"`` with the media URL key
(``[relay] media_url_secret``, else a random key the store makes once and keeps, so URLs stay
valid across restarts). Anyone holding the URL may fetch the part until ``expires`` (the
relay's ``media_url_ttl`` after the event was sent): no API key is needed, which is the point --
the application can hand the URL to a browser. A wrong or expired signature answers 403, an
unknown MO or index 404; nothing says which part of a bad URL was wrong. The bytes go out with
``mm7.transport.safe_media``'s headers (sandboxed, nosniff, active types as attachments).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

from aiohttp import web

from mm7.service.store.base import Store
from mm7.transport.safe_media import media_response

__all__ = ["MediaUrls", "add_media_route"]

ROUTE = "/media/{mo_id}/{index}"


class MediaUrls:
    """Makes and checks media URL signatures with one key."""

    def __init__(self, key: bytes, base: str, ttl: float) -> None:
        if not key:
            raise ValueError("the media URL key must not be empty")
        self._key = key
        self.base = base.rstrip("/")
        self.ttl = ttl

    def _sig(self, mo_id: str, index: int, expires: int) -> str:
        return hmac.new(
            self._key, f"{mo_id}/{index}/{expires}".encode(), hashlib.sha256
        ).hexdigest()

    def url(self, mo_id: str, index: int, now: float | None = None) -> str:
        """The URL of part ``index`` of ``mo_id``, valid for ``ttl`` seconds from ``now``."""
        expires = int((time.time() if now is None else now) + self.ttl)
        sig = self._sig(mo_id, index, expires)
        return f"{self.base}/media/{quote(mo_id, safe='')}/{index}?expires={expires}&sig={sig}"

    def check(
        self, mo_id: str, index: int, expires: str, sig: str, now: float | None = None
    ) -> bool:
        """True when ``sig`` is this key's signature and ``expires`` has not passed."""
        try:
            when = int(expires)
        except ValueError:
            return False
        if when < (time.time() if now is None else now):
            return False
        # bytes: compare_digest refuses a str with non-ASCII characters (a 500, not a 403)
        expected = self._sig(mo_id, index, when).encode()
        return hmac.compare_digest(expected, sig.encode("utf-8", "surrogatepass"))


URLS_KEY = web.AppKey("mm7_media_urls", MediaUrls)
STORE_KEY = web.AppKey("mm7_media_store", Store)


async def _serve(request: web.Request) -> web.StreamResponse:
    urls = request.app[URLS_KEY]
    mo_id = request.match_info["mo_id"]
    try:
        index = int(request.match_info["index"])
    except ValueError:
        raise web.HTTPNotFound() from None
    if not urls.check(mo_id, index, request.query.get("expires", ""), request.query.get("sig", "")):
        raise web.HTTPForbidden(text="invalid or expired media URL\n")
    store = request.app[STORE_KEY]
    mo = await store.get_mo(mo_id)
    part = next((p for p in mo.parts if p.position == index), None) if mo is not None else None
    if part is None:
        raise web.HTTPNotFound(text="no such media\n")
    blob = await store.get_media(part.sha256)
    if blob is None:
        raise web.HTTPNotFound(text="no such media\n")
    return media_response(request, blob.data, part.content_type, part.content_location)


def add_media_route(app: web.Application, urls: MediaUrls, store: Store) -> None:
    """Serve the media URLs on ``app`` (the API's application)."""
    app[URLS_KEY] = urls
    app[STORE_KEY] = store
    app.router.add_get(ROUTE, _serve)
