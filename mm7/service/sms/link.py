"""The ``SmsLink`` protocol every SMS transport implements, and the receipts it reports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from mm7.service.errors import ServiceError

__all__ = [
    "Receipt",
    "ReceiptHandler",
    "ReceiptState",
    "SentSms",
    "SmsLink",
    "SmsPartlySent",
    "SmsRejected",
    "SmsUnavailable",
]


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
class SentSms:
    """What ``SmsLink.send`` submitted: every part's id, in order (one for a short text or an
    HTTP gateway's send); each part's receipt carries its own id."""

    part_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.part_ids or not all(self.part_ids):
            raise ValueError("SentSms: expected at least one part id, none empty")

    @property
    def sms_id(self) -> str:
        """The SMS's id as recorded and reported: its first part's."""
        return self.part_ids[0]


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt of one part, correlated to one of the ``part_ids`` that
    ``SmsLink.send`` returned (``sms_id``); a long text gets one per part."""

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


class SmsPartlySent(ServiceError):
    """A long text's later part failed after earlier ones went out (``sent``: their ids): never
    to be sent again, as a retry would repeat those parts to the handset."""

    def __init__(self, link: str, sent: tuple[str, ...], parts: int, cause: ServiceError) -> None:
        self.link = link
        self.sent = sent
        self.parts = parts
        super().__init__(f"sms link {link!r}: {len(sent)} of {parts} parts sent, then: {cause}")


class SmsLink(Protocol):
    """Sends one text to one number; receipts arrive later through the handler given at start."""

    name: str

    async def start(self, on_receipt: ReceiptHandler) -> None:
        """Connect (or get ready) and route receipts to ``on_receipt``."""
        ...

    async def send(self, to: str, text: str, sender: str | None = None) -> SentSms:
        """Submit ``text`` (split when long) to ``to``; returns the ids its parts' receipts
        will carry. Raises SmsRejected, SmsUnavailable (nothing went out) or SmsPartlySent."""
        ...

    async def close(self) -> None:
        """Stop: disconnect and end background tasks."""
        ...
