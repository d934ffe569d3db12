"""Content-Transfer-Encodings: base64 and quoted-printable applied on emission and undone on
parsing; identity and unknown encodings pass bytes through."""

from __future__ import annotations

import binascii
import struct

from mm7.core.errors import ParseError
from mm7.core.leniency import Leniency
from mm7.core.mime.common import IDENTITY_CTES, note

__all__ = ["decode_body", "encode_body"]

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Splits base64 text into 76-character lines 64 lines at a time, in C rather than by slicing.
_B64_BLOCK = struct.Struct("76s" * 64)


def encode_body(data: bytes, transfer_encoding: str | None) -> bytes:
    """Apply a Content-Transfer-Encoding. Identity and unknown encodings pass bytes through."""
    te = transfer_encoding.strip().lower() if transfer_encoding else None
    if te == "base64":
        if not data:
            return b""
        enc = binascii.b2a_base64(data, newline=False)
        n = len(enc)
        full = n - n % _B64_BLOCK.size
        lines: list[bytes] = []
        for offset in range(0, full, _B64_BLOCK.size):
            lines.extend(_B64_BLOCK.unpack_from(enc, offset))
        lines.extend([enc[i : i + 76] for i in range(full, n, 76)])
        return b"\r\n".join(lines)
    if te == "quoted-printable":
        # Binary mode encodes every CR and LF, so the only line breaks left are soft ones and the
        # round trip is exact for any bytes; text with consistent CRLF keeps readable lines.
        text = b"\r" not in data.replace(b"\r\n", b"") and b"\n" not in data.replace(b"\r\n", b"")
        enc = binascii.b2a_qp(data, quotetabs=False, istext=text, header=False)
        return enc.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data


def decode_body(data: bytes, transfer_encoding: str | None, leniencies: list[Leniency]) -> bytes:
    """Undo a Content-Transfer-Encoding, tolerating case (CTE_CASE) and unknown names (CTE_UNKNOWN).

    base64 ignores line breaks and characters outside its alphabet (RFC 2045); missing padding
    or data after padding is repaired (BASE64_MALFORMED); only an impossible length raises.
    """
    if transfer_encoding is None:
        return data
    declared = transfer_encoding.strip().strip('"')
    te = declared.lower()
    if te != declared:
        note(leniencies, Leniency.CTE_CASE)
    if te in IDENTITY_CTES or not te:
        return data
    if te == "base64":
        return _decode_base64(data, leniencies)
    if te == "quoted-printable":
        return binascii.a2b_qp(data)
    note(leniencies, Leniency.CTE_UNKNOWN)
    return data


def _decode_base64(data: bytes, leniencies: list[Leniency]) -> bytes:
    # RFC 2045: characters outside the alphabet (line breaks included) are ignored, which the
    # non-strict decoder does. It also stops at the first padding, so data after it is repaired.
    pad = data.find(b"=")
    if pad < 0 or not data[pad:].strip(b"= \t\r\n"):
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            pass
    note(leniencies, Leniency.BASE64_MALFORMED)
    compact = data.translate(None, data.translate(None, _B64_ALPHABET + b"="))
    # Some encoders pad every line; decode each padded run on its own.
    out: list[bytes] = []
    for run in compact.split(b"="):
        if len(run) % 4 == 1:
            raise ParseError(
                f"base64 run of {len(run)} characters cannot be completed by padding",
                where="base64 body",
            )
        if run:
            out.append(binascii.a2b_base64(run + b"=" * (-len(run) % 4)))
    return b"".join(out)
