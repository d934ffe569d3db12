"""Decoding an inbound MM7 request without holding the event loop: one rule for every listener
that takes MM7 requests (the gateway's inbound endpoint and the simulator).

    outcome = await decode_request(body, content_type, limits, strict=False)
    if isinstance(outcome, tuple):   # unreadable: (why, what of its envelope could be read)
        exc, echo = outcome

A small body is decoded on the loop (cheaper than the hand-over); one of ``DECODE_OFF_LOOP_BYTES``
or more in a worker thread, so a large or hostile request (hundreds of encoded words, a header
folded over thousands of lines) does not stall every other connection while it is read. Except
a light one (``on_loop``): what the decoders spend grows with the body's structure (lines,
elements, parameters, encoded words), not with an attachment's bytes, which are sliced out and
copied in C; a SubmitReq carrying a 30 KB photo is decoded on the loop (a thread hand-over per
request cost the simulator 30% more CPU per SubmitReq), one carrying 8,000 encoded words is not.
"""

from __future__ import annotations

import asyncio

from mm7.core.codec import Decoded, decode, salvage_envelope
from mm7.core.errors import ParseError
from mm7.core.limits import Limits
from mm7.core.model import Message

__all__ = [
    "DECODE_OFF_LOOP_BYTES",
    "LIGHT_BODY_MAX_BYTES",
    "LIGHT_MARKERS",
    "Outcome",
    "decode_or_salvage",
    "decode_request",
    "on_loop",
]

#: Bodies at least this large are decoded in a worker thread. Hostile input costs up to ~0.33 s
#: per MB to decode (a header folded over many lines: BENCHMARKS.md, scaling), so a body under
#: this holds the loop ~5 ms at most (at 64 KB it was ~20 ms); reports and text MOs stay under.
DECODE_OFF_LOOP_BYTES = 16 * 1024

#: A body up to this size with at most ``LIGHT_MARKERS`` structural bytes is decoded on the loop
#: all the same: the decoders' cost per marker is ~1 us at worst (0.83 us for an element of a
#: long recipient list, ~0.5 for a folded line, ~0.3 for an encoded word's '='), so ~4 ms at
#: most; the other bytes cost ~1 ms per MB (C copies, base64).
LIGHT_BODY_MAX_BYTES = 1 << 20
LIGHT_MARKERS = 4_000
#: the bytes the decoders' work grows with: line breaks, elements, parameters, encoded words
_MARKERS = b"\n\r<;="

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


def on_loop(body: bytes) -> bool:
    """Whether ``body`` is cheap enough to decode on the event loop: small, or up to
    ``LIGHT_BODY_MAX_BYTES`` with few of the bytes the decoders' work grows with (counted in
    one pass in C, ~0.6 us per KB: a thread hand-over costs ~20 times that for a 30 KB body)."""
    size = len(body)
    if size < DECODE_OFF_LOOP_BYTES:
        return True
    if size > LIGHT_BODY_MAX_BYTES:
        return False
    return size - len(body.translate(None, _MARKERS)) <= LIGHT_MARKERS


async def decode_request(
    body: bytes, content_type: str | None, limits: Limits, strict: bool = False
) -> Outcome:
    """``decode_or_salvage``, on the loop when ``on_loop(body)``, else in a worker thread."""
    if on_loop(body):
        return decode_or_salvage(body, content_type, limits, strict)
    return await asyncio.to_thread(decode_or_salvage, body, content_type, limits, strict)
