"""MIME entities: the ``Part`` value (decoded body, or children for a multipart) and the helpers
that build parts for emission."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mm7.core.errors import EmitError
from mm7.core.mime.common import MANAGED_HEADERS
from mm7.core.mime.content_type import ContentType, parse_content_type

__all__ = ["Part", "make_multipart", "make_part"]


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity. ``body`` is DECODED bytes (after Content-Transfer-Encoding); a multipart
    part has children and an empty body. Equality ignores wire-only details (raw headers, boundary,
    CTE).
    """

    content_type: ContentType
    body: bytes = b""
    content_id: str | None = None
    content_location: str | None = None
    children: tuple[Part, ...] = ()
    transfer_encoding: str | None = field(default=None, compare=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def header(self, name: str) -> str | None:
        """The first of the other headers named ``name`` (case-insensitive), or None."""
        key = name.lower()
        for n, v in self.headers:
            if n.lower() == key:
                return v
        return None

    @property
    def is_multipart(self) -> bool:
        """True for multipart/* entities."""
        return self.content_type.mime_type.startswith("multipart/")

    @property
    def charset(self) -> str | None:
        """The charset parameter of the Content-Type, if any."""
        return self.content_type.param("charset")


def normalise_cid(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip()
    if v.startswith("<") and v.endswith(">"):
        v = v[1:-1].strip()
    return v or None


def make_part(
    body: bytes,
    content_type: str | ContentType,
    *,
    content_id: str | None = None,
    content_location: str | None = None,
    transfer_encoding: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> Part:
    """Build a leaf part for emission. ``content_id`` may be given with or without ``<>``."""
    ct = content_type if isinstance(content_type, ContentType) else parse_content_type(content_type)
    for name, _ in headers:
        if name.lower() in MANAGED_HEADERS:
            raise EmitError(f"header {name!r} is set through its own argument, not headers=")
    return Part(
        content_type=ct,
        body=bytes(body),
        content_id=normalise_cid(content_id),
        content_location=content_location.strip() if content_location else None,
        transfer_encoding=transfer_encoding.strip().lower() if transfer_encoding else None,
        headers=tuple(headers),
    )


def make_multipart(
    children: Sequence[Part],
    subtype: str = "related",
    *,
    params: Mapping[str, str] | None = None,
    content_id: str | None = None,
    content_location: str | None = None,
) -> Part:
    """Build a multipart/<subtype> part (params e.g. type="application/smil", start="<s>")."""
    return Part(
        content_type=ContentType(f"multipart/{subtype}", dict(params or {})),
        children=tuple(children),
        content_id=normalise_cid(content_id),
        content_location=content_location.strip() if content_location else None,
    )
