"""The MM7 body schemas as data: for each operation, its elements in xs:sequence order per version.

This table is the single source of truth for both the codec (what to emit, in which order, and
which model attribute holds it) and the XSD generator (``mm7.core.xsdgen`` writes schemas/ from
it), so the two cannot drift. Facts come from the published MM7 schemas REL-5-MM7-1-0 ..
REL-6-MM7-1-4, compared version by version.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mm7.core.versions import ALL, VERSIONS, Version, only, since, until

__all__ = [
    "ENUMS",
    "OPERATIONS",
    "OPERATION_BY_MODEL",
    "OPERATION_BY_NAME",
    "SENDER_ID_ELEMENTS",
    "Element",
    "Kind",
    "Operation",
    "enum_values",
    "operations_in",
]


class Kind(StrEnum):
    """How an element's value is written; the codec and the XSD generator switch on it."""

    VERSION = "version"  # MM7Version (versionType enumeration)
    STRING = "string"
    ID = "id"  # messageIDType / entityIDType: NMTOKEN up to REL-5-MM7-1-1, string after
    SERVICE_CODE = "service-code"  # string with any foreign attribute
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    REL_DATE = "rel-date"  # xs:dateTime or xs:duration
    ENUM = "enum"
    ADDRESS = "address"  # one of Number/ShortCode/RFC2822Address
    SENDER_ADDRESS = "sender-address"  # xs:string up to REL-5-MM7-1-1, address after
    RECIPIENTS = "recipients"  # To/Cc/Bcc lists
    SENDER_ID = "sender-id"  # SenderIdentification group: VASPID, VASID, SenderAddress
    CONTENT = "content"  # Content href/allowAdaptations -> a MIME part
    REPLY_CHARGING = "reply-charging"
    STATUS = "status"  # StatusCode, StatusText, Details
    CODE_ONLY_STATUS = "code-only-status"  # extended*Rsp: StatusCode only
    DELIVERY_CONDITION = "delivery-condition"  # DC* (REL-6-MM7-1-4)
    DELIVERY_CONDITION_TEXT = "delivery-condition-text"  # xs:string (REL-6-MM7-1-3)
    PREVIOUSLY_SENT_BY = "previously-sent-by"
    PREVIOUSLY_SENT_DATE = "previously-sent-date"
    CAPABILITIES = "capabilities"  # UACapabilities attributes
    MM_STATUS = "mm-status"  # delivery status enumeration + raw
    READ_STATUS = "read-status"  # read status enumeration + raw


@dataclass(frozen=True, slots=True)
class Element:
    """One element of a body sequence, the model attribute that holds it, and where it exists."""

    name: str
    kind: Kind
    attr: str
    required: bool = False
    versions: frozenset[str] = ALL
    enum: str | None = None  # key into ENUMS for Kind.ENUM / MM_STATUS / READ_STATUS
    default: str | None = None  # xs:element default (documented in the XSD only)


@dataclass(frozen=True, slots=True)
class Operation:
    """A body root element: its name, the model class name, and its sequence over all versions."""

    name: str
    model: str
    elements: tuple[Element, ...]
    versions: frozenset[str] = ALL

    def sequence(self, version: Version) -> tuple[Element, ...]:
        """The elements this operation has in ``version``, in xs:sequence order."""
        return _SEQUENCE_CACHE[(self.name, version.token)]

    def exists_in(self, version: Version) -> bool:
        return version.token in self.versions


# ---------------------------------------------------------------- enumerations, per version
#: value -> versions in which the schema enumerates it (order = schema order)
ENUMS: dict[str, dict[str, frozenset[str]]] = {
    "messageClass": {v: ALL for v in ("Personal", "Informational", "Advertisement", "Auto")},
    "priority": {v: ALL for v in ("Normal", "High", "Low")},
    "chargedParty": {
        "Sender": ALL,
        "Recipient": ALL,
        "Both": ALL,
        "Neither": ALL,
        "ThirdParty": since("REL-6-MM7-1-2"),
    },
    "mmDeliveryStatus": {
        "Expired": ALL,
        "Retrieved": ALL,
        "Rejected": ALL,
        "Indeterminate": ALL,
        "Forwarded": ALL,
        "Unrecognised": since("REL-6-MM7-1-1"),
        "Deferred": since("REL-6-MM7-1-1"),
        "DeliveryConditionNotMet": since("REL-6-MM7-1-3"),
    },
    "mmReadStatus": {v: ALL for v in ("Indeterminate", "Read", "Deleted")},
    "mmStatusExtension": {
        v: since("REL-6-MM7-1-0") for v in ("RejectionByMMSRecipient", "RejectionByOtherRS")
    },
    "contentClass": {
        v: since("REL-6-MM7-1-4")
        for v in (
            "text",
            "image-basic",
            "image-rich",
            "video-basic",
            "video-rich",
            "megapixel",
            "content-basic",
            "content-rich",
        )
    },
    "addressCoding": {v: since("REL-6-MM7-1-0") for v in ("encrypted", "obfuscated")},
}


def enum_values(enum: str, version: Version) -> tuple[str, ...]:
    """The values enumeration ``enum`` allows in ``version``, in schema order."""
    return _ENUM_CACHE[(enum, version.token)]


_ENUM_CACHE: dict[tuple[str, str], tuple[str, ...]] = {
    (name, v.token): tuple(value for value, vs in values.items() if v.token in vs)
    for name, values in ENUMS.items()
    for v in VERSIONS
}


# ---------------------------------------------------------------- building blocks
E = Element
R6_4 = since("REL-6-MM7-1-4")
APPLIC = (
    E("ApplicID", Kind.STRING, "applic_id", versions=R6_4),
    E("ReplyApplicID", Kind.STRING, "reply_applic_id", versions=R6_4),
    E("AuxApplicInfo", Kind.STRING, "aux_applic_info", versions=R6_4),
)
VASP_REQUEST_HEAD = (
    E("MM7Version", Kind.VERSION, "mm7_version", required=True),
    E("SenderIdentification", Kind.SENDER_ID, "", required=True),
)
RS_REQUEST_HEAD = (
    E("MM7Version", Kind.VERSION, "mm7_version", required=True),
    E("MMSRelayServerID", Kind.ID, "mms_relay_server_id"),
)
RESPONSE_HEAD = (
    E("MM7Version", Kind.VERSION, "mm7_version", required=True),
    E("Status", Kind.STATUS, "status", required=True),
)
DISTRIBUTION = (
    E(
        "DistributionProtection",
        Kind.BOOLEAN,
        "distribution_indicator",
        versions=only("REL-5-MM7-1-0"),
    ),
    E(
        "DistributionIndicator",
        Kind.BOOLEAN,
        "distribution_indicator",
        versions=since("REL-5-MM7-1-1"),
    ),
)
CONTENT = E("Content", Kind.CONTENT, "content")

# SenderIdentification's children (codec and XSD both read these; attrs live on the message)
SENDER_ID_ELEMENTS = (
    E("VASPID", Kind.ID, "vasp_id"),
    E("VASID", Kind.ID, "vas_id"),
    E("SenderAddress", Kind.SENDER_ADDRESS, "sender_address"),
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "SubmitReq",
        "SubmitReq",
        (
            *VASP_REQUEST_HEAD,
            E("Recipients", Kind.RECIPIENTS, "recipients", required=True),
            E("ServiceCode", Kind.SERVICE_CODE, "service_code"),
            E("LinkedID", Kind.ID, "linked_id"),
            E(
                "MessageClass",
                Kind.ENUM,
                "message_class",
                enum="messageClass",
                default="Informational",
            ),
            E("TimeStamp", Kind.DATETIME, "timestamp"),
            E("ReplyCharging", Kind.REPLY_CHARGING, "reply_charging"),
            E("EarliestDeliveryTime", Kind.REL_DATE, "earliest_delivery_time"),
            E("ExpiryDate", Kind.REL_DATE, "expiry_date"),
            E("DeliveryReport", Kind.BOOLEAN, "delivery_report"),
            E("ReadReply", Kind.BOOLEAN, "read_reply"),
            E("Priority", Kind.ENUM, "priority", enum="priority"),
            E("Subject", Kind.STRING, "subject"),
            E("ChargedParty", Kind.ENUM, "charged_party", enum="chargedParty"),
            E("ChargedPartyID", Kind.STRING, "charged_party_id", versions=since("REL-6-MM7-1-0")),
            *DISTRIBUTION,
            E(
                "DeliveryCondition",
                Kind.DELIVERY_CONDITION_TEXT,
                "delivery_condition",
                versions=only("REL-6-MM7-1-3"),
            ),
            E("DeliveryCondition", Kind.DELIVERY_CONDITION, "delivery_condition", versions=R6_4),
            *APPLIC,
            E("ContentClass", Kind.ENUM, "content_class", enum="contentClass", versions=R6_4),
            E("DRMContent", Kind.BOOLEAN, "drm_content", versions=R6_4),
            CONTENT,
        ),
    ),
    Operation(
        "SubmitRsp",
        "SubmitRsp",
        (
            *RESPONSE_HEAD,
            # REL-5-MM7-1-0's schema has no MessageID here; TS 23.140 makes it mandatory and
            # every MMSC sends it, so we keep it (optional) there too. See schemas/README.md.
            E("MessageID", Kind.ID, "message_id", required=True, versions=since("REL-5-MM7-1-1")),
            E("MessageID", Kind.ID, "message_id", versions=only("REL-5-MM7-1-0")),
        ),
    ),
    Operation(
        "DeliverReq",
        "DeliverReq",
        (
            *RS_REQUEST_HEAD,
            E("VASPID", Kind.ID, "vasp_id", versions=R6_4),
            E("VASID", Kind.ID, "vas_id", versions=R6_4),
            E("LinkedID", Kind.ID, "linked_id"),
            E("Sender", Kind.ADDRESS, "sender", required=True),
            E("Recipients", Kind.RECIPIENTS, "recipients"),
            E(
                "Previouslysentby",
                Kind.PREVIOUSLY_SENT_BY,
                "previously_sent_by",
                versions=since("REL-6-MM7-1-0"),
            ),
            E(
                "Previouslysentdateandtime",
                Kind.PREVIOUSLY_SENT_DATE,
                "previously_sent_date",
                versions=since("REL-6-MM7-1-0"),
            ),
            E("SenderSPI", Kind.STRING, "sender_spi", versions=since("REL-6-MM7-1-0")),
            E("RecipientSPI", Kind.STRING, "recipient_spi", versions=since("REL-6-MM7-1-0")),
            E("TimeStamp", Kind.DATETIME, "timestamp"),
            E(
                "ReplyChargingID",
                Kind.ID,
                "reply_charging_id",
                required=True,
                versions=until("REL-5-MM7-1-1"),
            ),
            E("ReplyChargingID", Kind.ID, "reply_charging_id", versions=since("REL-5-MM7-1-2")),
            E("Priority", Kind.ENUM, "priority", enum="priority"),
            E("Subject", Kind.STRING, "subject"),
            *APPLIC,
            E("UACapabilities", Kind.CAPABILITIES, "ua_capabilities", versions=R6_4),
            CONTENT,
        ),
    ),
    Operation(
        "DeliverRsp",
        "DeliverRsp",
        (
            *RESPONSE_HEAD,
            E("ServiceCode", Kind.SERVICE_CODE, "service_code", versions=since("REL-5-MM7-1-1")),
        ),
    ),
    Operation(
        "CancelReq",
        "CancelReq",
        (*VASP_REQUEST_HEAD, E("MessageID", Kind.ID, "message_id", required=True), *APPLIC),
    ),
    Operation("CancelRsp", "CancelRsp", RESPONSE_HEAD),
    Operation(
        "ReplaceReq",
        "ReplaceReq",
        (
            *VASP_REQUEST_HEAD,
            E("MessageID", Kind.ID, "message_id", required=True),
            E("ServiceCode", Kind.SERVICE_CODE, "service_code"),
            E("TimeStamp", Kind.DATETIME, "timestamp"),
            E("ReadReply", Kind.BOOLEAN, "read_reply"),
            E("EarliestDeliveryTime", Kind.REL_DATE, "earliest_delivery_time"),
            *DISTRIBUTION,
            E("ContentClass", Kind.ENUM, "content_class", enum="contentClass", versions=R6_4),
            E("DRMContent", Kind.BOOLEAN, "drm_content", versions=R6_4),
            *APPLIC,
            CONTENT,
        ),
    ),
    Operation("ReplaceRsp", "ReplaceRsp", RESPONSE_HEAD),
    Operation(
        "extendedCancelReq",
        "ExtendedCancelReq",
        (*VASP_REQUEST_HEAD, E("CancelID", Kind.ID, "cancel_id", required=True)),
        versions=R6_4,
    ),
    Operation(
        "extendedCancelRsp",
        "ExtendedCancelRsp",
        (
            E("MM7Version", Kind.VERSION, "mm7_version", required=True),
            E("Status", Kind.CODE_ONLY_STATUS, "status", required=True),
        ),
        versions=R6_4,
    ),
    Operation(
        "extendedReplaceReq",
        "ExtendedReplaceReq",
        (
            E("MM7Version", Kind.VERSION, "mm7_version", required=True),
            E("VASPID", Kind.ID, "vasp_id"),
            E("VASID", Kind.ID, "vas_id"),
            E("ServiceCode", Kind.SERVICE_CODE, "service_code"),
            E("ReplaceID", Kind.ID, "replace_id"),
            E("TimeStamp", Kind.DATETIME, "timestamp"),
            E("EarliestDeliveryTime", Kind.REL_DATE, "earliest_delivery_time"),
            E("ExpiryDate", Kind.REL_DATE, "expiry_date"),
            E("ReadReply", Kind.BOOLEAN, "read_reply"),
            E("DeliveryReport", Kind.BOOLEAN, "delivery_report"),
            CONTENT,
        ),
        versions=R6_4,
    ),
    Operation(
        "extendedReplaceRsp",
        "ExtendedReplaceRsp",
        (
            E("MM7Version", Kind.VERSION, "mm7_version", required=True),
            E("MessageID", Kind.ID, "message_id", required=True),
            E("Status", Kind.CODE_ONLY_STATUS, "status", required=True),
        ),
        versions=R6_4,
    ),
    Operation(
        "DeliveryReportReq",
        "DeliveryReportReq",
        (
            *RS_REQUEST_HEAD,
            E("MessageID", Kind.ID, "message_id", required=True),
            E("Recipient", Kind.ADDRESS, "recipient", required=True),
            E("Sender", Kind.ADDRESS, "sender", required=True),
            E(
                "Date",
                Kind.DATETIME,
                "date",
                required=True,
                versions=ALL - only("REL-5-MM7-1-4", "REL-6-MM7-1-1"),
            ),
            E(
                "TimeStamp",
                Kind.DATETIME,
                "date",
                required=True,
                versions=only("REL-5-MM7-1-4", "REL-6-MM7-1-1"),
            ),
            E("MMStatus", Kind.MM_STATUS, "mm_status", required=True, enum="mmDeliveryStatus"),
            E(
                "MMStatusExtension",
                Kind.ENUM,
                "mm_status_extension",
                enum="mmStatusExtension",
                versions=since("REL-6-MM7-1-0"),
            ),
            E("StatusText", Kind.STRING, "status_text"),
            *APPLIC,
            E("UACapabilities", Kind.CAPABILITIES, "ua_capabilities", versions=R6_4),
        ),
    ),
    Operation("DeliveryReportRsp", "DeliveryReportRsp", RESPONSE_HEAD),
    Operation(
        "ReadReplyReq",
        "ReadReplyReq",
        (
            *RS_REQUEST_HEAD,
            E("MessageID", Kind.ID, "message_id", required=True),
            E("Recipient", Kind.ADDRESS, "recipient", required=True),
            E("Sender", Kind.ADDRESS, "sender", required=True),
            E("TimeStamp", Kind.DATETIME, "timestamp", required=True),
            E("MMStatus", Kind.READ_STATUS, "mm_status", required=True, enum="mmReadStatus"),
            E("StatusText", Kind.STRING, "status_text"),
            *APPLIC,
        ),
    ),
    Operation("ReadReplyRsp", "ReadReplyRsp", RESPONSE_HEAD),
    Operation("RSErrorRsp", "RSErrorRsp", RESPONSE_HEAD),
    Operation("VASPErrorRsp", "VASPErrorRsp", RESPONSE_HEAD),
)

OPERATION_BY_NAME: dict[str, Operation] = {op.name: op for op in OPERATIONS}
OPERATION_BY_MODEL: dict[str, Operation] = {op.model: op for op in OPERATIONS}

_SEQUENCE_CACHE: dict[tuple[str, str], tuple[Element, ...]] = {
    (op.name, v.token): tuple(e for e in op.elements if v.token in e.versions)
    for op in OPERATIONS
    for v in VERSIONS
}


def operations_in(version: Version) -> tuple[Operation, ...]:
    """The body root elements ``version`` defines, in table order."""
    return tuple(op for op in OPERATIONS if op.exists_in(version))
