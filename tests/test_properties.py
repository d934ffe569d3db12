"""Property tests of the codec: random valid messages of every operation and version survive
encode -> decode unchanged (and validate against our schema), and random damage to valid bodies
only ever raises ParseError.

Where the generators hold back (and why): IDs, service codes, addresses, Details and fault strings
are drawn without surrounding whitespace, since the reader strips it on purpose (pretty-printed
peers); a Subject never holds "=?", since the reader decodes RFC 2047 encoded-words there; address
values never hold "/TYPE=", since the reader strips the PLMN suffix; an untyped SenderAddress
(REL-5-MM7-1-0/1-1, xs:string) is drawn as ``Address.guess`` reads it back. Schema types are
honoured because every message is also validated: TransactionIDs, IDs and numbers are NMTOKENs up
to REL-5-MM7-1-1, address ids unique NCNames (xs:ID), a faultactor an xs:anyURI.
"""

from __future__ import annotations

import dataclasses
import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mm7.core import model
from mm7.core.codec import decode, encode
from mm7.core.dialect import STRICT_3GPP
from mm7.core.errors import EmitError, ParseError
from mm7.core.mime import Part, make_multipart, make_part, parse_swa
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
    RSErrorRsp,
    Status,
    SubmitReq,
    UACapabilities,
    VASPErrorRsp,
)
from mm7.core.spec import OPERATION_BY_NAME, OPERATIONS, Element, Kind, Operation, enum_values
from mm7.core.status import MMStatus, ReadStatus
from mm7.core.validate import validate_envelope
from mm7.core.values import Duration
from mm7.core.versions import VERSIONS, Version, get_version
from mm7.core.xmlsafe import parse_xml
from tests.helpers.samples import full_message, minimal_message

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------------------ text strategies

# Characters XML 1.0 cannot carry (C0 controls but TAB/LF/CR, U+FFFE, U+FFFF); surrogates (Cs)
# are excluded by category.
_NOT_XML = "".join(chr(c) for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)) + "\ufffe\uffff"
_SPECIAL = "<>&\"' \t\r\n]]>=;:/@+é€ß中😀\u00a0\u2028\u0085"
_CHAR = st.one_of(
    st.sampled_from(_SPECIAL),
    st.characters(exclude_categories=["Cs"], exclude_characters=_NOT_XML),
)
#: any non-empty XML text (an empty string is "absent" to the emitter)
TEXT = st.text(_CHAR, min_size=1, max_size=24)
#: text the reader keeps as is after its strip()
STRIPPED = TEXT.filter(lambda s: s == s.strip() and s != "")
_NAME_CHARS = st.sampled_from("abcXYZ019_-.:·éßΩж中")
#: an xs:NMTOKEN (what REL-5-MM7-1-0/1-1 require of IDs and numbers)
NMTOKEN = st.text(_NAME_CHARS, min_size=1, max_size=16)
NCNAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,8}", fullmatch=True)
URIS = st.from_regex(
    r"https?://[a-z0-9.\-]{1,12}(:[0-9]{1,5})?(/[A-Za-z0-9._~\-]{0,8}){0,3}", fullmatch=True
)
CID = st.from_regex(r"[a-z][a-z0-9.\-]{0,10}(@[a-z]{1,6}\.com)?", fullmatch=True)


def ids(version: Version) -> st.SearchStrategy[str]:
    """messageIDType/entityIDType values: NMTOKEN up to REL-5-MM7-1-1, xs:string after."""
    return NMTOKEN if version.nmtoken_identifiers else st.one_of(NMTOKEN, STRIPPED)


# ------------------------------------------------------------------------------ value strategies

_OFFSETS = st.one_of(
    st.just(UTC),
    st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)
#: aware datetimes with microseconds and zone offsets (compared as instants)
DATETIMES = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_OFFSETS
)
DURATIONS = st.builds(
    Duration,
    years=st.integers(0, 3000),
    months=st.integers(0, 400),
    days=st.integers(0, 10**5),
    hours=st.integers(0, 100),
    minutes=st.integers(0, 100),
    seconds=st.decimals(
        min_value=0, max_value=Decimal(10**6), allow_nan=False, allow_infinity=False, places=6
    ),
    negative=st.booleans(),
)
REL_DATES: st.SearchStrategy[Any] = st.one_of(DATETIMES, DURATIONS)
POSITIVE = st.integers(1, 10**9)


def _no_plmn(value: str) -> bool:
    return "/TYPE=" not in value.upper()


def numbers(version: Version) -> st.SearchStrategy[str]:
    digits = st.from_regex(r"[0-9]{1,15}", fullmatch=True)
    if version.nmtoken_identifiers:
        return st.one_of(digits, NMTOKEN)
    return st.one_of(digits, digits.map(lambda d: "+" + d), STRIPPED.filter(_no_plmn))


@st.composite
def addresses(draw: st.DrawFn, version: Version) -> Address:
    """An address of any kind with the attributes ``version`` allows."""
    kind = draw(st.sampled_from(AddressKind))
    if kind is AddressKind.RFC2822:
        value = draw(
            st.one_of(st.from_regex(r"[a-z0-9.]{1,8}@[a-z0-9]{1,8}\.org", fullmatch=True), STRIPPED)
        )
        assume(_no_plmn(value))
    else:
        value = draw(numbers(version))
    coding = ident = None
    if version.key >= (6, 0):
        coding = draw(st.none() | st.sampled_from(AddressCoding))
        ident = draw(st.none() | NCNAME)
    return Address(value, kind, draw(st.none() | st.booleans()), coding, ident)


def _untyped_sender(version: Version) -> st.SearchStrategy[Address]:
    """REL-5-MM7-1-0/1-1 SenderAddress is bare text: the kind comes back as Address.guess says."""
    digits = st.from_regex(r"\+?[0-9]{1,15}", fullmatch=True)
    return st.one_of(digits, STRIPPED.filter(_no_plmn)).map(Address.guess)


@st.composite
def recipients(draw: st.DrawFn, version: Version) -> Recipients:
    lists = [draw(st.lists(addresses(version), max_size=3).map(tuple)) for _ in range(3)]
    assume(sum(map(len, lists)) > 0)
    return Recipients(*lists)


@st.composite
def statuses(draw: st.DrawFn, code_only: bool = False) -> Status:
    code = draw(st.integers(1, 10**6))
    if code_only:  # extended*Rsp: the schema has no StatusText there
        return Status(code, "")
    text = draw(st.one_of(st.just(""), TEXT))
    details = draw(st.none() | st.just("") | STRIPPED)
    return Status(code, text, details)


_ENUM_CLASSES: dict[str, Any] = {
    "messageClass": model.MessageClass,
    "priority": model.Priority,
    "chargedParty": model.ChargedParty,
    "contentClass": model.ContentClass,
    "mmStatusExtension": model.MMStatusExtension,
    "mmDeliveryStatus": MMStatus,
    "mmReadStatus": ReadStatus,
}


def _enum(el: Element, version: Version) -> st.SearchStrategy[Any]:
    assert el.enum is not None
    cls = _ENUM_CLASSES[el.enum]
    return st.sampled_from([cls(v) for v in enum_values(el.enum, version)])


# ------------------------------------------------------------------------------ content

_LEAF_TYPES = (
    "text/plain; charset=utf-8",
    "text/plain",
    "application/smil",
    "image/jpeg",
    "image/gif",
    "audio/amr",
    "application/octet-stream",
    "text/x-vcard; charset=iso-8859-1",
)
CTES = st.sampled_from([None, "binary", "base64", "quoted-printable", "8bit"])


@st.composite
def contents(draw: st.DrawFn) -> Part:
    """The MM content: one leaf, or a multipart/related|mixed of leaves (possibly nested once),
    with random bytes in random Content-Transfer-Encodings and unique Content-IDs."""
    counter = iter(range(1000))

    def cid() -> str:
        return f"{draw(CID)}-{next(counter)}"

    def leaf() -> Part:
        return make_part(
            draw(st.binary(max_size=300)),
            draw(st.sampled_from(_LEAF_TYPES)),
            content_id=cid() if draw(st.booleans()) else None,
            content_location=draw(
                st.none() | st.from_regex(r"[a-z0-9]{1,8}\.[a-z]{3}", fullmatch=True)
            ),
            transfer_encoding=draw(CTES),
        )

    shape = draw(st.sampled_from(["leaf", "flat", "nested"]))
    if shape == "leaf":
        return dataclasses.replace(leaf(), content_id=cid())
    children = [leaf() for _ in range(draw(st.integers(1, 4)))]
    if shape == "nested":
        inner = make_multipart([leaf(), leaf()], "alternative", content_id=cid())
        children.insert(draw(st.integers(0, len(children))), inner)
    subtype = draw(st.sampled_from(["related", "mixed"]))
    params = {"type": "application/smil"} if subtype == "related" else {}
    return make_multipart(children, subtype, params=params, content_id=cid())


# ------------------------------------------------------------------------------ messages


def value_strategy(el: Element, version: Version, op: Operation) -> st.SearchStrategy[Any]:
    """A strategy of valid values of element ``el`` in ``version`` (its model attribute's type)."""
    kind = el.kind
    if kind is Kind.STRING:
        return TEXT.filter(lambda s: "=?" not in s) if el.name == "Subject" else TEXT
    if kind is Kind.ID:
        return ids(version)
    if kind is Kind.SERVICE_CODE:
        return STRIPPED
    if kind is Kind.BOOLEAN:
        return st.booleans()
    if kind is Kind.DATETIME:
        return DATETIMES
    if kind is Kind.REL_DATE:
        return REL_DATES
    if kind in (Kind.ENUM, Kind.MM_STATUS, Kind.READ_STATUS):
        return _enum(el, version)
    if kind is Kind.ADDRESS:
        return addresses(version)
    if kind is Kind.RECIPIENTS:
        return recipients(version)
    if kind is Kind.STATUS:
        return statuses()
    if kind is Kind.CODE_ONLY_STATUS:
        return statuses(code_only=True)
    if kind is Kind.REPLY_CHARGING:
        return st.builds(ReplyCharging, st.none() | POSITIVE, st.none() | REL_DATES)
    if kind in (Kind.DELIVERY_CONDITION, Kind.DELIVERY_CONDITION_TEXT):
        return st.lists(POSITIVE, min_size=1, max_size=4).map(tuple)
    if kind is Kind.PREVIOUSLY_SENT_BY:
        item = st.builds(PreviouslySentBy, addresses(version), st.none() | POSITIVE)
        return st.lists(item, min_size=1, max_size=3).map(tuple)
    if kind is Kind.PREVIOUSLY_SENT_DATE:
        item_d = st.builds(PreviouslySentDate, REL_DATES, st.none() | POSITIVE)
        return st.lists(item_d, min_size=1, max_size=3).map(tuple)
    if kind is Kind.CAPABILITIES:
        return st.builds(UACapabilities, st.none() | TEXT, st.none() | REL_DATES)
    if kind is Kind.CONTENT:
        return contents()
    raise AssertionError(f"no strategy for {el.name} ({kind})")


def _all_ids(message: Message) -> list[str]:
    """Every address id attribute in ``message`` (xs:ID: must be unique in a document)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, Address):
            if value.id is not None:
                found.append(value.id)
        elif isinstance(value, tuple):
            for item in value:
                walk(item)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type | Part):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name))

    walk(message)
    return found


@st.composite
def messages(draw: st.DrawFn, op: Operation, version: Version) -> Message:
    """A valid ``op`` of ``version``: required elements always, a random subset of the rest."""
    kwargs: dict[str, Any] = {
        "transaction_id": draw(ids(version)),  # xs:NMTOKEN up to REL-5-MM7-1-1
        "namespace": draw(st.sampled_from([None, version.namespace])),
        "mm7_version": draw(st.none() | st.sampled_from(version.mm7_versions)),
    }
    for el in op.sequence(version):
        if el.kind is Kind.VERSION:
            continue
        if el.kind is Kind.SENDER_ID:
            kwargs["vasp_id"] = draw(st.none() | ids(version))
            kwargs["vas_id"] = draw(st.none() | ids(version))
            sender = (
                addresses(version) if version.typed_sender_address else _untyped_sender(version)
            )
            kwargs["sender_address"] = draw(st.none() | sender)
            continue
        strategy = value_strategy(el, version, op)
        if el.required or draw(st.booleans()):
            kwargs[el.attr] = draw(strategy)
        if el.kind is Kind.CONTENT and el.attr in kwargs:
            kwargs["allow_adaptations"] = draw(st.none() | st.booleans())
    message: Message = getattr(model, op.model)(**kwargs)
    all_ids = _all_ids(message)
    assume(len(all_ids) == len(set(all_ids)))
    return message


@st.composite
def op_and_message(draw: st.DrawFn, op_name: str) -> tuple[Version, Message]:
    """A version that has operation ``op_name`` and a random message of it."""
    op = OPERATION_BY_NAME[op_name]
    token = draw(st.sampled_from([v.token for v in VERSIONS if op.exists_in(v)]))
    version = get_version(token)
    return version, draw(messages(op, version))


def _expected(message: Message, version: Version) -> Message:
    """What decode gives back: the namespace and MM7Version the emitter filled in."""
    return dataclasses.replace(
        message,
        namespace=version.namespace,
        mm7_version=message.mm7_version or version.default_mm7_version,
    )


def _soap(encoded: Any) -> Any:
    swa = parse_swa(encoded.body, encoded.content_type)
    return parse_xml(swa.soap)


# ------------------------------------------------------------------------------ round trip


@pytest.mark.parametrize("op_name", [op.name for op in OPERATIONS])
@PROPERTY
@given(data=st.data())
def test_random_valid_messages_round_trip_and_validate(op_name: str, data: st.DataObject) -> None:
    version, message = data.draw(op_and_message(op_name))
    encoded = encode(message, STRICT_3GPP.with_version(version))
    decoded = decode(encoded.body, encoded.content_type)
    assert decoded.message == _expected(message, version)
    assert decoded.version == version
    assert decoded.leniencies == ()
    report = validate_envelope(_soap(encoded))
    assert report.errors == ()
    assert (report.element, report.namespace) == (op_name, version.namespace)


@PROPERTY
@given(
    version=st.sampled_from(VERSIONS),
    error_cls=st.sampled_from([RSErrorRsp, VASPErrorRsp]),
    data=st.data(),
)
def test_random_faults_round_trip(version: Version, error_cls: Any, data: st.DataObject) -> None:
    error = error_cls(status=data.draw(statuses()), mm7_version=version.default_mm7_version)
    fault = Fault(
        transaction_id=data.draw(ids(version)),
        faultcode=data.draw(st.sampled_from(["Client", "Server", "env:Client"])),
        faultstring=data.draw(STRIPPED),
        faultactor=data.draw(st.none() | URIS),  # xs:anyURI
        error=error,
    )
    encoded = encode(fault, STRICT_3GPP.with_version(version))
    decoded = decode(encoded.body, encoded.content_type)
    back = decoded.message
    assert isinstance(back, Fault)
    assert back.faultcode == (
        fault.faultcode if ":" in fault.faultcode else f"env:{fault.faultcode}"
    )
    assert (back.faultstring, back.faultactor) == (fault.faultstring, fault.faultactor)
    assert back.error == _expected(error, version)
    assert back.status == error.status
    assert back.transaction_id == fault.transaction_id
    assert decoded.leniencies == ()
    assert validate_envelope(_soap(encoded)).errors == ()


# ---------------------------------------------------------------- emitter vs. libxml2's XSD types


@PROPERTY
@given(value=st.text(_CHAR, min_size=1, max_size=12))
def test_strict_nmtoken_check_agrees_with_the_schema(value: str) -> None:
    """Under REL-5-MM7-1-0 an ID the strict emitter accepts is one the schema accepts (and the
    refusal names the element and the version)."""
    version = get_version("REL-5-MM7-1-0")
    message = SubmitReq(
        transaction_id="tx",
        recipients=Recipients(to=(Address("15551230001"),)),
        linked_id=value,
    )
    try:
        encoded = encode(message, STRICT_3GPP.with_version(version))
    except EmitError as exc:
        assert "SubmitReq/LinkedID" in str(exc) and "REL-5-MM7-1-0" in str(exc)
        return
    assert validate_envelope(_soap(encoded)).errors == ()
    back = decode(encoded.body, encoded.content_type).message
    assert isinstance(back, SubmitReq) and back.linked_id == value.strip()


@PROPERTY
@given(value=st.text(_CHAR, min_size=1, max_size=12))
def test_strict_address_id_check_agrees_with_the_schema(value: str) -> None:
    """The id attribute is an xs:ID (an NCName): what the strict emitter writes validates."""
    message = SubmitReq(
        transaction_id="tx",
        recipients=Recipients(to=(Address("+15551230001", id=value),)),
    )
    try:
        encoded = encode(message, STRICT_3GPP)
    except EmitError as exc:
        assert "SubmitReq/To/@id" in str(exc)
        return
    assert validate_envelope(_soap(encoded)).errors == ()
    back = decode(encoded.body, encoded.content_type).message
    assert isinstance(back, SubmitReq) and back.recipients.to[0].id == value


@PROPERTY
@given(value=st.one_of(URIS, st.text(_CHAR, min_size=1, max_size=12)))
def test_strict_any_uri_check_agrees_with_the_schema(value: str) -> None:
    """A faultactor is an xs:anyURI: what the strict emitter writes validates."""
    fault = Fault(transaction_id="t", faultcode="Server", faultstring="x", faultactor=value)
    try:
        encoded = encode(fault, STRICT_3GPP)
    except EmitError as exc:
        assert str(exc).startswith("Fault/faultactor: ")
        return
    assert validate_envelope(_soap(encoded)).errors == ()


# ------------------------------------------------------------------------------ fuzzing


def _seed_bodies() -> list[tuple[str, bytes]]:
    """Valid bodies to damage: full and minimal messages of every operation in three versions,
    with content (SwA multipart) and without (bare SOAP)."""
    out = []
    for token in ("REL-5-MM7-1-0", "REL-6-MM7-1-0", "REL-6-MM7-1-4"):
        version = get_version(token)
        for op in OPERATIONS:
            if op.exists_in(version):
                for build in (full_message, minimal_message):
                    enc = encode(build(op, version), STRICT_3GPP.with_version(version))
                    out.append(_fixed_boundaries(enc.content_type, enc.body))
    return out


def _fixed_boundaries(content_type: str, body: bytes) -> tuple[str, bytes]:
    """The emitter's random boundaries replaced by fixed ones, so examples replay exactly."""
    for i, found in enumerate(dict.fromkeys(re.findall(rb"mm7-[0-9a-f]{24}", body))):
        fixed = b"mm7-%024d" % i
        body = body.replace(found, fixed)
        content_type = content_type.replace(found.decode(), fixed.decode())
    return content_type, body


SEEDS = _seed_bodies()
_TOKENS = [
    b"--",
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"<",
    b">",
    b"&",
    b"&#0;",
    b"]]>",
    b"<!DOCTYPE x [<!ENTITY a 'b'>]>",
    b"<?xml version='1.0' encoding='utf-16'?>",
    b'"',
    b"=?utf-8?b?",
    b"cid:",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Type: multipart/related; boundary=x\r\n",
]


def _boundary(content_type: str) -> bytes | None:
    marker = 'boundary="'
    at = content_type.find(marker)
    if at < 0:
        return None
    start = at + len(marker)
    return content_type[start : content_type.index('"', start)].encode()


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid body with 1-4 random edits: bit flips, inserted junk or tokens, deleted runs,
    truncation, spliced copies of its own bytes, and edits of the boundary delimiters."""
    content_type, body = draw(st.sampled_from(SEEDS))
    buf = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        if not buf:
            break
        at = draw(st.integers(0, len(buf) - 1))
        how = draw(
            st.sampled_from(["flip", "insert", "token", "delete", "truncate", "splice", "boundary"])
        )
        if how == "flip":
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif how == "token":
            buf[at:at] = draw(st.sampled_from(_TOKENS))
        elif how == "delete":
            del buf[at : at + draw(st.integers(1, 64))]
        elif how == "truncate":
            del buf[at:]
        elif how == "splice":
            src = draw(st.integers(0, len(buf) - 1))
            buf[at:at] = buf[src : src + draw(st.integers(1, 256))]
        else:
            delim = _boundary(content_type)
            if delim is None:
                continue
            where = [i for i in range(len(buf)) if buf.startswith(b"--" + delim, i)]
            if not where:
                continue
            pos = draw(st.sampled_from(where))
            edit = draw(st.sampled_from(["drop", "dup", "close", "rename", "space"]))
            line = b"--" + delim
            if edit == "drop":
                del buf[pos : pos + len(line)]
            elif edit == "dup":
                buf[at:at] = b"\r\n" + line + b"\r\n"
            elif edit == "close":
                buf[pos : pos + len(line)] = line + b"--"
            elif edit == "rename":
                buf[pos : pos + len(line)] = b"--" + delim[::-1]
            else:
                buf[pos : pos + len(line)] = line + b"   "
    if draw(st.integers(0, 9)) == 0:  # damage the Content-Type header too
        content_type = draw(
            st.sampled_from(
                [
                    "",
                    "text/xml",
                    "multipart/related",
                    'multipart/related; boundary="nope"',
                    content_type.replace("boundary=", "boundary=x"),
                    content_type.replace('start="<mm7-soap>"', 'start="<other>"'),
                    content_type[: draw(st.integers(0, len(content_type)))],
                ]
            )
        )
    return content_type, bytes(buf)


class _Hang(Exception):
    pass


@contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    """Turn a hang into a failure (a safety net, not a timing assertion: decode takes ~1 ms)."""

    def fire(signum: int, frame: Any) -> None:
        raise _Hang(f"decode did not return within {seconds} s")

    if not hasattr(signal, "SIGALRM"):  # pragma: no cover - no interval timers on Windows
        yield
        return
    old: Callable[..., Any] | int | None = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated=mutations())
def test_damaged_bodies_raise_only_parse_errors(mutated: tuple[str, bytes]) -> None:
    content_type, body = mutated
    with _watchdog(10.0):
        try:
            decoded = decode(body, content_type)
        except ParseError as exc:
            assert str(exc)  # says where and what
            assert exc.status_code in (2007, 4003, 4004)
            return
    assert isinstance(decoded.message, Message)


def test_fuzz_seeds_are_valid_bodies() -> None:
    """The fuzz starts from bodies that decode cleanly, with and without attachments."""
    assert len(SEEDS) == 2 * (14 + 14 + 18)
    assert any(ct.startswith("multipart/related") for ct, _ in SEEDS)
    assert any(ct.startswith("text/xml") for ct, _ in SEEDS)
    for content_type, body in SEEDS:
        assert decode(body, content_type).leniencies == ()
