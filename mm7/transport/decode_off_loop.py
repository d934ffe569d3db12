"""Decoding an inbound MM7 request without holding the event loop: one rule for every listener
that takes MM7 requests (the gateway's inbound endpoint and the simulator).

    outcome = await decode_request(body, content_type, limits, strict=False)
    if isinstance(outcome, tuple):   # unreadable: (why, what of its envelope could be read)
        exc, echo = outcome

A small body is decoded on the loop (cheaper than the hand-over); one of ``DECODE_OFF_LOOP_BYTES``
or more in a worker thread, so a large or hostile request (hundreds of encoded words, a header
folded over thousands of lines) does not stall every other connection while it is read.
"""

from __future__ import annotations

import asyncio

from mm7.core.codec import Decoded, decode, salvage_envelope
from mm7.core.errors import ParseError
from mm7.core.limits import Limits
from mm7.core.model import Message

__all__ = ["DECODE_OFF_LOOP_BYTES", "Outcome", "decode_or_salvage", "decode_request"]

#: Bodies at least this large are decoded in a worker thread. Hostile input costs up to ~0.33 s
#: per MB to decode (a header folded over many lines: BENCHMARKS.md, scaling), so a body under
#: this holds the loop ~5 ms at most (at 64 KB it was ~20 ms); reports and text MOs stay under.
DECODE_OFF_LOOP_BYTES = 16 * 1024

#: the decoded request, or why it is unreadable and what of its envelope could be read
Outcome = Decoded | tuple[ParseError, Message | None]


def decode_or_salvage(
    body: bytes, content_type: str | None, limits: Limits, strict: bool = False
) -> Outcome:
    """The decoded request, or why it is unreadable and what of its envelope could be read."""
    try:
        return decode(body, content_type, limits, strict=strict)
    except ParseError as exc:
        return exc, salvage_envelope(body, content_type, limits)


async def decode_request(
    body: bytes, content_type: str | None, limits: Limits, strict: bool = False
) -> Outcome:
    """``decode_or_salvage``, in a worker thread when the body is ``DECODE_OFF_LOOP_BYTES`` or
    more, on the loop otherwise."""
    if len(body) < DECODE_OFF_LOOP_BYTES:
        return decode_or_salvage(body, content_type, limits, strict)
    return await asyncio.to_thread(decode_or_salvage, body, content_type, limits, strict)
