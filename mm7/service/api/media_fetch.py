"""Fetching media the sending API is given as URLs, within limits and away from internal networks.

An application hands the gateway ``{"url": "https://cdn.example/photo.jpg"}``; the gateway fetches
it before answering, so that a message is only acknowledged with its bytes stored. Fetching on
someone else's behalf is a classic server-side request forgery hole, so unless private targets
are allowed (``[api.fetch] allow_private``, or ``allow_private`` on the caller's API key) every
target that is not a public unicast address is refused by ``mm7.service.url_guard``: the host is
read as a browser reads it and checked with every address it resolves to before each hop, and
the address each connection really goes to is checked again at connect (every request, every
redirect, whatever the body size). Redirects are followed by hand, at most ``MAX_REDIRECTS``,
each hop checked as the first.

Limits: the scheme must be one of ``schemes``; the whole fetch (all hops) must finish within
``timeout`` seconds; the body may not exceed ``max_bytes`` (refused from Content-Length when the
server announces more, else while reading, never buffered beyond the limit + one chunk).

Failures are ``FetchError`` with a message fit for the API's error answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp

from mm7.service.config.settings import FetchSettings
from mm7.service.errors import FetchError
from mm7.service.url_guard import UrlGuard, UrlRefused, address_refusal

__all__ = ["MAX_REDIRECTS", "FetchError", "Fetched", "Fetcher", "MediaFetcher", "address_refusal"]

MAX_REDIRECTS = 3
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a URL gave: the bytes, the server's Content-Type (if any) and a file name guess."""

    data: bytes
    content_type: str | None
    filename: str | None


class Fetcher(Protocol):
    """What the API needs to get media from a URL (injectable for other transports)."""

    async def fetch(self, url: str, *, allow_private: bool = False) -> Fetched:
        """The bytes at ``url``; FetchError when refused or failed. ``allow_private``: the
        caller's key may reach private addresses (``[api.fetch] allow_private`` lets every
        key)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MediaFetcher:
    """The default ``Fetcher``: aiohttp with the ``[api.fetch]`` limits (module docstring)."""

    def __init__(self, settings: FetchSettings, guard: UrlGuard | None = None) -> None:
        self._settings = settings
        self._guard = guard if guard is not None else UrlGuard()
        #: one session refusing private addresses at connect, one (made only when some key or
        #: the configuration allows private targets) that does not
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    def _client(self, allow_private: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(allow_private)
        if session is None:
            connector = (
                aiohttp.TCPConnector(limit=20, force_close=True)
                if allow_private
                else self._guard.connector(limit=20, force_close=True)
            )
            session = self._sessions[allow_private] = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout),
                auto_decompress=True,
            )
        return session

    async def close(self) -> None:
        """Close the client sessions and the guard (the app's cleanup calls this)."""
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()
        await self._guard.close()

    async def _check_url(self, url: str, allow_private: bool) -> str:
        """``url`` with its host normalised (``UrlGuard.check``), or FetchError saying why not."""
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise FetchError(f"not a valid URL: {exc}") from None
        if parts.username is not None or parts.password is not None:
            raise FetchError("credentials in media URLs are refused")
        try:
            return await self._guard.check(
                url, allow_private=allow_private, schemes=self._settings.schemes
            )
        except UrlRefused as exc:
            raise FetchError(f"refused: {exc}") from None

    async def fetch(self, url: str, *, allow_private: bool = False) -> Fetched:
        """The bytes at ``url``, following up to MAX_REDIRECTS redirects, all within limits."""
        private = allow_private or self._settings.allow_private
        try:
            async with asyncio.timeout(self._settings.timeout):
                return await self._fetch(url, private)
        except TimeoutError:
            raise FetchError(f"timed out after {self._settings.timeout:g} s") from None

    async def _fetch(self, url: str, allow_private: bool) -> Fetched:
        session = self._client(allow_private)
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            current = await self._check_url(current, allow_private)
            try:
                async with session.get(current, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise FetchError(f"HTTP {response.status} without a Location")
                        current = urljoin(current, location)
                        continue
                    if response.status != 200:
                        raise FetchError(f"the server answered HTTP {response.status}")
                    data = await self._read(response)
                    content_type = response.headers.get("Content-Type")
                    return Fetched(data, content_type, _filename(current, response))
            except FetchError:
                raise
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, UrlRefused):
                    raise FetchError(f"refused: {exc.os_error}") from None
                raise FetchError(f"cannot connect: {exc.os_error}") from None
            except aiohttp.ClientError as exc:
                raise FetchError(f"fetch failed: {exc.__class__.__name__}: {exc}") from None
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self._settings.max_bytes
        if response.content_length is not None and response.content_length > limit:
            raise FetchError(f"too large: {response.content_length} bytes, at most {limit} allowed")
        buffer = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            buffer += chunk
            if len(buffer) > limit:
                raise FetchError(f"too large: more than {limit} bytes")
        if not buffer:
            raise FetchError("the server sent no content")
        return bytes(buffer)


def _filename(url: str, response: aiohttp.ClientResponse) -> str | None:
    """The file name from Content-Disposition, else the last path segment of the URL."""
    disposition = response.content_disposition
    if disposition is not None and disposition.filename:
        return disposition.filename
    segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return segment or None
