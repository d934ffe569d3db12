"""Emission: serialise parts and multipart bodies with CRLF line breaks and safe boundaries.

A boundary is checked against the bodies it separates; a reused one that occurs in them is
replaced, a caller's one is an ``EmitError``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence

from mm7.core.errors import EmitError
from mm7.core.mime.common import IDENTITY_CTES, MANAGED_HEADERS, TOKEN_STR
from mm7.core.mime.content_type import ContentType, quote_param
from mm7.core.mime.part import Part
from mm7.core.mime.transfer import encode_body

__all__ = ["build_multipart", "serialize_part"]

_BCHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")


def serialize_part(
    part: Part, *, bracket_content_id: bool = True, boundary: str | None = None
) -> bytes:
    """Serialise one entity: its header block, a blank line and its encoded body.

    A multipart part gets ``boundary`` if given, else its own boundary param, else a random one.
    """
    out: list[bytes] = []
    _emit_entity(part, out, [], bracket_content_id, boundary)
    return b"".join(out)


def build_multipart(
    parts: Sequence[Part],
    *,
    subtype: str = "related",
    params: Mapping[str, str] | None = None,
    boundary: str | None = None,
    bracket_content_id: bool = True,
    transfer_encoding_for: Callable[[str], str | None] | None = None,
) -> tuple[str, bytes]:
    """Build an SwA HTTP body: (Content-Type value with boundary first, then params, body bytes).

    ``transfer_encoding_for(media_type)`` picks the CTE of leaf parts that do not set their own
    (a dialect's choice), without copying the parts.
    """
    ct = ContentType(f"multipart/{subtype}", dict(params or {}))
    out: list[bytes] = []
    chosen = _emit_children(
        parts,
        out,
        [],
        bracket_content_id,
        boundary,
        explicit=bool(boundary),
        cte_for=transfer_encoding_for,
    )
    return _multipart_header_value(ct, chosen), b"".join(out)


def _multipart_header_value(ct: ContentType, boundary: str) -> str:
    """The Content-Type value of a multipart entity: boundary first, then its other params."""
    value = f'{ct.mime_type}; boundary="{boundary}"'
    for k, v in ct.params.items():
        if k != "boundary":
            value += f"; {k}={quote_param(v)}"
    return value


def _emit_entity(
    part: Part,
    out: list[bytes],
    bodies: list[bytes],
    bracket: bool,
    boundary: str | None,
    cte_for: Callable[[str], str | None] | None = None,
) -> None:
    """Append ``part`` (headers, blank line, body) to ``out``; leaf bodies also go to ``bodies``."""
    slot = len(out)
    out.append(b"")  # header block, filled in once the body is out
    te = part.transfer_encoding
    ct = part.content_type
    if ct.mime_type.startswith("multipart/") and (part.children or not part.body):
        if te and te.lower() not in IDENTITY_CTES:
            raise EmitError(f"a multipart entity cannot use Content-Transfer-Encoding {te!r}")
        reuse = boundary or ct.params.get("boundary")
        chosen = _emit_children(
            part.children, out, bodies, bracket, reuse, explicit=bool(boundary), cte_for=cte_for
        )
        head = "Content-Type: " + _multipart_header_value(ct, chosen)
    else:
        if te is None and cte_for is not None:
            te = cte_for(ct.mime_type)
        encoded = encode_body(part.body, te) if te else part.body
        out.append(encoded)
        bodies.append(encoded)
        head = "Content-Type: " + ct.header_value()
    lines = [head]
    if te:
        lines.append("Content-Transfer-Encoding: " + te)
    if part.content_id is not None:
        lines.append(
            f"Content-ID: <{part.content_id}>" if bracket else "Content-ID: " + part.content_id
        )
    if part.content_location is not None:
        lines.append("Content-Location: " + part.content_location)
    for name, value in part.headers:
        low = name.lower()
        if low in MANAGED_HEADERS:
            continue
        if low == "content-length":  # say the length actually sent, not a stale one
            value = str(sum(len(piece) for piece in out[slot + 1 :]))
        if not name or name.strip(TOKEN_STR):
            raise EmitError(f"header name {name!r} is not a token")
        lines.append(f"{name}: {value}")
    block = "\r\n".join(lines)
    if block.count("\n") != len(lines) - 1 or block.count("\r") != len(lines) - 1:
        raise EmitError(f"a header of the {ct.mime_type} part holds a line break: {lines!r}")
    out[slot] = (block + "\r\n\r\n").encode("utf-8")


def _new_boundary() -> str:
    return "mm7-" + secrets.token_hex(12)


def _valid_boundary(boundary: str) -> bool:
    """RFC 2046: 1 to 70 bchars, not ending in a space."""
    return 0 < len(boundary) <= 70 and not boundary.endswith(" ") and _BCHARS.issuperset(boundary)


def _emit_children(
    children: Sequence[Part],
    out: list[bytes],
    bodies: list[bytes],
    bracket: bool,
    boundary: str | None,
    *,
    explicit: bool,
    cte_for: Callable[[str], str | None] | None = None,
) -> str:
    """Append a multipart body to ``out``; returns the boundary used.

    A fresh random boundary (96 bits) cannot occur in the bodies, so only a given or reused one is
    searched for: a given one that occurs is an EmitError, a reused one is replaced.
    """
    if boundary is not None and not _valid_boundary(boundary):
        if explicit:
            raise EmitError(f"boundary {boundary!r} is not a valid RFC 2046 boundary")
        boundary = None
    out_mark, bodies_mark = len(out), len(bodies)
    chosen = boundary or _new_boundary()
    while True:
        delim = b"--" + chosen.encode("ascii")
        for i, child in enumerate(children):
            out.append((b"\r\n" + delim + b"\r\n") if i else (delim + b"\r\n"))
            _emit_entity(child, out, bodies, bracket, None, cte_for)
        out.append((b"\r\n" + delim + b"--\r\n") if children else (delim + b"--\r\n"))
        if boundary is None or not any(delim in body for body in bodies[bodies_mark:]):
            return chosen
        if explicit:
            raise EmitError(f"boundary {chosen!r} occurs inside a part body")
        del out[out_mark:]
        del bodies[bodies_mark:]
        boundary = None
        chosen = _new_boundary()
