"""Named leniencies: every deviation from the standard the parser tolerates has a name here.

Parsers report the names they applied (``Decoded.leniencies``) and log them at debug, so an interop
engineer can see exactly how a peer deviates.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Leniency"]


class Leniency(StrEnum):
    """One tolerated deviation from TS 23.140 / SOAP 1.1 / SwA, as seen in real traffic."""

    # --- MIME / SwA packaging ---
    START_MISSING = "start-missing"  # no start parameter: first text/xml part, else first part
    START_UNBRACKETED = "start-unbracketed"  # start="x" for Content-ID <x>
    START_UNRESOLVED = "start-unresolved"  # start names no part: fell back
    TYPE_MISSING = "type-missing"  # multipart/related without type=
    TYPE_WRONG = "type-wrong"  # type= is not text/xml
    PARAM_CASE = "param-case"  # Type=, Start=, Charset=, Boundary=
    BOUNDARY_UNQUOTED = "boundary-unquoted"  # boundary with characters that need quoting, unquoted
    BOUNDARY_FROM_BODY = "boundary-from-body"  # no/unknown boundary: taken from the first --line
    DELIMITER_TRAILING_SPACE = "delimiter-trailing-space"  # spaces after --boundary
    HEADER_FOLDED = "header-folded"  # folded (continued) header lines
    LF_LINE_ENDINGS = "lf-line-endings"  # LF instead of CRLF
    NO_BLANK_LINE = "no-blank-line"  # part headers run straight into the body
    CONTENT_ID_UNBRACKETED = "content-id-unbracketed"  # Content-ID: x instead of <x>
    CONTENT_ID_SPELLING = "content-id-spelling"  # Content-Id / CONTENT-ID
    CTE_UNKNOWN = "cte-unknown"  # a Content-Transfer-Encoding we do not know: passed through
    CTE_CASE = "cte-case"  # BASE64, Binary, ...
    MULTIPART_BUT_BARE_XML = "multipart-but-bare-xml"  # Content-Type multipart, body is bare XML
    BARE_XML_NO_MULTIPART = "bare-xml"  # bare XML without an XML Content-Type
    MISSING_CLOSE_DELIMITER = "missing-close-delimiter"  # body ends without --boundary--
    PREAMBLE = "preamble"  # text before the first delimiter
    HEADERLESS_BODY = "headerless-body"  # saved multipart body without Content-Type
    # --- Content reference ---
    HREF_NO_CID = "href-no-cid"  # href="x"
    HREF_CID_SPACE = "href-cid-space"  # href="cid: x"
    HREF_FULL_CONTENT_ID = "href-full-content-id"  # href="<x>" or "cid:<x>"
    HREF_QUALIFIED = "href-qualified"  # mm7:href
    HREF_CONTENT_LOCATION = "href-content-location"  # href matched a Content-Location
    HREF_UNRESOLVED = "href-unresolved"  # href matched nothing: first non-SOAP part taken
    CONTENT_ELEMENT_MISSING = "content-element-missing"  # no <Content>: first non-XML part taken
    CONTENT_FLATTENED = "content-flattened"  # media as several top-level parts, not one entity
    # --- XML / SOAP ---
    CHARSET_FALLBACK = "charset-fallback"  # XML declaration/BOM failed; MIME charset used
    ENVELOPE_NS_NO_SLASH = "envelope-ns-no-slash"  # SOAP namespace without its trailing slash
    MM7_NO_NAMESPACE = "mm7-no-namespace"  # MM7 children in no namespace
    HEADER_NS_MISMATCH = "header-ns-mismatch"  # TransactionID namespace differs from the body's
    TRANSACTION_ID_MISSING = "transaction-id-missing"  # no TransactionID header
    TRANSACTION_ID_WHITESPACE = "transaction-id-whitespace"  # whitespace around the TransactionID
    ELEMENT_ORDER = "element-order"  # body children out of schema sequence
    UNKNOWN_ELEMENT = "unknown-element"  # vendor extension elements ignored
    VERSION_NAMESPACE_MISMATCH = "version-namespace-mismatch"  # MM7Version not allowed by namespace
    BOOLEAN_SPELLING = "boolean-spelling"  # True/TRUE/FALSE/...
    DATE_NO_ZONE = "date-no-zone"  # dateTime without zone: taken as UTC
    DATE_RFC2822 = "date-rfc2822"  # RFC 2822 date in a dateTime element
    ENUM_CASE = "enum-case"  # normal instead of Normal
    ENUM_UNKNOWN = "enum-unknown"  # a value outside the enumeration: kept raw
    MMSTATUS_NONSTANDARD = "mmstatus-nonstandard"  # Delivered, Unreachable, Unrecognized, ...
    SENDER_BARE_TEXT = "sender-bare-text"  # <Sender>digits</Sender> with no address child
    ADDRESS_TYPE_PLMN = "address-type-plmn"  # +123/TYPE=PLMN suffix stripped
    SUBJECT_RFC2047 = "subject-rfc2047"  # =?utf-8?B?...?= encoded-words decoded
    FAULT_QUALIFIED_CHILDREN = "fault-qualified-children"  # env:faultcode / env:detail
    FAULT_BARE_STATUS = "fault-bare-status"  # Status directly in detail
    FAULT_STATUS_IN_FAULTSTRING = "fault-status-in-faultstring"  # status number in faultstring
    FAULT_NO_STATUS = "fault-no-status"  # Fault without any MM7 status
    STATUS_MISSING = "status-missing"  # response without Status
    # --- versions (added by the codec) ---
    ELEMENT_OTHER_VERSION = "element-other-version"  # an element another schema version defines
    NAMESPACE_UNKNOWN = "namespace-unknown"  # an MM7 namespace no published schema has
    # --- MIME / SwA packaging (added with mm7.core.mime) ---
    MULTIPART_NOT_RELATED = "multipart-not-related"  # SwA body as multipart/mixed etc.
    BASE64_MALFORMED = "base64-malformed"  # base64 with missing padding or data after padding
    # --- SOAP body / faults (added with the leniency fixtures) ---
    ERROR_ELEMENT_NAME = "error-element-name"  # MM7VASPErrorRsp/MM7RSErrorRsp (CMCC API)
    SENDER_ADDRESS_TYPED = "sender-address-typed"  # typed SenderAddress where xs:string is due
    ADDRESS_ELEMENT_NAME = "address-element-name"  # RFC822Address for RFC2822Address (instantcom)
    ATTRIBUTE_QUALIFIED = "attribute-qualified"  # mm7:displayOnly, mm7:sequence, ... (instantcom)
    XML_LEADING_WHITESPACE = "xml-leading-whitespace"  # blank lines before <?xml ...?>
    BLANK_200 = "blank-200"  # a blank HTTP 2xx taken as success (the dialect allows it)
    # --- what the gateway can act without (added with issue 12) ---
    REQUIRED_ELEMENT_MISSING = "required-element-missing"  # schema-required, not needed: absent
    REPORT_ADDRESSES_SWAPPED = "report-addresses-swapped"  # report: handset in Sender (Mbuni)
    NUMBER_NOT_NMTOKEN = "number-not-nmtoken"  # '+' in a Number the version types NMTOKEN
    ID_NOT_NMTOKEN = "id-not-nmtoken"  # '@' etc. in an ID the version types NMTOKEN
    RESPONSE_VERSION_MISMATCH = "response-version-mismatch"  # answer in another ns/MM7Version
