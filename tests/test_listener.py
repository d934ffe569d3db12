"""mm7.transport.listener with real sockets on 127.0.0.1: stalled requests are closed by their
timeout and not before, slow but moving ones are not, and a listener full of stalled
connections still answers a new caller at once.

No assertion here measures time. The timeout tests run on an event loop whose clock the test
moves forward (``_ClockLoop``): a connection must still be open just before its deadline (after
the listener has answered a request on another connection, so its timers had their turn) and
closed just after, by the timeout the listener's counts name. A hang guard is only a safety net.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from mm7.transport.listener import TIMEOUT_KINDS, Listener, ListenerLimits, serve
from tests.helpers.tls_ca import make_ca

SHORT = ListenerLimits(
    header_timeout=0.4, body_timeout=0.4, keepalive_timeout=0.4, max_connections=50
)
#: the timeouts of the moved-clock tests: far from each step, so a loaded machine that stalls
#: the test for seconds between two steps changes nothing
TIMEOUT = 60.0
LONG = ListenerLimits(
    header_timeout=TIMEOUT, body_timeout=TIMEOUT, keepalive_timeout=TIMEOUT, max_connections=50
)
#: seconds the moved clock stops short of a deadline, and goes past it
BEFORE, AFTER = 50.0, 15.0
#: a hang guard (real seconds), only a safety net: nothing waits for it to pass
GUARD = 30.0
NONE_TIMED_OUT = dict.fromkeys(TIMEOUT_KINDS, 0)

Serve = Callable[..., Awaitable[Listener]]


class _ClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock the test moves forward (``advance``): the listener's timers
    fire when the test says, in the order it says, however loaded the machine."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = 0.0

    def time(self) -> float:
        return super().time() + self.shift


def _advance(seconds: float) -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, _ClockLoop)
    loop.shift += seconds


Steps = Callable[[Listener, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _on_moved_clock(steps: Steps, release: asyncio.Event | None = None) -> None:
    """Run ``steps`` on a loop whose clock the test moves, against a listener with the
    ``LONG`` timeouts and one connection to it; both closed after."""

    async def test() -> None:
        listener = await serve(_app(release), "127.0.0.1", 0, LONG)
        try:
            reader, writer = await _connect(listener)
            await steps(listener, reader, writer)
            writer.close()
        finally:
            await listener.close()

    with asyncio.Runner(loop_factory=_ClockLoop) as runner:
        runner.run(test())


def _app(release: asyncio.Event | None = None) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(text=f"got {len(body)}")

    async def hold(request: web.Request) -> web.Response:
        assert release is not None
        await release.wait()
        return web.Response(text="held")

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_get("/echo", echo)
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


async def _closed(reader: asyncio.StreamReader) -> None:
    """The server closes the connection without answering (the guard: only against a hang)."""
    try:
        data = await asyncio.wait_for(reader.read(), GUARD)
    except ConnectionResetError:
        data = b""
    assert data == b"", data


def _request(path: str = "/echo", body: bytes = b"", method: str = "GET") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def _answer(listener: Listener, request: bytes) -> bytes:
    reader, writer = await _connect(listener)
    writer.write(request)
    try:
        status = await asyncio.wait_for(reader.readuntil(b"\r\n"), GUARD)
    finally:
        writer.close()
    return status


async def _in_turn(listener: Listener) -> None:
    """Let the listener take its turn: a request on another connection is answered, so every
    timer due and every byte already sent has been dealt with. The server closes that
    connection (``Connection: close``) before this returns: no clock of the listener is left
    running on it."""
    reader, writer = await _connect(listener)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    try:
        answer = await asyncio.wait_for(reader.read(), GUARD)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"got 0"), answer


def _timeouts(listener: Listener, **expected: int) -> None:
    """The listener closed connections by these timeouts only (``header=1``...)."""
    assert listener.counts().timeouts == {**NONE_TIMED_OUT, **expected}


async def _open_until_its_deadline(
    listener: Listener, reader: asyncio.StreamReader, kind: str
) -> None:
    """The connection is open just before its ``kind`` timeout and closed by it just after."""
    await _in_turn(listener)  # the listener has the connection, and what it sent, before
    _advance(BEFORE)
    await _in_turn(listener)
    assert not reader.at_eof()
    _timeouts(listener)
    _advance(AFTER)
    await _closed(reader)
    _timeouts(listener, **{kind: 1})


def test_half_a_request_line_is_closed_at_the_header_timeout() -> None:
    async def steps(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"GET /ec")
        await _open_until_its_deadline(listener, reader, "header")

    _on_moved_clock(steps)


def test_headers_trickling_in_do_not_extend_the_header_timeout() -> None:
    async def steps(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        step = TIMEOUT / 6
        sent = 0
        for byte in b"GET /echo HTTP/1.1\r\nX-Slow: a":
            writer.write(bytes([byte]))
            sent += 1
            await _in_turn(listener)  # the byte is in: it came step seconds after the last
            if listener.counts().timeouts["header"]:
                break
            _advance(step)
        else:
            raise AssertionError("still open after the whole trickle")
        # closed at the deadline counted from the first byte, not before
        assert (sent - 1) * step >= TIMEOUT
        await _closed(reader)
        _timeouts(listener, header=1)

    _on_moved_clock(steps)


def test_a_stalled_body_is_closed_at_the_body_timeout() -> None:
    async def steps(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(_request(body=b"x" * 100, method="POST")[:-90])  # headers and 10 bytes
        await _open_until_its_deadline(listener, reader, "body")

    _on_moved_clock(steps)


def test_a_body_that_keeps_coming_outlives_the_body_timeout() -> None:
    async def steps(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        body = b"y" * 6
        writer.write(_request(body=body, method="POST")[: -len(body)])
        for byte in body:  # 6 x 0.4: over twice the body timeout, never idle that long
            await _in_turn(listener)
            _advance(0.4 * TIMEOUT)
            writer.write(bytes([byte]))
        answer = await asyncio.wait_for(reader.readuntil(b"got 6"), GUARD)
        assert answer.startswith(b"HTTP/1.1 200")
        _timeouts(listener)

    _on_moved_clock(steps)


def test_a_request_handled_longer_than_every_timeout_is_answered() -> None:
    release = asyncio.Event()

    async def steps(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(_request("/hold"))
        await _in_turn(listener)
        _advance(3 * TIMEOUT)  # past every timeout while the handler runs
        await _in_turn(listener)
        release.set()
        answer = await asyncio.wait_for(reader.readuntil(b"held"), GUARD)
        assert answer.startswith(b"HTTP/1.1 200")
        _timeouts(listener)

    _on_moved_clock(steps, release)


def test_an_idle_keep_alive_connection_is_closed() -> None:
    async def steps(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(_request())
        answer = await asyncio.wait_for(reader.readuntil(b"got 0"), GUARD)
        assert answer.startswith(b"HTTP/1.1 200")
        await _open_until_its_deadline(listener, reader, "keepalive")

    _on_moved_clock(steps)


def test_a_kept_alive_connection_serves_the_next_request() -> None:
    async def steps(
        listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        for _ in range(3):  # 3 x 0.6 keep-alive timeouts in all, never idle that long
            writer.write(_request())
            answer = await asyncio.wait_for(reader.readuntil(b"got 0"), GUARD)
            assert answer.startswith(b"HTTP/1.1 200")
            _advance(0.6 * TIMEOUT)
        _timeouts(listener)

    _on_moved_clock(steps)


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

    for _ in range(3):
        status = await _answer(listener, _request())
        assert status.startswith(b"HTTP/1.1 200")
    assert listener.open_connections <= limits.max_connections
    # the oldest stalled one made room (evicted, not timed out: the answers came at once)
    await _closed(stalled[0][0])
    assert listener.evicted >= 1
    _timeouts(listener)
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
    await _closed(reader)
    assert listener.refused == 1
    _timeouts(listener)  # refused at once, not timed out
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
        await _closed(reader)
        _timeouts(listener, header=1)  # by the listener's header clock
        assert listener.open_connections == 0
        writer.close()
    finally:
        await listener.close()


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="header_timeout"):
        ListenerLimits(header_timeout=0)
    with pytest.raises(ValueError, match="max_connections"):
        ListenerLimits(max_connections=0)
