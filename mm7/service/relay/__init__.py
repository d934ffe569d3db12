"""The relay of inbound messages and status reports to applications' HTTP hooks (issue 7).

- ``ingest``: the inbound endpoint's DeliverReq handler (the MO stored with its relay event and
  opt-out change before DeliverRsp 1000); ``mo_event``: the MO's JSON; ``routing``: which hook
  (``[[relay.routes]]``), stop/start words, status hooks;
- ``worker``: leases the store's outbox (``mm7.service.store.outbox``) and delivers each event;
  ``hooks``: one signed delivery attempt (``HookSender``), per-hook concurrency and
  ``next_step`` (``Delivered``, ``RetryAt`` a time, or ``Dead``: a dead letter); ``signing``: the
  ``X-MM7-Signature`` header, the Standard Webhooks headers, and how an application verifies
  each;
- ``media_urls``: the MOs' media as signed expiring URLs served by the gateway.

The operator's side (dead letters, suppressions) is ``mm7.service.api.relay_ops`` and
``mm7 relay``.
"""

from mm7.service.relay.hooks import (
    EVENT_TYPE_HEADER,
    IDEMPOTENCY_HEADER,
    Dead,
    Delivered,
    DeliveryOutcome,
    HookSender,
    RetryAt,
    Step,
    next_step,
)
from mm7.service.relay.signing import SIGNATURE_HEADER, sign, signature_header, verify

__all__ = [
    "EVENT_TYPE_HEADER",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "Dead",
    "Delivered",
    "DeliveryOutcome",
    "HookSender",
    "RetryAt",
    "Step",
    "next_step",
    "sign",
    "signature_header",
    "verify",
]
