"""mm7.transport.listener with real sockets on 127.0.0.1: stalled requests are closed within
their timeout, slow but moving ones are not, and a listener full of stalled connections still
answers a new caller at once."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from mm7.transport.listener import Listener, ListenerLimits, serve
from tests.helpers.tls_ca import make_ca

SHORT = ListenerLimits(
    header_timeout=0.4, body_timeout=0.4, keepalive_timeout=0.4, max_connections=50
)
#: how late a close may come after its timeout on a busy test machine
SLACK = 1.5
#: how late a close may come and still be the listener's (aiohttp's backstop: 4x later)
LATE = 0.8

Serve = Callable[..., Awaitable[Listener]]


def _app(release: asyncio.Event | None = None) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(text=f"got {len(body)}")

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(1.0)  # longer than every timeout: a complete request is not cut
        return web.Response(text="slow done")

    async def hold(request: web.Request) -> web.Response:
        assert release is not None
        await release.wait()
        return web.Response(text="held")

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_get("/echo", echo)
    app.router.add_get("/slow", slow)
    app.router.add_get("/hold", hold)
    return app


@pytest.fixture
async def start() -> AsyncIterator[Serve]:
    listeners: list[Listener] = []

    async def run(limits: ListenerLimits, app: web.Application | None = None) -> Listener:
        listener = await serve(app or _app(), "127.0.0.1", 0, limits, name="test")
        listeners.append(listener)
        return listener

    yield run
    for listener in listeners:
        await listener.close()


async def _connect(listener: Listener) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", listener.port)


async def _closed_after(reader: asyncio.StreamReader, started: float, limit: float) -> float:
    """Seconds from ``started`` until the server closed the connection (nothing was answered)."""
    try:
        data = await asyncio.wait_for(reader.read(), limit)
    except ConnectionResetError:
        data = b""
    assert data == b"", data
    return time.monotonic() - started


def _request(path: str = "/echo", body: bytes = b"", method: str = "GET") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def _answer(listener: Listener, request: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = await _connect(listener)
    writer.write(request)
    try:
        status = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
    finally:
        writer.close()
    return status


async def test_half_a_request_line_is_closed_at_the_header_timeout(start: Serve) -> None:
    listener = await start(SHORT)
    reader, writer = await _connect(listener)
    began = time.monotonic()
    writer.write(b"GET /ec")
    took = await _closed_after(reader, began, SHORT.header_timeout + SLACK)
    assert SHORT.header_timeout - 0.05 <= took < SHORT.header_timeout + LATE
    writer.close()


async def test_headers_trickling_in_do_not_extend_the_header_timeout(start: Serve) -> None:
    listener = await start(SHORT)
    reader, writer = await _connect(listener)
    began = time.monotonic()

    async def trickle() -> None:
        for byte in b"GET /echo HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)

    trickling = asyncio.create_task(trickle())
    took = await _closed_after(reader, began, SHORT.header_timeout + SLACK)
    trickling.cancel()
    assert took < SHORT.header_timeout + LATE
    writer.close()


async def test_a_stalled_body_is_closed_at_the_body_timeout(start: Serve) -> None:
    listener = await start(SHORT)
    reader, writer = await _connect(listener)
    writer.write(_request(body=b"x" * 100, method="POST")[:-90])  # headers and 10 bytes
    began = time.monotonic()
    took = await _closed_after(reader, began, SHORT.body_timeout + SLACK)
    assert SHORT.body_timeout - 0.05 <= took < SHORT.body_timeout + LATE
    writer.close()


async def test_a_body_that_keeps_coming_outlives_the_body_timeout(start: Serve) -> None:
    listener = await start(SHORT)
    reader, writer = await _connect(listener)
    body = b"y" * 12
    writer.write(_request(body=body, method="POST")[: -len(body)])
    for byte in body:  # 12 x 0.1 s: three times the body timeout, never idle that long
        await asyncio.sleep(0.1)
        writer.write(bytes([byte]))
    answer = await asyncio.wait_for(reader.read(), 5.0)  # the keep-alive timeout closes it
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"got 12")
    writer.close()


async def test_a_request_handled_longer_than_every_timeout_is_answered(start: Serve) -> None:
    listener = await start(SHORT)
    assert (await _answer(listener, _request("/slow"))).startswith(b"HTTP/1.1 200")


async def test_an_idle_keep_alive_connection_is_closed(start: Serve) -> None:
    listener = await start(SHORT)
    reader, writer = await _connect(listener)
    writer.write(_request())
    assert (await reader.readuntil(b"got 0")).startswith(b"HTTP/1.1 200")
    began = time.monotonic()
    took = await _closed_after(reader, began, SHORT.keepalive_timeout + SLACK)
    assert SHORT.keepalive_timeout - 0.05 <= took < SHORT.keepalive_timeout + LATE
    # and the connection served a second request while it was kept alive: see below
    writer.close()


async def test_a_kept_alive_connection_serves_the_next_request(start: Serve) -> None:
    listener = await start(SHORT)
    reader, writer = await _connect(listener)
    for _ in range(3):
        writer.write(_request())
        assert (await reader.readuntil(b"got 0")).startswith(b"HTTP/1.1 200")
        await asyncio.sleep(SHORT.keepalive_timeout / 2)
    writer.close()


async def test_at_the_limit_stalled_connections_make_room_for_a_valid_request(
    start: Serve,
) -> None:
    """The guarantee: at max_connections a new caller takes the place of the connection that
    has waited longest on its peer, so a valid request is answered at once, long before any
    stalled connection times out; the open connections never exceed the limit."""
    limits = ListenerLimits(
        header_timeout=30.0, body_timeout=30.0, keepalive_timeout=30.0, max_connections=5
    )
    listener = await start(limits)
    stalled = []
    for index in range(limits.max_connections):
        reader, writer = await _connect(listener)
        if index % 2:
            writer.write(b"GET /echo HT")  # half a request line
        else:  # a body that stops
            writer.write(_request(body=b"z" * 100, method="POST")[:-50])
        stalled.append((reader, writer))
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)
    assert listener.open_connections == limits.max_connections

    began = time.monotonic()
    for _ in range(3):
        status = await _answer(listener, _request(), timeout=2.0)
        assert status.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - began < 2.0  # not after a timeout: at once
    assert listener.open_connections <= limits.max_connections
    # the oldest stalled ones made room, in order; the newest are still open
    first_reader = stalled[0][0]
    assert await asyncio.wait_for(first_reader.read(), 1.0) == b""
    assert listener.evicted >= 1
    for _, writer in stalled:
        writer.close()


async def test_at_the_limit_with_every_request_in_its_handler_a_new_one_is_refused(
    start: Serve,
) -> None:
    """Requests complete and being handled are never closed to make room: the newcomer is."""
    release = asyncio.Event()
    limits = ListenerLimits(
        header_timeout=30.0, body_timeout=30.0, keepalive_timeout=30.0, max_connections=3
    )
    listener = await start(limits, _app(release))
    busy = []
    for _ in range(limits.max_connections):
        reader, writer = await _connect(listener)
        writer.write(_request("/hold"))
        busy.append((reader, writer))
    await asyncio.sleep(0.2)
    reader, writer = await _connect(listener)
    writer.write(_request())
    assert await _closed_after(reader, time.monotonic(), 2.0) < 2.0
    assert listener.refused == 1
    release.set()
    for busy_reader, busy_writer in busy:
        assert (await busy_reader.readuntil(b"held")).startswith(b"HTTP/1.1 200")
        busy_writer.close()
    writer.close()


async def test_tls_handshakes_in_progress_count_and_make_room(tmp_path: Path) -> None:
    """A TLS listener counts a connection from its accept, not from the end of its handshake:
    connections that never start TLS fill it (they cannot pile up past max_connections and
    exhaust file descriptors), and a real TLS caller still gets an answer, taking the place
    of the one waiting longest."""
    await _tls_fills_and_answers(tmp_path)


def test_tls_handshakes_count_on_uvloop_too(tmp_path: Path) -> None:
    """The same on uvloop (``mm7 serve --loop auto`` runs it when installed), whose TLS layer
    the listener runs itself there."""
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_tls_fills_and_answers(tmp_path))


async def _tls_fills_and_answers(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    server = ca.issue("127.0.0.1", server=True)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(server.cert, server.key)
    client_context = ssl.create_default_context(cafile=str(ca.cert_path))
    limits = ListenerLimits(
        header_timeout=30.0, body_timeout=30.0, keepalive_timeout=30.0, max_connections=3
    )
    listener = await serve(_app(), "127.0.0.1", 0, limits, ssl_context=server_context)
    try:
        silent = [await _connect(listener) for _ in range(limits.max_connections)]
        await asyncio.sleep(0.2)
        assert listener.open_connections == limits.max_connections
        for _ in range(2):
            async with asyncio.timeout(10):  # a hang guard: the silent ones stay 30 s
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", listener.port, ssl=client_context
                )
                writer.write(_request(body=b"hello", method="POST"))
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200")
                assert await reader.readexactly(len(b"got 5")) == b"got 5"
            writer.close()
        assert listener.evicted >= 1
        assert listener.open_connections <= limits.max_connections
        for _, silent_writer in silent:
            silent_writer.close()
    finally:
        await listener.close()


async def test_a_tls_handshake_that_never_comes_is_closed_at_the_header_timeout(
    tmp_path: Path,
) -> None:
    ca = make_ca(tmp_path)
    server = ca.issue("127.0.0.1", server=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.cert, server.key)
    listener = await serve(_app(), "127.0.0.1", 0, SHORT, ssl_context=context)
    try:
        reader, writer = await _connect(listener)
        writer.write(b"\x16\x03\x01")  # the first bytes of a ClientHello, and no more
        took = await _closed_after(reader, time.monotonic(), SHORT.header_timeout + SLACK)
        assert took < SHORT.header_timeout + LATE
        assert listener.open_connections == 0
        writer.close()
    finally:
        await listener.close()


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="header_timeout"):
        ListenerLimits(header_timeout=0)
    with pytest.raises(ValueError, match="max_connections"):
        ListenerLimits(max_connections=0)
