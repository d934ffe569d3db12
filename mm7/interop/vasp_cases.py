"""The VASP suite's cases: what an MMSC sends a VASP, in every schema version, and the answer due.

    cases = select(build_cases(Parties(), run_id="r1", now=now), versions=("REL-5-MM7-1-0",))

A ``Case`` is one or more ``Exchange``s (a report's stages are several requests about one
message), each a typed request written by mm7's own writers in the case's version, sometimes
changed by a named ``Quirk``, with the MM7 status the VASP must answer. Names read
``group/what@version`` (``report/retrieved@REL-6-MM7-1-4``), so ``--only 'report/*'`` picks by
group. Everything a VASP would route or de-duplicate on is fresh per run (``run_id``): the
TransactionIDs and MessageIDs of one run never collide with another's.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mm7.content.builder import build_presentation, to_part
from mm7.content.parts import Source, make_items, text_source
from mm7.core.codec import Encoded, encode
from mm7.core.dialect import STRICT_3GPP, Dialect
from mm7.core.mime import Part, make_part
from mm7.core.model import (
    RESPONSE_FOR,
    Address,
    AddressKind,
    DeliverReq,
    DeliveryReportReq,
    ReadReplyReq,
    Recipients,
    Request,
    SubmitReq,
)
from mm7.core.shipped import shipped
from mm7.core.spec import OPERATION_BY_NAME, enum_values
from mm7.core.status import MMStatus, ReadStatus
from mm7.core.versions import VERSIONS, Version, get_version
from mm7.interop.quirks import Quirk, apply

__all__ = ["Case", "Exchange", "Parties", "build_cases", "parse_versions", "select"]

#: the sample photo shipped with mm7: the image of the image + SMIL case
PHOTO = shipped("samples", "photo.jpg")
TEXT = "Hello from the mm7 interop suite"
NON_ASCII_SUBJECT = "Grüße, Привет, 你好 ☕"


@dataclass(frozen=True, slots=True)
class Parties:
    """The addresses the suite's requests carry: the handset and the VASP's own short code."""

    handset: str = "+15551230001"
    short_code: str = "12345"


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request of a case and the answer it is due."""

    #: what this request is within its case ("Forwarded", "the MMSC's retry"); "" for one-offs
    label: str
    request: Request
    #: how it is written: the case's version, strict unless the case breaks the schema on purpose
    dialect: Dialect
    quirk: Quirk | None = None
    #: the MM7 status the answer must carry
    status: int = 1000
    #: whether the answer must echo the TransactionID and namespace (not for an unreadable body)
    echo: bool = True

    def encoded(self) -> Encoded:
        """The HTTP body and its Content-Type, quirk applied."""
        encoded = encode(self.request, self.dialect)
        if self.quirk is None:
            return encoded
        return apply(self.quirk, encoded, self.request.OPERATION)

    @property
    def expected(self) -> str:
        """The answer's operation: the matching response, or a VASPErrorRsp for an error."""
        if 1000 <= self.status < 2000:
            return RESPONSE_FOR[type(self.request)].OPERATION
        return "VASPErrorRsp"

    @property
    def namespace(self) -> str:
        """The MM7 namespace the request is written in, which the answer must echo."""
        return self.request.namespace or self.dialect.namespace


@dataclass(frozen=True, slots=True)
class Case:
    """A named check: what is sent (``what``, one line) and its exchanges, in order."""

    name: str
    version: Version
    what: str
    exchanges: tuple[Exchange, ...]


class _Builder:
    """The cases of one schema version; numbers every TransactionID and MessageID it hands out."""

    def __init__(self, version: Version, parties: Parties, run_id: str, now: datetime) -> None:
        self.version = version
        self.dialect = STRICT_3GPP.with_version(version)
        self.lenient = dataclasses.replace(self.dialect, strict=False)
        self.run_id = run_id
        self.now = now.replace(microsecond=0)
        number = parties.handset
        if version.nmtoken_identifiers:
            number = number.lstrip("+")  # xs:NMTOKEN there: no '+'
        self.handset = Address(number, AddressKind.NUMBER)
        self.short_code = Address(parties.short_code, AddressKind.SHORT_CODE)
        self.counter = 0

    def next_id(self, kind: str) -> str:
        self.counter += 1
        return f"{self.run_id}-{self.version.release}{self.version.revision}-{kind}{self.counter}"

    def case(self, name: str, what: str, *exchanges: Exchange) -> Case:
        return Case(f"{name}@{self.version.token}", self.version, what, exchanges)

    def one(
        self, request: Request, *, lenient: bool = False, quirk: Quirk | None = None
    ) -> Exchange:
        return Exchange("", request, self.lenient if lenient else self.dialect, quirk)

    # -- requests

    def deliver(self, content: Part | None, **changes: Any) -> DeliverReq:
        rc = (
            self.next_id("rc") if _required(self.version, "DeliverReq", "ReplyChargingID") else None
        )
        request = DeliverReq(
            transaction_id=self.next_id("t"),
            sender=self.handset,
            recipients=Recipients(to=(self.short_code,)),
            timestamp=self.now,
            reply_charging_id=rc,
            subject="mm7 interop",
            content=content,
        )
        return dataclasses.replace(request, **changes)

    def report(self, message_id: str, status: MMStatus, **changes: Any) -> DeliveryReportReq:
        request = DeliveryReportReq(
            transaction_id=self.next_id("t"),
            message_id=message_id,
            recipient=self.handset,
            sender=self.short_code,
            date=self.now,
            mm_status=status,
        )
        return dataclasses.replace(request, **changes)

    def read_reply(self, status: ReadStatus) -> ReadReplyReq:
        return ReadReplyReq(
            transaction_id=self.next_id("t"),
            message_id=self.next_id("m"),
            recipient=self.handset,
            sender=self.short_code,
            timestamp=self.now,
            mm_status=status,
        )

    # -- the cases

    def all(self, text: Part, slides: Part) -> list[Case]:
        return [
            *self.deliver_cases(text, slides),
            *self.report_cases(),
            *self.read_reply_cases(),
            *self.quirk_cases(text),
            *self.error_cases(),
        ]

    def deliver_cases(self, text: Part, slides: Part) -> list[Case]:
        several = Recipients(
            to=(self.short_code, Address(self.handset.value[:-1] + "2", AddressKind.NUMBER)),
            cc=(Address(self.short_code.value + "9", AddressKind.SHORT_CODE),),
        )
        return [
            self.case(
                "deliver/text", "DeliverReq, one text/plain part", self.one(self.deliver(text))
            ),
            self.case(
                "deliver/image-smil",
                "DeliverReq, a JPEG and a text in a SMIL presentation",
                self.one(self.deliver(slides)),
            ),
            self.case(
                "deliver/recipients",
                "DeliverReq to two To addresses and one Cc",
                self.one(self.deliver(text, recipients=several)),
            ),
            self.case(
                "deliver/no-sender",
                "DeliverReq without Sender (the schema requires one; anonymous MOs lack it)",
                self.one(self.deliver(text, sender=None), lenient=True),
            ),
            self.case(
                "deliver/non-ascii-subject",
                f"DeliverReq with the Subject {NON_ASCII_SUBJECT!r} (UTF-8)",
                self.one(self.deliver(text, subject=NON_ASCII_SUBJECT)),
            ),
        ]

    def report_cases(self) -> list[Case]:
        cases = [
            self.case(
                f"report/{status.lower()}",
                f"DeliveryReportReq, MMStatus {status}",
                self.one(self.report(self.next_id("m"), MMStatus(status))),
            )
            for status in enum_values("mmDeliveryStatus", self.version)
        ]
        staged = self.next_id("m")
        cases.append(
            self.case(
                "report/stages",
                "DeliveryReportReq Forwarded, then Retrieved, for one message",
                Exchange("Forwarded", self.report(staged, MMStatus.FORWARDED), self.dialect),
                Exchange("Retrieved", self.report(staged, MMStatus.RETRIEVED), self.dialect),
            )
        )
        retried = self.report(self.next_id("m"), MMStatus.RETRIEVED)
        cases.append(
            self.case(
                "report/duplicate-retry",
                "the same DeliveryReportReq twice, same TransactionID (the MMSC's retry)",
                Exchange("first", retried, self.dialect),
                Exchange("retry", retried, self.dialect),
            )
        )
        twice = self.next_id("m")
        cases.append(
            self.case(
                "report/duplicate",
                "one report sent twice under two TransactionIDs",
                Exchange("first", self.report(twice, MMStatus.RETRIEVED), self.dialect),
                Exchange("again", self.report(twice, MMStatus.RETRIEVED), self.dialect),
            )
        )
        late = self.next_id("m")
        cases.append(
            self.case(
                "report/out-of-order",
                "Retrieved, then a late Forwarded, for one message",
                Exchange("Retrieved", self.report(late, MMStatus.RETRIEVED), self.dialect),
                Exchange("Forwarded", self.report(late, MMStatus.FORWARDED), self.dialect),
            )
        )
        swapped = self.report(
            self.next_id("m"), MMStatus.RETRIEVED, recipient=self.short_code, sender=self.handset
        )
        cases.append(
            self.case(
                "report/swapped-addresses",
                "DeliveryReportReq as Mbuni sends it: handset in Sender, short code in Recipient",
                self.one(swapped),
            )
        )
        return cases

    def read_reply_cases(self) -> list[Case]:
        return [
            self.case(
                f"read-reply/{status.lower()}",
                f"ReadReplyReq, MMStatus {status}",
                self.one(self.read_reply(ReadStatus(status))),
            )
            for status in enum_values("mmReadStatus", self.version)
        ]

    def quirk_cases(self, text: Part) -> list[Case]:
        cases = [
            self.case(
                "quirk/deliver-no-namespace",
                "DeliverReq whose elements inside DeliverReq are in no namespace",
                self.one(self.deliver(text), quirk=Quirk.NO_NAMESPACE),
            ),
            self.case(
                "quirk/report-no-namespace",
                "DeliveryReportReq whose elements inside it are in no namespace",
                self.one(
                    self.report(self.next_id("m"), MMStatus.RETRIEVED), quirk=Quirk.NO_NAMESPACE
                ),
            ),
            self.case(
                "quirk/deliver-application-xml",
                "DeliverReq whose SOAP part is labelled application/xml",
                self.one(self.deliver(text), quirk=Quirk.APPLICATION_XML),
            ),
            self.case(
                "quirk/report-application-xml",
                "DeliveryReportReq sent as Content-Type: application/xml",
                self.one(
                    self.report(self.next_id("m"), MMStatus.RETRIEVED),
                    quirk=Quirk.APPLICATION_XML,
                ),
            ),
            self.case(
                "quirk/deliver-bare-xml",
                "DeliverReq as bare SOAP XML, no multipart and no content (Subject only)",
                self.one(self.deliver(None), lenient=True),
            ),
        ]
        if _required(self.version, "DeliverReq", "ReplyChargingID"):
            cases.append(
                self.case(
                    "quirk/deliver-no-reply-charging-id",
                    "DeliverReq without the ReplyChargingID this schema requires (Mbuni)",
                    self.one(self.deliver(text, reply_charging_id=None), lenient=True),
                )
            )
        return cases

    def error_cases(self) -> list[Case]:
        submit = SubmitReq(
            transaction_id=self.next_id("t"),
            sender_address=self.short_code,
            recipients=Recipients(to=(self.handset,)),
        )
        cut = self.report(self.next_id("m"), MMStatus.RETRIEVED)
        return [
            self.case(
                "error/submit-to-vasp",
                "a SubmitReq, which only an MMSC takes: 4003 (unsupported operation) is due",
                Exchange("", submit, self.dialect, status=4003),
            ),
            self.case(
                "error/broken-soap",
                "a DeliveryReportReq cut in half: 2007 (message format corrupt) is due",
                Exchange("", cut, self.dialect, Quirk.CUT_ENVELOPE, status=2007, echo=False),
            ),
        ]


def _required(version: Version, operation: str, element: str) -> bool:
    """Whether ``element`` of ``operation`` is required by ``version``'s schema."""
    return any(
        e.name == element and e.required for e in OPERATION_BY_NAME[operation].sequence(version)
    )


def _contents() -> tuple[Part, Part]:
    """The text part, and the JPEG + text SMIL presentation, shared by every version's cases."""
    text = make_part(TEXT.encode(), "text/plain; charset=utf-8", content_id="text1")
    photo = Source(PHOTO.read_bytes(), filename="photo.jpg")
    slides = to_part(build_presentation(make_items([photo, text_source(TEXT)])))
    return text, slides


def build_cases(
    parties: Parties,
    *,
    run_id: str,
    now: datetime,
    versions: Iterable[Version] = VERSIONS,
) -> list[Case]:
    """Every case, version by version (oldest first), in the order they are run."""
    text, slides = _contents()
    cases: list[Case] = []
    for version in versions:
        cases.extend(_Builder(version, parties, run_id, now).all(text, slides))
    return cases


def select(cases: Sequence[Case], only: Sequence[str] = ()) -> list[Case]:
    """The cases whose name matches one of ``only`` (shell-style patterns; a pattern without
    ``*?[`` matches the names it begins); every case when ``only`` is empty."""
    if not only:
        return list(cases)
    return [c for c in cases if any(_matches(c.name, p) for p in only)]


def _matches(name: str, pattern: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name.startswith(pattern)


def parse_versions(text: str) -> tuple[Version, ...]:
    """``--versions``: comma-separated tokens (REL-5-MM7-1-0,REL-6-MM7-1-4) or ``all``;
    KeyError names an unknown one and lists the known."""
    if text.strip().lower() == "all":
        return VERSIONS
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    if not tokens:
        raise KeyError("--versions: expected schema tokens such as REL-6-MM7-1-4, or all")
    found = sorted({get_version(t) for t in tokens})
    return tuple(found)
