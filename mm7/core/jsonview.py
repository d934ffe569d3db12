"""Plain-JSON views of messages and parts, for `mm7 inspect --json`, logs and the control APIs."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import Enum
from typing import Any

from mm7.core.mime import Part
from mm7.core.model import Message
from mm7.core.values import Duration

__all__ = [
    "leaf_parts",
    "message_fields",
    "part_summary",
    "to_json",
]


def to_json(value: Any) -> Any:
    """A JSON-ready rendering of a model value (dataclasses become objects, None fields dropped)."""
    if value is None or isinstance(value, bool | int | float | str) and not isinstance(value, Enum):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Duration):
        return value.to_xsd()
    if isinstance(value, Part):
        return part_summary(value)
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if v is None or v == ():
                continue
            out[f.name] = to_json(v)
        return out
    return str(value)


def part_summary(part: Part) -> dict[str, Any]:
    """Content type, Content-ID, Content-Location and size of a part (children for multiparts)."""
    out: dict[str, Any] = {
        "content_type": part.content_type.mime_type,
        "content_id": part.content_id,
        "content_location": part.content_location,
        "size": len(part.body),
    }
    if part.charset:
        out["charset"] = part.charset
    if part.transfer_encoding:
        out["transfer_encoding"] = part.transfer_encoding
    if part.children:
        out["children"] = [part_summary(c) for c in part.children]
    return out


def message_fields(message: Message) -> dict[str, Any]:
    """Every body field of ``message`` as JSON (envelope fields and content excluded).

    Vendor elements kept as ``extensions`` come out as ``{"element": ..., "text": ...}`` objects
    in wire order, so that a reader sees what a peer added without knowing the model.
    """
    skip = {"transaction_id", "mm7_version", "namespace", "content"}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(message):
        if f.name in skip:
            continue
        v = getattr(message, f.name)
        if v is None or v == ():
            continue
        if f.name == "extensions":
            out[f.name] = [{"element": name, "text": text} for name, text in v]
            continue
        out[f.name] = to_json(v)
    return out


def leaf_parts(part: Part) -> list[Part]:
    """The media parts inside a (possibly nested) content entity, in order."""
    if not part.children:
        return [part]
    out: list[Part] = []
    for child in part.children:
        out.extend(leaf_parts(child))
    return out
