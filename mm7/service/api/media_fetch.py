"""Fetching media the sending API is given as URLs, within limits and away from internal networks.

An application hands the gateway ``{"url": "https://cdn.example/photo.jpg"}``; the gateway fetches
it before answering, so that a message is only acknowledged with its bytes stored. Fetching on
someone else's behalf is a classic server-side request forgery hole, so by default (``[api.fetch]
allow_private = false``) the fetcher refuses every target that is not a public unicast address:
loopback, RFC 1918 / unique-local, link-local (cloud metadata at 169.254.169.254), CGNAT,
multicast, reserved, unspecified, IPv4-mapped forms of those. It checks

* the host when it is an IP literal (aiohttp does not resolve those),
* every address the name resolves to (a custom resolver: a name with one public and one private
  address is refused as a whole, so DNS tricks cannot pick the private one),
* the address the connection really went to (the transport's peer), in case anything slipped by,
* every redirect hop again (redirects are followed by hand, at most ``MAX_REDIRECTS``).

Limits: the scheme must be one of ``schemes``; the whole fetch (all hops) must finish within
``timeout`` seconds; the body may not exceed ``max_bytes`` (refused from Content-Length when the
server announces more, else while reading, never buffered beyond the limit + one chunk).

Failures are ``FetchError`` with a message fit for the API's error answer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from mm7.service.config.settings import FetchSettings
from mm7.service.errors import FetchError

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

    async def fetch(self, url: str) -> Fetched:
        """The bytes at ``url``; FetchError when refused or failed."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def address_refusal(address: str) -> str | None:
    """Why fetching from ``address`` (an IP) is refused without ``allow_private``, or None.

    Only global unicast addresses pass; IPv4-mapped/6to4-embedded IPv4 is judged as IPv4.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for test, what in (
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
    ):
        if test:
            return f"{ip} is a {what} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


class _GuardedResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver, then refuses the name if any address is not
    public (all-or-nothing, so that the connector cannot fall back to a private address)."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            reason = address_refusal(result["host"])
            if reason is not None:
                raise FetchError(f"refused: {host} resolves to {reason} (not allowed)")
        return results

    async def close(self) -> None:
        await self._inner.close()


class MediaFetcher:
    """The default ``Fetcher``: aiohttp with the ``[api.fetch]`` limits (module docstring)."""

    def __init__(self, settings: FetchSettings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver: AbstractResolver | None = (
                None if self._settings.allow_private else _GuardedResolver()
            )
            connector = aiohttp.TCPConnector(resolver=resolver, limit=20, force_close=True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout),
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        """Close the client session (the app's cleanup calls this)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _check_url(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            host = parts.hostname
            _ = parts.port
        except ValueError as exc:
            raise FetchError(f"not a valid URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in self._settings.schemes:
            allowed = ", ".join(self._settings.schemes)
            raise FetchError(f"scheme {scheme or '(none)'!r} is not allowed (allowed: {allowed})")
        if not host:
            raise FetchError("the URL has no host")
        if parts.username is not None or parts.password is not None:
            raise FetchError("credentials in media URLs are refused")
        if self._settings.allow_private:
            return
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            if host.rstrip(".").lower() == "localhost" or host.lower().endswith(".localhost"):
                raise FetchError(f"refused: {host} is loopback (not allowed)") from None
            return  # a name: the resolver checks its addresses
        reason = address_refusal(host)
        if reason is not None:
            raise FetchError(f"refused: {reason} (not allowed)")

    async def fetch(self, url: str) -> Fetched:
        """The bytes at ``url``, following up to MAX_REDIRECTS redirects, all within limits."""
        try:
            async with asyncio.timeout(self._settings.timeout):
                return await self._fetch(url)
        except TimeoutError:
            raise FetchError(f"timed out after {self._settings.timeout:g} s") from None

    async def _fetch(self, url: str) -> Fetched:
        session = self._client()
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            self._check_url(current)
            try:
                async with session.get(current, allow_redirects=False) as response:
                    self._check_peer(response)
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
                cause: Any = exc.__cause__ or exc.os_error
                if isinstance(cause, FetchError):
                    raise cause from None
                raise FetchError(f"cannot connect: {exc.os_error}") from None
            except aiohttp.ClientError as exc:
                if isinstance(exc.__cause__, FetchError):
                    raise exc.__cause__ from None
                raise FetchError(f"fetch failed: {exc.__class__.__name__}: {exc}") from None
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    def _check_peer(self, response: aiohttp.ClientResponse) -> None:
        """Refuse when the connection went to a non-public address (defence in depth)."""
        if self._settings.allow_private or response.connection is None:
            return
        transport = response.connection.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if peer:
            reason = address_refusal(str(peer[0]))
            if reason is not None:
                raise FetchError(f"refused: connected to {reason} (not allowed)")

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
