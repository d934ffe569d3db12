"""HTTP listeners that bound what a connection may cost: every aiohttp server of mm7 uses this.

    listener = await serve(app, "127.0.0.1", 0, ListenerLimits(), ssl_context=None)
    listener.port                  # the bound port (the chosen one for port 0)
    await listener.close()         # graceful: in-flight requests get ``shutdown_timeout``

aiohttp alone keeps a connection that sends half a request line, or a body one byte a minute,
open for an hour (its keep-alive timer, 3630 s by default, is the only clock, and a request body
has none), and it accepts connections until the process runs out of file descriptors. Each
connection here is watched by a small protocol wrapped around aiohttp's own (the factory given
to ``loop.create_server``), which sees every byte received and the flow control of what is
sent, and by an outermost middleware, which tells it when a request's headers are complete
(the handler starts) and when its handler is done. With those, ``ListenerLimits`` bounds:

- ``header_timeout``: a request's line and headers must be complete this long after its first
  byte (the first request: after the connection opened; with TLS the handshake must also fit
  in it: the header clock closes a slow handshake). Bytes trickling in do not extend it;
- ``body_timeout``: while a request body is not complete, the peer must send some of it at
  least this often (an idle timeout: a long upload that keeps coming is fine); and a response
  the peer stops reading (writing stays paused) is dropped after as long;
- ``keepalive_timeout``: an idle connection between requests is closed after this;
- ``max_connections``: open connections, counted from the moment they are accepted (a TLS
  handshake in progress counts: the listener runs the loop's own TLS protocol on an admitted
  connection, so connections that never finish a handshake cannot pile up past the limit and
  exhaust file descriptors). At the limit a new
  connection takes the place of the open one that has waited longest on its peer: idle between
  requests, headers not complete, or a request body not complete. Connections whose request
  is complete and being handled are never closed to make room; when every open connection is
  such, the new one is closed at once. So stalled connections cannot lock callers out: with
  the listener full of them, a new caller is answered at once, not when they time out.

Each listener counts what it did (``Listener.counts()``, a ``ListenerCounts``): connections
open and admitted, evicted and refused at the limit, and closed by each timeout. The gateway
exports them as Prometheus metrics (``mm7.service.ops.metrics``); this layer only counts.

A connection timed out or evicted is aborted (no response: nothing useful can be said to a
peer that stopped talking, and a peer that stopped reading would hold a graceful close). A
handler that is running when its connection goes keeps running (aiohttp's default); reading
the rest of a body fails with ``ConnectionResetError``. Header sizes keep aiohttp's bounds
(8190 bytes a line, 128 headers), so a request line or a header block cannot grow unbounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ["TIMEOUT_KINDS", "Listener", "ListenerCounts", "ListenerLimits", "serve"]

log = structlog.get_logger("mm7.transport.listener")

#: seconds between two warnings that a listener is at its connection limit
LIMIT_WARNING_INTERVAL = 60.0

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """What one connection to a listener may cost (module docstring)."""

    #: seconds: a request line and headers are complete this long after their first byte
    header_timeout: float = 10.0
    #: seconds: an unfinished request body (or an unread response) makes progress this often
    body_timeout: float = 15.0
    #: seconds: an idle connection between two requests is closed after this
    keepalive_timeout: float = 60.0
    #: open connections; at the limit the longest waiting on its peer makes room
    max_connections: int = 256

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout", "keepalive_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {self.max_connections!r}")


#: the timeouts a connection can be closed by, named as ``ListenerLimits`` names them
#: (``header_timeout``...): the keys of ``ListenerCounts.timeouts``
TIMEOUT_KINDS: tuple[str, ...] = ("header", "body", "keepalive")


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerCounts:
    """What one listener has done since it started (``Listener.counts()``): for metrics."""

    #: connections open now (counted against ``max_connections``)
    open: int
    #: connections admitted (counted against ``max_connections``) since the start
    accepted: int
    #: open connections closed to make room for a new one at ``max_connections``
    evicted: int
    #: new connections closed at once: at the limit with every request in its handler
    refused: int
    #: connections closed by each timeout: ``header`` (request line and headers, or the TLS
    #: handshake, too slow), ``body`` (a request body, or the reading of a response, idle too
    #: long), ``keepalive`` (idle between two requests too long)
    timeouts: dict[str, int]


class _State(Enum):
    HEADERS = "headers"  # waiting for a request's line and headers
    REQUEST = "request"  # a request is being handled
    IDLE = "idle"  # between two requests


class _Connection(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the clocks of ``ListenerLimits`` around it."""

    def __init__(self, listener: Listener, inner: RequestHandler) -> None:
        self.listener = listener
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.state = _State.HEADERS
        self.loop = asyncio.get_running_loop()
        now = self.loop.time()
        #: when the current state began (HEADERS: the request's first byte)
        self.since = now
        self.last_byte = now
        self.request: web.BaseRequest | None = None
        self.write_paused_since: float | None = None
        self.admitted = False
        #: aiohttp has the connection (with TLS: once the handshake is done)
        self.inner_made = False
        #: why the listener dropped the connection (None: it did not)
        self.why: str | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol, passed on to aiohttp

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # not isinstance: uvloop's transports are not asyncio.Transport subclasses
        if self.admitted:  # the TLS layer's transport, once the handshake is done
            self.transport = cast(asyncio.Transport, transport)
            self._made(transport)
            return
        self.transport = cast(asyncio.Transport, transport)
        self.since = self.last_byte = self.loop.time()
        if not self.listener._admit(self):
            self.transport.abort()
            return
        self.admitted = True
        self._arm(self.since + self.listener.limits.header_timeout)
        ssl_context = self.listener.ssl_context
        if ssl_context is None:
            self._made(transport)
            return
        # TLS from here, as the loop's create_server(ssl=) does it, but counted and timed
        waiter: asyncio.Future[None] = self.loop.create_future()
        waiter.add_done_callback(self._handshake_over)
        tls = _ssl_protocol(self.loop)(
            self.loop,
            self,
            ssl_context,
            waiter,
            True,  # server side
            None,
            # a backstop: the header clock, armed first, closes a slow handshake (and counts it)
            ssl_handshake_timeout=2 * self.listener.limits.header_timeout,
        )
        self.transport.set_protocol(tls)
        tls.connection_made(transport)

    def _handshake_over(self, waiter: asyncio.Future[None]) -> None:
        """A handshake that failed (or a connection closed during it) gives its place back:
        the TLS layer tells only the waiter, not this protocol."""
        if not self.inner_made:
            if not waiter.cancelled():
                log.debug(
                    "mm7.listener.tls_failed",
                    listener=self.listener.name,
                    error=repr(waiter.exception()),
                )
            self.connection_lost(None)

    def _made(self, transport: asyncio.BaseTransport) -> None:
        self.inner_made = True
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        self.last_byte = now
        if self.state is _State.IDLE:
            self.state, self.since = _State.HEADERS, now
        self.inner.data_received(data)

    def eof_received(self) -> None:
        self.inner.eof_received()

    def pause_writing(self) -> None:
        self.write_paused_since = self.loop.time()
        if self.inner_made:
            self.inner.pause_writing()
        self._arm(self.write_paused_since + self.listener.limits.body_timeout)

    def resume_writing(self) -> None:
        self.write_paused_since = None
        if self.state is _State.IDLE:  # the response is out: the connection is idle from now
            self.since = self.loop.time()
        if self.inner_made:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.listener._release(self)
        if self.inner_made:
            self.inner.connection_lost(exc)

    # -- the request's life, from the middleware

    def request_started(self, request: web.BaseRequest) -> None:
        self.state, self.request = _State.REQUEST, request
        self.since = self.loop.time()
        self._arm(self.since + self.listener.limits.body_timeout)

    def request_finished(self) -> None:
        self.state, self.request = _State.IDLE, None
        self.since = self.loop.time()
        self._arm(self.since + self.listener.limits.keepalive_timeout)

    # -- the clocks

    def waiting_since(self) -> float | None:
        """Since when this connection waits on its peer; None while a complete request is
        handled (it is not evicted to make room)."""
        if self.state is _State.REQUEST:
            request = self.request
            if request is None or request.content.is_eof():
                return None
            return self.last_byte
        return self.since

    def _deadline(self) -> tuple[float, str] | None:
        """When this connection is closed unless its peer does something, and by which of
        ``TIMEOUT_KINDS``; None: not timed."""
        limits = self.listener.limits
        if self.write_paused_since is not None:  # the peer does not read the response
            return self.write_paused_since + limits.body_timeout, "body"
        if self.state is _State.HEADERS:
            return self.since + limits.header_timeout, "header"
        if self.state is _State.IDLE:
            return self.since + limits.keepalive_timeout, "keepalive"
        request = self.request
        if request is None or request.content.is_eof():
            return None
        transport = self.transport
        if transport is not None and not transport.is_reading():
            # the handler has not taken what came: the wait is ours, not the peer's
            self.last_byte = self.loop.time()
        return self.last_byte + limits.body_timeout, "body"

    def _arm(self, when: float) -> None:
        """Check the deadline at ``when`` (the loop's clock)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._check)

    def _check(self) -> None:
        self._timer = None
        if self.transport is None or self.transport.is_closing():
            return
        timed = self._deadline()
        now = self.loop.time()
        if timed is None:
            self._arm(now + self.listener.limits.body_timeout)
        elif timed[0] <= now:
            self.listener.timeouts[timed[1]] += 1
            self.abort(f"{timed[1]} timeout")
        else:
            self._arm(timed[0])

    def abort(self, why: str) -> None:
        """Drop the connection now (timed out, or evicted to make room); the caller counts it."""
        self.why = why
        log.debug("mm7.listener.closed", listener=self.listener.name, why=why)
        self.listener._release(self)
        if self.transport is not None:
            self.transport.abort()


def _ssl_protocol(loop: asyncio.AbstractEventLoop) -> Any:
    """The TLS protocol class this loop's own ``create_server(ssl=...)`` would wrap a
    connection in (uvloop's or asyncio's): the listener runs it itself once a connection is
    admitted, so that handshakes in progress count against ``max_connections``."""
    if type(loop).__module__.startswith("uvloop"):
        import uvloop.loop

        return uvloop.loop.SSLProtocol  # type: ignore[attr-defined]
    from asyncio import sslproto

    return sslproto.SSLProtocol


class Listener:
    """One bounded HTTP listener (module docstring); made by ``serve``."""

    def __init__(
        self, name: str, limits: ListenerLimits, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.name = name
        self.limits = limits
        #: TLS for every connection, run by each connection once admitted
        self.ssl_context = ssl_context
        self.runner: web.AppRunner | None = None
        self.port = 0
        #: open connections, oldest first
        self._open: dict[_Connection, None] = {}
        self._by_handler: dict[RequestHandler, _Connection] = {}
        #: connections admitted since the start
        self.accepted = 0
        #: connections closed to make room, and refused for want of any
        self.evicted = 0
        self.refused = 0
        #: connections closed by each timeout (``TIMEOUT_KINDS``)
        self.timeouts: dict[str, int] = dict.fromkeys(TIMEOUT_KINDS, 0)
        self._warned = -LIMIT_WARNING_INTERVAL

    @property
    def open_connections(self) -> int:
        """Connections counted against ``max_connections`` now."""
        return len(self._open)

    def counts(self) -> ListenerCounts:
        """What this listener has done so far (a snapshot, for metrics)."""
        return ListenerCounts(
            open=len(self._open),
            accepted=self.accepted,
            evicted=self.evicted,
            refused=self.refused,
            timeouts=dict(self.timeouts),
        )

    def _admit(self, conn: _Connection) -> bool:
        if len(self._open) >= self.limits.max_connections:
            waiting = [(since, c) for c in self._open if (since := c.waiting_since()) is not None]
            if waiting:
                victim = min(waiting, key=lambda pair: pair[0])[1]
                victim.abort("evicted at the connection limit")
                self.evicted += 1
            else:
                self.refused += 1
            self._warn()
            if len(self._open) >= self.limits.max_connections:
                return False
        self._open[conn] = None
        self._by_handler[conn.inner] = conn
        self.accepted += 1
        return True

    def _release(self, conn: _Connection) -> None:
        self._open.pop(conn, None)
        self._by_handler.pop(conn.inner, None)

    def _warn(self) -> None:
        now = time.monotonic()
        if now - self._warned >= LIMIT_WARNING_INTERVAL:
            self._warned = now
            log.warning(
                "mm7.listener.at_connection_limit",
                listener=self.name,
                max_connections=self.limits.max_connections,
                evicted=self.evicted,
                refused=self.refused,
            )

    def _protocol(self, server: web.Server) -> _Connection:
        return _Connection(self, server())

    async def _track(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """The outermost middleware: the request's headers are in until its handler is done."""
        conn = self._by_handler.get(request.protocol)
        if conn is None:
            return await handler(request)
        conn.request_started(request)
        try:
            return await handler(request)
        except ConnectionResetError:
            if conn.why is None:
                raise
            # the listener dropped the connection: said at debug level, not as a handler error
            return web.Response(status=408, text=conn.why)
        finally:
            conn.request_finished()

    async def close(self) -> None:
        """Stop listening; in-flight requests get the runner's shutdown timeout."""
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()


class _Site(web.BaseSite):
    """aiohttp's TCPSite, with each connection's protocol wrapped by the listener."""

    def __init__(
        self,
        runner: web.AppRunner,
        listener: Listener,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._listener = listener
        self._host = host
        self._port = port
        self._reuse_port = reuse_port

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        # no ssl= here: each connection runs its handshake once admitted (Listener.ssl_context)
        self._server = await loop.create_server(
            lambda: self._listener._protocol(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
            reuse_port=self._reuse_port or None,
        )


async def serve(
    app: web.Application,
    host: str,
    port: int,
    limits: ListenerLimits,
    *,
    ssl_context: ssl.SSLContext | None = None,
    name: str = "http",
    shutdown_timeout: float = 10.0,
    reuse_port: bool = False,
) -> Listener:
    """Serve ``app`` on ``host:port`` within ``limits``; the listener, once it is listening.

    ``name`` names the listener in its log lines. The app gets the listener's middleware
    (outermost), so it must not be frozen yet. ``reuse_port``: SO_REUSEPORT, so that several
    processes listen on one port and the kernel spreads the connections among them.
    """
    listener = Listener(name, limits, ssl_context)

    @web.middleware
    async def track(request: web.Request, handler: _Handler) -> web.StreamResponse:
        return await listener._track(request, handler)

    app.middlewares.insert(0, track)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        access_log=None,
        # aiohttp's own idle clock stays, as a backstop well behind the listener's
        keepalive_timeout=2 * (limits.keepalive_timeout + limits.header_timeout),
    )
    await runner.setup()
    listener.runner = runner
    try:
        site = _Site(runner, listener, host, port, ssl_context, reuse_port)
        await site.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        listener.runner = None
        raise
    addresses = runner.addresses
    listener.port = int(addresses[0][1]) if addresses else port
    return listener
