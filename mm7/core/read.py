"""Reading an MM7 SOAP envelope into a typed message: by namespace URI and local name, never prefix.

Strict where the standard is clear, lenient where real MMSCs deviate: every tolerated deviation is
recorded as a named Leniency. What cannot be read raises ParseError (2007) or ValidationError
(4004) naming the element and what was expected.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from mm7.core import model
from mm7.core.errors import ParseError, ValidationError
from mm7.core.leniency import Leniency
from mm7.core.mime import Part, find_content
from mm7.core.model import (
    Address,
    AddressCoding,
    AddressKind,
    Fault,
    Message,
    PreviouslySentBy,
    PreviouslySentDate,
    Recipients,
    ReplyCharging,
    Status,
    UACapabilities,
)
from mm7.core.spec import OPERATION_BY_NAME, SENDER_ID_ELEMENTS, Element, Kind, Operation
from mm7.core.status import parse_mm_status, parse_read_status
from mm7.core.values import (
    decode_rfc2047,
    parse_bool,
    parse_datetime,
    parse_relative_or_absolute,
)
from mm7.core.versions import LATEST, SOAP_ENV_NS, VERSIONS, Version, version_for_namespace

_SOAP_NS_NO_SLASH = SOAP_ENV_NS.rstrip("/")
_ENUM_CLASSES: dict[str, type[StrEnum]] = {
    "messageClass": model.MessageClass,
    "priority": model.Priority,
    "chargedParty": model.ChargedParty,
    "contentClass": model.ContentClass,
    "mmStatusExtension": model.MMStatusExtension,
}
_ADDRESS_TAGS = {k.value: k for k in AddressKind}
#: instantcom's model writes RFC822Address; read as RFC2822Address (ADDRESS_ELEMENT_NAME)
_ADDRESS_MISNAMED = {"RFC822Address": AddressKind.RFC2822}
#: xs:integer as MM7 writes it: ASCII digits only (int() would also take "1_000" or other scripts)
_INTEGER = re.compile(r"\s*([+-]?\d+)\s*", re.ASCII)
# A status code written into a faultstring ("2007", "Error 2002 - Address Error"); not a year of a
# date (2024-07-04), a time or a version, nor a quantity such as "3000 ms".
_STATUS_IN_TEXT = re.compile(
    r"(?<![\w.:/-])([1-4]\d{3})(?![\w:/-]|\.\d)(?!\s*(?:ms|s|sec|seconds|bytes|[kKmM]?B)\b)"
)
_PLMN = re.compile(r"/TYPE=PLMN(?=@|$)", re.IGNORECASE)
_ERROR_ELEMENTS = {
    "RSErrorRsp": "RSErrorRsp",
    "VASPErrorRsp": "VASPErrorRsp",
    "MM7RSErrorRsp": "RSErrorRsp",
    "MM7VASPErrorRsp": "VASPErrorRsp",
}

# (operation, version token) -> local name -> Element; plus a fallback over every version
_BY_NAME: dict[tuple[str, str], dict[str, tuple[int, Element]]] = {}
_ANY_VERSION: dict[str, dict[str, Element]] = {}
for _op in OPERATION_BY_NAME.values():
    _ANY_VERSION[_op.name] = {el.name: el for el in _op.elements}
    for _v in VERSIONS:
        _BY_NAME[(_op.name, _v.token)] = {el.name: (i, el) for i, el in enumerate(_op.sequence(_v))}


def local(el: Any) -> str:
    """Local name of an element or attribute tag ('{ns}Name' -> 'Name')."""
    tag = el.tag if not isinstance(el, str) else el
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def namespace(el: Any) -> str | None:
    tag = el.tag
    if isinstance(tag, str) and tag.startswith("{"):
        return tag[1:].partition("}")[0]
    return None


def _children(el: Any) -> list[Any]:
    return [c for c in el if isinstance(c.tag, str)]


def _text(el: Any) -> str:
    return el.text or ""


def _attr(
    el: Any,
    name: str,
    leniencies: list[Leniency],
    qualified: Leniency = Leniency.ATTRIBUTE_QUALIFIED,
) -> str | None:
    """An attribute by local name; a namespace-qualified one (mm7:href) adds ``qualified``."""
    value = el.get(name)
    if value is not None:
        return str(value)
    for key, val in el.attrib.items():
        if key.endswith("}" + name):
            leniencies.append(qualified)
            return str(val)
    return None


class _Reader:
    """Reads one body element of one operation in one version."""

    def __init__(
        self,
        op: Operation,
        version: Version,
        leniencies: list[Leniency],
        *,
        version_known: bool = True,
    ) -> None:
        self.op = op
        self.version = version
        self.leniencies = leniencies
        #: False when the namespace is unknown and ``version`` is only the tables we read with:
        #: then no MM7Version can be judged against it
        self.version_known = version_known
        self.extensions: list[tuple[str, str]] = []

    def where(self, name: str) -> str:
        return f"{self.op.name}/{name}"

    # -- values
    def boolean(self, el: Any, name: str) -> bool:
        try:
            return parse_bool(_text(el), self.leniencies)
        except ParseError as exc:
            raise ParseError(str(exc), where=self.where(name)) from None

    def reldate_text(self, text: str, name: str) -> Any:
        try:
            return parse_relative_or_absolute(text.strip(), self.leniencies)
        except ParseError as exc:
            raise ParseError(str(exc), where=self.where(name)) from None

    def datetime_text(self, text: str, name: str) -> Any:
        try:
            return parse_datetime(text.strip(), self.leniencies)
        except ParseError as exc:
            raise ParseError(str(exc), where=self.where(name)) from None

    def bool_attr(self, text: str, name: str) -> bool:
        """An xs:boolean attribute value (allowAdaptations, displayOnly); errors say where."""
        try:
            return parse_bool(text, self.leniencies)
        except ParseError as exc:
            raise ParseError(str(exc), where=self.where(name)) from None

    def posint(self, text: str | None, name: str) -> int | None:
        """A non-negative integer (sizes, sequence numbers); None when absent."""
        if text is None:
            return None
        match = _INTEGER.fullmatch(text)
        value = int(match.group(1)) if match is not None else -1
        if value < 0:
            raise ParseError(
                f"expected a non-negative integer, got {text!r}", where=self.where(name)
            )
        return value

    def enum(self, el: Any, element: Element) -> Any:
        raw = _text(el).strip()
        assert element.enum is not None
        cls = _ENUM_CLASSES[element.enum]
        try:
            return cls(raw)
        except ValueError:
            pass
        for member in cls:
            if member.value.lower() == raw.lower():
                self.leniencies.append(Leniency.ENUM_CASE)
                return member
        self.leniencies.append(Leniency.ENUM_UNKNOWN)
        self.extensions.append((element.name, raw))
        return None

    def address(self, el: Any, name: str) -> Address:
        kids = _children(el)
        if not kids:
            text = _text(el).strip()
            if not text:
                raise ParseError(
                    "expected Number, ShortCode or RFC2822Address", where=self.where(name)
                )
            self.leniencies.append(Leniency.SENDER_BARE_TEXT)
            return self._plmn(Address.guess(text))
        return self.address_element(kids[0], name)

    def address_element(self, child: Any, name: str) -> Address:
        tag = local(child)
        kind = _ADDRESS_TAGS.get(tag)
        if kind is None and tag in _ADDRESS_MISNAMED:
            self.leniencies.append(Leniency.ADDRESS_ELEMENT_NAME)
            kind = _ADDRESS_MISNAMED[tag]
        if kind is None:
            raise ParseError(
                f"expected Number, ShortCode or RFC2822Address, got {tag}", where=self.where(name)
            )
        display = _attr(child, "displayOnly", self.leniencies)
        coding = _attr(child, "addressCoding", self.leniencies)
        addr_coding = None
        if coding is not None:
            try:
                addr_coding = AddressCoding(coding.strip())
            except ValueError:
                self.leniencies.append(Leniency.ENUM_UNKNOWN)
                self.extensions.append((f"{name}/@addressCoding", coding))
        addr = Address(
            _text(child).strip(),
            kind,
            self.bool_attr(display, f"{name}/@displayOnly") if display is not None else None,
            addr_coding,
            _attr(child, "id", self.leniencies),
        )
        return self._plmn(addr)

    def _plmn(self, addr: Address) -> Address:
        if "/TYPE=" in addr.value.upper():
            value = _PLMN.sub("", addr.value)
            if value != addr.value:
                self.leniencies.append(Leniency.ADDRESS_TYPE_PLMN)
                return Address(value, addr.kind, addr.display_only, addr.address_coding, addr.id)
        return addr

    def addresses(self, el: Any, name: str) -> tuple[Address, ...]:
        kids = _children(el)
        if not kids and _text(el).strip():
            self.leniencies.append(Leniency.SENDER_BARE_TEXT)
            return (self._plmn(Address.guess(_text(el))),)
        return tuple(self.address_element(k, name) for k in kids)

    def recipients(self, el: Any) -> Recipients:
        lists: dict[str, list[Address]] = {"To": [], "Cc": [], "Bcc": []}
        for kid in _children(el):
            tag = local(kid)
            if tag not in lists:
                self.leniencies.append(Leniency.UNKNOWN_ELEMENT)
                self.extensions.append((f"Recipients/{tag}", _text(kid)))
                continue
            lists[tag].extend(self.addresses(kid, f"Recipients/{tag}"))
        return Recipients(tuple(lists["To"]), tuple(lists["Cc"]), tuple(lists["Bcc"]))

    def status(self, el: Any, name: str = "Status") -> Status:
        code_text: str | None = None
        text = ""
        details: str | None = None
        for kid in _children(el):
            tag = local(kid)
            if tag == "StatusCode":
                code_text = _text(kid).strip()
            elif tag == "StatusText":
                text = _text(kid)
            elif tag == "Details":
                details = "".join(kid.itertext()).strip() if len(kid) else _text(kid)
        if code_text is None:
            raise ValidationError("Status has no StatusCode", where=self.where(name))
        match = _INTEGER.fullmatch(code_text)
        if match is None:
            raise ParseError(
                f"StatusCode must be an integer, got {code_text!r}", where=self.where(name)
            )
        return Status(int(match.group(1)), text, details)

    # -- the body
    def read(self, body: Any, cls: type[Message], parts: Sequence[Part]) -> Message:
        by_name = _BY_NAME[(self.op.name, self.version.token)]
        any_version = _ANY_VERSION[self.op.name]
        kwargs: dict[str, Any] = {}
        last_index = -1
        content_href: str | None = None
        saw_content = False
        body_ns = namespace(body)
        no_ns_reported = False
        for child in _children(body):
            name = local(child)
            if body_ns is not None and namespace(child) is None and not no_ns_reported:
                self.leniencies.append(Leniency.MM7_NO_NAMESPACE)
                no_ns_reported = True
            found = by_name.get(name)
            if found is None:
                other = any_version.get(name)
                if other is None:
                    self.leniencies.append(Leniency.UNKNOWN_ELEMENT)
                    self.extensions.append((name, "".join(child.itertext())))
                    continue
                self.leniencies.append(Leniency.ELEMENT_OTHER_VERSION)
                element = other
            else:
                index, element = found
                if index < last_index:
                    self.leniencies.append(Leniency.ELEMENT_ORDER)
                last_index = max(last_index, index)
            if element.kind is Kind.CONTENT:
                saw_content = True
                content_href = _attr(child, "href", self.leniencies, Leniency.HREF_QUALIFIED)
                allow = _attr(child, "allowAdaptations", self.leniencies, Leniency.HREF_QUALIFIED)
                if allow is not None:
                    kwargs["allow_adaptations"] = self.bool_attr(allow, f"{name}/@allowAdaptations")
                continue
            self.value(child, element, kwargs)
        self.check_required(kwargs)
        if any(el.kind is Kind.CONTENT for el in self.op.elements) and (saw_content or parts):
            content = find_content(parts, content_href if saw_content else None, self.leniencies)
            if content is not None:
                kwargs["content"] = content
        if self.extensions:
            kwargs["extensions"] = tuple(self.extensions)
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a required model field without an element
            raise ValidationError(str(exc), where=self.op.name) from None

    def check_required(self, kwargs: dict[str, Any]) -> None:
        """Refuse (4004) a body that lacks an element its schema version requires.

        A response carrying an error status needs only MM7Version and Status: TS 23.140 makes the
        other information elements of a response (SubmitRsp's MessageID) conditional on success,
        and MMSCs answering 2002 have no MessageID to give, although the XSD makes it mandatory.
        """
        status = kwargs.get("status")
        failed = isinstance(status, Status) and not status.is_success
        previous = "the start of the body"
        for element in self.op.sequence(self.version):
            if element.required and element.attr and element.attr not in kwargs:
                if element.kind is Kind.SENDER_ID:
                    continue  # all its children are optional; an empty one is harmless
                if failed and element.kind not in (Kind.VERSION, Kind.STATUS):
                    continue
                raise ValidationError(
                    f"missing required element {element.name} (expected after {previous} "
                    f"in {self.version.token})",
                    where=self.op.name,
                    status_code=4004,
                )
            previous = element.name

    def value(self, child: Any, element: Element, kwargs: dict[str, Any]) -> None:
        kind = element.kind
        name = element.name
        attr = element.attr
        if kind is Kind.STRING:
            text = _text(child)
            if name == "Subject" and "=?" in text:
                text = decode_rfc2047(text, self.leniencies)
            kwargs[attr] = text
        elif kind is Kind.ID or kind is Kind.SERVICE_CODE:
            kwargs[attr] = _text(child).strip()
        elif kind is Kind.VERSION:
            value = _text(child).strip()
            if self.version_known and value not in self.version.mm7_versions:
                self.leniencies.append(Leniency.VERSION_NAMESPACE_MISMATCH)
            kwargs[attr] = value
        elif kind is Kind.BOOLEAN:
            kwargs[attr] = self.boolean(child, name)
        elif kind is Kind.DATETIME:
            kwargs[attr] = self.datetime_text(_text(child), name)
        elif kind is Kind.REL_DATE:
            kwargs[attr] = self.reldate_text(_text(child), name)
        elif kind is Kind.ENUM:
            value = self.enum(child, element)
            if value is not None:
                kwargs[attr] = value
        elif kind is Kind.MM_STATUS:
            reported = parse_mm_status(_text(child), self.leniencies)
            kwargs[attr] = reported.value
            if reported.raw != reported.value.value:
                kwargs["mm_status_raw"] = reported.raw
        elif kind is Kind.READ_STATUS:
            read_status, raw = parse_read_status(_text(child), self.leniencies)
            kwargs[attr] = read_status
            if raw != read_status.value:
                kwargs["mm_status_raw"] = raw
        elif kind is Kind.ADDRESS:
            kwargs[attr] = self.address(child, name)
        elif kind is Kind.RECIPIENTS:
            recipients = self.recipients(child)
            if element.required and not len(recipients):
                raise ValidationError(
                    "Recipients holds no To, Cc or Bcc address: expected at least one",
                    where=self.where(name),
                )
            kwargs[attr] = recipients
        elif kind is Kind.SENDER_ID:
            self.sender_id(child, kwargs)
        elif kind is Kind.STATUS or kind is Kind.CODE_ONLY_STATUS:
            kwargs[attr] = self.status(child, name)
        elif kind is Kind.REPLY_CHARGING:
            deadline = _attr(child, "replyDeadline", self.leniencies)
            kwargs[attr] = ReplyCharging(
                self.posint(_attr(child, "replyChargingSize", self.leniencies), name),
                self.reldate_text(deadline, name) if deadline is not None else None,
            )
        elif kind is Kind.DELIVERY_CONDITION or kind is Kind.DELIVERY_CONDITION_TEXT:
            kids = _children(child)
            texts = [_text(k) for k in kids] if kids else _text(child).split()
            kwargs[attr] = tuple(self.posint(t, name) or 0 for t in texts)
        elif kind is Kind.PREVIOUSLY_SENT_BY:
            kwargs[attr] = tuple(
                PreviouslySentBy(
                    self.address(k, f"{name}/UserAgent"),
                    self.posint(_attr(k, "sequence", self.leniencies), name),
                )
                for k in _children(child)
            )
        elif kind is Kind.PREVIOUSLY_SENT_DATE:
            kwargs[attr] = tuple(
                PreviouslySentDate(
                    self.reldate_text(_text(k), f"{name}/DateTime"),
                    self.posint(_attr(k, "sequence", self.leniencies), name),
                )
                for k in _children(child)
            )
        elif kind is Kind.CAPABILITIES:
            ts = _attr(child, "TimeStamp", self.leniencies)
            kwargs[attr] = UACapabilities(
                _attr(child, "UAProf", self.leniencies),
                self.reldate_text(ts, name) if ts is not None else None,
            )
        elif kind is Kind.SENDER_ADDRESS:  # pragma: no cover - only inside SenderIdentification
            kwargs[attr] = self.sender_address(child)

    def sender_id(self, el: Any, kwargs: dict[str, Any]) -> None:
        names = {e.name: e for e in SENDER_ID_ELEMENTS}
        for kid in _children(el):
            tag = local(kid)
            element = names.get(tag)
            if element is None:
                self.leniencies.append(Leniency.UNKNOWN_ELEMENT)
                self.extensions.append((f"SenderIdentification/{tag}", _text(kid)))
            elif element.kind is Kind.SENDER_ADDRESS:
                kwargs[element.attr] = self.sender_address(kid)
            else:
                kwargs[element.attr] = _text(kid).strip()

    def sender_address(self, el: Any) -> Address:
        """SenderAddress: xs:string up to REL-5-MM7-1-1, an address element after; either read."""
        if _children(el):
            if not self.version.typed_sender_address:
                self.leniencies.append(Leniency.SENDER_ADDRESS_TYPED)
            return self.address_element(_children(el)[0], "SenderAddress")
        text = _text(el).strip()
        if self.version.typed_sender_address:
            self.leniencies.append(Leniency.SENDER_BARE_TEXT)
        return self._plmn(Address.guess(text))


_MODEL_CLASSES: dict[str, type[Message]] = {
    op.name: getattr(model, op.model) for op in OPERATION_BY_NAME.values()
}


def read_envelope(
    root: Any, parts: Sequence[Part], leniencies: list[Leniency]
) -> tuple[Message, Version | None]:
    """The message an Envelope element holds, and the schema version it was read with."""
    env_ns = namespace(root)
    if local(root) != "Envelope" or env_ns not in (SOAP_ENV_NS, _SOAP_NS_NO_SLASH):
        raise ParseError(
            f"expected a SOAP 1.1 Envelope ({{{SOAP_ENV_NS}}}Envelope), got <{root.tag}>",
            where="SOAP part",
        )
    if env_ns == _SOAP_NS_NO_SLASH:
        leniencies.append(Leniency.ENVELOPE_NS_NO_SLASH)
    header = body = None
    for child in _children(root):
        name = local(child)
        if name == "Header" and header is None:
            header = child
        elif name == "Body" and body is None:
            body = child
    if body is None:
        raise ParseError(
            "SOAP Envelope has no Body: expected a Body after the optional Header",
            where="SOAP part",
        )
    kids = _children(body)
    if not kids:
        raise ParseError("SOAP Body is empty: expected an MM7 request or response", where="Body")
    first = kids[0]

    transaction_id = ""
    header_ns: str | None = None
    found_header = False
    if header is not None:
        for h in header.iter():
            if isinstance(h.tag, str) and local(h) == "TransactionID":
                found_header = True
                raw = h.text or ""
                transaction_id = raw.strip()
                if transaction_id and transaction_id != raw:
                    leniencies.append(Leniency.TRANSACTION_ID_WHITESPACE)
                header_ns = namespace(h)
                break
    if not transaction_id:
        leniencies.append(Leniency.TRANSACTION_ID_MISSING)

    if local(first) == "Fault" and namespace(first) in (SOAP_ENV_NS, _SOAP_NS_NO_SLASH):
        fault = read_fault(first, parts, leniencies, transaction_id, header_ns)
        if found_header and fault.error is not None and header_ns != fault.namespace:
            leniencies.append(Leniency.HEADER_NS_MISMATCH)
        return fault, version_for_namespace(fault.namespace)

    message, version = read_body(first, parts, leniencies, header_ns)
    if found_header and header_ns != message.namespace:
        # another MM7 namespace, or none at all, on the TransactionID; a body in no namespace
        # takes the header's (reported once, as MM7_NO_NAMESPACE)
        leniencies.append(Leniency.HEADER_NS_MISMATCH)
    return dataclasses.replace(message, transaction_id=transaction_id), version


def read_body(
    el: Any, parts: Sequence[Part], leniencies: list[Leniency], header_ns: str | None = None
) -> tuple[Message, Version | None]:
    """Read an MM7 body element (SubmitReq, DeliverRsp, RSErrorRsp, ...) of any known version.

    The version returned is the one of the namespace the message ends up with (the header's
    for a body in no namespace); None when that namespace is unknown or absent.
    """
    name = local(el)
    op = OPERATION_BY_NAME.get(name)
    if op is None and name in _ERROR_ELEMENTS:
        op = OPERATION_BY_NAME[_ERROR_ELEMENTS[name]]
        leniencies.append(Leniency.ERROR_ELEMENT_NAME)
    if op is None:
        lowered = {k.lower(): v for k, v in OPERATION_BY_NAME.items()}
        op = lowered.get(name.lower())
        if op is None:
            raise ParseError(
                f"unsupported MM7 operation {name!r}: expected one of "
                f"{', '.join(OPERATION_BY_NAME)} or a SOAP Fault",
                where="Body",
                status_code=4003,
            )
        leniencies.append(Leniency.ENUM_CASE)
    ns = namespace(el)
    if ns is None:
        leniencies.append(Leniency.MM7_NO_NAMESPACE)
        ns = header_ns
    version = version_for_namespace(ns)
    if ns is not None and version is None:
        leniencies.append(Leniency.NAMESPACE_UNKNOWN)
    read_version = version if version is not None else LATEST
    if not op.exists_in(read_version):
        leniencies.append(Leniency.ELEMENT_OTHER_VERSION)
        read_version = LATEST
    reader = _Reader(op, read_version, leniencies, version_known=read_version is version)
    message = reader.read(el, _MODEL_CLASSES[op.name], parts)
    return dataclasses.replace(message, namespace=ns), version


def read_fault(
    el: Any,
    parts: Sequence[Part],
    leniencies: list[Leniency],
    transaction_id: str,
    header_ns: str | None,
) -> Fault:
    """A SOAP Fault, extracting an MM7 status from every shape seen in the field."""
    fields: dict[str, Any] = {}
    detail = None
    qualified = False
    for kid in _children(el):
        name = local(kid)
        if namespace(kid) is not None:
            qualified = True
        if name in ("faultcode", "faultstring", "faultactor"):
            fields[name] = (kid.text or "").strip()
        elif name == "detail":
            detail = kid
    if qualified:
        leniencies.append(Leniency.FAULT_QUALIFIED_CHILDREN)
    error: Any = None
    status: Status | None = None
    ns = header_ns
    mm7_version: str | None = None
    if detail is not None:
        kids = _children(detail)
        carried = next((k for k in kids if local(k) in _ERROR_ELEMENTS), None)
        bare = next((k for k in kids if local(k) == "Status"), None)
        if carried is not None:
            error, _ = read_body(carried, parts, leniencies, header_ns)
            status = error.status
            ns = error.namespace
            mm7_version = error.mm7_version
        elif bare is not None:
            leniencies.append(Leniency.FAULT_BARE_STATUS)
            status = _Reader(OPERATION_BY_NAME["RSErrorRsp"], LATEST, leniencies).status(
                bare, "detail/Status"
            )
            ns = namespace(bare) or ns
        else:
            for node in detail.iter():
                if isinstance(node.tag, str) and local(node) == "StatusCode":
                    parent = node.getparent()
                    leniencies.append(Leniency.FAULT_BARE_STATUS)
                    status = _Reader(OPERATION_BY_NAME["RSErrorRsp"], LATEST, leniencies).status(
                        parent, "detail//Status"
                    )
                    break
    faultstring = fields.get("faultstring", "")
    if status is None:
        match = _STATUS_IN_TEXT.search(faultstring)
        if match:
            leniencies.append(Leniency.FAULT_STATUS_IN_FAULTSTRING)
            status = Status(int(match.group(1)), faultstring)
        else:
            leniencies.append(Leniency.FAULT_NO_STATUS)
    return Fault(
        transaction_id=transaction_id,
        namespace=ns,
        mm7_version=mm7_version,
        faultcode=fields.get("faultcode", ""),
        faultstring=faultstring,
        faultactor=fields.get("faultactor"),
        error=error,
        status=status,
    )
