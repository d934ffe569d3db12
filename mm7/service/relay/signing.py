"""Signatures on relayed requests: HMAC-SHA256 with the hook's secret, in one or two schemes.

A hook's ``signature`` (``[relay.hooks.NAME]``) picks the headers: ``"mm7"`` (the default)
``X-MM7-Signature`` below; ``"standard"`` the Standard Webhooks headers (the last section), which
every language's off-the-shelf Standard Webhooks library verifies; ``"both"`` sends both sets,
so an application can move from one to the other without a flag day.

The mm7 scheme
--------------

Every request the relay POSTs to a hook with ``signature = "mm7"`` or ``"both"`` carries::

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

The Standard Webhooks scheme
----------------------------

A hook with ``signature = "standard"`` or ``"both"`` has a ``whsec_<base64>`` secret (refused at
load otherwise: ``mm7.service.config.settings.whsec_key``); the key is its base64 part decoded.
Each request carries::

    webhook-id: msg_<32 hex digits>
    webhook-timestamp: <unix seconds>
    webhook-signature: v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>." + body)>

``webhook-id`` is derived from the event's ``Idempotency-Key`` (``webhook_id``), so it is the
same on every retry of the event and the receiving library's idempotency advice holds; it is a
digest rather than the key itself because the key holds values a peer chose (an MMSC's
MessageID) that may contain the full stop separating the signed fields. ``webhook-timestamp``
is the attempt's time, signed anew at each attempt like ``t`` above. The application verifies
with its language's Standard Webhooks library, e.g. in Python
``standardwebhooks.Webhook(secret).verify(body, headers)`` with the hook's ``whsec_`` secret.

The signing is the standard library's HMAC and base64, as for the mm7 scheme: the
``standardwebhooks`` package would add a runtime dependency for the same three calls, and its
secret parsing skips characters outside base64 where the configuration should refuse them. The
test suite verifies what is sent here with that package, as an application would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from mm7.service.config.settings import SignatureScheme, whsec_key

__all__ = [
    "SIGNATURE_HEADER",
    "STANDARD_ID_HEADER",
    "STANDARD_SIGNATURE_HEADER",
    "STANDARD_TIMESTAMP_HEADER",
    "TOLERANCE",
    "sign",
    "signature_header",
    "signature_headers",
    "standard_signature",
    "verify",
    "webhook_id",
]

SIGNATURE_HEADER = "X-MM7-Signature"
STANDARD_ID_HEADER = "webhook-id"
STANDARD_TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"
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


def webhook_id(idempotency_key: str) -> str:
    """The ``webhook-id`` of an event: ``msg_`` and the first 32 hex digits (128 bits) of the
    SHA-256 of its ``Idempotency-Key``.

    A function of the key alone, so every retry (and a dead letter sent again) has the same id;
    made of letters, digits and ``_`` only, whatever the key holds, as the signed content
    ``"<id>.<timestamp>.<body>"`` must not let an id with a full stop shift the fields.
    """
    return "msg_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def standard_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 of
    ``HMAC-SHA256(key, f"{msg_id}.{timestamp}." + body)``; ``key`` is the decoded ``whsec_``
    secret (``whsec_key``)."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def signature_headers(
    scheme: SignatureScheme, secret: str, idempotency_key: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The signature headers of one attempt to deliver ``body``, for a hook's ``scheme``.

    ``"mm7"``: ``X-MM7-Signature`` keyed with ``secret``'s UTF-8 bytes; ``"standard"``:
    ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` keyed with the decoded
    ``whsec_`` ``secret`` (ValueError if it is not one; the loader refuses such a hook first);
    ``"both"``: all four, the mm7 one keyed with the whole ``whsec_...`` string as UTF-8, as it
    would be for a hook with ``signature = "mm7"`` and the same secret.
    """
    headers: dict[str, str] = {}
    if scheme in ("mm7", "both"):
        headers[SIGNATURE_HEADER] = signature_header(secret.encode(), timestamp, body)
    if scheme in ("standard", "both"):
        msg_id = webhook_id(idempotency_key)
        headers[STANDARD_ID_HEADER] = msg_id
        headers[STANDARD_TIMESTAMP_HEADER] = str(timestamp)
        headers[STANDARD_SIGNATURE_HEADER] = standard_signature(
            whsec_key(secret), msg_id, timestamp, body
        )
    return headers
