"""A worker passes a request on to the parent of ``mm7 simulate --workers`` (its control plane,
a full simulator on a private Unix socket) and relays the answer as it comes, byte for byte.

Used for everything one process must decide: the control API, the console and its live feed,
and the MM7 requests the parent answers itself (``Simulator.handle``). The parent trusts three
headers on its private socket, which the worker sets and strips from what the peer sent:
``WORKER_HEADER`` (the worker's pid, shown in the traffic record), ``CLIENT_CERT_HEADER`` (the
TLS connection carried a verified client certificate: TLS ends in the worker) and
``CHUNKED_HEADER`` (the peer sent the body chunked; it is passed on with a Content-Length).

What the parent does to the connection itself shows on the peer's: an answer cut short (the
``truncate`` fault) is cut short, a connection dropped without an answer (``reset``) is reset.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from typing import Final, Protocol

import aiohttp
from aiohttp import hdrs, web

from mm7.transport.inbound_auth import peer_certificate

__all__ = [
    "CHUNKED_HEADER",
    "CLIENT_CERT_HEADER",
    "INTERNAL_HEADERS",
    "WORKER_HEADER",
    "Forwarder",
    "Upstream",
]

WORKER_HEADER: Final = "X-MM7-Sim-Worker"
CLIENT_CERT_HEADER: Final = "X-MM7-Sim-Client-Cert"
CHUNKED_HEADER: Final = "X-MM7-Sim-Chunked"
#: set only by a worker; a peer's own are dropped
INTERNAL_HEADERS: Final = frozenset(
    h.lower() for h in (WORKER_HEADER, CLIENT_CERT_HEADER, CHUNKED_HEADER)
)
#: headers about one hop (RFC 9110 7.6.1), never passed on; Content-Length is set anew
_HOP = frozenset(
    h.lower()
    for h in (
        hdrs.CONNECTION,
        hdrs.KEEP_ALIVE,
        hdrs.PROXY_AUTHENTICATE,
        hdrs.PROXY_AUTHORIZATION,
        hdrs.TE,
        hdrs.TRAILER,
        hdrs.TRANSFER_ENCODING,
        hdrs.UPGRADE,
        hdrs.CONTENT_LENGTH,
    )
)


class Upstream(Protocol):
    """What a worker's ``Simulator`` passes requests to (``Simulator.upstream``)."""

    #: every MM7 request goes to the parent (something stateful is in force there)
    forward_all: bool

    async def forward(self, request: web.Request, body: bytes | None) -> web.StreamResponse:
        """Have the parent answer ``request`` (body already read)."""
        ...


class Forwarder:
    """The worker's client of the parent's Unix socket ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        #: every MM7 request goes to the parent (``Replica.forward_all``)
        self.forward_all = False
        self._session: aiohttp.ClientSession | None = None
        self._pid = str(os.getpid())

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.path, limit=0),
                # an answer may wait on a latency fault, a feed may stay open for hours
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                auto_decompress=False,
                skip_auto_headers=(hdrs.USER_AGENT, hdrs.ACCEPT_ENCODING, hdrs.CONTENT_TYPE),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def route(self, request: web.Request) -> web.StreamResponse:
        """The catch-all route: everything but the MM7 endpoint is the parent's."""
        body = await request.read() if request.body_exists else None
        return await self.forward(request, body)

    async def forward(self, request: web.Request, body: bytes | None) -> web.StreamResponse:
        """Pass ``request`` (its body already read) to the parent; relay its answer."""
        headers = [
            (k, v)
            for k, v in request.headers.items()
            if k.lower() not in _HOP and k.lower() not in INTERNAL_HEADERS
        ]
        headers.append((WORKER_HEADER, self._pid))
        if peer_certificate(request) is not None:
            headers.append((CLIENT_CERT_HEADER, "1"))
        if "chunked" in request.headers.get(hdrs.TRANSFER_ENCODING, "").lower():
            headers.append((CHUNKED_HEADER, "1"))
        url = f"http://simulator{request.raw_path}"
        response: web.StreamResponse | None = None
        try:
            async with self._client().request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            ) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for key, value in upstream.headers.items():
                    if key.lower() not in _HOP:
                        response.headers.add(key, value)
                if upstream.content_length is not None:
                    response.content_length = upstream.content_length
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, ConnectionError):
            if response is None or not response.prepared:
                _reset(request)  # dropped before any answer: so is the peer's connection
                return web.Response(status=200)
            if request.transport is not None:
                request.transport.close()  # cut short: the peer sees it cut short
            return response


def _reset(request: web.Request) -> None:
    """Drop the peer's connection with a TCP reset (SO_LINGER 0, then abort)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
