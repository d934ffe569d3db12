"""Stored media bytes as an HTTP answer that cannot act as a page of the server's origin.

Subscribers' and applications' media (an MO's parts, a hosted MT message's parts) are served
from the gateway's own origin, so whatever they hold must never run there:

- ``Content-Security-Policy: sandbox; default-src 'none'`` and ``X-Content-Type-Options:
  nosniff`` on every answer: an HTML or SVG part is an inert document of a unique origin;
- images, audio and video are ``inline`` (a page may show and play them); every other type is
  an ``attachment`` (a download, never rendered);
- the file name is reduced to ``[A-Za-z0-9._-]`` (no quote or line break reaches the header).

A single ``Range: bytes=...`` is answered 206 with ``Content-Range`` (handsets' players, Safari's
above all, play video only from a server that does); an unsatisfiable one is 416; several ranges
are answered with the whole body.
"""

from __future__ import annotations

import re

from aiohttp import web

__all__ = ["SAFE_MEDIA_HEADERS", "media_response", "safe_filename"]

#: the headers every media answer carries
SAFE_MEDIA_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # a subscriber's HTML or SVG must not run as a page of the gateway's origin
    "Content-Security-Policy": "sandbox; default-src 'none'",
}
_INLINE = ("image", "audio", "video")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
#: what ``_range`` answers for a range outside the body (compared by identity)
_UNSATISFIABLE = (-1, -1)


def safe_filename(name: str) -> str:
    """``name`` with every character but ASCII letters, digits, ``.``, ``_`` and ``-`` replaced
    by ``_`` (at most 100 of them), for a Content-Disposition header."""
    return _UNSAFE.sub("_", name)[:100]


def media_response(
    request: web.Request,
    data: bytes,
    content_type: str,
    filename: str | None,
    *,
    cache_control: str = "private, max-age=300",
) -> web.Response:
    """``data`` as ``content_type`` (parameters kept: its charset) with the module's safety
    headers, the file name (when given) in Content-Disposition, and a single byte range when
    ``request`` asks for one."""
    headers = {**SAFE_MEDIA_HEADERS, "Cache-Control": cache_control, "Accept-Ranges": "bytes"}
    kind = content_type.split("/", 1)[0].strip().lower()
    shown = "inline" if kind in _INLINE else "attachment"
    if filename:
        headers["Content-Disposition"] = f'{shown}; filename="{safe_filename(filename)}"'
    elif shown == "attachment":
        headers["Content-Disposition"] = shown
    mime = content_type.split(";")[0].strip()
    charset = _charset(content_type)
    wanted = _range(request.headers.get("Range"), len(data))
    if wanted is None:
        return web.Response(body=data, headers=headers, content_type=mime, charset=charset)
    if wanted is _UNSATISFIABLE:
        headers["Content-Range"] = f"bytes */{len(data)}"
        return web.Response(status=416, headers=headers)
    start, end = wanted
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    return web.Response(
        status=206, body=data[start : end + 1], headers=headers, content_type=mime, charset=charset
    )


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single satisfiable range; ``_UNSATISFIABLE`` when it cannot be;
    None: the whole body (no header, several ranges, or one that is not ``bytes=``)."""
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # the last N bytes
        length = int(m.group(2))
        if length == 0 or size == 0:
            return _UNSATISFIABLE
        return (max(size - length, 0), size - 1)
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return _UNSATISFIABLE
    return (start, min(end, size - 1))


def _charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return None
