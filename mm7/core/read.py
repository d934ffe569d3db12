"""Reading an MM7 SOAP envelope into a typed message: by namespace URI and local name, never prefix.

Strict where the standard is clear, lenient where real MMSCs deviate: every tolerated deviation is
recorded as a named Leniency. What cannot be read raises ParseError (2007) or ValidationError
(4004) naming the element and what was expected.
"""

# Strategy: read_envelope finds the Body's first child, read_body picks its Operation (spec.py) and
# the schema version of its namespace, and _Reader.read walks the children once, dispatching on
# each Element's Kind through _VALUE_READERS into a dict of model fields; the message class is
# built from that dict at the end.
#
# Read strictly, because a peer that gets these wrong sent something we cannot act on:
# - the frame: a SOAP 1.1 Envelope with a non-empty Body, and a known operation (else 4003);
# - values that carry meaning: integers (StatusCode, sizes, sequence numbers), xs:boolean and
#   xs:dateTime/xs:duration in no known spelling, an address element that is not Number,
#   ShortCode or RFC2822Address: ParseError (2007);
# - presence: an element the version's schema requires, a Status without a StatusCode, a
#   required Recipients with no address: ValidationError (4004). A response with an error
#   status needs only MM7Version and Status (check_required says why).
#
# Read leniently, each deviation named in ``leniencies`` (mm7.core.leniency), because real MMSCs
# make it and what they mean is still clear:
# - placement: elements out of sequence order, elements of another schema version, MM7 elements
#   in no namespace, a TransactionID in another namespace; an element's local name says what it
#   is, so where it sits or which namespace it is in adds nothing we need;
# - spelling: boolean and enumeration case, dates without a zone or in RFC 2822, bare-text
#   addresses, /TYPE=PLMN suffixes, RFC 2047 subjects, qualified attributes (mm7:href);
# - extras: unknown elements and enumeration values are kept in ``extensions``, never refused,
#   since vendors put their own elements inside standard ones;
# - faults: a status is taken from every place peers put one (read_fault).
#
# Nothing is matched by prefix, which varies from peer to peer; always by namespace URI and local
# name. The version read with is the namespace's, whatever MM7Version says, since the two are
# paired freely in the field: a mismatch is only noted. An unknown MM7 namespace is read with the
# latest version's tables.

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from lxml import etree

from mm7.core import model
from mm7.core.emit import is_nmtoken
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
    RelativeOrAbsolute,
    decode_rfc2047,
    parse_bool,
    parse_datetime,
    parse_relative_or_absolute,
)
from mm7.core.versions import LATEST, SOAP_ENV_NS, VERSIONS, Version, version_for_namespace

__all__ = [
    "local",
    "namespace",
    "read_body",
    "read_envelope",
    "read_fault",
]

_SOAP_NS_NO_SLASH = SOAP_ENV_NS.rstrip("/")
_ENUM_CLASSES: dict[str, type[StrEnum]] = {
    "messageClass": model.MessageClass,
    "priority": model.Priority,
    "chargedParty": model.ChargedParty,
    "contentClass": model.ContentClass,
    "mmStatusExtension": model.MMStatusExtension,
}
_ADDRESS_TAGS = {k.value: k for k in AddressKind}
_SENDER_ID_BY_NAME = {e.name: e for e in SENDER_ID_ELEMENTS}
_RECIPIENT_WHERE = {tag: f"Recipients/{tag}" for tag in ("To", "Cc", "Bcc")}
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


@functools.lru_cache(maxsize=1024)
def _tag_table(op: str, token: str, ns: str | None) -> dict[str, tuple[int, Element]]:
    """'{ns}Name' -> (sequence index, element) for one operation, version and body namespace."""
    prefix = "{" + ns + "}" if ns else ""
    return {prefix + name: found for name, found in _BY_NAME[(op, token)].items()}


def local(el: etree._Element | str) -> str:
    """Local name of an element or attribute tag ('{ns}Name' -> 'Name')."""
    tag = el if isinstance(el, str) else el.tag
    if not isinstance(tag, str):
        return ""
    return tag[tag.rfind("}") + 1 :]


def namespace(el: etree._Element) -> str | None:
    tag = el.tag
    if isinstance(tag, str) and tag[:1] == "{":
        return tag[1:].partition("}")[0]
    return None


def _children(el: etree._Element) -> list[etree._Element]:
    # The hardened parser drops comments and PIs, so a parsed element's children are elements;
    # a tree built by hand may still hold them.
    kids = list(el)
    for c in kids:
        if c.tag.__class__ is not str:
            return [c for c in kids if isinstance(c.tag, str)]
    return kids


def _text(el: etree._Element) -> str:
    return el.text or ""


def _all_text(el: etree._Element) -> str:
    """Every text node under ``el``, joined (lxml yields str; its stubs also allow bytes)."""
    return "".join(cast("Iterator[str]", el.itertext()))


def _attr(
    el: etree._Element,
    name: str,
    leniencies: list[Leniency],
    qualified: Leniency = Leniency.ATTRIBUTE_QUALIFIED,
) -> str | None:
    """An attribute by local name; a namespace-qualified one (mm7:href) adds ``qualified``."""
    value = el.get(name)
    if value is not None:
        return str(value)
    for key, val in el.attrib.items():
        if isinstance(key, str) and key.endswith("}" + name):
            leniencies.append(qualified)
            return str(val)
    return None


#: What the gateway cannot act on a message without, per operation: model attributes in groups,
#: each group needing one of its members present. Any other element the schema requires may be
#: absent (REQUIRED_ELEMENT_MISSING) unless the reader is strict. An operation missing here
#: needs everything its schema requires.
NEEDED: dict[str, tuple[tuple[str, ...], ...]] = {
    # an MMSC delivers to recipients
    "SubmitReq": (("recipients",),),
    # nothing: a DeliverReq without Sender is relayed with "from": null, and the schema lets
    # every other element be absent (NEEDED never asks more than the schema)
    "DeliverReq": (),
    # which message, what happened, to which handset (either address may hold it: Mbuni swaps)
    "DeliveryReportReq": (("message_id",), ("mm_status",), ("recipient", "sender")),
    "ReadReplyReq": (("message_id",), ("mm_status",), ("recipient", "sender")),
    "CancelReq": (("message_id",),),
    "ReplaceReq": (("message_id",),),
    "extendedCancelReq": (("cancel_id",),),
    "extendedReplaceReq": (),
    # a response is its status: a successful SubmitRsp without MessageID means the MMSC took the
    # message (refusing the answer would resend it); its reports cannot be correlated, which the
    # dispatcher logs (mm7.dispatch.submitted_without_message_id)
    **{
        name: (("status",),)
        for name in (
            "SubmitRsp", "DeliverRsp", "CancelRsp", "ReplaceRsp", "extendedCancelRsp",
            "extendedReplaceRsp", "DeliveryReportRsp", "ReadReplyRsp", "RSErrorRsp",
            "VASPErrorRsp",
        )
    },
}  # fmt: skip


#: (operation, version token) -> the model attributes the schema requires, SenderIdentification
#: aside: what check_required looks for before it names anything
_REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    (_op.name, _v.token): tuple(
        el.attr
        for el in _op.sequence(_v)
        if el.required and el.attr and el.kind is not Kind.SENDER_ID
    )
    for _op in OPERATION_BY_NAME.values()
    for _v in VERSIONS
}


def _nothing_absent(
    kwargs: dict[str, Any], required: tuple[str, ...], needed: tuple[tuple[str, ...], ...]
) -> bool:
    """Whether ``kwargs`` holds every ``required`` attribute and a value of each needed group."""
    for attr in required:
        if attr not in kwargs:
            return False
    for group in needed:
        for attr in group:
            if kwargs.get(attr) not in (None, ""):
                break
        else:
            return False
    return True


def _element_name(op: Operation, attr: str) -> str:
    """The element name of model attribute ``attr`` in ``op`` (for error messages)."""
    return next((e.name for e in op.elements if e.attr == attr), attr)


class _Reader:
    """Reads one body element of one operation in one version."""

    def __init__(
        self,
        op: Operation,
        version: Version,
        leniencies: list[Leniency],
        *,
        version_known: bool = True,
        strict: bool = False,
        missing: list[str] | None = None,
    ) -> None:
        self.op = op
        self.version = version
        self.leniencies = leniencies
        #: refuse (4004) every element the schema requires, not only what NEEDED names
        self.strict = strict
        #: schema-required elements found absent and tolerated (REQUIRED_ELEMENT_MISSING)
        self.missing = missing if missing is not None else []
        #: False when the namespace is unknown and ``version`` is only the tables we read with:
        #: then no MM7Version can be judged against it
        self.version_known = version_known
        #: Number, ShortCode, MessageID ... are xs:NMTOKEN in this version (read per element)
        self.nmtoken = version.nmtoken_identifiers
        self.extensions: list[tuple[str, str]] = []

    def where(self, name: str) -> str:
        return f"{self.op.name}/{name}"

    # -- values
    def boolean(self, text: str, name: str) -> bool:
        """An xs:boolean, from an element's text or an attribute value; errors say where."""
        try:
            return parse_bool(text, self.leniencies)
        except ParseError as exc:
            raise ParseError(str(exc), where=self.where(name)) from None

    def reldate_text(self, text: str, name: str) -> RelativeOrAbsolute:
        try:
            return parse_relative_or_absolute(text.strip(), self.leniencies)
        except ParseError as exc:
            raise ParseError(str(exc), where=self.where(name)) from None

    def datetime_text(self, text: str, name: str) -> datetime:
        try:
            return parse_datetime(text.strip(), self.leniencies)
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

    def enum(self, el: etree._Element, element: Element) -> StrEnum | None:
        raw = _text(el).strip()
        assert element.enum is not None
        cls = _ENUM_CLASSES[element.enum]
        # what cls(raw) looks up, without the enum machinery around it
        found = cls._value2member_map_.get(raw)
        if found is not None:
            return cast(StrEnum, found)
        for member in cls:
            if member.value.lower() == raw.lower():
                self.leniencies.append(Leniency.ENUM_CASE)
                return member
        self.leniencies.append(Leniency.ENUM_UNKNOWN)
        self.extensions.append((element.name, raw))
        return None

    def address(self, el: etree._Element, name: str) -> Address:
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

    def address_element(self, child: etree._Element, name: str) -> Address:
        tag = local(child)
        kind = _ADDRESS_TAGS.get(tag)
        if kind is None and tag in _ADDRESS_MISNAMED:
            self.leniencies.append(Leniency.ADDRESS_ELEMENT_NAME)
            kind = _ADDRESS_MISNAMED[tag]
        if kind is None:
            raise ParseError(
                f"expected Number, ShortCode or RFC2822Address, got {tag}", where=self.where(name)
            )
        if child.keys():
            addr = self._attributed(child, kind, name)
        else:  # most addresses carry no attributes: nothing to look up
            addr = Address(_text(child).strip(), kind)
        addr = self._plmn(addr)
        # REL-5-MM7-1-0/-1-1 type Number and ShortCode as xs:NMTOKEN, which has no '+': most
        # MMSCs write +E.164 there all the same, and the number is clear
        if kind is not AddressKind.RFC2822 and self.nmtoken and not is_nmtoken(addr.value):
            self.leniencies.append(Leniency.NUMBER_NOT_NMTOKEN)
        return addr

    def _attributed(self, child: etree._Element, kind: AddressKind, name: str) -> Address:
        """An address element with attributes (displayOnly, addressCoding, id)."""
        display = _attr(child, "displayOnly", self.leniencies)
        coding = _attr(child, "addressCoding", self.leniencies)
        addr_coding = None
        if coding is not None:
            try:
                addr_coding = AddressCoding(coding.strip())
            except ValueError:
                self.leniencies.append(Leniency.ENUM_UNKNOWN)
                self.extensions.append((f"{name}/@addressCoding", coding))
        return Address(
            _text(child).strip(),
            kind,
            self.boolean(display, f"{name}/@displayOnly") if display is not None else None,
            addr_coding,
            _attr(child, "id", self.leniencies),
        )

    def _plmn(self, addr: Address) -> Address:
        if "/TYPE=" in addr.value.upper():
            value = _PLMN.sub("", addr.value)
            if value != addr.value:
                self.leniencies.append(Leniency.ADDRESS_TYPE_PLMN)
                return Address(value, addr.kind, addr.display_only, addr.address_coding, addr.id)
        return addr

    def addresses(self, el: etree._Element, name: str) -> tuple[Address, ...]:
        kids = _children(el)
        if not kids and _text(el).strip():
            self.leniencies.append(Leniency.SENDER_BARE_TEXT)
            return (self._plmn(Address.guess(_text(el))),)
        return tuple([self.address_element(k, name) for k in kids])

    def recipients(self, el: etree._Element) -> Recipients:
        lists: dict[str, list[Address]] = {"To": [], "Cc": [], "Bcc": []}
        for kid in _children(el):
            tag = local(kid)
            if tag not in lists:
                self.leniencies.append(Leniency.UNKNOWN_ELEMENT)
                self.extensions.append((f"Recipients/{tag}", _text(kid)))
                continue
            lists[tag].extend(self.addresses(kid, _RECIPIENT_WHERE[tag]))
        return Recipients(tuple(lists["To"]), tuple(lists["Cc"]), tuple(lists["Bcc"]))

    def status(self, el: etree._Element, name: str = "Status") -> Status:
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
                details = _all_text(kid).strip() if len(kid) else _text(kid)
        if code_text is None:
            raise ValidationError("Status has no StatusCode", where=self.where(name))
        match = _INTEGER.fullmatch(code_text)
        if match is None:
            raise ParseError(
                f"StatusCode must be an integer, got {code_text!r}", where=self.where(name)
            )
        return Status(int(match.group(1)), text, details)

    # -- the body
    def read(
        self,
        body: etree._Element,
        cls: type[Message],
        parts: Sequence[Part],
        kwargs: dict[str, Any],
    ) -> Message:
        """The message ``body`` holds; ``kwargs`` comes pre-filled with the envelope fields."""
        by_name = _BY_NAME[(self.op.name, self.version.token)]
        body_ns = namespace(body)
        by_tag = _tag_table(self.op.name, self.version.token, body_ns)
        any_version = _ANY_VERSION[self.op.name]
        last_index = -1
        content_href: str | None = None
        saw_content = False
        no_ns_reported = False
        readers = _VALUE_READERS
        for child in body:
            tag = child.tag
            if tag.__class__ is not str:  # a comment or processing instruction: no data
                continue
            # Fast path: '{body namespace}Name' of an element this version defines. It is read
            # even when out of sequence order: each element fills its own field, so order
            # carries no meaning for reading, and peers build bodies by hand in their own order
            # (we still emit in schema order). last_index is the furthest position reached so
            # far; anything behind it is out of order.
            found = by_tag.get(tag)
            if found is not None:
                index, element = found
                if index < last_index:
                    self.leniencies.append(Leniency.ELEMENT_ORDER)
                else:
                    last_index = index
                if element.kind is not Kind.CONTENT:
                    readers[element.kind](self, child, element, kwargs)
                    continue
            # Slow path: Content (below), or a child not in the body's namespace, or not an
            # element of this version.
            name = local(child)
            if body_ns is not None and namespace(child) is None and not no_ns_reported:
                # A writer that qualifies only the body element leaves its children in no
                # namespace. Their local names still say what they are: read them, and report
                # it once per body, not once per child.
                self.leniencies.append(Leniency.MM7_NO_NAMESPACE)
                no_ns_reported = True
            if found is not None:
                pass  # Content from the fast path
            elif (found := by_name.get(name)) is None:
                other = any_version.get(name)
                if other is None:
                    # No version of this operation has it: a vendor's own element. Kept for the
                    # application in ``extensions``, not refused.
                    self.leniencies.append(Leniency.UNKNOWN_ELEMENT)
                    self.extensions.append((name, _all_text(child)))
                    continue
                # Another schema version of this operation defines it (a REL-6 element under a
                # REL-5 namespace): peers pair namespace, MM7Version and element set freely, and
                # the model has a field for it whichever version it came from, so read it rather
                # than lose it. Its index belongs to another sequence: order is not judged.
                self.leniencies.append(Leniency.ELEMENT_OTHER_VERSION)
                element = other
            else:
                # This version's element by local name, in no namespace or another one: judged
                # for order like the fast path.
                index, element = found
                if index < last_index:
                    self.leniencies.append(Leniency.ELEMENT_ORDER)
                last_index = max(last_index, index)
            if element.kind is Kind.CONTENT:
                # Only the reference is read here: href names a MIME part, resolved after the
                # loop against the parts of the body (find_content).
                saw_content = True
                content_href = _attr(child, "href", self.leniencies, Leniency.HREF_QUALIFIED)
                allow = _attr(child, "allowAdaptations", self.leniencies, Leniency.HREF_QUALIFIED)
                if allow is not None:
                    kwargs["allow_adaptations"] = self.boolean(allow, f"{name}/@allowAdaptations")
                continue
            readers[element.kind](self, child, element, kwargs)
        # Parts without a <Content> element are still the content: some MMSCs send media with
        # no Content element, and find_content takes it (CONTENT_ELEMENT_MISSING).
        if (saw_content or parts) and self.op.name in _WITH_CONTENT:
            content = find_content(parts, content_href if saw_content else None, self.leniencies)
            if content is not None:
                kwargs["content"] = content
        self.check_required(kwargs)
        if self.extensions:
            kwargs["extensions"] = tuple(self.extensions)
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a required model field without an element
            raise ValidationError(str(exc), where=self.op.name) from None

    def check_required(self, kwargs: dict[str, Any]) -> None:
        """Refuse (4004) a body that lacks what the gateway cannot act without (``NEEDED``); read
        any other absent schema-required element under REQUIRED_ELEMENT_MISSING, listed in
        ``missing``. A strict reader refuses every absent schema-required element, as before.

        Two questions kept apart: "does it conform?" is the schema's (emission, ``mm7
        validate``, strict peers); "can we act on it?" is this one. Real MMSCs omit elements
        their own schema requires: Mbuni's DeliverReq in REL-5-MM7-1-0 has no ReplyChargingID
        (that schema and REL-5-MM7-1-1 forgot minOccurs="0"; TS 23.140 sends it only for
        reply-charged replies), and refusing it cuts off every MO of such an MMSC.

        A response carrying an error status needs only MM7Version and Status even when strict:
        TS 23.140 makes the other information elements of a response (SubmitRsp's MessageID)
        conditional on success, and MMSCs answering 2002 have no MessageID to give.
        """
        if _nothing_absent(
            kwargs, _REQUIRED[(self.op.name, self.version.token)], NEEDED.get(self.op.name, ())
        ):
            return  # the common case: nothing to name
        status = kwargs.get("status")
        failed = isinstance(status, Status) and not status.is_success
        previous = "the start of the body"
        missing: list[str] = []
        after: dict[str, str] = {}  # model attribute -> the element before it, for messages
        for element in self.op.sequence(self.version):
            after.setdefault(element.attr, previous)
            if element.required and element.attr and element.attr not in kwargs:
                if element.kind is Kind.SENDER_ID:
                    continue  # all its children are optional; an empty one is harmless
                if failed and element.kind not in (Kind.VERSION, Kind.STATUS):
                    continue
                if self.strict:
                    raise ValidationError(
                        f"missing required element {element.name} (expected after {previous} "
                        f"in {self.version.token})",
                        where=self.op.name,
                        status_code=4004,
                    )
                missing.append(element.name)
            previous = element.name
        for group in NEEDED.get(self.op.name, ()):
            # a blank value (<MessageID> </MessageID>) names nothing: as good as absent
            if not any(kwargs.get(attr) not in (None, "") for attr in group):
                names = " or ".join(_element_name(self.op, attr) for attr in group)
                before = after.get(group[0], "the start of the body")
                raise ValidationError(
                    f"missing required element {names} (expected after {before} in "
                    f"{self.version.token}): the message cannot be acted on without it",
                    where=self.op.name,
                    status_code=4004,
                )
        if missing:
            self.leniencies.append(Leniency.REQUIRED_ELEMENT_MISSING)
            self.missing.extend(missing)

    def value(self, child: etree._Element, element: Element, kwargs: dict[str, Any]) -> None:
        """Read one element's value into ``kwargs`` (by the model attribute it maps to)."""
        _VALUE_READERS[element.kind](self, child, element, kwargs)

    def sender_id(self, el: etree._Element, kwargs: dict[str, Any]) -> None:
        for kid in _children(el):
            tag = local(kid)
            element = _SENDER_ID_BY_NAME.get(tag)
            if element is None:
                self.leniencies.append(Leniency.UNKNOWN_ELEMENT)
                self.extensions.append((f"SenderIdentification/{tag}", _text(kid)))
            elif element.kind is Kind.SENDER_ADDRESS:
                kwargs[element.attr] = self.sender_address(kid)
            else:
                kwargs[element.attr] = _text(kid).strip()

    def sender_address(self, el: etree._Element) -> Address:
        """SenderAddress: xs:string up to REL-5-MM7-1-1, an address element after; either read."""
        if _children(el):
            if not self.version.typed_sender_address:
                self.leniencies.append(Leniency.SENDER_ADDRESS_TYPED)
            return self.address_element(_children(el)[0], "SenderAddress")
        text = _text(el).strip()
        if self.version.typed_sender_address:
            self.leniencies.append(Leniency.SENDER_BARE_TEXT)
        return self._plmn(Address.guess(text))


_Kwargs = dict[str, Any]


def _read_string(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    text = child.text or ""
    if element.name == "Subject" and "=?" in text:
        text = decode_rfc2047(text, r.leniencies)
    kwargs[element.attr] = text


def _read_stripped(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    kwargs[element.attr] = (child.text or "").strip()


def _read_id(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    value = (child.text or "").strip()
    # messageIDType / entityIDType are xs:NMTOKEN up to REL-5-MM7-1-1; an '@' or '/' in one
    # (MMSCs write message ids like "abc@mmsc") still names the message
    if r.nmtoken and value and not is_nmtoken(value):
        r.leniencies.append(Leniency.ID_NOT_NMTOKEN)
    kwargs[element.attr] = value


def _read_version(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    value = (child.text or "").strip()
    if r.version_known and value not in r.version.mm7_versions:
        r.leniencies.append(Leniency.VERSION_NAMESPACE_MISMATCH)
    kwargs[element.attr] = value


def _read_boolean(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    kwargs[element.attr] = r.boolean(_text(child), element.name)


def _read_datetime(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    text = child.text or ""
    # an empty date (<Date/>) says no more than a missing one: read as absent (a required one is
    # then named by check_required, REQUIRED_ELEMENT_MISSING, and refused by a strict reader)
    if text.strip():
        kwargs[element.attr] = r.datetime_text(text, element.name)


def _read_rel_date(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    kwargs[element.attr] = r.reldate_text(child.text or "", element.name)


def _read_enum(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    value = r.enum(child, element)
    if value is not None:
        kwargs[element.attr] = value


def _read_mm_status(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    reported = parse_mm_status(child.text or "", r.leniencies)
    kwargs[element.attr] = reported.value
    if reported.raw != reported.value.value:
        kwargs["mm_status_raw"] = reported.raw


def _read_read_status(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    read_status, raw = parse_read_status(child.text or "", r.leniencies)
    kwargs[element.attr] = read_status
    if raw != read_status.value:
        kwargs["mm_status_raw"] = raw


def _read_address(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    # an empty Sender or Recipient (<Sender/>, <Sender><Number/></Sender>) names nobody: read as
    # absent like a missing one, never as the address "" (which an opt-out would then record)
    kids = _children(child)
    if kids and (kids[0].text or "").strip():  # <Sender><Number>+1555...</Number></Sender>
        kwargs[element.attr] = r.address_element(kids[0], element.name)
        return
    if not _all_text(child).strip():
        return
    kwargs[element.attr] = r.address(child, element.name)


def _read_recipients(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    recipients = r.recipients(child)
    if element.required and not len(recipients):
        raise ValidationError(
            "Recipients holds no To, Cc or Bcc address: expected at least one",
            where=r.where(element.name),
        )
    kwargs[element.attr] = recipients


def _read_sender_id(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    r.sender_id(child, kwargs)


def _read_status(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    kwargs[element.attr] = r.status(child, element.name)


def _read_reply_charging(
    r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs
) -> None:
    name = element.name
    deadline = _attr(child, "replyDeadline", r.leniencies)
    kwargs[element.attr] = ReplyCharging(
        r.posint(_attr(child, "replyChargingSize", r.leniencies), name),
        r.reldate_text(deadline, name) if deadline is not None else None,
    )


def _read_delivery_condition(
    r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs
) -> None:
    kids = _children(child)
    texts = [_text(k) for k in kids] if kids else _text(child).split()
    kwargs[element.attr] = tuple(r.posint(t, element.name) or 0 for t in texts)


def _read_previously_sent_by(
    r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs
) -> None:
    name = element.name
    kwargs[element.attr] = tuple(
        PreviouslySentBy(
            r.address(k, f"{name}/UserAgent"),
            r.posint(_attr(k, "sequence", r.leniencies), name),
        )
        for k in _children(child)
    )


def _read_previously_sent_date(
    r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs
) -> None:
    name = element.name
    kwargs[element.attr] = tuple(
        PreviouslySentDate(
            r.reldate_text(_text(k), f"{name}/DateTime"),
            r.posint(_attr(k, "sequence", r.leniencies), name),
        )
        for k in _children(child)
    )


def _read_capabilities(
    r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs
) -> None:
    ts = _attr(child, "TimeStamp", r.leniencies)
    kwargs[element.attr] = UACapabilities(
        _attr(child, "UAProf", r.leniencies),
        r.reldate_text(ts, element.name) if ts is not None else None,
    )


def _read_sender_address(
    r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs
) -> None:
    kwargs[element.attr] = r.sender_address(child)


def _read_nothing(r: _Reader, child: etree._Element, element: Element, kwargs: _Kwargs) -> None:
    """Content is read by the body loop (it needs the MIME parts)."""


_VALUE_READERS: dict[Kind, Callable[[_Reader, etree._Element, Element, _Kwargs], None]] = {
    Kind.STRING: _read_string,
    Kind.ID: _read_id,
    Kind.SERVICE_CODE: _read_stripped,
    Kind.VERSION: _read_version,
    Kind.BOOLEAN: _read_boolean,
    Kind.DATETIME: _read_datetime,
    Kind.REL_DATE: _read_rel_date,
    Kind.ENUM: _read_enum,
    Kind.MM_STATUS: _read_mm_status,
    Kind.READ_STATUS: _read_read_status,
    Kind.ADDRESS: _read_address,
    Kind.RECIPIENTS: _read_recipients,
    Kind.SENDER_ID: _read_sender_id,
    Kind.STATUS: _read_status,
    Kind.CODE_ONLY_STATUS: _read_status,
    Kind.REPLY_CHARGING: _read_reply_charging,
    Kind.DELIVERY_CONDITION: _read_delivery_condition,
    Kind.DELIVERY_CONDITION_TEXT: _read_delivery_condition,
    Kind.PREVIOUSLY_SENT_BY: _read_previously_sent_by,
    Kind.PREVIOUSLY_SENT_DATE: _read_previously_sent_date,
    Kind.CAPABILITIES: _read_capabilities,
    Kind.SENDER_ADDRESS: _read_sender_address,
    Kind.CONTENT: _read_nothing,
}
assert set(_VALUE_READERS) == set(Kind)
#: operations whose body may carry a Content element
_WITH_CONTENT = frozenset(
    op.name for op in OPERATION_BY_NAME.values() if any(e.kind is Kind.CONTENT for e in op.elements)
)


_MODEL_CLASSES: dict[str, type[Message]] = {
    op.name: getattr(model, op.model) for op in OPERATION_BY_NAME.values()
}


def read_envelope(
    root: etree._Element,
    parts: Sequence[Part],
    leniencies: list[Leniency],
    *,
    strict: bool = False,
    missing: list[str] | None = None,
) -> tuple[Message, Version | None]:
    """The message an Envelope element holds, and the schema version it was read with.

    ``strict``: refuse (4004) every element the schema requires, not only what ``NEEDED``
    names; ``missing`` receives the names of absent schema-required elements read anyway."""
    env_ns = namespace(root)
    if local(root) != "Envelope" or env_ns not in (SOAP_ENV_NS, _SOAP_NS_NO_SLASH):
        raise ParseError(
            f"expected a SOAP 1.1 Envelope ({{{SOAP_ENV_NS}}}Envelope), got <{root.tag}>",
            where="SOAP part",
        )
    if env_ns == _SOAP_NS_NO_SLASH:
        leniencies.append(Leniency.ENVELOPE_NS_NO_SLASH)
    header = body = None
    for child in root:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        name = tag[tag.rfind("}") + 1 :]  # local(child), by namespace or none
        if name == "Header" and header is None:
            header = child
        elif name == "Body" and body is None:
            body = child
    if body is None:
        raise ParseError(
            "SOAP Envelope has no Body: expected a Body after the optional Header",
            where="SOAP part",
        )
    for first in body:
        if isinstance(first.tag, str):
            break
    else:
        raise ParseError("SOAP Body is empty: expected an MM7 request or response", where="Body")

    transaction_id = ""
    header_ns: str | None = None
    found_header = False
    if header is not None:
        for h in header.iter():
            tag = h.tag
            if isinstance(tag, str) and (tag.endswith("}TransactionID") or tag == "TransactionID"):
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
        fault = read_fault(
            first, parts, leniencies, transaction_id, header_ns, strict=strict, missing=missing
        )
        if found_header and fault.error is not None and header_ns != fault.namespace:
            leniencies.append(Leniency.HEADER_NS_MISMATCH)
        return fault, version_for_namespace(fault.namespace)

    message, version = read_body(
        first, parts, leniencies, header_ns, transaction_id, strict=strict, missing=missing
    )
    if (
        version is not None
        and version.nmtoken_identifiers
        and transaction_id
        and not is_nmtoken(transaction_id)
    ):
        leniencies.append(Leniency.ID_NOT_NMTOKEN)  # the TransactionID is xs:NMTOKEN there too
    if found_header and header_ns != message.namespace:
        # another MM7 namespace, or none at all, on the TransactionID; a body in no namespace
        # takes the header's (reported once, as MM7_NO_NAMESPACE)
        leniencies.append(Leniency.HEADER_NS_MISMATCH)
    return message, version


def read_body(
    el: etree._Element,
    parts: Sequence[Part],
    leniencies: list[Leniency],
    header_ns: str | None = None,
    transaction_id: str = "",
    *,
    strict: bool = False,
    missing: list[str] | None = None,
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
    reader = _Reader(
        op,
        read_version,
        leniencies,
        version_known=read_version is version,
        strict=strict,
        missing=missing,
    )
    envelope = {"namespace": ns, "transaction_id": transaction_id}
    return reader.read(el, _MODEL_CLASSES[op.name], parts, envelope), version


def read_fault(
    el: etree._Element,
    parts: Sequence[Part],
    leniencies: list[Leniency],
    transaction_id: str,
    header_ns: str | None,
    *,
    strict: bool = False,
    missing: list[str] | None = None,
) -> Fault:
    """A SOAP Fault, extracting an MM7 status from every shape seen in the field."""
    fields: dict[str, str] = {}
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
            error, _ = read_body(
                carried, parts, leniencies, header_ns, strict=strict, missing=missing
            )
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
                    assert parent is not None  # node is below detail, never detail itself
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
