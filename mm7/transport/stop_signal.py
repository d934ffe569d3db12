"""Waiting for SIGINT or SIGTERM in an asyncio process (`mm7 serve`, `mm7 simulate`, tools)."""

from __future__ import annotations

import asyncio
import signal

__all__ = ["stop_requested"]


async def stop_requested() -> None:
    """Return once the process gets SIGINT or SIGTERM (handled on the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
