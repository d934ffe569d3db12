"""The SMS fallback (issue 18): a recipient whose MMS fails for good gets an SMS with the
message's text and its hosted page's link, once.

- ``rules``: the pure decisions (triggers, the SMS text, receipts, retries);
- ``worker``: ``FallbackWorker``, the loop that leases the store's fallback rows, sends through
  the SMS links (``mm7.service.sms``) and records the outcome, and its receipt handler.

The rows are written by the store in the same transaction as the failure they follow
(``Store.fail``, ``Store.record_delivery_report``); ``mm7.service.fallback.worker`` is imported
by the runtime on its own, so that the store can use ``rules`` without importing the worker.
"""

from mm7.service.fallback.rules import (
    FAILED_TRIGGER,
    OUTCOME_UNKNOWN,
    REPORT_TRIGGERS,
    report_trigger,
    sms_text,
)

__all__ = ["FAILED_TRIGGER", "OUTCOME_UNKNOWN", "REPORT_TRIGGERS", "report_trigger", "sms_text"]
