"""Purpose-written fake MMSCs for the client tests: an aiohttp app that records every request as
it arrived and answers from a script of behaviours, canned answers and auth guards, plus a clock
moved by hand and a free loopback port."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy

from mm7.core.codec import decode, encode
from mm7.core.dialect import STRICT_3GPP, Dialect
from mm7.core.mime import make_part
from mm7.core.model import (
    RESPONSE_FOR,
    Address,
    ExtendedReplaceRsp,
    Fault,
    Message,
    Recipients,
    Request,
    RSErrorRsp,
    Status,
    SubmitReq,
    SubmitRsp,
    reply_to,
)

PATH = "/mm7"


@dataclass
class Seen:
    """One request as the fake MMSC received it."""

    method: str
    headers: CIMultiDictProxy[str]
    body: bytes
    #: server-side arrival time (time.monotonic) for counting requests per window
    at: float
    message: Message | None


Behaviour = Callable[[Seen, web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FakeMMSC:
    """Answers each request with the next scripted behaviour, then with ``default``."""

    script: list[Behaviour] = field(default_factory=list)
    default: Behaviour | None = None
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    #: released at teardown so held (slow) handlers finish
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(PATH, self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            message: Message | None = decode(body, request.headers.get("Content-Type")).message
        except Exception:
            message = None
        seen = Seen(request.method, request.headers, body, time.monotonic(), message)
        self.seen.append(seen)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            behaviour = self.script.pop(0) if self.script else (self.default or ok())
            return await behaviour(seen, request)
        finally:
            self.in_flight -= 1


def submit_req(*numbers: str, tid: str = "", cc: tuple[str, ...] = ()) -> SubmitReq:
    """A small SubmitReq with a text content part."""
    return SubmitReq(
        transaction_id=tid,
        vasp_id="vasp",
        vas_id="vas",
        sender_address=Address.guess("12345"),
        recipients=Recipients(
            to=tuple(Address(n) for n in numbers or ("+15551230001",)),
            cc=tuple(Address(n) for n in cc),
        ),
        subject="hello",
        content=make_part(b"Hello", "text/plain; charset=utf-8", content_id="text1"),
    )


def xml_response(
    message: Message,
    *,
    status: int = 200,
    dialect: Dialect = STRICT_3GPP,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    encoded = encode(message, dialect)
    return web.Response(
        status=status,
        body=encoded.body,
        headers={"Content-Type": content_type or encoded.content_type, **(headers or {})},
    )


def ok(
    code: int = 1000,
    *,
    message_id: str = "msg-1",
    details: str | None = None,
    http: int = 200,
    content_type: str | None = None,
    delay: asyncio.Event | float | None = None,
) -> Behaviour:
    """Answer with the request's response type and ``code`` (echoing the envelope)."""

    async def behaviour(seen: Seen, request: web.Request) -> web.StreamResponse:
        if isinstance(delay, float):
            await asyncio.sleep(delay)
        req = seen.message
        assert isinstance(req, Request), "the fake could not read the request"
        cls = RESPONSE_FOR[type(req)]
        kwargs: dict[str, Any] = {"status": Status.of(code, details)}
        if cls is SubmitRsp or cls is ExtendedReplaceRsp:
            kwargs["message_id"] = f"{message_id}-{req.transaction_id}"
        return xml_response(reply_to(req, cls(**kwargs)), status=http, content_type=content_type)

    return behaviour


def fault(code: int, *, http: int = 500, details: str | None = None) -> Behaviour:
    """An RSErrorRsp inside a SOAP Fault (spec style)."""

    async def behaviour(seen: Seen, request: web.Request) -> web.StreamResponse:
        req = seen.message
        assert isinstance(req, Request)
        error = reply_to(req, RSErrorRsp(status=Status.of(code, details)))
        f = reply_to(
            req,
            Fault(faultcode="env:Client", faultstring="Client error", error=error),
        )
        return xml_response(f, status=http)

    return behaviour


def raw(
    status: int,
    body: bytes = b"",
    content_type: str | None = "text/xml; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> Behaviour:
    """Any HTTP answer, byte for byte."""

    async def behaviour(seen: Seen, request: web.Request) -> web.StreamResponse:
        h = dict(headers or {})
        if content_type is not None:
            h["Content-Type"] = content_type
        return web.Response(status=status, body=body, headers=h)

    return behaviour


def hold(event: asyncio.Event, then: Behaviour | None = None) -> Behaviour:
    """Wait (at most 10 s) for ``event`` before answering: a slow MMSC."""

    async def behaviour(seen: Seen, request: web.Request) -> web.StreamResponse:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 10)
        return await (then or ok())(seen, request)

    return behaviour


def reset() -> Behaviour:
    """Drop the connection with a TCP reset before answering."""

    async def behaviour(seen: Seen, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        await asyncio.sleep(0)
        return web.Response(status=200)

    return behaviour


def basic_guard(user: str, password: str, inner: Behaviour | None = None) -> Behaviour:
    """401 with a Basic challenge unless the right credentials came."""
    want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def behaviour(seen: Seen, request: web.Request) -> web.StreamResponse:
        if seen.headers.get("Authorization") != want:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="mm7"'})
        return await (inner or ok())(seen, request)

    return behaviour


def bearer_guard(token: str, inner: Behaviour | None = None) -> Behaviour:
    async def behaviour(seen: Seen, request: web.Request) -> web.StreamResponse:
        if seen.headers.get("Authorization") != f"Bearer {token}":
            return web.Response(status=401, headers={"WWW-Authenticate": 'Bearer realm="mm7"'})
        return await (inner or ok())(seen, request)

    return behaviour


@dataclass
class DigestGuard:
    """A Digest (RFC 7616, MD5, qop=auth) server side that really checks the response hash."""

    user: str
    password: str
    realm: str = "mmsc"
    nonces: list[str] = field(default_factory=list)
    verified: int = 0
    challenged: int = 0

    def behaviour(self, inner: Behaviour | None = None) -> Behaviour:
        async def run(seen: Seen, request: web.Request) -> web.StreamResponse:
            header = seen.headers.get("Authorization", "")
            if header.startswith("Digest ") and self._check(header[7:], seen.method):
                self.verified += 1
                return await (inner or ok())(seen, request)
            return self._challenge()

        return run

    def _challenge(self) -> web.Response:
        self.challenged += 1
        nonce = os.urandom(12).hex()
        self.nonces.append(nonce)
        value = f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth", algorithm=MD5'
        return web.Response(status=401, headers={"WWW-Authenticate": value})

    def _check(self, params: str, method: str) -> bool:
        fields: dict[str, str] = {}
        for item in params.split(","):
            key, _, value = item.strip().partition("=")
            fields[key] = value.strip('"')
        if fields.get("username") != self.user or fields.get("nonce") not in self.nonces:
            return False

        def h(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = h(f"{self.user}:{self.realm}:{self.password}")
        ha2 = h(f"{method}:{fields.get('uri', '')}")
        want = h(
            f"{ha1}:{fields['nonce']}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:"
            f"{fields.get('qop', '')}:{ha2}"
        )
        return fields.get("response") == want and fields.get("uri") == PATH


class FakeClock:
    """A monotonic clock tests move by hand; its sleep advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def free_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
