"""SMPP delivery receipt text (``id:... sub:... dlvrd:... stat:DELIVRD err:...``), sans-I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mm7.service.sms.link import ReceiptState

__all__ = ["ParsedReceipt", "parse_receipt"]

_FIELD = re.compile(r"(id|stat|err):(\S*)", re.IGNORECASE)
_STATES = {
    "DELIVRD": ReceiptState.DELIVERED,
    "UNDELIV": ReceiptState.UNDELIVERABLE,
    "EXPIRED": ReceiptState.EXPIRED,
    "DELETED": ReceiptState.DELETED,
    "REJECTD": ReceiptState.REJECTED,
    "UNKNOWN": ReceiptState.UNKNOWN,
    "ACCEPTD": ReceiptState.ACCEPTED,
}


@dataclass(frozen=True, slots=True)
class ParsedReceipt:
    """The fields of a receipt we act on: the SMSC's message id, the state, the error code."""

    message_id: str
    state: ReceiptState
    error: str


def parse_receipt(text: bytes) -> ParsedReceipt | None:
    """The receipt in a deliver_sm's short_message, or None when it has no ``id:`` and ``stat:``
    (an unknown ``stat:`` value is reported as UNKNOWN)."""
    fields = {k.lower(): v for k, v in _FIELD.findall(text.decode("latin-1"))}
    if not fields.get("id") or "stat" not in fields:
        return None
    state = _STATES.get(fields["stat"].upper(), ReceiptState.UNKNOWN)
    return ParsedReceipt(fields["id"], state, fields.get("err", ""))
