"""The MMSC probe's plan: which SubmitReqs to send, each a ``Variant`` of one baseline.

    pairs = pair_variants(settings)                  # namespace/MM7Version pairs
    more = packaging_variants(accepted_pair, settings)   # one change each, on an accepted pair

The baseline is what the widest range of MMSCs takes: a JPEG and a text in a SMIL presentation,
Content-Length (not chunked), binary parts, SOAPAction "", numbers with '+' where the schema
allows it (xs:NMTOKEN versions get none), SenderAddress typed as the schema says. Pairs are each
namespace with its newest MM7Version and with 5.3.0 (which carriers ask for whatever they
speak). A packaging variant changes one thing from the baseline, so a refusal names its cause.
Every request is a real message to ``--to`` on a real MMSC: ``plan_size`` is what the probe
counts against ``--max-requests`` before it sends anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mm7.content.builder import build_presentation, to_part
from mm7.content.parts import Source, make_items, text_source
from mm7.core.dialect import STRICT_3GPP, Dialect
from mm7.core.mime import Part, make_multipart, make_part
from mm7.core.model import Address, AddressKind, Recipients, SubmitReq
from mm7.core.shipped import shipped
from mm7.core.versions import VERSIONS, Version

__all__ = [
    "LEGACY_MM7_VERSION",
    "ProbeSettings",
    "Variant",
    "packaging_variants",
    "pair_variants",
    "plan_size",
    "submit_for",
]

#: the MM7Version carriers ask for whatever schema they speak; every namespace allows it
LEGACY_MM7_VERSION = "5.3.0"
PHOTO = shipped("samples", "photo.jpg")


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """Who the probe's SubmitReqs go to and come from, and which schema versions to try."""

    #: the test handset (a real phone on a real MMSC)
    to: str
    #: SenderAddress (the VASP's short code or number); None: no SenderAddress sent
    sender: str | None = None
    vasp_id: str | None = None
    vas_id: str | None = None
    versions: tuple[Version, ...] = VERSIONS

    @property
    def has_plus(self) -> bool:
        """Whether ``to`` is written with '+' (then the probe also tries it without)."""
        return self.to.startswith("+")


@dataclass(frozen=True, slots=True)
class Variant:
    """One SubmitReq shape: a namespace/MM7Version pair and the packaging choices."""

    name: str
    #: one line: what this variant changes from the baseline
    what: str
    #: "pair" (a namespace/MM7Version pair, baseline packaging) or "packaging"
    kind: str
    version: Version
    mm7_version: str
    smil: bool = True
    chunked: bool = False
    transfer_encoding: str = "binary"
    number_plus: str = "keep"
    #: None: as the schema says
    typed_sender_address: bool | None = None
    soap_action: str = "empty"

    def dialect(self) -> Dialect:
        """The dialect that writes this variant (strict unless it breaks the schema on purpose:
        '+' in numbers where the schema types them xs:NMTOKEN)."""
        plus_in_nmtoken = self.number_plus == "keep" and self.version.nmtoken_identifiers
        return dataclasses.replace(
            STRICT_3GPP.with_version(self.version, self.mm7_version),
            name="probe",
            strict=not plus_in_nmtoken,
            chunked=self.chunked,
            transfer_encoding=self.transfer_encoding,
            number_plus=self.number_plus,
            typed_sender_address=self.typed_sender_address,
            soap_action=self.soap_action,
        )

    @property
    def pair(self) -> str:
        """``REL-6-MM7-1-4 + 6.8.0``: the namespace/MM7Version pair, for people."""
        return f"{self.version.token} + {self.mm7_version}"


def _baseline_plus(version: Version) -> str:
    return "strip" if version.nmtoken_identifiers else "keep"


def pair_variants(settings: ProbeSettings) -> list[Variant]:
    """Each namespace with its newest MM7Version, and with 5.3.0 when that is another one."""
    out: list[Variant] = []
    for version in settings.versions:
        values = [version.default_mm7_version]
        if version.default_mm7_version != LEGACY_MM7_VERSION:
            values.append(LEGACY_MM7_VERSION)
        for value in values:
            out.append(
                Variant(
                    name=f"pair/{version.token}/{value}",
                    what=f"namespace {version.token}, MM7Version {value}",
                    kind="pair",
                    version=version,
                    mm7_version=value,
                    number_plus=_baseline_plus(version),
                )
            )
    return out


def packaging_variants(base: Variant, settings: ProbeSettings) -> list[Variant]:
    """The packaging changes, one at a time, on the accepted pair ``base``."""

    def changed(name: str, what: str, **changes: Any) -> Variant:
        return dataclasses.replace(base, name=name, what=what, kind="packaging", **changes)

    out = [
        changed("no-smil", "the JPEG and text without a SMIL presentation", smil=False),
        changed("chunked", "Transfer-Encoding: chunked instead of Content-Length", chunked=True),
        changed("base64", "media parts base64 instead of binary", transfer_encoding="base64"),
    ]
    if settings.has_plus:
        if base.number_plus == "keep":
            out.append(changed("number-without-plus", "numbers without '+'", number_plus="strip"))
        else:
            out.append(
                changed(
                    "number-with-plus",
                    "numbers with '+' (invalid xs:NMTOKEN in this schema)",
                    number_plus="keep",
                )
            )
    if settings.sender is not None:
        if base.version.typed_sender_address:
            out.append(
                changed(
                    "sender-address-untyped",
                    "SenderAddress as plain text (the schema wants Number/ShortCode)",
                    typed_sender_address=False,
                )
            )
        else:
            out.append(
                changed(
                    "sender-address-typed",
                    "SenderAddress as <ShortCode>/<Number> (the schema wants plain text)",
                    typed_sender_address=True,
                )
            )
    out.append(
        changed("soapaction-namespace", "SOAPAction: the MM7 namespace", soap_action="namespace")
    )
    out.append(changed("soapaction-none", "no SOAPAction header", soap_action="none"))
    return out


def plan_size(settings: ProbeSettings) -> int:
    """The most SubmitReqs the probe sends: every pair, then the packaging variants once."""
    pairs = pair_variants(settings)
    return len(pairs) + (len(packaging_variants(pairs[0], settings)) if pairs else 0)


def submit_for(variant: Variant, settings: ProbeSettings, transaction_id: str) -> SubmitReq:
    """The SubmitReq of ``variant``: to ``settings.to``, its text naming the variant."""
    text = f"mm7 interop probe: {variant.name}"
    sender = None if settings.sender is None else Address.guess(settings.sender)
    return SubmitReq(
        transaction_id=transaction_id,
        vasp_id=settings.vasp_id,
        vas_id=settings.vas_id,
        sender_address=sender,
        recipients=Recipients(to=(Address(settings.to, AddressKind.NUMBER),)),
        subject="mm7 interop probe",
        content=_content(text, smil=variant.smil),
    )


def _content(text: str, *, smil: bool) -> Part:
    """The JPEG and ``text``: a SMIL presentation, or the two parts without one."""
    photo = PHOTO.read_bytes()
    if smil:
        items = make_items([Source(photo, filename="photo.jpg"), text_source(text)])
        return to_part(build_presentation(items))
    parts = [
        make_part(photo, "image/jpeg", content_id="photo", content_location="photo.jpg"),
        make_part(text.encode(), "text/plain; charset=utf-8", content_id="text"),
    ]
    return make_multipart(parts, "related", params={"type": "image/jpeg"}, content_id="content")
