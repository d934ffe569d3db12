"""MM7 request status codes (TS 23.140) and the MMStatus values of delivery and read reports.

Unknown status codes are kept by callers as plain ints and classified by their first digit;
unknown or vendor MMStatus values map to the nearest spec value and keep the raw string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import cast

from mm7.core.leniency import Leniency

__all__ = [
    "MMStatus",
    "ReadStatus",
    "ReportedStatus",
    "StatusClass",
    "StatusCode",
    "is_success",
    "known_code",
    "parse_mm_status",
    "parse_read_status",
    "status_class",
    "status_text",
]


class StatusClass(StrEnum):
    """The class of a status code, given by its first digit."""

    SUCCESS = "success"
    CLIENT = "client"
    SERVER = "server"
    SERVICE = "service"
    UNKNOWN = "unknown"


class StatusCode(IntEnum):
    """Every status code TS 23.140 defines for MM7 responses."""

    SUCCESS = 1000
    PARTIAL_SUCCESS = 1100
    CLIENT_ERROR = 2000
    OPERATION_RESTRICTED = 2001
    ADDRESS_ERROR = 2002
    ADDRESS_NOT_FOUND = 2003
    MULTIMEDIA_CONTENT_REFUSED = 2004
    MESSAGE_ID_NOT_FOUND = 2005
    LINKED_ID_NOT_FOUND = 2006
    MESSAGE_FORMAT_CORRUPT = 2007
    APPLICATION_ID_NOT_FOUND = 2008
    REPLY_APPLICATION_ID_NOT_FOUND = 2009
    SERVER_ERROR = 3000
    NOT_POSSIBLE = 3001
    MESSAGE_REJECTED = 3002
    MULTIPLE_ADDRESSES_NOT_SUPPORTED = 3003
    APPLICATION_ADDRESSING_NOT_SUPPORTED = 3004
    GENERAL_SERVICE_ERROR = 4000
    IMPROPER_IDENTIFICATION = 4001
    UNSUPPORTED_VERSION = 4002
    UNSUPPORTED_OPERATION = 4003
    VALIDATION_ERROR = 4004
    SERVICE_ERROR = 4005
    SERVICE_UNAVAILABLE = 4006
    SERVICE_DENIED = 4007
    APPLICATION_DENIED = 4008

    @property
    def text(self) -> str:
        """The spec's StatusText for this code."""
        return _TEXTS[self]

    @property
    def status_class(self) -> StatusClass:
        """success, client, server or service."""
        return status_class(self.value)


_TEXTS: dict[int, str] = {
    StatusCode.SUCCESS: "Success",
    StatusCode.PARTIAL_SUCCESS: "Partial success",
    StatusCode.CLIENT_ERROR: "Client error",
    StatusCode.OPERATION_RESTRICTED: "Operation restricted",
    StatusCode.ADDRESS_ERROR: "Address Error",
    StatusCode.ADDRESS_NOT_FOUND: "Address Not Found",
    StatusCode.MULTIMEDIA_CONTENT_REFUSED: "Multimedia content refused",
    StatusCode.MESSAGE_ID_NOT_FOUND: "Message ID Not found",
    StatusCode.LINKED_ID_NOT_FOUND: "LinkedID not found",
    StatusCode.MESSAGE_FORMAT_CORRUPT: "Message format corrupt",
    StatusCode.APPLICATION_ID_NOT_FOUND: "Application ID not found",
    StatusCode.REPLY_APPLICATION_ID_NOT_FOUND: "Reply Application ID not found",
    StatusCode.SERVER_ERROR: "Server Error",
    StatusCode.NOT_POSSIBLE: "Not Possible",
    StatusCode.MESSAGE_REJECTED: "Message rejected",
    StatusCode.MULTIPLE_ADDRESSES_NOT_SUPPORTED: "Multiple addresses not supported",
    StatusCode.APPLICATION_ADDRESSING_NOT_SUPPORTED: "Application Addressing not supported",
    StatusCode.GENERAL_SERVICE_ERROR: "General service error",
    StatusCode.IMPROPER_IDENTIFICATION: "Improper identification",
    StatusCode.UNSUPPORTED_VERSION: "Unsupported version",
    StatusCode.UNSUPPORTED_OPERATION: "Unsupported operation",
    StatusCode.VALIDATION_ERROR: "Validation error",
    StatusCode.SERVICE_ERROR: "Service error",
    StatusCode.SERVICE_UNAVAILABLE: "Service unavailable",
    StatusCode.SERVICE_DENIED: "Service denied",
    StatusCode.APPLICATION_DENIED: "Application denied",
}

_CLASSES = {
    1: StatusClass.SUCCESS,
    2: StatusClass.CLIENT,
    3: StatusClass.SERVER,
    4: StatusClass.SERVICE,
}


def status_class(code: int) -> StatusClass:
    """The class of any four-digit code by its first digit (vendor codes too); else UNKNOWN.

    Only 1000-4999 are classified: 100 or 10000 share a first digit but are not MM7 codes.
    """
    if 1000 <= code <= 4999:
        return _CLASSES[code // 1000]
    return StatusClass.UNKNOWN


def status_text(code: int) -> str | None:
    """The spec's StatusText for a code, or None for a code the spec does not define."""
    return _TEXTS.get(code)


def known_code(code: int) -> StatusCode | None:
    """The StatusCode member for a spec code, or None; never raises."""
    try:
        return StatusCode(code)
    except ValueError:
        return None


def is_success(code: int) -> bool:
    """Whether the code is in the success class (1xxx)."""
    return status_class(code) is StatusClass.SUCCESS


# --------------------------------------------------------------------------------------------------
# MMStatus
# --------------------------------------------------------------------------------------------------


class MMStatus(StrEnum):
    """MMStatus of a DeliveryReportReq: the union of the values over all MM7 schema versions.

    REL-5 has the first five; REL-6-MM7-1-1 adds Unrecognised and Deferred, REL-6-MM7-1-3 adds
    DeliveryConditionNotMet.
    """

    EXPIRED = "Expired"
    RETRIEVED = "Retrieved"
    REJECTED = "Rejected"
    INDETERMINATE = "Indeterminate"
    FORWARDED = "Forwarded"
    UNRECOGNISED = "Unrecognised"
    DEFERRED = "Deferred"
    DELIVERY_CONDITION_NOT_MET = "DeliveryConditionNotMet"


class ReadStatus(StrEnum):
    """MMStatus of a ReadReplyReq."""

    READ = "Read"
    DELETED = "Deleted"
    INDETERMINATE = "Indeterminate"


_NOT_FINAL = frozenset({MMStatus.FORWARDED, MMStatus.DEFERRED})


@dataclass(frozen=True, slots=True)
class ReportedStatus:
    """An MMStatus as received: the nearest spec value plus the raw string, so nothing is lost."""

    value: MMStatus
    raw: str

    @property
    def is_final(self) -> bool:
        """False for Forwarded and Deferred, after which another report may follow."""
        return self.value not in _NOT_FINAL


# Values outside the schema enumeration, keyed by their compact form (casefolded, no spaces, "-"
# or "_"), mapped to the nearest spec value; each adds MMSTATUS_NONSTANDARD. Spec values spelled
# with separators ("Delivery Condition Not Met") are added below. Aggregators (Sinch, Skycore)
# report these values in delivery reports. Anything else is Indeterminate.
_NONSTANDARD_MM_STATUS: dict[str, MMStatus] = {
    # US spelling of Unrecognised (Sinch, Skycore): same meaning.
    "unrecognized": MMStatus.UNRECOGNISED,
    # Skycore prose: "delivered" to the handset is what the spec calls Retrieved.
    "delivered": MMStatus.RETRIEVED,
    # Sinch/Skycore "destination network or subscriber cannot be reached": a final non-delivery,
    # and Rejected is the spec's final failure (Indeterminate means the outcome is unknown).
    "unreachable": MMStatus.REJECTED,
    # Sinch/Skycore "request made to the MMS gateway is not supported": the message was refused.
    "notsupported": MMStatus.REJECTED,
}

_MM_STATUS_BY_FOLD = {member.value.casefold(): member for member in MMStatus}
_NONSTANDARD_MM_STATUS.update(_MM_STATUS_BY_FOLD)
_SEPARATORS = re.compile(r"[\s_-]+")
_READ_STATUS_BY_FOLD = {member.value.casefold(): member for member in ReadStatus}


def _note(leniencies: list[Leniency] | None, leniency: Leniency) -> None:
    if leniencies is not None:
        leniencies.append(leniency)


def parse_mm_status(text: str, leniencies: list[Leniency] | None = None) -> ReportedStatus:
    """Read a delivery report's MMStatus; never raises.

    Spec values are exact; other case or surrounding whitespace is ENUM_CASE; vendor values map
    through one table and unknown values become Indeterminate, both MMSTATUS_NONSTANDARD.
    """
    exact = MMStatus._value2member_map_.get(text)  # MMStatus(text) without the enum machinery
    if exact is not None:
        return ReportedStatus(cast(MMStatus, exact), text)
    folded = text.strip().casefold()
    member = _MM_STATUS_BY_FOLD.get(folded)
    if member is not None:
        _note(leniencies, Leniency.ENUM_CASE)
        return ReportedStatus(member, text)
    _note(leniencies, Leniency.MMSTATUS_NONSTANDARD)
    compact = _SEPARATORS.sub("", folded)
    return ReportedStatus(_NONSTANDARD_MM_STATUS.get(compact, MMStatus.INDETERMINATE), text)


def parse_read_status(
    text: str, leniencies: list[Leniency] | None = None
) -> tuple[ReadStatus, str]:
    """Read a read reply's MMStatus as (nearest value, raw text); never raises.

    Other case or whitespace is ENUM_CASE; anything else is Indeterminate, MMSTATUS_NONSTANDARD.
    """
    try:
        return ReadStatus(text), text
    except ValueError:
        pass
    member = _READ_STATUS_BY_FOLD.get(text.strip().casefold())
    if member is not None:
        _note(leniencies, Leniency.ENUM_CASE)
        return member, text
    _note(leniencies, Leniency.MMSTATUS_NONSTANDARD)
    return ReadStatus.INDETERMINATE, text
