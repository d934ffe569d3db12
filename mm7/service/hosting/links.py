"""Signed, expiring links to an MT message's hosted page: ``{base}/m/<token>`` (and its parts,
``{base}/m/<token>/<position>``).

The token is 47 URL-safe characters, short enough for a text message::

    token = base64url(format (1 byte) | expires (4 bytes, unix seconds) | mac (16 bytes) | id)
    mac   = HMAC-SHA256(key, "mm7-hosted-page\\0" | format | expires | id)[:16]

where ``id`` is the message id packed from its hex digits (format 1: the store's ids) or as
UTF-8 (format 2: any other). It expires ``ttl`` seconds after the message was accepted, so
every URL of one message is the same string (the MMS's text, ``GET /v1/messages/{id}``, an
SMS fallback). The key is ``[hosting] secret`` or one the store makes once and keeps. Nothing in
a token can be changed without the key: a wrong MAC is an invalid token, however it was made.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
import time
from dataclasses import dataclass
from datetime import datetime

from mm7.service.store.base import Store

__all__ = ["PAGE_PATH", "HostedLinks", "HostedToken"]

#: where the pages are served (``PAGE_PATH/<token>``), under the hosting base URL
PAGE_PATH = "/m"
_DOMAIN = b"mm7-hosted-page\x00"
_HEX_ID = 1
_TEXT_ID = 2
_HEAD = struct.Struct(">BI")  # format, expires
_MAC_BYTES = 16
_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
#: the longest token read (a message id of 200 bytes); longer ones are invalid at once
_MAX_TOKEN = 400


@dataclass(frozen=True, slots=True)
class HostedToken:
    """What a valid token says: which message, and until when (unix seconds)."""

    message_id: str
    expires: int

    def expired(self, now: float | None = None) -> bool:
        """True once ``expires`` has passed."""
        return self.expires < (time.time() if now is None else now)


class HostedLinks:
    """Makes and reads hosted-page tokens with one key (module docstring).

    ``base`` is the public URL the pages are reached at (no trailing ``/``); the runtime may set
    it once the API listens. ``ttl``: seconds from a message's acceptance until its links expire.
    """

    def __init__(self, key: bytes, base: str, ttl: float) -> None:
        if not key:
            raise ValueError("the hosting key must not be empty")
        if ttl <= 0:
            raise ValueError("the hosting ttl must be positive")
        self._key = key
        self.base = base.rstrip("/")
        self.ttl = ttl

    def token(self, message_id: str, created_at: datetime) -> str:
        """The token of ``message_id``'s page, expiring ``ttl`` after ``created_at``."""
        expires = int(created_at.timestamp() + self.ttl)
        if _HEX.fullmatch(message_id):
            head, body = _HEAD.pack(_HEX_ID, expires), bytes.fromhex(message_id)
        else:
            head, body = _HEAD.pack(_TEXT_ID, expires), message_id.encode("utf-8")
        return _encode(head + self._mac(head, body) + body)

    def page_url(self, message_id: str, created_at: datetime) -> str:
        """The public URL of ``message_id``'s hosted page (what a recipient opens).
        RuntimeError while ``base`` is not known yet (the API is not listening)."""
        if not self.base:
            raise RuntimeError("the hosted pages' base URL is not known until the API listens")
        return f"{self.base}{PAGE_PATH}/{self.token(message_id, created_at)}"

    async def url_for(self, store: Store, message_id: str) -> str | None:
        """The hosted page URL of a stored message, or None when the store has no such message
        (for callers holding only its id, such as a fallback sent after the MMS failed)."""
        content = await store.message_content(message_id)
        if content is None:
            return None
        return self.page_url(content.id, content.created_at)

    def read(self, token: str) -> HostedToken | None:
        """The message and expiry a token names, or None when this key did not make it (or it is
        not a token at all). Expiry is the caller's to check (``HostedToken.expired``)."""
        if len(token) > _MAX_TOKEN or not _TOKEN.fullmatch(token):
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        # one spelling per token: no stray bits in the last character
        if len(raw) <= _HEAD.size + _MAC_BYTES or _encode(raw) != token:
            return None
        head, mac = raw[: _HEAD.size], raw[_HEAD.size : _HEAD.size + _MAC_BYTES]
        body = raw[_HEAD.size + _MAC_BYTES :]
        if not hmac.compare_digest(mac, self._mac(head, body)):
            return None
        kind, expires = _HEAD.unpack(head)
        if kind == _HEX_ID:
            return HostedToken(body.hex(), expires)
        if kind == _TEXT_ID:
            try:
                return HostedToken(body.decode("utf-8"), expires)
            except UnicodeDecodeError:
                return None
        return None

    def _mac(self, head: bytes, body: bytes) -> bytes:
        return hmac.new(self._key, _DOMAIN + head + body, hashlib.sha256).digest()[:_MAC_BYTES]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
