"""The ``SmsLink`` protocol every SMS transport implements, and the receipts it reports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from mm7.service.errors import ServiceError

__all__ = ["Receipt", "ReceiptHandler", "ReceiptState", "SmsLink", "SmsRejected", "SmsUnavailable"]


class ReceiptState(StrEnum):
    """Final states of an SMS, from SMPP receipts' ``stat:`` (and Kannel's dlr types)."""

    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    DELETED = "deleted"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    ACCEPTED = "accepted"

    @property
    def final_ok(self) -> bool:
        """True only for a handset-confirmed delivery."""
        return self is ReceiptState.DELIVERED


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt, correlated to the id ``SmsLink.send`` returned (``sms_id``)."""

    link: str
    sms_id: str
    state: ReceiptState
    error: str = ""


ReceiptHandler = Callable[[Receipt], Awaitable[None]]


class SmsRejected(ServiceError):
    """The SMSC or gateway refused the SMS for good (``status``: its code); do not retry."""

    def __init__(self, link: str, status: int, detail: str = "") -> None:
        self.link = link
        self.status = status
        super().__init__(f"sms link {link!r} rejected the message: status 0x{status:x} {detail}")


class SmsUnavailable(ServiceError):
    """The link could not take the SMS now (down, throttled past the deadline); retry later."""


class SmsLink(Protocol):
    """Sends one text to one number; receipts arrive later through the handler given at start."""

    name: str

    async def start(self, on_receipt: ReceiptHandler) -> None:
        """Connect (or get ready) and route receipts to ``on_receipt``."""
        ...

    async def send(self, to: str, text: str, sender: str | None = None) -> str:
        """Submit ``text`` (split when long) to ``to``; returns the id its receipt will carry."""
        ...

    async def close(self) -> None:
        """Stop: disconnect and end background tasks."""
        ...
