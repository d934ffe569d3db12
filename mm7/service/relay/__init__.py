"""The relay of inbound messages and status reports to applications' HTTP hooks (issue 7).

``signing``: the ``X-MM7-Signature`` header (HMAC-SHA256 over timestamp and body) and how an
application verifies it. ``hooks``: one signed delivery attempt to a hook (``HookSender``), the
per-hook concurrency limit, and ``next_step`` (delivered, retry at a time, or dead letter).
"""

from mm7.service.relay.hooks import (
    EVENT_TYPE_HEADER,
    IDEMPOTENCY_HEADER,
    DeliveryOutcome,
    HookSender,
    Step,
    next_step,
)
from mm7.service.relay.signing import SIGNATURE_HEADER, sign, signature_header, verify

__all__ = [
    "EVENT_TYPE_HEADER",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "DeliveryOutcome",
    "HookSender",
    "Step",
    "next_step",
    "sign",
    "signature_header",
    "verify",
]
