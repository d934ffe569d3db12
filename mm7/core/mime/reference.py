"""Content references: the part an MM7 ``Content href`` names, found the ways real peers
write it (``cid:`` or not, brackets, %-encoding, Content-Location, flattened media)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import unquote

from mm7.core.leniency import Leniency
from mm7.core.mime.common import XML_TYPES, note
from mm7.core.mime.part import Part, make_multipart

__all__ = ["find_content"]

_SMIL_TYPES = frozenset({"application/smil", "application/smil+xml"})


def find_content(
    parts: Sequence[Part], href: str | None, leniencies: list[Leniency]
) -> Part | None:
    """The part an MM7 ``Content href`` names, resolving the ways real peers write it.

    href=None (no Content element) yields the only part, or all parts as one synthetic
    multipart/related. A resolved leaf part with non-XML siblings (media flattened into the
    top level) yields one synthetic multipart/related holding it and them (CONTENT_FLATTENED).
    """
    if href is None:
        if not parts:
            return None
        note(leniencies, Leniency.CONTENT_ELEMENT_MISSING)
        if len(parts) == 1:
            return parts[0]
        note(leniencies, Leniency.CONTENT_FLATTENED)
        return make_multipart(parts, "related")
    key = href.strip()
    if key[:4].lower() == "cid:":
        rest = key[4:]
        if rest[:1].isspace():
            note(leniencies, Leniency.HREF_CID_SPACE)
        key = rest.strip()
    else:
        note(leniencies, Leniency.HREF_NO_CID)
    if key.startswith("<") and key.endswith(">"):
        note(leniencies, Leniency.HREF_FULL_CONTENT_ID)
        key = key[1:-1].strip()
    found = _match(parts, key)
    if found is None and "%" in key:  # RFC 2392 cid URLs are %-encoded
        found = _match(parts, unquote(key))
    if found is None:
        for p in parts:
            if p.content_location is not None and p.content_location == key:
                note(leniencies, Leniency.HREF_CONTENT_LOCATION)
                found = p
                break
    if found is None:
        for p in parts:
            if p.content_type.mime_type not in XML_TYPES:
                note(leniencies, Leniency.HREF_UNRESOLVED)
                return p
        return None
    media = [p for p in parts if p is found or p.content_type.mime_type not in XML_TYPES]
    if found.is_multipart or len(media) < 2:
        return found
    note(leniencies, Leniency.CONTENT_FLATTENED)
    params: dict[str, str] = {}
    if found.content_type.mime_type in _SMIL_TYPES:
        params["type"] = found.content_type.mime_type
        if found.content_id is not None:
            params["start"] = f"<{found.content_id}>"
    return make_multipart(media, "related", params=params)


def _match(parts: Sequence[Part], key: str) -> Part | None:
    for p in parts:
        if p.content_id is not None and p.content_id == key:
            return p
    return None
