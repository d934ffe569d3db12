"""The local channel between ``mm7 simulate --workers`` and each of its workers: framed Python
objects over one end of a ``socket.socketpair`` the parent made and the worker inherited.

    channel = await Channel.open(sock)
    channel.send(("exchange", fields))     # queued at once; never blocks the caller
    await channel.settle()                 # written; waits while over HIGH_WATER bytes queue
    frame = await channel.receive()        # None once the other end is gone

A frame is a 4-byte big-endian length and a pickle. Pickle is safe here only because nothing
but the two processes holds the socket: it is an anonymous socketpair, never a path or a port,
passed to exactly one child (``pass_fds``). ``settle`` is the bound: a worker awaits it before
each answer, so a parent that falls behind slows its workers' answers instead of growing their
memory (at most HIGH_WATER bytes plus one frame per request in flight). The reading side stops
reading (and so, through the socket, holds the writer back) while RECEIVED_LIMIT frames wait.

Frames written in one turn of the event loop leave in one write (``send`` queues, the loop's
next step flushes): a worker under load sends its records a batch at a time. Bytes are received
into one reused buffer and unpickled where they lie: a frame carries a request body (31 KB in
the benchmarks), and a new 256 KB bytes object per read plus a copy per frame were most of the
parent's time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import pickle
import socket
import struct
from typing import Any

from mm7.core.errors import MM7Error

__all__ = ["HIGH_WATER", "MAX_FRAME", "Channel", "ChannelError"]

#: bytes queued for the other end above which ``settle`` waits
HIGH_WATER = 1024 * 1024
#: frames received and not yet taken above which reading stops
RECEIVED_LIMIT = 256
#: the largest frame accepted (a request body plus its record: well above the 64 MiB limit)
MAX_FRAME = 256 * 1024 * 1024
_LENGTH = struct.Struct(">I")
#: bytes of the receive buffer (grown for a larger frame)
_READ_BUFFER = 1024 * 1024


class ChannelError(MM7Error):
    """A frame that is too large or cannot be read back: the channel is closed."""


class _Protocol(asyncio.BufferedProtocol):
    """The socket's two directions: frames out with flow control, frames in as objects. Bytes
    are received into one reused buffer (no allocation per read) and unpickled in place."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.frames: collections.deque[Any] = collections.deque()
        self.error: ChannelError | None = None
        self.closed = False
        self._buffer = bytearray(_READ_BUFFER)
        #: bytes before ``_start`` are consumed; ``_start:_end`` is an unfinished frame
        self._start = 0
        self._end = 0
        self._arrived: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused_writing = False
        self._paused_reading = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def get_buffer(self, sizehint: int) -> memoryview:
        """Room at the end of the buffer: the unfinished frame moved to its start (it is the
        only copy), the buffer grown when that frame is larger than it."""
        buffer = self._buffer
        if len(buffer) - self._end < _READ_BUFFER // 4:
            pending = self._end - self._start
            buffer[:pending] = buffer[self._start : self._end]
            self._start, self._end = 0, pending
            wanted = self._wanted()
            if wanted > len(buffer) - _READ_BUFFER // 4:
                buffer.extend(bytes(wanted + _READ_BUFFER // 4 - len(buffer)))
        return memoryview(buffer)[self._end :]

    def _wanted(self) -> int:
        """Bytes the unfinished frame needs in all (its header's size, when it has arrived)."""
        if self._end - self._start < _LENGTH.size:
            return _LENGTH.size
        return _LENGTH.size + int(_LENGTH.unpack_from(self._buffer, self._start)[0])

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        buffer = self._buffer
        with memoryview(buffer) as view:
            while self._end - self._start >= _LENGTH.size:
                (size,) = _LENGTH.unpack_from(buffer, self._start)
                if size > MAX_FRAME:
                    self._fail(ChannelError(f"a frame of {size} bytes is over {MAX_FRAME}"))
                    return
                first = self._start + _LENGTH.size
                if self._end - first < size:
                    break
                try:
                    self.frames.append(pickle.loads(view[first : first + size]))
                except Exception as exc:  # a frame this code did not write
                    self._fail(ChannelError(f"unreadable frame: {exc}"))
                    return
                self._start = first + size
        if self._start == self._end:
            self._start = self._end = 0
        if len(self.frames) >= RECEIVED_LIMIT and self.transport is not None:
            self._paused_reading = True
            self.transport.pause_reading()
        self._wake()

    def take(self) -> Any:
        frame = self.frames.popleft()
        if self._paused_reading and len(self.frames) < RECEIVED_LIMIT // 2:
            self._paused_reading = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()
        return frame

    async def arrival(self) -> None:
        """Wait for the next frames (or the end); any number of waiters share one future."""
        if self._arrived is None or self._arrived.done():
            self._arrived = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._arrived)  # a waiter cancelled leaves the others waiting

    def _fail(self, error: ChannelError) -> None:
        self.error = error
        if self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def drained(self) -> None:
        if not self._paused_writing or self.closed:
            return
        if self._drained is None or self._drained.done():
            self._drained = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._drained)  # every request waiting shares it


class Channel:
    """One end of the parent-worker channel (module docstring)."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._pending: list[bytes] = []

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        """The channel over a connected stream socket (one end of a socketpair)."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_accepted_socket(_Protocol, sock)
        return cls(transport, protocol)

    @property
    def closed(self) -> bool:
        return self._protocol.closed or self._transport.is_closing()

    def send(self, frame: Any) -> None:
        """Queue ``frame`` (anything picklable) for the other end; dropped once closed."""
        if self.closed:
            return
        data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > MAX_FRAME:
            raise ChannelError(f"a frame of {len(data)} bytes is over {MAX_FRAME}")
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(_LENGTH.pack(len(data)))
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not self._transport.is_closing():
            self._transport.writelines(pending)

    async def settle(self) -> None:
        """Return once what was queued is written to the socket (a worker's record leaves
        before its answer) and at most HIGH_WATER bytes wait to be sent."""
        if self._pending:
            await asyncio.sleep(0)  # the flush was scheduled first: it runs before we resume
        await self._protocol.drained()

    async def receive(self) -> Any:
        """The next frame; None once the other end has closed the channel. ChannelError for a
        frame that cannot be read (the channel is then closed)."""
        protocol = self._protocol
        while not protocol.frames:
            if protocol.error is not None:
                raise protocol.error
            if protocol.closed:
                return None
            await protocol.arrival()
        return protocol.take()

    async def close(self) -> None:
        """Close this end (what is queued is still sent)."""
        self._flush()
        self._transport.close()
        with contextlib.suppress(asyncio.CancelledError):
            while not self._protocol.closed:
                await self._protocol.arrival()
