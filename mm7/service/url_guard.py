"""One guard for every URL a caller gives the gateway: media URLs, ``callback_url``, sendmms
``content-url``, ``dlr-url`` and ``rr-url``.

The gateway fetches and calls these on the caller's behalf, from inside the operator's network:
without a guard, a caller reads internal services (server-side request forgery). Unless the
operator allowed private targets (``[api.fetch] allow_private``, or ``allow_private`` on the
caller's ``[[api.keys]]`` entry), only public unicast addresses are reached.

Two checks, both needed:

* ``UrlGuard.check`` at intake: the host is read as a browser reads it (``normalise_host``:
  UTS 46 mapping, so ``127。0。0。1`` and fullwidth digits are ``127.0.0.1``; then the WHATWG URL
  standard's IPv4 parser, so ``2130706433``, ``0177.0.0.1``, ``0x7f.1`` and ``127.1`` are
  ``127.0.0.1`` too), resolved, and refused when any address is not public; the URL handed on
  carries the normalised host, so what is connected to is what was checked. A name that does not
  resolve now is let through (it cannot reach anything now; the connect check below holds later).
* ``UrlGuard.connector`` for every request: a resolver that refuses a name when any of its
  addresses is not public (all or nothing, so the connector cannot fall back to the private one),
  and a socket factory that refuses the address actually connected. This runs for each
  connection, redirects included, IP literals included (aiohttp resolves no literal), whatever
  the body size: a name that resolved to a public address at intake and to 127.0.0.1 at
  delivery (DNS rebinding) is refused there. Refusals are ``UrlRefused``, an ``OSError``, so
  aiohttp reports them as it reports an unreachable host (``ClientConnectorError``).

The ``idna`` package (already under aiohttp through yarl) does the UTS 46 mapping: it follows the
current Unicode tables as browsers do, where Python's ``encodings.idna`` is IDNA 2003 (nameprep),
which maps fewer characters and refuses names browsers accept (underscores).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
import idna
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from mm7.service.errors import ServiceError

__all__ = [
    "ALLOW_HINT",
    "UrlGuard",
    "UrlRefused",
    "address_refusal",
    "normalise_host",
]

#: what a refusal tells the caller to do about it
ALLOW_HINT = "set allow_private to allow"

#: seconds the intake check waits for a name to resolve (then it is let through unresolved)
RESOLVE_TIMEOUT = 5.0

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: code points the WHATWG URL standard forbids in a domain (besides C0 controls and DEL)
_FORBIDDEN = set(" #%/:<>?@[\\]^|")


class UrlRefused(ServiceError, OSError):
    """A caller's URL, or the address it leads to, is refused; ``str()`` says why. An OSError
    too, so that aiohttp reports a refused connect as it reports any failed one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def address_refusal(address: str) -> str | None:
    """Why ``address`` (an IP) may not be reached without allow_private, or None.

    Only global unicast addresses pass. IPv4 inside IPv6 (mapped ``::ffff:a.b.c.d``, compatible
    ``::a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d``, 6to4) is judged as the IPv4 address it carries.
    """
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            address.split("%", 1)[0]
        )
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and (int(ip) >> 32 == 0 and int(ip) > 1 or ip in _NAT64):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    for test, what in (
        (ip.is_loopback, "a loopback"),
        (ip.is_link_local, "a link-local"),
        (ip.is_multicast, "a multicast"),
        (ip.is_unspecified, "the unspecified"),
        (ip.is_private, "a private"),
        (ip.is_reserved, "a reserved"),
    ):
        if test:
            return f"{ip}, {what} address"
    if not ip.is_global:
        return f"{ip}, not a public address"
    return None


def _ipv4_number(part: str) -> int | None:
    """A WHATWG IPv4 number: decimal, ``0x`` hex or ``0`` octal; None when it is not one."""
    radix = 10
    if part[:2] in ("0x", "0X"):
        part, radix = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        part, radix = part[1:], 8
    if part == "":
        return 0
    digits = "0123456789abcdef"[:radix]
    if not all(c in digits for c in part.lower()):
        return None
    return int(part, radix)


def _ends_in_a_number(host: str) -> bool:
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1]
    return last != "" and (last.isascii() and last.isdigit() or _ipv4_number(last) is not None)


def _parse_ipv4(host: str) -> str:
    """The dotted address of a host that ends in a number (WHATWG IPv4 parser); UrlRefused
    when it is not a valid one (a browser refuses such a URL too)."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    numbers = [_ipv4_number(p) if p else None for p in parts]
    if len(parts) > 4 or any(n is None for n in numbers):
        raise UrlRefused(f"{host!r} is not a valid IPv4 address")
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise UrlRefused(f"{host!r} is not a valid IPv4 address")
    address = values[-1]
    for index, n in enumerate(values[:-1]):
        address += n * 256 ** (3 - index)
    return str(ipaddress.IPv4Address(address))


def normalise_host(host: str) -> str:
    """``host`` as a browser reads it: percent-decoded, UTS 46 mapped (``。`` and fullwidth
    forms folded, lower case), non-ASCII labels as ``xn--``, numeric IPv4 forms as dotted
    decimal; an IPv6 literal (brackets stripped) in its compressed form. UrlRefused when no
    browser would accept it."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0]).compressed
        except ValueError:
            raise UrlRefused(f"{host!r} is not a valid IPv6 address") from None
    decoded = unquote(host)
    try:
        mapped = idna.uts46_remap(decoded, std3_rules=False, transitional=False)
        labels = [
            label if label.isascii() else idna.alabel(label).decode("ascii")
            for label in mapped.split(".")
        ]
    except (idna.IDNAError, UnicodeError) as exc:
        raise UrlRefused(f"{host!r} is not a valid host name: {exc}") from None
    ascii_host = ".".join(labels).lower()
    if not ascii_host or any(c in _FORBIDDEN or ord(c) < 0x21 or c == "\x7f" for c in ascii_host):
        raise UrlRefused(f"{host!r} is not a valid host name")
    if _ends_in_a_number(ascii_host):
        return _parse_ipv4(ascii_host)
    return ascii_host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _refuse_addresses(host: str, addresses: Iterable[str]) -> None:
    for address in addresses:
        reason = address_refusal(address)
        if reason is not None:
            raise UrlRefused(f"{host} resolves to {reason}; {ALLOW_HINT}")


class _GuardedResolver(AbstractResolver):
    """The guard's resolver for a connector: refuses a name when any address is not public."""

    def __init__(self, guard: UrlGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._guard.resolver().resolve(host, port, family)
        _refuse_addresses(host, (r["host"] for r in results))
        return results

    async def close(self) -> None:
        """The guard's resolver is the guard's to close."""


def _guarded_socket(
    addr_info: tuple[int, int, int, str, tuple[str, int] | tuple[str, int, int, int]],
) -> socket.socket:
    """A socket for ``addr_info``, refused before connecting when the address is not public."""
    family, type_, proto, _, address = addr_info
    reason = address_refusal(str(address[0]))
    if reason is not None:
        raise UrlRefused(f"the connection would go to {reason}; {ALLOW_HINT}")
    return socket.socket(family=family, type=type_, proto=proto)


class UrlGuard:
    """Checks callers' URLs (module docstring). ``resolver``: how names are resolved (aiohttp's
    default resolver when None; tests give one that answers what they need)."""

    def __init__(self, resolver: AbstractResolver | None = None) -> None:
        self._resolver = resolver
        self._owned = resolver is None

    def resolver(self) -> AbstractResolver:
        """The resolver names are resolved with (made on first use, inside the event loop)."""
        if self._resolver is None:
            self._resolver = DefaultResolver()
        return self._resolver

    async def close(self) -> None:
        """Close the resolver this guard made."""
        if self._owned and self._resolver is not None:
            await self._resolver.close()
            self._resolver = None

    async def check(
        self,
        url: str,
        *,
        allow_private: bool,
        schemes: Iterable[str] = ("https", "http"),
    ) -> str:
        """``url`` with its host normalised, once it may be reached; UrlRefused saying why not.

        With ``allow_private`` only the URL's form is checked (scheme, host, port)."""
        try:
            parts = urlsplit(url)
            host = parts.hostname
            port = parts.port
        except ValueError as exc:
            raise UrlRefused(f"not a valid URL: {exc}") from None
        scheme = parts.scheme.lower()
        allowed = tuple(schemes)
        if scheme not in allowed:
            raise UrlRefused(
                f"scheme {scheme or '(none)'!r} is not allowed (allowed: {', '.join(allowed)})"
            )
        if not host:
            raise UrlRefused("the URL has no host")
        normal = normalise_host(host)
        if normal != host:
            userinfo = parts.netloc.rpartition("@")[0]
            netloc = f"[{normal}]" if ":" in normal else normal
            netloc = f"{userinfo}@{netloc}" if userinfo else netloc
            netloc = f"{netloc}:{port}" if port is not None else netloc
            url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        if allow_private:
            return url
        if _is_ip(normal):
            reason = address_refusal(normal)
            if reason is not None:
                raise UrlRefused(f"{reason}; {ALLOW_HINT}")
            return url
        if normal.rstrip(".") == "localhost" or normal.rstrip(".").endswith(".localhost"):
            raise UrlRefused(f"{normal} is a loopback name; {ALLOW_HINT}")
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                results = await self.resolver().resolve(normal, port or 0, socket.AF_UNSPEC)
        except (OSError, TimeoutError):
            return url  # not resolvable now: the connect check refuses it if it ever is private
        _refuse_addresses(normal, (r["host"] for r in results))
        return url

    def connector(self, **kwargs: object) -> aiohttp.TCPConnector:
        """A TCPConnector that refuses non-public addresses at resolution and at connect
        (``kwargs`` go to the connector: ``limit``, ``force_close``...)."""
        return aiohttp.TCPConnector(
            resolver=_GuardedResolver(self),
            socket_factory=_guarded_socket,
            **kwargs,  # type: ignore[arg-type]
        )
