"""A redacted wire log for interop debugging: headers and the SOAP part, media elided,
credentials masked. Switchable per link; never logs a secret."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from mm7.core.errors import MM7Error
from mm7.core.jsonview import leaf_parts
from mm7.core.mime import parse_swa

__all__ = [
    "MASK",
    "MAX_SOAP_CHARS",
    "SECRET_HEADERS",
    "describe_body",
    "redact_headers",
    "redact_url",
    "wire_entry",
]

#: headers whose values are secrets (compared lower-case)
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"}
)
MASK = "***"
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
#: keep at most this much of a SOAP part in one log line
MAX_SOAP_CHARS = 16 * 1024


def redact_url(url: str) -> str:
    """``url`` with any user:password@ userinfo masked."""
    return _URL_USERINFO.sub(f"{MASK}@", url)


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Header pairs with secret values masked (the scheme of Authorization is kept)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        if name.lower() in SECRET_HEADERS:
            scheme = value.split(" ", 1)[0] if " " in value else ""
            value = f"{scheme} {MASK}".strip()
        out.append((name, value))
    return out


def describe_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The SOAP part as text and one line per media part (type, Content-ID, size) — no media."""
    try:
        swa = parse_swa(body, content_type)
    except MM7Error as exc:
        return {"size": len(body), "unparsed": str(exc), "head": body[:256].decode("latin-1")}
    soap = swa.soap.decode("utf-8", "replace")
    if len(soap) > MAX_SOAP_CHARS:
        soap = soap[:MAX_SOAP_CHARS] + f"... ({len(swa.soap)} bytes)"
    media = []
    for part in swa.parts:
        for leaf in leaf_parts(part):
            media.append(
                f"{leaf.content_type.mime_type} cid={leaf.content_id} {len(leaf.body)} bytes"
            )
    return {"size": len(body), "soap": soap, "media": media}


def wire_entry(
    direction: str,
    *,
    url: str | None = None,
    status: int | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> dict[str, Any]:
    """One redacted log record of a request or response (for structlog's event dict)."""
    entry: dict[str, Any] = {"direction": direction}
    if url is not None:
        entry["url"] = redact_url(url)
    if status is not None:
        entry["http_status"] = status
    entry["headers"] = redact_headers(headers)
    entry["body"] = describe_body(body, content_type) if body else {"size": 0}
    return entry
