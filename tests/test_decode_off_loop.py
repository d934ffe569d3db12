"""Which inbound bodies are decoded on the event loop (mm7.transport.decode_off_loop.on_loop):
small ones, and larger ones light in what the decoders' work grows with; every hostile shape of
the scaling benchmark goes to a worker thread once it is past the small size."""

from __future__ import annotations

import dataclasses

import pytest

from mm7.core.codec import encode
from mm7.core.mime import make_part
from mm7.core.model import Address, Recipients
from mm7.transport.decode_off_loop import (
    DECODE_OFF_LOOP_BYTES,
    LIGHT_BODY_MAX_BYTES,
    LIGHT_MARKERS,
    on_loop,
)
from tests.helpers.simulator import submit

#: attachment bytes holding none of the markers (as most of a JPEG's bytes are)
PLAIN = bytes(b for b in range(256) if b not in b"\n\r<;=")


def with_attachment(size: int) -> bytes:
    body = (PLAIN * (size // len(PLAIN) + 1))[:size]
    message = dataclasses.replace(
        submit("+12015550123"), content=make_part(body, "image/jpeg", content_id="photo")
    )
    return encode(message).body


def test_small_bodies_stay_on_the_loop_whatever_they_hold() -> None:
    assert on_loop(b"\n" * (DECODE_OFF_LOOP_BYTES - 1))


def test_a_large_attachment_with_little_structure_stays_on_the_loop() -> None:
    body = with_attachment(64 * 1024)
    assert len(body) > DECODE_OFF_LOOP_BYTES and on_loop(body)


def test_past_the_size_cap_every_body_goes_to_a_thread() -> None:
    body = with_attachment(LIGHT_BODY_MAX_BYTES)
    assert len(body) > LIGHT_BODY_MAX_BYTES and not on_loop(body)


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param(b"X-Long: a\r\n" + b" b\n" * 8_000, id="header folded over lines"),
        pytest.param(b"X-Long: a\r" + b" b\r" * 8_000, id="bare CR line breaks"),
        pytest.param(b"S: " + b"=?utf-8?B?w6k=?=" * 2_000, id="encoded words"),
        pytest.param(b"Content-Type: a/b; " + b'p="a\\"b;c"; ' * 2_000, id="parameters"),
        pytest.param(b"<r>" + b"<a>caf\xe9</a>" * 3_000 + b"</r>", id="elements"),
    ],
)
def test_structure_heavy_bodies_past_the_small_size_go_to_a_thread(hostile: bytes) -> None:
    assert len(hostile) >= DECODE_OFF_LOOP_BYTES
    assert not on_loop(hostile)


def test_a_long_recipient_list_goes_to_a_thread() -> None:
    many = tuple(Address(f"+1201555{i:04d}") for i in range(LIGHT_MARKERS))
    message = dataclasses.replace(submit(), recipients=Recipients(to=many))
    assert not on_loop(encode(message).body)
