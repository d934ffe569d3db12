"""Text to SMS parts, sans-I/O: GSM 03.38 (unpacked septets) when every character fits it, else
UCS-2; long texts split into parts behind a concatenation UDH (8-bit reference)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["Coding", "SmsPart", "encode_gsm", "split_text"]

_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D,
              "]": 0x3E, "|": 0x40, "€": 0x65}  # fmt: skip
_BASIC_INDEX = {ch: i for i, ch in enumerate(_BASIC) if ch != "\x1b"}

#: septets (GSM) or UTF-16 units (UCS-2) in one part, alone or behind a 6-byte UDH
_SINGLE = {0: 160, 8: 70}
_CONCAT = {0: 153, 8: 67}


class Coding(IntEnum):
    """SMPP data_coding values used: SMSC default alphabet (GSM 03.38) and UCS-2."""

    GSM = 0x00
    UCS2 = 0x08


@dataclass(frozen=True, slots=True)
class SmsPart:
    """One submit_sm's worth: ``payload`` (UDH included when ``udh``) in ``coding``."""

    payload: bytes
    coding: Coding
    udh: bool


def encode_gsm(text: str) -> bytes | None:
    """``text`` as unpacked GSM 03.38 septets (escape + extension where needed), or None when a
    character is outside the alphabet."""
    out = bytearray()
    for ch in text:
        if (i := _BASIC_INDEX.get(ch)) is not None:
            out.append(i)
        elif (e := _EXTENSION.get(ch)) is not None:
            out += bytes((0x1B, e))
        else:
            return None
    return bytes(out)


def _chunks_gsm(septets: bytes, size: int) -> list[bytes]:
    chunks: list[bytes] = []
    start = 0
    while start < len(septets):
        end = min(start + size, len(septets))
        if end < len(septets) and septets[end - 1] == 0x1B:
            end -= 1  # never split an escape from its extension character
        chunks.append(septets[start:end])
        start = end
    return chunks


def _chunks_ucs2(data: bytes, units: int) -> list[bytes]:
    chunks: list[bytes] = []
    start = 0
    while start < len(data):
        end = min(start + 2 * units, len(data))
        if end < len(data) and 0xD8 <= data[end - 2] <= 0xDB:
            end -= 2  # never split a surrogate pair
        chunks.append(data[start:end])
        start = end
    return chunks


def split_text(text: str, reference: int) -> list[SmsPart]:
    """``text`` as one part, or as parts with a concatenation UDH carrying ``reference`` (0-255);
    raises ValueError for an empty text or one needing more than 255 parts."""
    if not text:
        raise ValueError("sms text is empty")
    gsm = encode_gsm(text)
    coding = Coding.GSM if gsm is not None else Coding.UCS2
    data = gsm if gsm is not None else text.encode("utf-16-be")
    units = len(data) if coding is Coding.GSM else len(data) // 2
    if units <= _SINGLE[coding]:
        return [SmsPart(data, coding, udh=False)]
    size = _CONCAT[coding]
    chunks = _chunks_gsm(data, size) if coding is Coding.GSM else _chunks_ucs2(data, size)
    if len(chunks) > 255:
        raise ValueError(f"sms text needs {len(chunks)} parts; at most 255 can be concatenated")
    ref = reference & 0xFF
    return [
        SmsPart(bytes((5, 0, 3, ref, len(chunks), n)) + chunk, coding, udh=True)
        for n, chunk in enumerate(chunks, start=1)
    ]
