"""Dialects: every emission choice real MMSCs disagree on, collected in one frozen, named object.

The codec never hard-codes a carrier's habit; it reads it from a Dialect. ``STRICT_3GPP`` is the
default; ``DIALECTS`` holds the named ones the field needs, and ``Dialect.from_mapping`` builds one
from configuration (conf/ files), refusing unknown keys by name.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mm7.core.errors import MM7Error
from mm7.core.versions import LATEST, Version, get_version

__all__ = [
    "BOOLEAN_SPELLINGS",
    "DATE_STYLES",
    "DIALECTS",
    "NUMBER_PLUS",
    "STRICT_3GPP",
    "TRANSFER_ENCODINGS",
    "Dialect",
    "DialectError",
    "get_dialect",
]

BOOLEAN_SPELLINGS = ("lower", "title", "upper", "digit")
DATE_STYLES = ("utc-z", "offset", "local-naive")
TRANSFER_ENCODINGS = ("binary", "8bit", "7bit", "base64", "quoted-printable")
NUMBER_PLUS = ("keep", "strip")
#: an XML namespace prefix (an ASCII NCName; names starting with "xml" are reserved)
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


class DialectError(MM7Error):
    """A dialect definition that names an unknown key or an impossible value."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """How to write MM7 for one peer. Field docs say what each knob changes on the wire."""

    name: str = "3gpp"
    #: schema version: namespace URI and element set
    version: Version = LATEST
    #: MM7Version element value; None = the newest the namespace allows
    mm7_version: str | None = None
    #: allow an MM7Version the namespace does not enumerate (6.7.0 under REL-6-MM7-1-4, "1.6")
    allow_any_mm7_version: bool = False
    #: SOAP envelope prefix: env, SOAP-ENV, soap, soapenv
    envelope_prefix: str = "env"
    #: MM7 prefix; "" writes the MM7 namespace as the default namespace of the body element
    mm7_prefix: str = "mm7"
    #: env:mustUnderstand="1" on TransactionID
    must_understand: bool = True
    #: emit the <?xml ...?> declaration
    xml_declaration: bool = True
    #: refuse what the version's schema forbids (else drop unknown fields, keep odd values)
    strict: bool = True
    #: spelling of xs:boolean values
    boolean_spelling: str = "lower"
    #: date-time style: utc-z (2024-01-02T03:04:05Z), offset, local-naive
    date_style: str = "utc-z"
    #: SenderAddress as an address element (None: as the version's schema says)
    typed_sender_address: bool | None = None
    #: for Number/ShortCode under NMTOKEN versions, or for carriers that want no '+': keep/strip
    number_plus: str = "keep"
    #: Content-Transfer-Encoding when the part does not set one; by media-type prefix first
    transfer_encoding: str = "binary"
    transfer_encoding_by_type: tuple[tuple[str, str], ...] = ()
    #: Content-ID headers as <id> (RFC 2392) or bare id
    content_id_brackets: bool = True
    #: emit start= and type= on the outer multipart/related
    emit_start: bool = True
    emit_type: bool = True
    #: start="<id>" or start="id"
    start_brackets: bool = True
    #: the SOAP part's Content-ID and the Content-Type it is labelled with
    soap_content_id: str = "mm7-soap"
    soap_content_type: str = 'text/xml; charset="utf-8"'
    #: Content-Transfer-Encoding header on the SOAP part (None: no header)
    soap_transfer_encoding: str | None = None
    #: Status/Details is element-only in every schema: wrap details text in this element
    #: (unqualified); None writes bare text, as many MMSCs do (invalid against the schema)
    details_element: str | None = "Reason"
    # --- HTTP knobs (data only: the transport layer reads them) ---
    #: SOAPAction header: "empty" (SOAPAction: ""), "namespace" (the MM7 namespace URI),
    #: "none" (no header), or any other string sent as the quoted value
    soap_action: str = "empty"
    #: chunked transfer-coding; default Content-Length (mBlox/NowSMS refuse chunked requests)
    chunked: bool = False
    #: extra HTTP headers on every request (carrier routing hints, API keys are secrets: not here)
    extra_headers: tuple[tuple[str, str], ...] = ()
    #: HTTP status of a SOAP Fault we send: 500 per the SOAP 1.1 HTTP binding; some peers want 200
    fault_http_status: int = 500
    #: accept a blank HTTP 200 in place of a response (a named leniency some aggregators need)
    accept_blank_200: bool = False
    #: extra labels for documentation and logs (e.g. which carrier it came from)
    notes: str = field(default="", compare=False)

    @property
    def namespace(self) -> str:
        return self.version.namespace

    @property
    def effective_mm7_version(self) -> str:
        return self.mm7_version or self.version.default_mm7_version

    def soap_action_header(self) -> str | None:
        """The SOAPAction header value to send, quoted as SOAP 1.1 wants; None: no header."""
        if self.soap_action == "none":
            return None
        if self.soap_action == "empty":
            return '""'
        if self.soap_action == "namespace":
            return f'"{self.namespace}"'
        return f'"{self.soap_action}"'

    def transfer_encoding_for(self, mime_type: str) -> str:
        """The CTE to use for a media part of ``mime_type`` (multipart containers excluded)."""
        for prefix, cte in self.transfer_encoding_by_type:
            if mime_type.startswith(prefix):
                return cte
        return self.transfer_encoding

    def __post_init__(self) -> None:
        _check_choice("boolean_spelling", self.boolean_spelling, BOOLEAN_SPELLINGS)
        _check_choice("date_style", self.date_style, DATE_STYLES)
        _check_choice("number_plus", self.number_plus, NUMBER_PLUS)
        _check_choice("transfer_encoding", self.transfer_encoding, TRANSFER_ENCODINGS)
        for prefix, cte in self.transfer_encoding_by_type:
            _check_choice(f"transfer_encoding_by_type[{prefix!r}]", cte, TRANSFER_ENCODINGS)
        if not 100 <= self.fault_http_status <= 599:
            raise DialectError(f"fault_http_status: {self.fault_http_status} is not an HTTP status")
        for name, value in self.extra_headers:
            if not name or any(c in name for c in " :\r\n") or "\r" in value or "\n" in value:
                raise DialectError(f"extra_headers: {name!r} is not a valid header")
        if not self.envelope_prefix:
            raise DialectError("envelope_prefix: must not be empty")
        for name in ("envelope_prefix", "mm7_prefix"):
            value = getattr(self, name)
            if value and (not _PREFIX.fullmatch(value) or value.lower().startswith("xml")):
                raise DialectError(f"{name}: {value!r} is not an XML prefix")
        if (
            self.mm7_version is not None
            and not self.allow_any_mm7_version
            and self.mm7_version not in self.version.mm7_versions
        ):
            raise DialectError(
                f"mm7_version: {self.mm7_version!r} is not allowed by {self.version.token} "
                f"(allowed: {', '.join(self.version.mm7_versions)}); "
                "set allow_any_mm7_version to emit it anyway"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base: Dialect | None = None) -> Dialect:
        """Build a dialect from configuration keys (the field names above); unknown keys fail."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"extends"})
        if unknown:
            raise DialectError(f"unknown dialect key(s): {', '.join(unknown)}")
        start = base
        if "extends" in data:
            try:
                start = get_dialect(str(data["extends"]))
            except KeyError as exc:
                raise DialectError(f"extends: {exc.args[0]}") from None
        values: dict[str, Any] = dict(data)
        values.pop("extends", None)
        if "version" in values and not isinstance(values["version"], Version):
            try:
                values["version"] = get_version(str(values["version"]))
            except KeyError as exc:
                raise DialectError(f"version: {exc.args[0]}") from None
        for key in ("transfer_encoding_by_type", "extra_headers"):
            if key in values:
                values[key] = _pairs(key, values[key])
        for key, value in values.items():
            _check_type(key, value)
        try:
            return dataclasses.replace(start or cls(), **values)
        except TypeError as exc:
            raise DialectError(str(exc)) from None

    def with_version(self, version: Version | str, mm7_version: str | None = None) -> Dialect:
        """This dialect speaking another namespace (and MM7Version, default: that namespace's)."""
        v = version if isinstance(version, Version) else get_version(version)
        return dataclasses.replace(self, version=v, mm7_version=mm7_version)


def _check_type(key: str, value: Any) -> None:
    """Refuse a configuration value of the wrong type, naming the key ("false" is not False).

    The type comes from the field's annotation: ``bool``/``str``, optionally ``| None``; other
    fields (version, transfer_encoding_by_type) are converted and checked by from_mapping.
    """
    annotation = str(_FIELD_TYPES[key])
    base = annotation.removesuffix(" | None")
    if value is None and base != annotation:
        return
    want = {"bool": bool, "str": str, "int": int}.get(base)
    if want is int and isinstance(value, bool):
        raise DialectError(f"{key}: expected an integer, got {value!r}")
    if want is not None and not isinstance(value, want):
        label = {bool: "true/false", str: "a string", int: "an integer"}[want]
        raise DialectError(f"{key}: expected {label}, got {value!r}")


def _pairs(key: str, value: Any) -> tuple[tuple[str, str], ...]:
    """A table {name: value} or a list of [name, value] pairs, as a tuple of pairs."""
    items: list[tuple[Any, ...]]
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = [tuple(p) if isinstance(p, list | tuple) else (p,) for p in value]
    else:
        items = [()]
    if not all(len(p) == 2 and all(isinstance(x, str) for x in p) for p in items):
        raise DialectError(f"{key}: expected a table of name = value strings, got {value!r}")
    return tuple((p[0], p[1]) for p in items)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise DialectError(f"{name}: {value!r} is not one of {', '.join(choices)}")


#: field name -> its annotation (a string: this module uses postponed annotations)
_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(Dialect)}

STRICT_3GPP = Dialect()

DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        STRICT_3GPP,
        Dialect(
            name="mbuni",
            version=get_version("REL-5-MM7-1-0"),
            envelope_prefix="SOAP-ENV",
            mm7_prefix="mm7",
            number_plus="strip",
            notes="Mbuni mmsbox defaults: REL-5-MM7-1-0 with 5.3.0, SOAP-ENV envelope prefix",
        ),
        Dialect(
            name="nokia",
            version=get_version("REL-6-MM7-1-4"),
            mm7_prefix="mm7p6a0",
            transfer_encoding="base64",
            transfer_encoding_by_type=(("text/", "8bit"), ("application/smil", "8bit")),
            notes="Nokia MMSC MC5 style: mm7p6a0 prefix, base64 media",
        ),
        Dialect(
            name="rel5-legacy",
            version=get_version("REL-5-MM7-1-2"),
            mm7_version="5.3.0",
            notes="REL-5-MM7-1-2 with 5.3.0 (Nokia MC4, Oracle OCSG native MM7)",
        ),
        Dialect(
            name="aggregator",
            version=get_version("REL-6-MM7-1-4"),
            soap_action="namespace",
            mm7_prefix="",
            number_plus="strip",
            content_id_brackets=False,
            start_brackets=False,
            notes="Skycore/Sinch style: default namespace, numbers without '+', bare Content-IDs",
        ),
        Dialect(
            name="openmarket",
            version=get_version("REL-6-MM7-1-4"),
            mm7_prefix="ns3",
            envelope_prefix="soapenv",
            notes="OpenMarket style: ns3 prefix",
        ),
    )
}


def get_dialect(name: str) -> Dialect:
    """A named dialect; KeyError lists the names."""
    try:
        return DIALECTS[name]
    except KeyError:
        raise KeyError(f"unknown dialect {name!r}; known: {', '.join(DIALECTS)}") from None
