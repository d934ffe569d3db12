"""Benchmarks of the mm7 package, each measured against baselines timed in the same run.

    python tools/bench.py                          # every benchmark, human-readable
    python tools/bench.py --only codec --json      # one JSON object on stdout
    python tools/bench.py --only codec --quick     # a few seconds, for CI smoke checks
    python tools/bench.py --only codec --profile 25  # also cProfile the mm7 side

The machine this runs on is shared and noisy, so absolute numbers mean little; what is reported
are ratios against baselines interleaved with our code in one process pinned to one core (the
best of several repeats of each, so a noisy neighbour only ever costs a repeat, not the result).

Benchmarks register themselves in ``BENCHMARKS`` with ``@benchmark("name")``; each returns a flat
``{key: number}`` dict that becomes ``{"name": {...}}`` in the JSON output, so later benchmarks
(mt, mo, simulator) add their own keys next to ``codec`` without touching the driver.

``codec``: emit + parse of one SubmitReq carrying a 100 KB JPEG, a SMIL presentation (the start
of a nested multipart/related) and a text part, as one message; against
  (a) what a Python user would otherwise write: zeep's XSD objects for the envelope (our generated
      REL-6-MM7-1-4 schema) and the standard library's ``email`` package for the MIME;
  (b) the floor: lxml parse + serialise of the same envelope and one copy of the body bytes.
It reports ``msgs_per_s`` (ours), ``vs_zeep_email`` (ours / a, target >= 10) and ``vs_floor``
(b / ours, target <= 3).

``codec_small``: decode of the small documents of every MT message (a SubmitRsp and a
DeliveryReportReq, bare and multipart-wrapped), each against its own lxml floor.

``content``: fitting a 4 MB photo into a 300 KB carrier profile (see its section below).

The multi-process benchmarks (real ``mm7 serve`` / ``mm7 simulate`` processes and load
generators on loopback) live in tools/bench/ and are registered at the end of this file:
``sim`` (the simulator as an MMSC), ``mt`` (API -> store -> dispatcher -> simulator), ``loss``
(SIGKILL under load), ``memory`` (50 x 5 MB in flight), ``campaign`` (100,000 recipients) and
``mo`` (MO ingest and relay); each compares itself with a bare-aiohttp baseline or a limit
measured in the same run (BENCHMARKS.md). ``pgdriver`` compares the PostgreSQL drivers (asyncpg,
psycopg 3) on the store's hot statements, and ``pgbucket`` a link's limit held by a shared token
bucket in the store against link ownership's lease (tools/bench/pgbucket.py); they need a
PostgreSQL server and report nothing (saying why) without one. ``cluster_mt``, ``cluster_mo``
and ``cluster_loss`` run the gateway on SQLite and on PostgreSQL with one and two processes (two
instances, ``--workers 2``) and kill the link's owner of two instances under load
(tools/bench/cluster_*.py); they too need the server.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import json
import math
import os
import pstats
import random
import statistics
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from time import perf_counter, process_time
from typing import Any, TextIO

import structlog
from lxml import etree

from mm7.core.codec import decode, encode
from mm7.core.dialect import STRICT_3GPP, Dialect
from mm7.core.limits import Limits
from mm7.core.mime import Part, make_multipart, make_part
from mm7.core.model import (
    Address,
    AddressKind,
    ChargedParty,
    ContentClass,
    MessageClass,
    Priority,
    Recipients,
    SubmitReq,
)
from mm7.core.values import Duration
from mm7.core.versions import SOAP_ENV_NS, get_version

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "schemas"


# --------------------------------------------------------------------------- driver


@dataclass(frozen=True, slots=True)
class Settings:
    """How long to measure and where human-readable lines go."""

    #: a short run (CI smoke check): fewer, shorter repeats
    quick: bool
    #: print the top N functions of a cProfile run of the mm7 side; 0 = no profile
    profile: int
    #: human-readable output (stderr when stdout carries JSON)
    out: TextIO

    @property
    def repeats(self) -> int:
        """Timed repeats per case; the best one counts."""
        return 3 if self.quick else 7

    @property
    def repeat_seconds(self) -> float:
        """Target wall time of one repeat of one case."""
        return 0.02 if self.quick else 0.3

    def say(self, line: str = "") -> None:
        """Print one human-readable line."""
        print(line, file=self.out, flush=True)


BenchFn = Callable[[Settings], dict[str, Any]]
#: name -> benchmark, in the order they run when --only is not given
BENCHMARKS: dict[str, BenchFn] = {}


def benchmark(name: str) -> Callable[[BenchFn], BenchFn]:
    """Register a benchmark under ``name`` (its key in the JSON output and for --only)."""

    def register(fn: BenchFn) -> BenchFn:
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} registered twice")
        BENCHMARKS[name] = fn
        return fn

    return register


@dataclass(slots=True)
class Case:
    """One timed operation (a full emit + parse round) and its per-call timings."""

    label: str
    fn: Callable[[], object]
    calls: int = 1
    samples: list[float] = dataclasses.field(default_factory=list)

    @property
    def best(self) -> float:
        """Seconds per call in the fastest repeat: the least disturbed by other load."""
        return min(self.samples)

    @property
    def median(self) -> float:
        """Seconds per call in the median repeat."""
        return statistics.median(self.samples)


def _loop(fn: Callable[[], object], calls: int, clock: Callable[[], float] = perf_counter) -> float:
    """Seconds of ``clock`` for ``calls`` calls of ``fn``."""
    start = clock()
    for _ in range(calls):
        fn()
    return clock() - start


def measure(
    cases: Sequence[Case],
    repeats: int,
    seconds: float,
    clock: Callable[[], float] = perf_counter,
) -> None:
    """Warm every case up, size its loop to ``seconds``, then time ``repeats`` rounds interleaved.

    Interleaving (a, b, c, a, b, c, ...) spreads slow phases of a shared machine over all cases
    instead of penalising whichever ran during them, which keeps the ratios honest. The garbage
    collector stays on, as in a running gateway; a collection before each timed loop keeps one
    case's garbage from being collected on another's clock.

    ``clock`` is wall time by default. The codec benchmarks pass ``process_time``, the CPU time
    of this single-threaded process: time the pinned core spends on other processes' work is
    then not counted to whichever case was running.
    """
    for case in cases:
        case.fn()  # first call: imports, caches, lazily built tables
        calls = 1
        while True:
            spent = _loop(case.fn, calls, clock)
            if spent >= seconds / 2 or calls >= 1 << 20:
                break
            calls *= 2
        case.calls = max(1, math.ceil(seconds * calls / max(spent, 1e-9)))
    for _ in range(repeats):
        for case in cases:
            gc.collect()
            case.samples.append(_loop(case.fn, case.calls, clock) / case.calls)


def pin_to_one_core() -> str:
    """Pin this process to one CPU, so the run is single-core; returns what was done.

    The highest-numbered allowed CPU is taken: CPU 0 tends to serve more interrupts.
    """
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity on this platform)"
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1]
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu} of {len(allowed)} allowed"


def profile(fn: Callable[[], object], calls: int, top: int, settings: Settings) -> None:
    """cProfile ``calls`` calls of ``fn`` and print the ``top`` functions by own time."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    settings.say(text.getvalue().rstrip())
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)
    settings.say(text.getvalue().rstrip())


# --------------------------------------------------------------------------- the codec payload

MM7_VERSION = get_version("REL-6-MM7-1-4")
WHEN = datetime(2026, 11, 24, 21, 30, 5, tzinfo=UTC)
JPEG_SIZE = 100 * 1024
SMIL = (
    b'<smil><head><layout><root-layout width="640" height="960"/>'
    b'<region id="Image" top="0" left="0" height="70%" width="100%"/>'
    b'<region id="Text" top="70%" left="0" height="30%" width="100%"/></layout></head>'
    b'<body><par dur="8000ms"><img src="cid:image1" region="Image"/>'
    b'<text src="cid:text1" region="Text"/></par></body></smil>'
)
TEXT = (
    "Grüße aus Zürich! Your order #48213 has shipped — tap the picture for tracking. "
    "Reply STOP to opt out."
).encode()
SUBJECT = "Your order #48213 — Grüße & <thanks>"


def _segment(marker: int, payload: bytes) -> bytes:
    """A JPEG marker segment: FF xx, big-endian length (which counts itself), payload."""
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _huffman_table(table_class: int, table_id: int, symbols: bytes, length: int) -> bytes:
    """A DHT table giving every symbol a code of ``length`` bits (a valid, complete-enough code:
    fewer than 2**length - 1 symbols, so no all-ones code)."""
    counts = bytearray(16)
    counts[length - 1] = len(symbols)
    return bytes([table_class << 4 | table_id]) + bytes(counts) + symbols


def make_jpeg(size: int = JPEG_SIZE, seed: int = 23140) -> bytes:
    """A ``size``-byte baseline JFIF JPEG: SOI, APP0, DQT, SOF0 (640x960, 4:2:0 YCbCr), DHT, SOS,
    random entropy-coded data with 0xFF byte-stuffing, EOI. Markers and lengths are valid, so
    MIME sniffers and marker walkers see a real JPEG; the pixels are noise. Deterministic.
    """
    rng = random.Random(seed)
    app0 = _segment(0xE0, b"JFIF\x00" + struct.pack(">BBBHHBB", 1, 1, 1, 72, 72, 0, 0))
    luma = bytes(min(255, 2 + i // 2) for i in range(64))
    chroma = bytes(min(255, 4 + i) for i in range(64))  # coarser, as encoders make it
    dqt = _segment(0xDB, b"\x00" + luma + b"\x01" + chroma)
    sof0 = _segment(
        0xC0,
        struct.pack(">BHHB", 8, 960, 640, 3) + bytes([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]),
    )
    dc_symbols = bytes(range(12))
    ac_symbols = bytes([0x00, 0xF0]) + bytes(r << 4 | s for r in range(16) for s in range(1, 11))
    dht = _segment(
        0xC4,
        _huffman_table(0, 0, dc_symbols, 4)
        + _huffman_table(1, 0, ac_symbols, 8)
        + _huffman_table(0, 1, dc_symbols, 4)
        + _huffman_table(1, 1, ac_symbols, 8),
    )
    sos = _segment(0xDA, bytes([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]))
    head = b"\xff\xd8" + app0 + dqt + sof0 + dht + sos
    need = size - len(head) - 2
    scan = rng.randbytes(need).replace(b"\xff", b"\xff\x00")[:need]
    if scan.endswith(b"\xff"):  # the cut fell between 0xFF and its stuffed 0x00
        scan = scan[:-1] + b"\x00"
    jpeg = head + scan + b"\xff\xd9"
    if len(jpeg) != size:
        raise ValueError(f"cannot make a {size}-byte JPEG (headers alone take {len(head) + 2})")
    return jpeg


JPEG = make_jpeg()


def mm7_content() -> Part:
    """The MM as our API builds it: multipart/related with the SMIL as its start."""
    return make_multipart(
        [
            make_part(SMIL, "application/smil", content_id="smil", content_location="mms.smil"),
            make_part(JPEG, "image/jpeg", content_id="image1", content_location="image1.jpg"),
            make_part(
                TEXT,
                "text/plain; charset=utf-8",
                content_id="text1",
                content_location="text1.txt",
            ),
        ],
        "related",
        params={"type": "application/smil", "start": "<smil>"},
        content_id="mm7-content",
    )


def mm7_message() -> SubmitReq:
    """A typical, fairly complete SubmitReq with its content, built from plain values."""
    return SubmitReq(
        transaction_id="bench-0000000001",
        namespace=MM7_VERSION.namespace,
        mm7_version=MM7_VERSION.default_mm7_version,
        vasp_id="vasp01",
        vas_id="vas01",
        sender_address=Address("12345", AddressKind.SHORT_CODE),
        recipients=Recipients(
            to=(
                Address("+15551230001"),
                Address("+15551230002"),
                Address("user@example.com", AddressKind.RFC2822, display_only=True),
            ),
            bcc=(Address("+15551230003"),),
        ),
        service_code="svc-1",
        linked_id="linked-1",
        message_class=MessageClass.INFORMATIONAL,
        timestamp=WHEN,
        earliest_delivery_time=WHEN,
        expiry_date=Duration(days=7),
        delivery_report=True,
        read_reply=False,
        priority=Priority.NORMAL,
        subject=SUBJECT,
        charged_party=ChargedParty.SENDER,
        distribution_indicator=False,
        content_class=ContentClass.IMAGE_RICH,
        allow_adaptations=True,
        content=mm7_content(),
    )


# --------------------------------------------------------------------------- baseline (a)


class ZeepEmail:
    """Baseline (a): zeep XSD objects for the SOAP envelope, ``email`` for the MIME.

    It is written as a careful user would: the schema loaded once, the modern EmailMessage API
    with CRLF line ends, 8bit text parts, and base64 for the JPEG, the only encoding with which
    ``email`` carries binary intact (its generator rewrites bare CR and LF in 8bit bodies).
    """

    def __init__(self) -> None:
        from zeep.loader import load_external
        from zeep.settings import Settings as ZeepSettings
        from zeep.transports import Transport
        from zeep.xsd import Schema

        path = SCHEMAS / f"{MM7_VERSION.token}.xsd"
        transport = Transport()  # type: ignore[no-untyped-call]
        settings = ZeepSettings()
        with path.open("rb") as fh:
            root = load_external(fh, transport, base_url=path.as_uri(), settings=settings)
        self.schema: Any = Schema(  # type: ignore[no-untyped-call]
            root, transport=transport, location=path.as_uri(), settings=settings
        )
        ns = MM7_VERSION.namespace
        self.submit_req: Any = self.schema.get_element(f"{{{ns}}}SubmitReq")
        self.transaction_id: Any = self.schema.get_element(f"{{{ns}}}TransactionID")
        self.nsmap = {"env": SOAP_ENV_NS, "mm7": ns}
        self.policy = email_policy.default.clone(linesep="\r\n")
        self.parser = etree.XMLParser(resolve_entities=False, no_network=True)

    # -- emit

    def envelope(self) -> bytes:
        """The SubmitReq envelope built from zeep element objects and rendered by zeep."""
        env = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap=self.nsmap)
        header = etree.SubElement(env, f"{{{SOAP_ENV_NS}}}Header")
        self.transaction_id.render(
            header, self.transaction_id("bench-0000000001", mustUnderstand=True)
        )
        body = etree.SubElement(env, f"{{{SOAP_ENV_NS}}}Body")
        value = self.submit_req(
            MM7Version=MM7_VERSION.default_mm7_version,
            SenderIdentification={
                "VASPID": "vasp01",
                "VASID": "vas01",
                "SenderAddress": {"ShortCode": {"_value_1": "12345"}},
            },
            Recipients={
                "_value_1": [
                    {
                        "To": {
                            "_value_1": [
                                {"Number": {"_value_1": "+15551230001"}},
                                {"Number": {"_value_1": "+15551230002"}},
                                {
                                    "RFC2822Address": {
                                        "_value_1": "user@example.com",
                                        "displayOnly": True,
                                    }
                                },
                            ]
                        }
                    },
                    {"Bcc": {"_value_1": [{"Number": {"_value_1": "+15551230003"}}]}},
                ]
            },
            ServiceCode={"_value_1": "svc-1"},
            LinkedID="linked-1",
            MessageClass="Informational",
            TimeStamp=WHEN,
            EarliestDeliveryTime=WHEN,
            ExpiryDate="P7D",
            DeliveryReport=True,
            ReadReply=False,
            Priority="Normal",
            Subject=SUBJECT,
            ChargedParty="Sender",
            DistributionIndicator=False,
            ContentClass="image-rich",
            Content={"href": "cid:mm7-content", "allowAdaptations": True},
        )
        self.submit_req.render(body, value)
        return bytes(etree.tostring(env, xml_declaration=True, encoding="utf-8"))

    def encode(self) -> tuple[str, bytes]:
        """(Content-Type, HTTP body) of the SubmitReq as SOAP with attachments."""
        pol = self.policy
        soap = EmailMessage(policy=pol)
        soap.set_content(
            self.envelope().decode("utf-8"),
            subtype="xml",
            charset="utf-8",
            cte="8bit",
            cid="<mm7-soap>",
        )
        smil = EmailMessage(policy=pol)
        smil.set_content(
            SMIL,
            "application",
            "smil",
            cte="8bit",
            cid="<smil>",
            headers=["Content-Location: mms.smil"],
        )
        image = EmailMessage(policy=pol)
        image.set_content(
            JPEG,
            "image",
            "jpeg",
            cte="base64",
            cid="<image1>",
            headers=["Content-Location: image1.jpg"],
        )
        text = EmailMessage(policy=pol)
        text.set_content(
            TEXT,
            "text",
            "plain",
            params={"charset": "utf-8"},
            cte="8bit",
            cid="<text1>",
            headers=["Content-Location: text1.txt"],
        )
        content = EmailMessage(policy=pol)
        content.add_header(
            "Content-Type", "multipart/related", type="application/smil", start="<smil>"
        )
        content.add_header("Content-ID", "<mm7-content>")
        for part in (smil, image, text):
            content.attach(part)
        outer = EmailMessage(policy=pol)
        outer.add_header("Content-Type", "multipart/related", type="text/xml", start="<mm7-soap>")
        outer.attach(soap)
        outer.attach(content)
        raw = outer.as_bytes()
        body = raw[raw.index(b"\r\n\r\n") + 4 :]
        return str(outer["Content-Type"]), body

    # -- parse

    def decode(self, content_type: str, body: bytes) -> tuple[Any, Any, list[bytes]]:
        """(TransactionID, SubmitReq, decoded content bodies) parsed back from the HTTP body."""
        msg = BytesParser(policy=self.policy).parsebytes(
            b"Content-Type: " + content_type.encode("ascii") + b"\r\n\r\n" + body
        )
        start = msg.get_param("start")
        soap: Any = None
        content: Any = None
        for part in msg.iter_parts():
            if part["Content-ID"] == start:
                soap = part
            elif part["Content-ID"] == "<mm7-content>":
                content = part
        root = etree.fromstring(soap.get_payload(decode=True), self.parser)
        header = root.find(f"{{{SOAP_ENV_NS}}}Header")
        body_el = root.find(f"{{{SOAP_ENV_NS}}}Body")
        assert header is not None and body_el is not None
        tid = self.transaction_id.parse(header[0], self.schema)
        req = self.submit_req.parse(body_el[0], self.schema)
        bodies = [bytes(p.get_payload(decode=True)) for p in content.iter_parts()]
        return tid, req, bodies

    def round_trip(self) -> object:
        """One message: emit, then parse."""
        content_type, body = self.encode()
        return self.decode(content_type, body)


# --------------------------------------------------------------------------- the codec benchmark


def _ours(dialect: Dialect) -> Callable[[], object]:
    """One message through the mm7 codec: build, encode with ``dialect``, decode."""

    def round_trip() -> object:
        encoded = encode(mm7_message(), dialect)
        return decode(encoded.body, encoded.content_type)

    return round_trip


def _floor(envelope: bytes, body: bytes) -> Callable[[], object]:
    """The floor: lxml parse + serialise of the envelope, and one real copy of the body."""
    fromstring = etree.fromstring
    tostring = etree.tostring

    def round_trip() -> object:
        tostring(fromstring(envelope))
        return memoryview(body).tobytes()

    return round_trip


def _check_equivalent(base: ZeepEmail) -> tuple[bytes, bytes, int]:
    """Verify once, untimed, that ours and baseline (a) carry the same message both ways.

    Returns our SOAP envelope, our HTTP body and the size of baseline (a)'s body.
    """
    message = mm7_message()
    encoded = encode(message, STRICT_3GPP)
    decoded = decode(encoded.body, encoded.content_type)
    if decoded.message != message:
        raise AssertionError("mm7 codec round trip changed the message")
    content_type, body = base.encode()
    tid, req, bodies = base.decode(content_type, body)
    if bodies != [SMIL, JPEG, TEXT]:
        raise AssertionError("zeep+email round trip changed the content")
    if tid["_value_1"] != message.transaction_id or req["Subject"] != SUBJECT:
        raise AssertionError("zeep+email round trip changed the envelope")
    # baseline (a) reads back the same SubmitReq we wrote: parse our envelope with zeep too
    ours_body = etree.fromstring(decoded.soap).find(f"{{{SOAP_ENV_NS}}}Body")
    if ours_body is None:
        raise AssertionError("our envelope has no Body")
    parsed = base.submit_req.parse(ours_body[0], base.schema)
    if parsed["Subject"] != SUBJECT or parsed["ContentClass"] != "image-rich":
        raise AssertionError("zeep reads our envelope differently")
    return decoded.soap, encoded.body, len(body)


def _rate(seconds: float) -> str:
    return f"{1 / seconds:>10,.0f} msgs/s {seconds * 1e6:>9,.1f} µs/msg"


def _profile_ours(ours: Case, settings: Settings) -> None:
    """Where our round trip spends its time: each stage timed on its own, then cProfile.

    The stage timings are the shares to trust (cProfile's per-call overhead inflates code that
    makes many small calls); the profile says which functions inside a stage cost the most.
    """
    from mm7.core.emit import write_envelope
    from mm7.core.mime import parse_swa
    from mm7.core.read import read_envelope
    from mm7.core.xmlsafe import parse_xml

    message = mm7_message()
    encoded = encode(message, STRICT_3GPP)
    swa = parse_swa(encoded.body, encoded.content_type)
    root = parse_xml(swa.soap)
    build = Case("build the SubmitReq and its Parts", mm7_message)
    enc = Case("encode", lambda: encode(message, STRICT_3GPP))
    dec = Case("decode", lambda: decode(encoded.body, encoded.content_type))
    stages = [
        build,
        enc,
        Case("  write_envelope: model -> SOAP XML", lambda: write_envelope(message, STRICT_3GPP)),
        dec,
        Case(
            "  parse_swa: MIME split + part parse",
            lambda: parse_swa(encoded.body, encoded.content_type),
        ),
        Case("  parse_xml: checked lxml parse", lambda: parse_xml(swa.soap)),
        Case("  read_envelope: XML -> model", lambda: read_envelope(root, swa.parts, [])),
    ]
    measure(stages, settings.repeats, settings.repeat_seconds / 3, process_time)
    # shares of build + encode + decode, timed in the same interleaved rounds as their parts
    total = build.best + enc.best + dec.best
    settings.say(f"\n  stages of ours (best of {settings.repeats}; share of build+encode+decode):")
    for case in stages:
        share = case.best / total
        settings.say(f"  {case.label:<44} {case.best * 1e6:>9,.1f} µs/msg {share:>6.0%}")
    calls = 20 if settings.quick else max(50, int(2 / ours.best))
    settings.say(f"\n  cProfile of ours, {calls} messages:")
    profile(ours.fn, calls, settings.profile, settings)


@benchmark("codec")
def bench_codec(settings: Settings) -> dict[str, float]:
    """SubmitReq + 100 KB JPEG + SMIL + text: ours vs zeep+email (a) and vs the lxml floor (b)."""
    base = ZeepEmail()
    envelope, body, base_size = _check_equivalent(base)
    same_wire = dataclasses.replace(
        STRICT_3GPP,
        name="3gpp-base64",
        transfer_encoding="base64",
        transfer_encoding_by_type=(("text/", "8bit"), ("application/smil", "8bit")),
    )
    ours = Case("ours: mm7 codec, STRICT_3GPP (binary)", _ours(STRICT_3GPP))
    ours_b64 = Case("ours: mm7 codec, base64 JPEG", _ours(same_wire))
    zeep_email = Case("(a) zeep + email (base64 JPEG)", base.round_trip)
    floor = Case("(b) floor: lxml parse+serialise + 1 copy", _floor(envelope, body))
    cases = [ours, ours_b64, zeep_email, floor]
    measure(cases, settings.repeats, settings.repeat_seconds, process_time)

    vs_a = zeep_email.best / ours.best
    vs_b = ours.best / floor.best
    settings.say(
        f"codec: SubmitReq ({len(envelope):,} B envelope) + {len(JPEG) // 1024} KB JPEG, SMIL,"
        f" text; body {len(body):,} B ours, {base_size:,} B zeep+email"
    )
    settings.say(f"  best of {settings.repeats} repeats (median in brackets)")
    for case in cases:
        settings.say(
            f"  {case.label:<44} {_rate(case.best)}  ({1 / case.median:,.0f} msgs/s)  x{case.calls}"
        )
    met_a = "met" if vs_a >= 10 else "MISSED"
    settings.say(
        f"  vs_zeep_email = {vs_a:.1f}x faster (target >= 10x: {met_a});"
        f" same wire (base64): {zeep_email.best / ours_b64.best:.1f}x"
    )
    settings.say(
        f"  vs_floor      = {vs_b:.2f}x the floor's time"
        f" (target <= 3x: {'met' if vs_b <= 3 else 'MISSED'})"
    )
    if settings.profile:
        _profile_ours(ours, settings)
    return {
        "msgs_per_s": round(1 / ours.best, 1),
        "vs_zeep_email": round(vs_a, 2),
        "vs_floor": round(vs_b, 2),
    }


# --------------------------------------------------------------------------- small documents
#
# ``codec_small``: the small SOAP documents the gateway decodes for every MT message: the MMSC's
# SubmitRsp (answer to each submit) and its DeliveryReportReq (one per recipient), as the
# simulator sends them (our encoder, STRICT_3GPP, REL-6-MM7-1-4), bare XML and wrapped in a
# multipart/related holding only the SOAP part (as some MMSCs send every body). Each case is
# timed against its own floor in the same interleaved rounds: lxml's parse of the same envelope
# (bare), plus one copy of the body (wrapped), the least any decoder has to do.

SMALL_WHEN = datetime(2026, 11, 24, 21, 30, 7, tzinfo=UTC)
SMALL_BOUNDARY = "mimepart_5f3a9c1e_0001"


def small_documents() -> dict[str, tuple[str, bytes]]:
    """name -> (Content-Type, body) of the small documents, bare and multipart-wrapped."""
    from mm7.core.model import DeliveryReportReq, SubmitRsp
    from mm7.core.status import MMStatus

    ns, mm7_version = MM7_VERSION.namespace, MM7_VERSION.default_mm7_version
    rsp = SubmitRsp(
        transaction_id="bench-0000000001",
        namespace=ns,
        mm7_version=mm7_version,
        message_id="a1f09c7e3b5d4e2f9c8b7a6d5e4f3a2b",
    )
    report = DeliveryReportReq(
        transaction_id="sim-7c2e9d41a0b3",
        namespace=ns,
        mm7_version=mm7_version,
        message_id="a1f09c7e3b5d4e2f9c8b7a6d5e4f3a2b",
        recipient=Address("+15551230001"),
        sender=Address("12345", AddressKind.SHORT_CODE),
        date=SMALL_WHEN,
        mm_status=MMStatus.RETRIEVED,
        status_text="Retrieved",
    )
    docs: dict[str, tuple[str, bytes]] = {}
    for name, message in (("submit_rsp", rsp), ("report", report)):
        encoded = encode(message, STRICT_3GPP)
        docs[name] = (encoded.content_type, encoded.body)
        wrapped = b"".join(
            [
                f"--{SMALL_BOUNDARY}\r\n".encode(),
                b"Content-Type: text/xml; charset=utf-8\r\n",
                b"Content-ID: <mm7-soap>\r\n\r\n",
                encoded.body,
                f"\r\n--{SMALL_BOUNDARY}--\r\n".encode(),
            ]
        )
        content_type = (
            f'multipart/related; boundary="{SMALL_BOUNDARY}"; type="text/xml"; start="<mm7-soap>"'
        )
        docs[f"{name}_mime"] = (content_type, wrapped)
    return docs


def _small_floor(envelope: bytes, body: bytes | None) -> Callable[[], object]:
    """The floor of one small document: lxml's parse of the envelope (+ a copy of the body)."""
    fromstring = etree.fromstring
    if body is None:
        return lambda: fromstring(envelope)

    def parse_and_copy() -> object:
        fromstring(envelope)
        return memoryview(body).tobytes()

    return parse_and_copy


@benchmark("codec_small")
def bench_codec_small(settings: Settings) -> dict[str, float]:
    """Decode of a SubmitRsp and a DeliveryReportReq, bare and wrapped, each against its floor."""
    docs = small_documents()
    pairs: list[tuple[str, Case, Case]] = []
    for name, (content_type, body) in docs.items():
        decoded = decode(body, content_type)
        if decoded.leniencies or decoded.operation not in ("SubmitRsp", "DeliveryReportReq"):
            raise AssertionError(f"{name}: decoded as {decoded.operation} {decoded.leniencies}")
        wrapped = name.endswith("_mime")
        ours = Case(f"ours: decode {name}", lambda b=body, c=content_type: decode(b, c))
        floor = Case(
            f"  floor: lxml parse{' + 1 copy' if wrapped else ''}",
            _small_floor(decoded.soap, body if wrapped else None),
        )
        pairs.append((name, ours, floor))
    cases = [case for _, ours, floor in pairs for case in (ours, floor)]
    measure(cases, settings.repeats, settings.repeat_seconds / 2, process_time)
    settings.say(
        f"codec_small: decode of the small documents of every MT message (best of "
        f"{settings.repeats}; each against its own floor)"
    )
    results: dict[str, float] = {}
    for name, ours, floor in pairs:
        body = docs[name][1]
        ratio = ours.best / floor.best
        settings.say(
            f"  {name:<16} {len(body):>6,} B {ours.best * 1e6:>8.1f} µs/msg"
            f"  floor {floor.best * 1e6:>6.1f} µs  x{ratio:.2f}"
        )
        results[f"{name}_us"] = round(ours.best * 1e6, 2)
        results[f"{name}_vs_floor"] = round(ratio, 2)
    if settings.profile:
        content_type, body = docs["report"]
        calls = 100 if settings.quick else 20_000
        settings.say(f"\n  cProfile of decode(report), {calls} calls:")
        profile(lambda: decode(body, content_type), calls, settings.profile, settings)
    return results


# --------------------------------------------------------------------------- the content benchmark
#
# ``content``: fitting a 4 MB camera-sized photo (3000x2000 JPEG, quality 96) plus a line of text
# into the mms-300k carrier profile with mm7.content.fit.fit_to_profile, against what a Python
# user would otherwise write with Pillow alone: open, thumbnail() to the profile's 1600x1200, save
# as JPEG at quality 95, 90, 85 ... until it fits the bytes the message leaves for the image.
# Reports fit_s (ours, seconds per fit, best repeat), vs_pillow_naive (our time / the naive time:
# below 1 means faster), peak_mb (the fit's peak RSS growth), and the naive side's numbers.

CONTENT_PHOTO = (3000, 2000, 96)  # width, height, JPEG quality: ~4.2 MB
CONTENT_PROFILE = "mms-300k"


def content_photo(width: int, height: int, quality: int, seed: int = 3) -> bytes:
    """A deterministic photo-like JPEG: gradients plus coarse noise (features ~3 px), so that it
    keeps detail when scaled down and is as hard to compress as a real camera picture."""
    from PIL import Image  # only this benchmark needs Pillow

    rnd = random.Random(seed)
    cw, ch = width // 3, height // 3
    channels = []
    for n in range(3):
        noise = Image.frombytes("L", (cw, ch), rnd.randbytes(cw * ch))
        noise = noise.resize((width, height), Image.Resampling.BICUBIC)
        base = Image.linear_gradient("L") if n != 1 else Image.radial_gradient("L")
        channels.append(Image.blend(noise, base.resize((width, height)), 0.35))
    buf = io.BytesIO()
    Image.merge("RGB", channels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def pillow_naive_fit(data: bytes, box: tuple[int, int], max_bytes: int) -> bytes:
    """The simplest Pillow way: open, thumbnail to the box, lower the quality until it fits."""
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.thumbnail(box)
    for quality in range(95, 0, -5):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        if buf.tell() <= max_bytes:
            return buf.getvalue()
    raise RuntimeError("the naive fit found no quality that fits")


def _peak_rss_growth(fn: Callable[[], object]) -> tuple[float, str]:
    """Peak resident memory growth of one call of ``fn``, in MB, and how it was measured.

    Linux: the high-water mark (VmHWM) is reset through /proc/self/clear_refs, so the figure is
    this call's own peak, Pillow's C buffers included. Elsewhere: tracemalloc, which sees Python
    allocations only (the encoded bytes, not Pillow's pixel buffers).
    """

    def status(key: str) -> int:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise KeyError(key)

    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        base = status("VmRSS")
        fn()
        return (status("VmHWM") - base) / 1024, "peak RSS (VmHWM)"
    except OSError:
        import tracemalloc

        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak / 1e6, "tracemalloc (Python allocations only)"


@benchmark("content")
def bench_content(settings: Settings) -> dict[str, float]:
    """Fit a 4 MB photo into a 300 KB profile: ours against the naive Pillow loop."""
    from PIL import Image

    from mm7.content.fit import fit_to_profile
    from mm7.content.model import MediaItem, Presentation, Slide
    from mm7.content.profile import load_profile

    profile = load_profile(CONTENT_PROFILE)
    data = content_photo(*CONTENT_PHOTO)
    text = MediaItem(TEXT, "text/plain", "text1", "text1.txt", "utf-8")
    photo = MediaItem(data, "image/jpeg", "image1", "photo.jpg")
    presentation = Presentation((photo, text), (Slide(8000, visual="image1", text="text1"),))

    result = fit_to_profile(presentation, profile, ffmpeg=None)
    ours_image = result.presentation.items[0]
    # the naive side gets the same byte budget for the image as ours had: the limit less
    # everything else in the message (SMIL, text, MIME headers and boundaries)
    budget = profile.max_message_bytes - (result.size - len(ours_image.data))
    box = (profile.max_image_width, profile.max_image_height)
    naive_image = pillow_naive_fit(data, box, budget)
    ours_dims = Image.open(io.BytesIO(ours_image.data)).size
    naive_dims = Image.open(io.BytesIO(naive_image)).size
    if result.size > profile.max_message_bytes or len(naive_image) > budget:
        raise AssertionError("a contender's output does not fit the profile")

    ours = Case("ours: fit_to_profile (mms-300k)", lambda: fit_to_profile(presentation, profile))
    naive = Case(
        "naive Pillow: thumbnail + quality loop", lambda: pillow_naive_fit(data, box, budget)
    )
    measure([ours, naive], settings.repeats, settings.repeat_seconds)
    ours_peak, how = _peak_rss_growth(lambda: fit_to_profile(presentation, profile))
    naive_peak, _ = _peak_rss_growth(lambda: pillow_naive_fit(data, box, budget))
    ratio = ours.best / naive.best

    settings.say(
        f"content: {len(data):,} B {CONTENT_PHOTO[0]}x{CONTENT_PHOTO[1]} JPEG -> {CONTENT_PROFILE}"
        f" ({profile.max_message_bytes:,} B); memory: {how}"
    )
    settings.say(
        f"  {ours.label:<44} {ours.best * 1000:8.1f} ms (median {ours.median * 1000:.1f})"
        f"  peak +{ours_peak:.1f} MB  -> {len(ours_image.data):,} B {ours_dims[0]}x{ours_dims[1]}"
        f" ({result.changes[0].detail}); message {result.size:,} B"
    )
    settings.say(
        f"  {naive.label:<44} {naive.best * 1000:8.1f} ms (median {naive.median * 1000:.1f})"
        f"  peak +{naive_peak:.1f} MB  -> {len(naive_image):,} B {naive_dims[0]}x{naive_dims[1]}"
    )
    settings.say(f"  vs_pillow_naive = {ratio:.2f}x the naive loop's time")
    return {
        "fit_s": round(ours.best, 4),
        "vs_pillow_naive": round(ratio, 2),
        "peak_mb": max(round(ours_peak, 2), 0.01),
        "naive_s": round(naive.best, 4),
        "naive_peak_mb": max(round(naive_peak, 2), 0.01),
    }


# --------------------------------------------------------------------------- multi-process
#
# The benchmarks with real processes (simulator, gateway, load generators) live in their own
# modules, tools/bench/ (one concept each); they are registered here, in the order they run.

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench.campaign import bench_campaign  # noqa: E402
from bench.cluster_loss import bench_cluster_loss  # noqa: E402
from bench.cluster_mo import bench_cluster_mo  # noqa: E402
from bench.cluster_mt import bench_cluster_mt  # noqa: E402
from bench.floor import bench_floor  # noqa: E402
from bench.loss import bench_loss  # noqa: E402
from bench.memory import bench_memory  # noqa: E402
from bench.mo import bench_mo  # noqa: E402
from bench.mt import bench_mt  # noqa: E402
from bench.pgbucket import bench_pgbucket  # noqa: E402
from bench.pgdriver import bench_pgdriver  # noqa: E402
from bench.sim import bench_sim  # noqa: E402

benchmark("sim")(bench_sim)
benchmark("mt")(bench_mt)
benchmark("loss")(bench_loss)
benchmark("memory")(bench_memory)
benchmark("campaign")(bench_campaign)
benchmark("mo")(bench_mo)
benchmark("pgdriver")(bench_pgdriver)
benchmark("pgbucket")(bench_pgbucket)
benchmark("cluster_mt")(bench_cluster_mt)
benchmark("cluster_mo")(bench_cluster_mo)
benchmark("cluster_loss")(bench_cluster_loss)
benchmark("floor")(bench_floor)


# --------------------------------------------------------------------------- the scaling benchmark

#: Limits wide enough that the adversarial inputs below reach the decoders instead of a limit.
SCALING_LIMITS = Limits(
    max_total_bytes=256 << 20,
    max_decoded_bytes=256 << 20,
    max_header_bytes=64 << 20,
    max_xml_bytes=256 << 20,
)


def _soap_with(subject: str = "S", recipients: int = 1) -> tuple[bytes, str]:
    """A SubmitReq HTTP body (and its Content-Type) with this Subject and this many To numbers."""
    base = mm7_message()
    to = tuple(Address(f"+1555{i:07d}") for i in range(recipients))
    message = dataclasses.replace(
        base, subject=subject, recipients=dataclasses.replace(base.recipients, to=to)
    )
    encoded = encode(message, STRICT_3GPP)
    return encoded.body, encoded.content_type


def _adv_subject(n: int) -> tuple[Callable[[], object], int]:
    """A Subject of n RFC 2047 encoded words (the O(N^2) of issue 13), through the codec."""
    body, ct = _soap_with("=?utf-8?B?w6k=?= " * n)
    return lambda: decode(body, ct, SCALING_LIMITS), len(body)


def _adv_subject_charsets(n: int) -> tuple[Callable[[], object], int]:
    """Encoded words alternating charsets and broken words: every run flushed, text kept."""
    words = "=?utf-8?Q?=C3=A9?= =?iso-8859-1?Q?=E9?= =?nonesuch?Q?x?= =?utf-8?B?!!?= " * n
    body, ct = _soap_with(words)
    return lambda: decode(body, ct, SCALING_LIMITS), len(body)


def _adv_recipients(n: int) -> tuple[Callable[[], object], int]:
    """n To addresses in one SubmitReq."""
    body, ct = _soap_with(recipients=n)
    return lambda: decode(body, ct, SCALING_LIMITS), len(body)


def _adv_folding(n: int) -> tuple[Callable[[], object], int]:
    """One MIME header folded over n lines."""
    from mm7.core.mime import parse_entity

    raw = b"X-Long: a\r\n" + b" b\n" * n + b"Content-Type: text/plain\r\n\r\nbody"
    return lambda: parse_entity(raw, SCALING_LIMITS), len(raw)


def _adv_params(n: int) -> tuple[Callable[[], object], int]:
    """A Content-Type with n parameters, escaped quotes forcing the full scanner (never cached)."""
    from mm7.core.mime import parse_content_type

    value = "multipart/related; " + "; ".join(f'P{i}="a\\"b;c"' for i in range(n))
    return lambda: parse_content_type(value), len(value)


def _adv_delimiters(n: int) -> tuple[Callable[[], object], int]:
    """An SwA body whose content part holds n lines that almost are the boundary."""
    from mm7.core.mime import parse_swa

    body, ct = _soap_with()
    boundary = parse_content_type_boundary(ct)
    near = (b"\r\n--" + boundary[:-1]) * n + (b"\r\n--" + boundary + b"x") * n
    # the near misses go into the last part's body, just before the closing delimiter
    closing = body.rfind(b"\r\n--" + boundary + b"--")
    hostile = body[:closing] + near + body[closing:]
    return lambda: parse_swa(hostile, ct, SCALING_LIMITS), len(hostile)


def parse_content_type_boundary(content_type: str) -> bytes:
    """The boundary parameter of a multipart Content-Type, as bytes."""
    from mm7.core.mime import parse_content_type

    boundary = parse_content_type(content_type).param("boundary")
    if not boundary:
        raise AssertionError(f"no boundary in {content_type!r}")
    return boundary.encode("ascii")


def _adv_smil(n: int) -> tuple[Callable[[], object], int]:
    """A SMIL presentation of n slides over a few items."""
    from mm7.content.model import MediaItem
    from mm7.content.smil import read_smil

    items = [MediaItem(TEXT, "text/plain", f"t{i}", f"t{i}.txt", "utf-8") for i in range(4)]
    pars = "".join(
        f'<par dur="{i % 9 + 1}s"><text src="cid:t{i % 4}" region="Text"/></par>' for i in range(n)
    )
    smil = (
        '<smil><head><layout><root-layout width="160" height="120"/>'
        '<region id="Text" top="0" left="0" width="160" height="120"/></layout></head>'
        f"<body>{pars}</body></smil>"
    ).encode()
    return lambda: read_smil(smil, items), len(smil)


def _adv_charset(n: int) -> tuple[Callable[[], object], int]:
    """n Latin-1 elements in a document declaring UTF-8: libxml2 fails, the fallback decodes."""
    from mm7.core.xmlsafe import parse_xml

    data = b'<?xml version="1.0" encoding="utf-8"?><r>' + b"<a>caf\xe9</a>" * n + b"</r>"
    return lambda: parse_xml(data, limits=SCALING_LIMITS), len(data)


def _adv_prolog(n: int) -> tuple[Callable[[], object], int]:
    """n comments and processing instructions before the root element."""
    from mm7.core.xmlsafe import parse_xml

    data = b"<?xml version='1.0'?>" + b"<!-- c --><?pi x?>\n" * n + b"<r/>"
    return lambda: parse_xml(data, limits=SCALING_LIMITS), len(data)


#: kind -> (builder of an input of about n units, n of a full run); the run doubles n 3 times
SCALING_KINDS: dict[str, tuple[Callable[[int], tuple[Callable[[], object], int]], int]] = {
    "subject_rfc2047": (_adv_subject, 8_000),
    "subject_mixed": (_adv_subject_charsets, 2_000),
    "recipients": (_adv_recipients, 2_000),
    "header_folding": (_adv_folding, 16_000),
    "content_type_params": (_adv_params, 4_000),
    "near_delimiters": (_adv_delimiters, 8_000),
    "smil_slides": (_adv_smil, 500),  # 8n stays under the 256 KB SMIL limit
    "charset_fallback": (_adv_charset, 8_000),
    "xml_prolog": (_adv_prolog, 8_000),
}


@benchmark("scaling")
def bench_scaling(settings: Settings) -> dict[str, float]:
    """Adversarial inputs of each kind at n, 2n, 4n, 8n: how time grows with the input.

    For each kind: ``<kind>_exponent``, the mean of log2(t(2m) / t(m)) over the three doublings
    (1 is linear, 2 quadratic), and ``<kind>_s_per_mb``, the worst seconds per MB of input over
    the four sizes. Each size is timed as the best of several calls, so a noisy neighbour costs a
    repeat, not the result. ``--quick`` uses a quarter of n.
    """
    results: dict[str, float] = {}
    repeats = 3 if settings.quick else 5
    settings.say(f"\nscaling: adversarial inputs at n, 2n, 4n, 8n (best of {repeats} calls)")
    settings.say(
        f"  {'kind':<20} {'n':>7} {'8n bytes':>11} {'t(8n)':>9} {'exponent':>9} {'s/MB':>8}"
    )
    for kind, (build, full_n) in SCALING_KINDS.items():
        n = max(1, full_n // 4) if settings.quick else full_n
        times: list[float] = []
        per_mb: list[float] = []
        size = 0
        for m in (n, 2 * n, 4 * n, 8 * n):
            fn, size = build(m)
            fn()  # warm up (and fail loudly before timing if the input is refused)
            best = math.inf
            for _ in range(repeats):
                gc.collect()
                start = perf_counter()
                fn()
                best = min(best, perf_counter() - start)
            times.append(best)
            per_mb.append(best / (size / 1e6))
        exponent = statistics.fmean(
            math.log2(max(b, 1e-9) / max(a, 1e-9)) for a, b in zip(times, times[1:], strict=False)
        )
        results[f"{kind}_exponent"] = round(exponent, 3)
        results[f"{kind}_s_per_mb"] = round(max(per_mb), 6)
        settings.say(
            f"  {kind:<20} {n:>7,} {size:>11,} {times[-1] * 1e3:>7.1f}ms"
            f" {exponent:>9.2f} {max(per_mb):>8.4f}"
        )
    return results


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks; with --json print one JSON object on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated benchmark names (default all: {', '.join(BENCHMARKS)})",
    )
    parser.add_argument("--quick", action="store_true", help="short run for CI smoke checks")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout; prose on stderr"
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="cProfile the mm7 side; top N rows"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    if args.json:
        # mm7 logs through structlog, which prints to stdout unless configured: keep stdout for
        # the one JSON object
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    settings = Settings(
        quick=args.quick, profile=args.profile, out=sys.stderr if args.json else sys.stdout
    )
    settings.say(f"bench: {pin_to_one_core()}; Python {sys.version.split()[0]}")
    results = {name: BENCHMARKS[name](settings) for name in names}
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
