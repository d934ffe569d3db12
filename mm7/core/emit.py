"""Writing the SOAP envelope of an MM7 message, element by element, in schema sequence order.

The XML is written as text (escaped here, once) rather than built as an lxml tree: the envelope is
small and this is the hot path. Every choice a peer might disagree with comes from the Dialect;
strict dialects refuse what the version's schema forbids with an EmitError that says what and why.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from functools import lru_cache
from typing import Any

from lxml import etree

from mm7.core.dialect import Dialect
from mm7.core.errors import EmitError
from mm7.core.model import (
    Address,
    AddressKind,
    Fault,
    Message,
    PreviouslySentBy,
    PreviouslySentDate,
    Recipients,
    ReplyCharging,
    Request,
    Status,
    UACapabilities,
)
from mm7.core.spec import (
    OPERATION_BY_MODEL,
    OPERATION_BY_NAME,
    SENDER_ID_ELEMENTS,
    Element,
    Kind,
    Operation,
    enum_values,
)
from mm7.core.values import Duration, format_bool, format_datetime, format_relative_or_absolute
from mm7.core.versions import SOAP_ENV_NS, Version, get_version

__all__ = [
    "is_nmtoken",
    "CONTENT_ID",
    "escape_attr",
    "escape_text",
    "fault_code_for",
    "write_body",
    "write_envelope",
    "write_fault",
]

# Characters XML 1.0 cannot carry at all: C0 controls but TAB/LF/CR, U+FFFE/FFFF, and lone
# surrogates (a Python str can hold them, UTF-8 cannot encode them).
_INVALID_XML_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# What escape_text has to look at: the invalid characters above and the ones it escapes. Most
# values hold none, and one search says so.
_TEXT_WORK = re.compile(r"[\x00-\x08\x0b-\x1f&<>\ud800-\udfff\ufffe\uffff]")
# ASCII xs:NMTOKEN / xs:NCName; other values go to libxml2 (see _is_xsd), whose name classes are
# XML 1.0 4th edition's (narrower than the 5th's: no U+F900 compatibility ideographs, no U+3400
# CJK extension A), and Python's \w is wider still (it takes U+00B2).
_ASCII_NMTOKEN = re.compile(r"[A-Za-z0-9._:\-]+")
_ASCII_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._\-]*")
_XML_SPACE = re.compile("[ \t\r\n]")
_XSD_NAMES = (
    '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="v"><xs:complexType>'
    '<xs:attribute name="NMTOKEN" type="xs:NMTOKEN"/><xs:attribute name="NCName" type="xs:NCName"/>'
    '<xs:attribute name="anyURI" type="xs:anyURI"/></xs:complexType></xs:element></xs:schema>'
)


_NAMES_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _names_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.fromstring(_XSD_NAMES))


@lru_cache(maxsize=4096)
def _is_xsd(type_name: str, value: str) -> bool:
    """Whether ``value`` is an xs:NMTOKEN / xs:NCName / xs:anyURI as libxml2 (and so our schemas)
    judge it."""
    if type_name != "anyURI":
        fast = _ASCII_NMTOKEN if type_name == "NMTOKEN" else _ASCII_NCNAME
        if fast.fullmatch(value):
            return True
        if value.isascii() or _XML_SPACE.search(value):
            return False
    if _INVALID_XML_CHARS.search(value):
        return False
    with _NAMES_LOCK:  # one compiled validator, shared: validate it one thread at a time
        return bool(_names_schema().validate(etree.Element("v", {type_name: value})))


def is_nmtoken(value: str) -> bool:
    """Whether ``value`` is an xs:NMTOKEN as our schemas judge it (the reader names a value
    that is not one, where the version types it NMTOKEN)."""
    return _is_xsd("NMTOKEN", value)


def escape_text(value: str, where: str) -> str:
    """Escape character data; refuse characters XML 1.0 cannot carry at all."""
    if _TEXT_WORK.search(value) is None:
        return value
    if _INVALID_XML_CHARS.search(value):
        raise EmitError(f"{where}: contains a control character XML 1.0 cannot carry")
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    if "\r" in value:
        value = value.replace("\r", "&#13;")
    return value


def escape_attr(value: str, where: str) -> str:
    """Escape an attribute value; TAB and LF as references, which attribute normalisation keeps."""
    return (
        escape_text(value, where)
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\t", "&#9;")
    )


class _Writer:
    """Writes one message's body for one (version, dialect); collects text pieces."""

    __slots__ = ("dialect", "version", "p", "out", "op", "ids", "nmtoken")

    def __init__(self, dialect: Dialect, version: Version, op: Operation) -> None:
        self.dialect = dialect
        self.version = version
        self.op = op
        self.p = f"{dialect.mm7_prefix}:" if dialect.mm7_prefix else ""
        self.out: list[str] = []
        self.ids: set[str] = set()  # address id attributes (xs:ID: unique per document)
        #: identifiers and numbers are xs:NMTOKEN in this version (asked per element)
        self.nmtoken = version.nmtoken_identifiers

    def where(self, name: str) -> str:
        """``Operation/Element`` for error messages."""
        return f"{self.op.name}/{name}"

    # -- scalar helpers
    def text(self, value: str, name: str) -> str:
        """``value`` escaped as character data of element ``name`` (named only in errors)."""
        if _TEXT_WORK.search(value) is None:
            return value
        return escape_text(value, self.where(name))

    def simple(self, name: str, text: str) -> None:
        """Append <name>text</name>, escaping ``text``."""
        self.leaf(name, self.text(text, name))

    def leaf(self, name: str, xml_text: str) -> None:
        """Append <name>xml_text</name>; ``xml_text`` is already escaped or needs no escaping."""
        p = self.p
        self.out.append(f"<{p}{name}>{xml_text}</{p}{name}>")

    def boolean(self, value: bool) -> str:
        return format_bool(value, self.dialect.boolean_spelling)

    def date(self, value: datetime, name: str) -> str:
        try:
            return format_datetime(value, self.dialect.date_style)
        except (ValueError, OverflowError) as exc:
            raise EmitError(f"{self.op.name}/{name}: cannot write {value!r}: {exc}") from None

    def reldate(self, value: datetime | Duration, name: str) -> str:
        try:
            return format_relative_or_absolute(value, self.dialect.date_style)
        except (ValueError, OverflowError) as exc:
            raise EmitError(f"{self.op.name}/{name}: cannot write {value!r}: {exc}") from None

    def positive(self, value: int, name: str) -> str:
        """An xs:positiveInteger; strict dialects refuse zero and negatives."""
        if value <= 0 and self.dialect.strict:
            raise EmitError(f"{self.op.name}/{name}: {value} is not a positive integer")
        return str(int(value))

    def ident(self, name: str, value: str) -> str:
        if self.nmtoken and not _is_xsd("NMTOKEN", value) and self.dialect.strict:
            raise EmitError(
                f"{self.op.name}/{name}: {value!r} is not an xs:NMTOKEN, which "
                f"{self.version.token} requires (no spaces, '+', '/', '@' ...)"
            )
        return value

    def address_value(self, name: str, addr: Address, *, nmtoken: bool = True) -> str:
        value = addr.value
        if addr.kind is AddressKind.RFC2822:
            return value
        if self.dialect.number_plus == "strip" and value.startswith("+"):
            value = value[1:]
        if nmtoken and self.nmtoken and not _is_xsd("NMTOKEN", value) and self.dialect.strict:
            raise EmitError(
                f"{self.op.name}/{name}: {addr.kind._value_} {value!r} is not an xs:NMTOKEN, which "
                f"{self.version.token} requires (a leading '+' is invalid there); "
                "use a dialect with number_plus='strip' or a newer schema version"
            )
        return value

    def address(self, name: str, addr: Address) -> str:
        attrs = []
        if addr.display_only is not None:
            attrs.append(f' displayOnly="{self.boolean(addr.display_only)}"')
        if addr.address_coding is not None or addr.id is not None:
            if self.version.key < (6, 0):
                if self.dialect.strict:
                    raise EmitError(
                        f"{self.op.name}/{name}: addressCoding and id exist from REL-6-MM7-1-0 on, "
                        f"not in {self.version.token}"
                    )
            else:
                if addr.address_coding is not None:
                    attrs.append(f' addressCoding="{addr.address_coding._value_}"')
                if addr.id is not None:
                    self.check_id(name, addr.id)
                    attrs.append(f' id="{escape_attr(addr.id, self.where(name + "/@id"))}"')
        tag = f"{self.p}{addr.kind._value_}"
        text = self.text(self.address_value(name, addr), name)
        return f"<{tag}{''.join(attrs)}>{text}</{tag}>"

    def check_id(self, name: str, value: str) -> None:
        """The id attribute is an xs:ID: an NCName, unique in the document (strict only)."""
        if not self.dialect.strict:
            return
        if not _is_xsd("NCName", value):
            raise EmitError(f"{self.op.name}/{name}/@id: {value!r} is not an xs:ID (an NCName)")
        if value in self.ids:
            raise EmitError(f"{self.op.name}/{name}/@id: {value!r} is used twice (xs:ID)")
        self.ids.add(value)

    def enum(self, el: Element, value: Any) -> str:
        if isinstance(value, Enum):  # _value_: .value is a descriptor, slow on the hot path
            text = str(value._value_)
        else:
            text = str(value.value if hasattr(value, "value") else value)
        assert el.enum is not None
        if self.dialect.strict and text not in enum_values(el.enum, self.version):
            allowed = ", ".join(enum_values(el.enum, self.version))
            raise EmitError(
                f"{self.op.name}/{el.name}: {text!r} is not allowed in {self.version.token} "
                f"(allowed: {allowed})"
            )
        return text

    # -- element writers by kind
    def write(self, el: Element, value: Any, msg: Message) -> None:
        """Append element ``el`` holding ``value`` (the kind's writer in _WRITERS)."""
        _WRITERS[el.kind](self, el, value, msg)

    def recipients(self, value: Recipients) -> None:
        p = self.p
        if not len(value):
            raise EmitError(f"{self.op.name}/Recipients: at least one recipient is required")
        out = [f"<{p}Recipients>"]
        for tag, addrs in (("To", value.to), ("Cc", value.cc), ("Bcc", value.bcc)):
            if addrs:
                inner = "".join(self.address(tag, a) for a in addrs)
                out.append(f"<{p}{tag}>{inner}</{p}{tag}>")
        out.append(f"</{p}Recipients>")
        self.out.append("".join(out))

    def sender_id(self, msg: Message) -> None:
        p = self.p
        self.out.append(f"<{p}SenderIdentification>")
        for el in SENDER_ID_ELEMENTS:
            value = getattr(msg, el.attr)
            if value is None:
                continue
            if el.kind is Kind.SENDER_ADDRESS:
                typed = self.dialect.typed_sender_address
                if typed is None:
                    typed = self.version.typed_sender_address
                if typed:
                    addr = self.address("SenderAddress", value)
                    self.out.append(f"<{p}SenderAddress>{addr}</{p}SenderAddress>")
                else:  # xs:string up to REL-5-MM7-1-1, so no NMTOKEN rule
                    text = self.address_value("SenderAddress", value, nmtoken=False)
                    self.simple("SenderAddress", text)
            else:
                self.simple(el.name, self.ident(el.name, value))
        self.out.append(f"</{p}SenderIdentification>")

    def status(self, value: Status, *, code_only: bool) -> None:
        p = self.p
        if value.code <= 0:
            raise EmitError(f"{self.op.name}/Status: StatusCode must be a positive integer")
        parts = [f"<{p}Status><{p}StatusCode>{value.code}</{p}StatusCode>"]
        if not code_only:
            text = self.text(value.text, "Status/StatusText")
            parts.append(f"<{p}StatusText>{text}</{p}StatusText>")
            if value.details is not None:
                details = self.text(value.details, "Status/Details")
                tag = self.dialect.details_element
                if tag:
                    details = f"<{tag}>{details}</{tag}>"
                parts.append(f"<{p}Details>{details}</{p}Details>")
        parts.append(f"</{p}Status>")
        self.out.append("".join(parts))

    def reply_charging(self, value: ReplyCharging) -> None:
        attrs = ""
        if value.size is not None:
            if value.size <= 0 and self.dialect.strict:
                raise EmitError(f"{self.op.name}/ReplyCharging: replyChargingSize must be > 0")
            attrs += f' replyChargingSize="{int(value.size)}"'
        if value.deadline is not None:
            attrs += f' replyDeadline="{self.reldate(value.deadline, "ReplyCharging")}"'
        self.out.append(f"<{self.p}ReplyCharging{attrs}/>")

    def previously_sent_by(self, value: tuple[PreviouslySentBy, ...]) -> None:
        p = self.p
        items = []
        for item in value:
            seq = ""
            if item.sequence is not None:
                seq = f' sequence="{self.positive(item.sequence, "UserAgent/@sequence")}"'
            items.append(
                f"<{p}UserAgent{seq}>{self.address('UserAgent', item.address)}</{p}UserAgent>"
            )
        self.out.append(f"<{p}Previouslysentby>{''.join(items)}</{p}Previouslysentby>")

    def previously_sent_date(self, value: tuple[PreviouslySentDate, ...]) -> None:
        p = self.p
        items = []
        for item in value:
            seq = ""
            if item.sequence is not None:
                seq = f' sequence="{self.positive(item.sequence, "DateTime/@sequence")}"'
            when = self.reldate(item.value, "Previouslysentdateandtime")
            items.append(f"<{p}DateTime{seq}>{when}</{p}DateTime>")
        self.out.append(
            f"<{p}Previouslysentdateandtime>{''.join(items)}</{p}Previouslysentdateandtime>"
        )

    def capabilities(self, value: UACapabilities) -> None:
        attrs = ""
        if value.ua_prof is not None:
            attrs += f' UAProf="{escape_attr(value.ua_prof, self.where("UACapabilities/@UAProf"))}"'
        if value.timestamp is not None:
            attrs += f' TimeStamp="{self.reldate(value.timestamp, "UACapabilities")}"'
        self.out.append(f"<{self.p}UACapabilities{attrs}/>")

    def content(self, value: Any, msg: Message) -> None:
        cid = value.content_id or CONTENT_ID
        if self.dialect.strict and not _is_xsd("anyURI", f"cid:{cid}"):
            raise EmitError(f"{self.where('Content/@href')}: 'cid:{cid}' is not an xs:anyURI")
        attrs = f' href="cid:{escape_attr(cid, self.where("Content/@href"))}"'
        allow = getattr(msg, "allow_adaptations", None)
        if allow is not None:
            attrs += f' allowAdaptations="{self.boolean(allow)}"'
        self.out.append(f"<{self.p}Content{attrs}/>")


_W = Callable[["_Writer", Element, Any, Message], None]


def _w_string(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.simple(el.name, value)


def _w_id(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.simple(el.name, w.ident(el.name, value))


def _w_boolean(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.leaf(el.name, w.boolean(value))


def _w_datetime(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.leaf(el.name, w.date(value, el.name))


def _w_rel_date(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.leaf(el.name, w.reldate(value, el.name))


def _w_enum(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.leaf(el.name, w.text(w.enum(el, value), el.name))


def _w_version(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.leaf(el.name, w.text(value, el.name))


def _w_address(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.leaf(el.name, w.address(el.name, value))


def _w_recipients(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.recipients(value)


def _w_sender_id(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.sender_id(msg)


def _w_status(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.status(value, code_only=el.kind is Kind.CODE_ONLY_STATUS)


def _w_reply_charging(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.reply_charging(value)


def _w_delivery_condition(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    p = w.p
    dcs = "".join(f"<{p}DC>{w.positive(dc, 'DeliveryCondition/DC')}</{p}DC>" for dc in value)
    w.out.append(f"<{p}{el.name}>{dcs}</{p}{el.name}>")


def _w_delivery_condition_text(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.simple(el.name, " ".join(str(int(dc)) for dc in value))


def _w_previously_sent_by(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.previously_sent_by(value)


def _w_previously_sent_date(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.previously_sent_date(value)


def _w_capabilities(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.capabilities(value)


def _w_content(w: _Writer, el: Element, value: Any, msg: Message) -> None:
    w.content(value, msg)


def _w_none(w: _Writer, el: Element, value: Any, msg: Message) -> None:  # pragma: no cover
    raise EmitError(f"{w.op.name}/{el.name}: no writer for kind {el.kind}")


_WRITERS: dict[Kind, _W] = {
    Kind.STRING: _w_string,
    Kind.SERVICE_CODE: _w_string,
    Kind.ID: _w_id,
    Kind.BOOLEAN: _w_boolean,
    Kind.DATETIME: _w_datetime,
    Kind.REL_DATE: _w_rel_date,
    Kind.ENUM: _w_enum,
    Kind.MM_STATUS: _w_enum,
    Kind.READ_STATUS: _w_enum,
    Kind.VERSION: _w_version,
    Kind.ADDRESS: _w_address,
    Kind.RECIPIENTS: _w_recipients,
    Kind.SENDER_ID: _w_sender_id,
    Kind.STATUS: _w_status,
    Kind.CODE_ONLY_STATUS: _w_status,
    Kind.REPLY_CHARGING: _w_reply_charging,
    Kind.DELIVERY_CONDITION: _w_delivery_condition,
    Kind.DELIVERY_CONDITION_TEXT: _w_delivery_condition_text,
    Kind.PREVIOUSLY_SENT_BY: _w_previously_sent_by,
    Kind.PREVIOUSLY_SENT_DATE: _w_previously_sent_date,
    Kind.CAPABILITIES: _w_capabilities,
    Kind.CONTENT: _w_content,
    Kind.SENDER_ADDRESS: _w_none,  # written inside SenderIdentification
}
assert set(_WRITERS) == set(Kind)


#: Content-ID given to the message content when the caller's part has none
CONTENT_ID = "mm7-content"


#: a value of these types that is empty is as good as absent (``()``, ``""``)
_EMPTY_TYPES = (tuple, str)


def _missing(value: Any) -> bool:
    return value is None or value == () or value == ""


def write_body(
    message: Message, dialect: Dialect, version: Version, namespace: str | None = None
) -> str:
    """The body element (``<mm7:SubmitReq>...``) of ``message`` as text."""
    op = OPERATION_BY_MODEL.get(type(message).__name__)
    if op is None:
        raise EmitError(f"{type(message).__name__} is not an MM7 body element")
    if not op.exists_in(version):
        raise EmitError(f"{op.name} does not exist in {version.token} (REL-6-MM7-1-4 only)")
    w = _Writer(dialect, version, op)
    sequence = op.sequence(version)
    strict = dialect.strict
    writers = _WRITERS
    for el in sequence:
        kind = el.kind
        if kind is Kind.VERSION:
            value: Any = message.mm7_version or dialect.effective_mm7_version
            if (
                dialect.strict
                and not dialect.allow_any_mm7_version
                and value not in version.mm7_versions
            ):
                raise EmitError(
                    f"{op.name}/MM7Version: {value!r} is not allowed by {version.token} "
                    f"(allowed: {', '.join(version.mm7_versions)})"
                )
        elif kind is Kind.SENDER_ID:
            value = message
        else:
            value = getattr(message, el.attr)
        if value is None or (value.__class__ in _EMPTY_TYPES and not value):
            if el.required and strict:
                raise EmitError(f"{op.name}/{el.name} is required in {version.token}")
            continue
        writers[kind](w, el, value, message)
    if strict:
        for attr, name in _outside(op.name, version.token):
            if not _missing(getattr(message, attr)):
                raise EmitError(
                    f"{op.name}: {attr} ({name}) does not exist in {version.token}; "
                    "choose a newer version or a non-strict dialect that drops it"
                )
    ns = namespace or version.namespace
    p = w.p
    decl = "" if dialect.mm7_prefix else f' xmlns="{escape_attr(ns, "xmlns")}"'
    return f"<{p}{op.name}{decl}>{''.join(w.out)}</{p}{op.name}>"


_ALWAYS = frozenset(
    {"transaction_id", "mm7_version", "namespace", "extensions", "allow_adaptations"}
)


@lru_cache(maxsize=256)
def _outside(op_name: str, token: str) -> tuple[tuple[str, str], ...]:
    """(model attribute, element) pairs of ``op`` that version ``token`` has no element for."""
    op = OPERATION_BY_NAME[op_name]
    sequence = op.sequence(get_version(token))
    present = {el.attr for el in sequence}
    if any(el.kind is Kind.SENDER_ID for el in sequence):
        present |= {el.attr for el in SENDER_ID_ELEMENTS}
    out: dict[str, str] = {}
    for el in op.elements:
        if el.attr and el.attr not in present and el.attr not in _ALWAYS:
            out.setdefault(el.attr, el.name)
    return tuple(out.items())


def write_envelope(
    message: Message,
    dialect: Dialect,
    version: Version | None = None,
    namespace: str | None = None,
) -> bytes:
    """The whole SOAP envelope of ``message`` as UTF-8 bytes.

    ``namespace`` overrides the version's URI (echoing a peer's unpublished namespace).
    """
    if version is None:
        version = _version_of(message, dialect)
    e = dialect.envelope_prefix
    ns = escape_attr(namespace or version.namespace, "xmlns")
    mp = dialect.mm7_prefix
    if isinstance(message, Fault):
        body = write_fault(message, dialect, version, ns)
    else:
        body = write_body(message, dialect, version, ns)
    ns_decl = f' xmlns:{mp}="{ns}"' if mp else ""
    parts = []
    if dialect.xml_declaration:
        parts.append('<?xml version="1.0" encoding="UTF-8"?>')
    parts.append(f'<{e}:Envelope xmlns:{e}="{SOAP_ENV_NS}"{ns_decl}>')
    if message.transaction_id:
        mu = f' {e}:mustUnderstand="1"' if dialect.must_understand else ""
        tag = f"{mp}:TransactionID" if mp else "TransactionID"
        tdecl = "" if mp else f' xmlns="{ns}"'
        tid = escape_text(message.transaction_id, "TransactionID")
        if (
            dialect.strict
            and isinstance(message, Request)  # a response echoes the peer's id verbatim
            and not version.transaction_id_has_soap_attrs
            and not _is_xsd("NMTOKEN", message.transaction_id)
        ):
            raise EmitError(
                f"TransactionID: {message.transaction_id!r} is not an xs:NMTOKEN, which "
                f"{version.token} requires (no spaces, '/', '@' ...)"
            )
        parts.append(f"<{e}:Header><{tag}{tdecl}{mu}>{tid}</{tag}></{e}:Header>")
    parts.append(f"<{e}:Body>{body}</{e}:Body></{e}:Envelope>")
    return "".join(parts).encode("utf-8")


def _version_of(message: Message, dialect: Dialect) -> Version:
    from mm7.core.versions import version_for_namespace

    if message.namespace:
        found = version_for_namespace(message.namespace)
        if found is None:
            raise EmitError(f"unknown MM7 namespace {message.namespace!r}")
        return found
    return dialect.version


def fault_code_for(status: Status | None) -> str:
    """SOAP faultcode for an MM7 status: Client for request faults (2xxx, bad identification,
    version, operation, validation, denial), Server for the rest (3xxx, 4000, 4005, 4006, 4008)."""
    if status is None:
        return "Server"
    code = status.code
    if 2000 <= code < 3000 or code in (4001, 4002, 4003, 4004, 4007):
        return "Client"
    return "Server"


def write_fault(
    fault: Fault, dialect: Dialect, version: Version, namespace: str | None = None
) -> str:
    """A SOAP 1.1 Fault with the MM7 error element (RSErrorRsp/VASPErrorRsp) in its detail."""
    e = dialect.envelope_prefix
    code = fault.faultcode
    if ":" not in code:
        code = f"{e}:{code}"
    parts = [
        f"<{e}:Fault><faultcode>{escape_text(code, 'faultcode')}</faultcode>",
        f"<faultstring>{escape_text(fault.faultstring, 'faultstring')}</faultstring>",
    ]
    if fault.faultactor is not None:
        if dialect.strict and not _is_xsd("anyURI", fault.faultactor):
            raise EmitError(f"Fault/faultactor: {fault.faultactor!r} is not an xs:anyURI")
        parts.append(f"<faultactor>{escape_text(fault.faultactor, 'faultactor')}</faultactor>")
    if fault.error is not None:
        parts.append(f"<detail>{write_body(fault.error, dialect, version, namespace)}</detail>")
    parts.append(f"</{e}:Fault>")
    return "".join(parts)
