"""The detail view of one exchange, built when asked (never on the request path): the SOAP part
of each body pretty-printed, the request's media listed (type, size, a link to the bytes) instead
of shown inline, and its slides in order when it carries a SMIL presentation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lxml import etree

from mm7.content.builder import find_smil, from_part
from mm7.core.errors import MM7Error
from mm7.core.jsonview import leaf_parts
from mm7.core.mime import Part
from mm7.core.mime.parse import parse_swa
from mm7.core.xmlsafe import parse_xml
from mm7.simulator.store import KEEP_BYTES, Exchange

#: longest text shown inline (a text part, a slide's text)
MAX_INLINE_TEXT = 4096


@dataclass(frozen=True, slots=True)
class Split:
    """One body split into its SOAP envelope (pretty when it parses) and its media leaves."""

    soap: str | None
    leaves: tuple[Part, ...]
    content: Part | None
    #: why the body could not be split (or why parts are missing); None when it was
    problem: str | None


def split_body(body: bytes, content_type: str | None, whole: bool) -> Split:
    """``body`` as the detail view shows it; ``whole`` False when only its head was kept."""
    if not body.strip():
        return Split(None, (), None, None)
    try:
        swa = parse_swa(body, content_type)
    except MM7Error as exc:
        problem = f"not an MM7 body: {exc}"
        if not whole:
            problem = f"only the first {KEEP_BYTES} bytes were kept; {problem}"
        return Split(None, (), None, problem)
    leaves = tuple(leaf for part in swa.parts for leaf in leaf_parts(part))
    content = swa.parts[0] if swa.parts else None
    trimmed = None if whole else f"only the first {KEEP_BYTES} bytes were kept: parts may miss"
    return Split(pretty_xml(swa.soap), leaves, content, trimmed)


def pretty_xml(data: bytes) -> str:
    """The XML indented for reading; the text as received when it does not parse."""
    try:
        root = parse_xml(data)
    except MM7Error:
        return data.decode("utf-8", "replace")
    etree.indent(root, space="  ")
    return str(etree.tostring(root, encoding="unicode"))


def request_split(exchange: Exchange) -> Split:
    return split_body(
        exchange.request_body,
        exchange.request_content_type,
        len(exchange.request_body) == exchange.request_size,
    )


def exchange_detail(exchange: Exchange, parts_url: str) -> dict[str, Any]:
    """``Exchange.wire_json`` plus the split request (``soap``, ``parts`` linking to
    ``parts_url/<n>``, ``slides``) and the answer's SOAP part."""
    out = exchange.wire_json()
    split = request_split(exchange)
    out["request_soap"] = split.soap
    out["request_problem"] = split.problem
    out["parts"] = [_part_json(i, p, f"{parts_url}/{i}") for i, p in enumerate(split.leaves)]
    if split.content is not None and find_smil(split.content) is not None:
        try:
            out["slides"] = slides(split.content, list(split.leaves))
        except MM7Error as exc:
            out["slides_problem"] = str(exc)
    answer = split_body(
        exchange.response_body,
        exchange.response_content_type,
        len(exchange.response_body) == exchange.response_size,
    )
    out["response_soap"] = answer.soap
    return out


def _part_json(index: int, part: Part, url: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": index,
        "content_type": part.content_type.mime_type,
        "content_id": part.content_id,
        "content_location": part.content_location,
        "size": len(part.body),
        "url": url,
    }
    if part.content_type.mime_type.startswith("text/") and part.content_type.mime_type not in (
        "text/xml",
    ):
        out["text"] = part.body[:MAX_INLINE_TEXT].decode(part.charset or "utf-8", "replace")
    return out


def slides(content: Part, parts: list[Part]) -> list[dict[str, Any]]:
    """Slides in order, each slot naming the part index it shows (and the text inline)."""
    presentation = from_part(content)
    index_of = {id(p.body): i for i, p in enumerate(parts)}
    out: list[dict[str, Any]] = []
    for slide in presentation.slides:
        entry: dict[str, Any] = {"duration_ms": slide.duration_ms}
        for slot in ("visual", "text", "audio"):
            cid = getattr(slide, slot)
            if cid is None:
                continue
            try:
                item = presentation.item(cid)
            except KeyError:
                continue
            shown: dict[str, Any] = {
                "part": index_of.get(id(item.data)),
                "content_type": item.media_type,
                "content_id": item.content_id,
            }
            if slot == "text":
                shown["text"] = item.data[:MAX_INLINE_TEXT].decode(
                    item.charset or "utf-8", errors="replace"
                )
            entry[item.kind if slot == "visual" else slot] = shown
        out.append(entry)
    return out
