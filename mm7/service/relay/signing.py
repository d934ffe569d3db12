"""Signatures on relayed requests: HMAC-SHA256 over the timestamp and the body, per-hook secret.

Every request the relay POSTs to an application's hook carries::

    X-MM7-Signature: t=<unix seconds>,v1=<hex>

where ``<hex>`` is ``HMAC-SHA256(secret, "<unix seconds>." + body)`` in lower-case hex: the
timestamp as decimal ASCII, a full stop, then the exact bytes of the request body (JSON, UTF-8).
``t`` is when the request was signed; a receiver refuses timestamps more than five minutes off
its own clock, so a captured request cannot be replayed later. The same request is re-signed on
every retry (new ``t``); the ``Idempotency-Key`` header, not the signature, identifies it. Fields
are separated by commas and may come in any order; a receiver ignores fields it does not know
(there may be several ``v1`` values while a secret is being rotated: any one matching is enough).

Verifying in an application (Python, standard library only; the test suite runs this very
snippet against a signed request)::

```python
import hashlib, hmac, time
def verified(secret: bytes, header: str, body: bytes) -> bool:
    f = dict(kv.split("=", 1) for kv in header.split(","))
    mac = hmac.new(secret, f"{f['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, f["v1"]) and abs(time.time() - int(f["t"])) < 300
```

``body`` is the raw request body as received (before any JSON parsing), ``secret`` the hook's
``secret`` from ``[relay.hooks.NAME]`` as UTF-8 bytes. ``verify`` below is the same check made
robust: malformed headers answer False instead of raising, and several ``v1`` are accepted.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "TOLERANCE", "sign", "signature_header", "verify"]

SIGNATURE_HEADER = "X-MM7-Signature"
#: how far (seconds) a signature's timestamp may be from the verifier's clock
TOLERANCE = 300
_HEX = frozenset("0123456789abcdef")


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``HMAC-SHA256(secret, f"{timestamp}." + body)`` as lower-case hex."""
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    """The value of ``X-MM7-Signature`` for ``body`` signed at ``timestamp``."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify(
    secret: bytes, header: str, body: bytes, *, now: float, tolerance: float = TOLERANCE
) -> bool:
    """Whether ``header`` (an ``X-MM7-Signature`` value) signs ``body`` with ``secret``.

    False for a malformed header (no or several ``t``, a non-numeric ``t``, no ``v1``), a
    timestamp more than ``tolerance`` seconds from ``now`` (either way), or no matching ``v1``.
    The comparison is constant-time.
    """
    timestamps: list[str] = []
    signatures: list[str] = []
    for field in header.split(","):
        key, sep, value = field.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not signatures:
        return False
    stamp = timestamps[0]
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        return False
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    matched = False
    for candidate in signatures:
        if len(candidate) == len(expected) and set(candidate) <= _HEX:
            matched |= hmac.compare_digest(expected, candidate)
    return matched
