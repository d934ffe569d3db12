"""Typed, immutable MM7 messages: one frozen dataclass per operation of 3GPP TS 23.140.

Field names are the schema's element names in snake_case. A field a version does not define is
refused by strict emission (see ``mm7.core.codec``); parsing fills what the wire carried. The
envelope pair (namespace, MM7Version) and the TransactionID travel on every message so that a
response can echo the request it answers (``reply_to``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, TypeVar

from mm7.core.mime import Part
from mm7.core.status import (
    MMStatus,
    ReadStatus,
    StatusClass,
    StatusCode,
    known_code,
    status_class,
    status_text,
)
from mm7.core.values import RelativeOrAbsolute

__all__ = [
    "ERROR_FOR",
    "REQUESTS",
    "RESPONSES",
    "RESPONSE_FOR",
    "SHORT_CODE_MAX_DIGITS",
    "SUCCESS",
    "Address",
    "AddressCoding",
    "AddressKind",
    "CancelReq",
    "CancelRsp",
    "ChargedParty",
    "ContentClass",
    "DeliverReq",
    "DeliverRsp",
    "DeliveryReportReq",
    "DeliveryReportRsp",
    "ExtendedCancelReq",
    "ExtendedCancelRsp",
    "ExtendedReplaceReq",
    "ExtendedReplaceRsp",
    "Fault",
    "MMStatusExtension",
    "Message",
    "MessageClass",
    "PreviouslySentBy",
    "PreviouslySentDate",
    "Priority",
    "RSErrorRsp",
    "ReadReplyReq",
    "ReadReplyRsp",
    "Recipients",
    "ReplaceReq",
    "ReplaceRsp",
    "ReplyCharging",
    "Request",
    "Response",
    "Status",
    "SubmitReq",
    "SubmitRsp",
    "UACapabilities",
    "VASPErrorRsp",
    "VASPRequest",
    "reply_to",
]


class AddressKind(StrEnum):
    """The element an address is written as."""

    NUMBER = "Number"
    SHORT_CODE = "ShortCode"
    RFC2822 = "RFC2822Address"


class AddressCoding(StrEnum):
    ENCRYPTED = "encrypted"
    OBFUSCATED = "obfuscated"


class Priority(StrEnum):
    NORMAL = "Normal"
    HIGH = "High"
    LOW = "Low"


class MessageClass(StrEnum):
    PERSONAL = "Personal"
    INFORMATIONAL = "Informational"
    ADVERTISEMENT = "Advertisement"
    AUTO = "Auto"


class ChargedParty(StrEnum):
    SENDER = "Sender"
    RECIPIENT = "Recipient"
    BOTH = "Both"
    NEITHER = "Neither"
    THIRD_PARTY = "ThirdParty"  # REL-6-MM7-1-2 on


class ContentClass(StrEnum):
    TEXT = "text"
    IMAGE_BASIC = "image-basic"
    IMAGE_RICH = "image-rich"
    VIDEO_BASIC = "video-basic"
    VIDEO_RICH = "video-rich"
    MEGAPIXEL = "megapixel"
    CONTENT_BASIC = "content-basic"
    CONTENT_RICH = "content-rich"


class MMStatusExtension(StrEnum):
    REJECTION_BY_MMS_RECIPIENT = "RejectionByMMSRecipient"
    REJECTION_BY_OTHER_RS = "RejectionByOtherRS"


SHORT_CODE_MAX_DIGITS = 6


@dataclass(frozen=True, slots=True)
class Address:
    """An MM7 address: Number (MSISDN), ShortCode or RFC2822Address, with its attributes."""

    value: str
    kind: AddressKind = AddressKind.NUMBER
    display_only: bool | None = None
    address_coding: AddressCoding | None = None
    id: str | None = None

    @classmethod
    def guess(cls, value: str) -> Address:
        """Pick the kind as Mbuni does: '@' means e-mail, up to six digits a short code."""
        value = value.strip()
        if "@" in value:
            return cls(value, AddressKind.RFC2822)
        digits = value.lstrip("+")
        if digits.isdigit() and len(digits) <= SHORT_CODE_MAX_DIGITS and not value.startswith("+"):
            return cls(value, AddressKind.SHORT_CODE)
        return cls(value, AddressKind.NUMBER)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Recipients:
    """To, Cc and Bcc lists; at least one address overall."""

    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()

    @property
    def all(self) -> tuple[Address, ...]:
        return self.to + self.cc + self.bcc

    def __len__(self) -> int:
        return len(self.to) + len(self.cc) + len(self.bcc)


@dataclass(frozen=True, slots=True)
class Status:
    """A response status. Unknown codes (carriers add their own) are kept as plain ints."""

    code: int
    text: str = ""
    details: str | None = None

    @classmethod
    def of(cls, code: int, details: str | None = None) -> Status:
        """A status with the spec's text for ``code`` (or 'Status <code>' for unknown codes)."""
        return cls(code, status_text(code) or f"Status {code}", details)

    @property
    def known(self) -> StatusCode | None:
        return known_code(self.code)

    @property
    def status_class(self) -> StatusClass:
        return status_class(self.code)

    @property
    def is_success(self) -> bool:
        return 1000 <= self.code < 2000


SUCCESS = Status(1000, "Success")


@dataclass(frozen=True, slots=True)
class ReplyCharging:
    size: int | None = None
    deadline: RelativeOrAbsolute | None = None


@dataclass(frozen=True, slots=True)
class UACapabilities:
    ua_prof: str | None = None
    timestamp: RelativeOrAbsolute | None = None


@dataclass(frozen=True, slots=True)
class PreviouslySentBy:
    address: Address
    sequence: int | None = None


@dataclass(frozen=True, slots=True)
class PreviouslySentDate:
    value: RelativeOrAbsolute
    sequence: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Fields every MM7 message carries besides its body elements."""

    OPERATION: ClassVar[str] = ""
    #: TransactionID from the SOAP header; responses echo the request's.
    transaction_id: str = ""
    #: MM7Version element value; None emits the dialect's (or the schema's default).
    mm7_version: str | None = None
    #: MM7 namespace URI; None emits the dialect's.
    namespace: str | None = None
    #: Vendor elements and values outside the schema, kept as (element, text) in wire order.
    extensions: tuple[tuple[str, str], ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request(Message):
    """A request; its answer is built with ``reply_to``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Response(Message):
    status: Status = SUCCESS


@dataclass(frozen=True, slots=True, kw_only=True)
class VASPRequest(Request):
    """Requests from the VASP: they carry SenderIdentification."""

    vasp_id: str | None = None
    vas_id: str | None = None
    sender_address: Address | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitReq(VASPRequest):
    OPERATION: ClassVar[str] = "SubmitReq"
    recipients: Recipients
    service_code: str | None = None
    linked_id: str | None = None
    message_class: MessageClass | None = None
    timestamp: datetime | None = None
    reply_charging: ReplyCharging | None = None
    earliest_delivery_time: RelativeOrAbsolute | None = None
    expiry_date: RelativeOrAbsolute | None = None
    delivery_report: bool | None = None
    read_reply: bool | None = None
    priority: Priority | None = None
    subject: str | None = None
    charged_party: ChargedParty | None = None
    charged_party_id: str | None = None
    distribution_indicator: bool | None = None
    delivery_condition: tuple[int, ...] = ()
    applic_id: str | None = None
    reply_applic_id: str | None = None
    aux_applic_info: str | None = None
    content_class: ContentClass | None = None
    drm_content: bool | None = None
    allow_adaptations: bool | None = None
    content: Part | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitRsp(Response):
    OPERATION: ClassVar[str] = "SubmitRsp"
    message_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverReq(Request):
    OPERATION: ClassVar[str] = "DeliverReq"
    mms_relay_server_id: str | None = None
    vasp_id: str | None = None
    vas_id: str | None = None
    linked_id: str | None = None
    #: None: the MMSC sent no Sender (the schema requires one; the gateway relays it anyway)
    sender: Address | None = None
    recipients: Recipients | None = None
    previously_sent_by: tuple[PreviouslySentBy, ...] = ()
    previously_sent_date: tuple[PreviouslySentDate, ...] = ()
    sender_spi: str | None = None
    recipient_spi: str | None = None
    timestamp: datetime | None = None
    reply_charging_id: str | None = None
    priority: Priority | None = None
    subject: str | None = None
    applic_id: str | None = None
    reply_applic_id: str | None = None
    aux_applic_info: str | None = None
    ua_capabilities: UACapabilities | None = None
    allow_adaptations: bool | None = None
    content: Part | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverRsp(Response):
    OPERATION: ClassVar[str] = "DeliverRsp"
    service_code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelReq(VASPRequest):
    OPERATION: ClassVar[str] = "CancelReq"
    message_id: str
    applic_id: str | None = None
    reply_applic_id: str | None = None
    aux_applic_info: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRsp(Response):
    OPERATION: ClassVar[str] = "CancelRsp"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceReq(VASPRequest):
    OPERATION: ClassVar[str] = "ReplaceReq"
    message_id: str
    service_code: str | None = None
    timestamp: datetime | None = None
    read_reply: bool | None = None
    earliest_delivery_time: RelativeOrAbsolute | None = None
    distribution_indicator: bool | None = None
    content_class: ContentClass | None = None
    drm_content: bool | None = None
    applic_id: str | None = None
    reply_applic_id: str | None = None
    aux_applic_info: str | None = None
    allow_adaptations: bool | None = None
    content: Part | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceRsp(Response):
    OPERATION: ClassVar[str] = "ReplaceRsp"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendedCancelReq(VASPRequest):
    """REL-6-MM7-1-4 only: cancel by CancelID."""

    OPERATION: ClassVar[str] = "extendedCancelReq"
    cancel_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendedCancelRsp(Response):
    """Its Status carries a StatusCode only (the schema has no StatusText here)."""

    OPERATION: ClassVar[str] = "extendedCancelRsp"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendedReplaceReq(Request):
    """REL-6-MM7-1-4 only; VASPID/VASID sit directly in the body, not in SenderIdentification."""

    OPERATION: ClassVar[str] = "extendedReplaceReq"
    vasp_id: str | None = None
    vas_id: str | None = None
    service_code: str | None = None
    replace_id: str | None = None
    timestamp: datetime | None = None
    earliest_delivery_time: RelativeOrAbsolute | None = None
    expiry_date: RelativeOrAbsolute | None = None
    read_reply: bool | None = None
    delivery_report: bool | None = None
    allow_adaptations: bool | None = None
    content: Part | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendedReplaceRsp(Response):
    OPERATION: ClassVar[str] = "extendedReplaceRsp"
    message_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryReportReq(Request):
    OPERATION: ClassVar[str] = "DeliveryReportReq"
    mms_relay_server_id: str | None = None
    message_id: str
    #: the handset (some MMSCs swap Recipient and Sender); None when the MMSC left it out
    recipient: Address | None = None
    #: the VASP's address (None when left out)
    sender: Address | None = None
    #: Date (TimeStamp in REL-5-MM7-1-4 and REL-6-MM7-1-1); None when left out
    date: datetime | None = None
    mm_status: MMStatus
    #: the MMStatus string as received when it was not a spec value (Delivered, Unreachable, ...)
    mm_status_raw: str | None = None
    mm_status_extension: MMStatusExtension | None = None
    status_text: str | None = None
    applic_id: str | None = None
    reply_applic_id: str | None = None
    aux_applic_info: str | None = None
    ua_capabilities: UACapabilities | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryReportRsp(Response):
    OPERATION: ClassVar[str] = "DeliveryReportRsp"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadReplyReq(Request):
    OPERATION: ClassVar[str] = "ReadReplyReq"
    mms_relay_server_id: str | None = None
    message_id: str
    #: the handset that read the message (None when left out)
    recipient: Address | None = None
    sender: Address | None = None
    timestamp: datetime | None = None
    mm_status: ReadStatus
    mm_status_raw: str | None = None
    status_text: str | None = None
    applic_id: str | None = None
    reply_applic_id: str | None = None
    aux_applic_info: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadReplyRsp(Response):
    OPERATION: ClassVar[str] = "ReadReplyRsp"


@dataclass(frozen=True, slots=True, kw_only=True)
class RSErrorRsp(Response):
    """The MMSC's error answer to a VASP request, normally inside a SOAP Fault's detail."""

    OPERATION: ClassVar[str] = "RSErrorRsp"


@dataclass(frozen=True, slots=True, kw_only=True)
class VASPErrorRsp(Response):
    """The VASP's error answer to an MMSC request, normally inside a SOAP Fault's detail."""

    OPERATION: ClassVar[str] = "VASPErrorRsp"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault(Message):
    """A SOAP 1.1 Fault, with the MM7 status extracted from whatever shape the peer used."""

    OPERATION: ClassVar[str] = "Fault"
    faultcode: str = "Server"
    faultstring: str = ""
    faultactor: str | None = None
    error: RSErrorRsp | VASPErrorRsp | None = None
    #: the MM7 status found anywhere in the fault (error element, bare Status, faultstring)
    status: Status | None = None

    @property
    def operation(self) -> str:
        """The error element it carries (RSErrorRsp/VASPErrorRsp), or 'Fault' when none."""
        return self.error.OPERATION if self.error is not None else "Fault"


REQUESTS: tuple[type[Request], ...] = (
    SubmitReq,
    DeliverReq,
    CancelReq,
    ReplaceReq,
    ExtendedCancelReq,
    ExtendedReplaceReq,
    DeliveryReportReq,
    ReadReplyReq,
)
RESPONSES: tuple[type[Response], ...] = (
    SubmitRsp,
    DeliverRsp,
    CancelRsp,
    ReplaceRsp,
    ExtendedCancelRsp,
    ExtendedReplaceRsp,
    DeliveryReportRsp,
    ReadReplyRsp,
    RSErrorRsp,
    VASPErrorRsp,
)
#: the response class that answers each request class
RESPONSE_FOR: dict[type[Request], type[Response]] = dict(zip(REQUESTS, RESPONSES[:8], strict=True))
#: the error element that answers a request: RSErrorRsp from the MMSC, VASPErrorRsp from the VASP
ERROR_FOR: dict[type[Request], type[Response]] = {
    SubmitReq: RSErrorRsp,
    CancelReq: RSErrorRsp,
    ReplaceReq: RSErrorRsp,
    ExtendedCancelReq: RSErrorRsp,
    ExtendedReplaceReq: RSErrorRsp,
    DeliverReq: VASPErrorRsp,
    DeliveryReportReq: VASPErrorRsp,
    ReadReplyReq: VASPErrorRsp,
}

R = TypeVar("R", bound=Message)


def reply_to(request: Message, response: R) -> R:
    """``response`` carrying the request's TransactionID, namespace and MM7Version (echo rule)."""
    return dataclasses.replace(
        response,
        transaction_id=request.transaction_id,
        namespace=request.namespace,
        mm7_version=request.mm7_version,
    )
