"""The MM7 protocol core: typed messages <-> HTTP body bytes, sans I/O (no sockets, clock or disk).

    from mm7.core import SubmitReq, decode, encode, get_dialect
    encoded = encode(SubmitReq(...), get_dialect("mbuni"))   # .content_type, .body
    decoded = decode(body, content_type)                     # .message, .leniencies, .parts

The package, one module a job:

- ``codec``: ``encode`` and ``decode``, the two entry points; ``model``: the messages
  (``SubmitReq`` ... ``Fault``) and the values they carry;
- ``read``: an Envelope into a message, strict or with a named leniency; ``emit``: a message
  into an Envelope, in schema order, as a ``Dialect`` writes it;
- ``mime``: Content-Type, ``Part`` and SOAP-with-Attachments bodies, parsed and built;
- ``spec``: each operation's elements per schema version, as data; ``versions``: the schema
  versions and their namespaces; ``xsdgen``: the XSDs generated from ``spec``; ``validate``:
  an envelope checked against them;
- ``dialect``: every emission choice MMSCs disagree on, and the named dialects;
- ``values``: xs:boolean, xs:dateTime, xs:duration, charsets and RFC 2047 words;
  ``status``: status codes and the MMStatus / ReadStatus of reports;
- ``errors``: ``MM7Error`` and the parse and emit errors, each with the status to answer;
  ``leniency``: the named deviations the reader tolerates; ``limits``: the bounds it enforces;
- ``xmlsafe``: the only XML parser (no DTD, no entities, bounded); ``capture``: saved traffic
  (raw HTTP, a MIME entity, bare XML) turned into (Content-Type, body); ``sniff``: media types
  from the bytes; ``jsonview``: JSON views of messages and parts.

The modules import each other by module path, never through this face.
"""

from mm7.core.codec import Decoded, Encoded, decode, encode
from mm7.core.dialect import DIALECTS, STRICT_3GPP, Dialect, DialectError, get_dialect
from mm7.core.errors import (
    EmitError,
    LimitExceededError,
    MM7Error,
    ParseError,
    UnsafeXMLError,
    ValidationError,
)
from mm7.core.leniency import Leniency
from mm7.core.limits import DEFAULT_LIMITS, Limits
from mm7.core.mime import (
    ContentType,
    Part,
    SwA,
    build_multipart,
    decode_body,
    encode_body,
    find_content,
    make_multipart,
    make_part,
    parse_content_type,
    parse_entity,
    parse_swa,
    serialize_part,
)
from mm7.core.model import (
    SUCCESS,
    Address,
    AddressCoding,
    AddressKind,
    CancelReq,
    CancelRsp,
    ChargedParty,
    ContentClass,
    DeliverReq,
    DeliverRsp,
    DeliveryReportReq,
    DeliveryReportRsp,
    ExtendedCancelReq,
    ExtendedCancelRsp,
    ExtendedReplaceReq,
    ExtendedReplaceRsp,
    Fault,
    Message,
    MessageClass,
    MMStatusExtension,
    PreviouslySentBy,
    PreviouslySentDate,
    Priority,
    ReadReplyReq,
    ReadReplyRsp,
    Recipients,
    ReplaceReq,
    ReplaceRsp,
    ReplyCharging,
    Request,
    Response,
    RSErrorRsp,
    Status,
    SubmitReq,
    SubmitRsp,
    UACapabilities,
    VASPErrorRsp,
    VASPRequest,
    reply_to,
)
from mm7.core.status import MMStatus, ReadStatus, StatusCode
from mm7.core.values import Duration
from mm7.core.versions import LATEST, VERSIONS, Version, get_version, version_for_namespace

__all__ = [
    "DEFAULT_LIMITS",
    "DIALECTS",
    "LATEST",
    "STRICT_3GPP",
    "SUCCESS",
    "VERSIONS",
    "Address",
    "AddressCoding",
    "AddressKind",
    "CancelReq",
    "CancelRsp",
    "ChargedParty",
    "ContentClass",
    "ContentType",
    "Decoded",
    "DeliverReq",
    "DeliverRsp",
    "DeliveryReportReq",
    "DeliveryReportRsp",
    "Dialect",
    "DialectError",
    "Duration",
    "EmitError",
    "Encoded",
    "ExtendedCancelReq",
    "ExtendedCancelRsp",
    "ExtendedReplaceReq",
    "ExtendedReplaceRsp",
    "Fault",
    "Leniency",
    "LimitExceededError",
    "Limits",
    "MM7Error",
    "MMStatus",
    "MMStatusExtension",
    "Message",
    "MessageClass",
    "ParseError",
    "Part",
    "PreviouslySentBy",
    "PreviouslySentDate",
    "Priority",
    "RSErrorRsp",
    "ReadReplyReq",
    "ReadReplyRsp",
    "ReadStatus",
    "Recipients",
    "ReplaceReq",
    "ReplaceRsp",
    "ReplyCharging",
    "Request",
    "Response",
    "Status",
    "StatusCode",
    "SubmitReq",
    "SubmitRsp",
    "SwA",
    "UACapabilities",
    "UnsafeXMLError",
    "VASPErrorRsp",
    "VASPRequest",
    "ValidationError",
    "Version",
    "build_multipart",
    "decode",
    "decode_body",
    "encode",
    "encode_body",
    "find_content",
    "get_dialect",
    "get_version",
    "make_multipart",
    "make_part",
    "parse_content_type",
    "parse_entity",
    "parse_swa",
    "reply_to",
    "serialize_part",
    "version_for_namespace",
]
