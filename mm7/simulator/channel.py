"""The local channel between ``mm7 simulate --workers`` and each of its workers: framed Python
objects over one end of a ``socket.socketpair`` the parent made and the worker inherited.

    channel = await Channel.open(sock)
    channel.send(("exchange", fields))     # queued at once; never blocks the caller
    await channel.settle()                 # waits while more than HIGH_WATER bytes are queued
    frame = await channel.receive()        # None once the other end is gone

A frame is a 4-byte big-endian length and a pickle. Pickle is safe here only because nothing
but the two processes holds the socket: it is an anonymous socketpair, never a path or a port,
passed to exactly one child (``pass_fds``). ``settle`` is the bound: a worker awaits it before
each answer, so a parent that falls behind slows its workers' answers instead of growing their
memory (at most HIGH_WATER bytes plus one frame per request in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
import struct
from typing import Any

from mm7.core.errors import MM7Error

__all__ = ["HIGH_WATER", "MAX_FRAME", "Channel", "ChannelError"]

#: bytes queued for the other end above which ``settle`` waits
HIGH_WATER = 8 * 1024 * 1024
#: the largest frame accepted (a request body plus its record: well above the 64 MiB limit)
MAX_FRAME = 256 * 1024 * 1024
_LENGTH = struct.Struct(">I")


class ChannelError(MM7Error):
    """A frame that is too large or cannot be read back: the channel is closed."""


class Channel:
    """One end of the parent-worker channel (module docstring)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        writer.transport.set_write_buffer_limits(high=HIGH_WATER)

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        """The channel over a connected stream socket (one end of a socketpair)."""
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()

    def send(self, frame: Any) -> None:
        """Queue ``frame`` (anything picklable) for the other end; dropped once closed."""
        if self._writer.is_closing():
            return
        data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > MAX_FRAME:
            raise ChannelError(f"a frame of {len(data)} bytes is over {MAX_FRAME}")
        self._writer.write(_LENGTH.pack(len(data)))
        self._writer.write(data)

    async def settle(self) -> None:
        """Return once at most HIGH_WATER bytes wait to be sent (at once when under it)."""
        if self._writer.transport.get_write_buffer_size() > HIGH_WATER:
            # the other end gone: nothing will be sent, nothing to wait for
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()

    async def receive(self) -> Any:
        """The next frame; None once the other end has closed (or broke) the channel."""
        try:
            head = await self._reader.readexactly(_LENGTH.size)
            (size,) = _LENGTH.unpack(head)
            if size > MAX_FRAME:
                raise ChannelError(f"a frame of {size} bytes is over {MAX_FRAME}")
            data = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        try:
            return pickle.loads(data)
        except Exception as exc:  # a frame this code did not write
            raise ChannelError(f"unreadable frame: {exc}") from None

    async def close(self) -> None:
        """Close this end (what is queued is still sent)."""
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
