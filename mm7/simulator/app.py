"""The simulated MMSC as an aiohttp application: the MM7 endpoint and the JSON control API.

    app = create_simulator_app(SimulatorConfig(persona=load_persona("nokia"),
                                               vasp_url="http://127.0.0.1:9000/mm7"))
    web.run_app(app, host="127.0.0.1", port=8088)

The endpoint (``/mm7``) answers SubmitReq, CancelReq, ReplaceReq and the extended variants in
the persona's dialect, echoing the request's namespace, MM7Version and TransactionID. Strict
mode validates every request against its namespace's schema (4004 with the schema's reason in
Details; 2007 for MIME/SOAP that cannot be read); lenient mode accepts what the codec can read
and records the leniencies it needed. Requests a VASP never sends to an MMSC get 4003. Errors
take the persona's shape (RSErrorRsp in a Fault, a bare Status, or inside the normal Rsp) and
HTTP status. Faults (``mm7.simulator.faults``) are applied first; every exchange is recorded.

The control API (``/control``, JSON) lists received messages with their parts and slides,
serves part bytes, lists and streams the traffic record (``mm7.simulator.traffic_api``),
originates DeliverReq / DeliveryReportReq / ReadReplyReq, sets faults, switches the persona,
runs scenarios (``mm7.simulator.scenario``) and resets; see ``Simulator.application``. The
console page (``/ui``, ``mm7.simulator.console``) drives all of it from a browser;
``/ui/messages`` shows the messages received as slides.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import dataclasses
import json
import os
import random
import socket
import ssl
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from lxml import etree
from multidict import CIMultiDict

from mm7.content.builder import find_smil
from mm7.content.parts import ContentError, Source
from mm7.core.codec import Decoded, decode, encode, safe_echo, salvage_envelope
from mm7.core.dialect import STRICT_3GPP
from mm7.core.emit import fault_code_for
from mm7.core.errors import MM7Error, ParseError
from mm7.core.jsonview import leaf_parts, message_fields
from mm7.core.limits import DEFAULT_LIMITS, Limits
from mm7.core.mime import Part
from mm7.core.model import (
    CancelReq,
    CancelRsp,
    ExtendedCancelReq,
    ExtendedCancelRsp,
    ExtendedReplaceReq,
    ExtendedReplaceRsp,
    Fault,
    Message,
    ReplaceReq,
    ReplaceRsp,
    Request,
    Response,
    RSErrorRsp,
    Status,
    SubmitReq,
    SubmitRsp,
    reply_to,
)
from mm7.core.read import local
from mm7.core.status import MMStatus, ReadStatus
from mm7.core.validate import validate_envelope
from mm7.core.versions import SOAP_ENV_NS
from mm7.core.xmlsafe import parse_xml
from mm7.simulator.console import CONSOLE_CSP, console_asset, console_page
from mm7.simulator.dlr import Delivery, DlrPlan, DlrScheduler, Outbound, RetryPolicy, Sleep
from mm7.simulator.faults import (
    AuthRefusal,
    FaultConfigError,
    FaultInjector,
    FaultKind,
    FaultSpec,
)
from mm7.simulator.feed import DEFAULT_QUEUE
from mm7.simulator.forward import (
    CHUNKED_HEADER,
    CLIENT_CERT_HEADER,
    INTERNAL_HEADERS,
    WORKER_HEADER,
    Upstream,
)
from mm7.simulator.mo import deliver_req, delivery_report_req, read_reply_req
from mm7.simulator.personas import Persona, PersonaError, load_persona, persona_names
from mm7.simulator.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    scenario_from_text,
    scenario_names,
)
from mm7.simulator.scenario_run import ScenarioRun
from mm7.simulator.store import DEFAULT_BODY_BUDGET, Received, TrafficStore, recipients_of
from mm7.simulator.traffic_api import TrafficApi
from mm7.simulator.ui import PAGE_CSP, render_page
from mm7.simulator.wire import slides
from mm7.transport.decode_off_loop import decode_request, on_loop
from mm7.transport.inbound_auth import peer_certificate, server_ssl_context
from mm7.transport.wirelog import redact_headers

__all__ = ["SIMULATOR", "Simulator", "SimulatorConfig", "create_simulator_app"]

#: the persona used when none is named: a strict 3GPP MMSC (conf/personas/strict-3gpp.toml)
DEFAULT_PERSONA = Persona(name="strict-3gpp", dialect=STRICT_3GPP, strict=True)
#: keep Details short: it names what failed, it is not a dump of the request
MAX_DETAILS = 512
#: how many submitted messages are remembered for Cancel/Replace and reports
MAX_SUBMITTED = 10_000


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything a simulator run is made of; frozen, built once (CLI, tests)."""

    persona: Persona = DEFAULT_PERSONA
    #: validate against the schema; None: the persona's default
    strict: bool | None = None
    path: str = "/mm7"
    control_path: str = "/control"
    #: the web page listing received messages with their slides; None: no page
    ui_path: str | None = "/ui"
    #: where DeliverReq/DeliveryReportReq/ReadReplyReq go; None: nothing is sent
    vasp_url: str | None = None
    #: Basic credentials the simulator presents to the VASP
    vasp_auth: tuple[str, str] | None = None
    dlr: DlrPlan = field(default_factory=DlrPlan)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: standing faults and limits, as FaultInjector.configure takes them
    faults: Mapping[str, Any] = field(default_factory=dict)
    limits: Limits = DEFAULT_LIMITS
    #: the traffic record: a ring of this many exchanges, both directions
    max_exchanges: int = 1000
    max_messages: int = 200
    #: bytes of whole bodies kept for the newest exchanges (detail view: parts and slides);
    #: older exchanges keep their first 16 KB
    max_body_bytes: int = DEFAULT_BODY_BUDGET
    #: how many updates a live console may fall behind before its stream is dropped
    feed_queue: int = DEFAULT_QUEUE
    #: a scenario started with the server (``mm7 simulate --scenario``)
    scenario: Scenario | None = None
    message_id_prefix: str = "sim"
    #: sender address of delivery reports when the submit had none
    mmsc_address: str = "mmsc"
    #: serve HTTPS with this certificate and key (PEM files); None: plain HTTP
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: mutual TLS: client certificates must be issued by this CA bundle (PEM). With
    #: ``require_client_cert`` the handshake refuses a client without one; without it the
    #: certificate is optional at the TLS layer and the ``client_cert`` fault (control API)
    #: decides at the HTTP layer (403 + 4001). A certificate from another CA always fails.
    client_ca: Path | None = None
    require_client_cert: bool = True
    #: random seed for the outcome mix and fault rates (None: unseeded)
    seed: int | None = None
    #: injectable for tests: how delays are waited, and the clock of the TPS window
    sleep: Sleep = asyncio.sleep
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        for name in ("path", "control_path"):
            if not getattr(self, name).startswith("/"):
                raise ValueError(f"SimulatorConfig.{name} must start with '/'")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("SimulatorConfig: tls_cert and tls_key go together")
        if self.client_ca is not None and self.tls_cert is None:
            raise ValueError("SimulatorConfig: client_ca (mutual TLS) needs tls_cert and tls_key")
        if self.max_exchanges < 1 or self.max_messages < 1:
            raise ValueError("SimulatorConfig: max_exchanges and max_messages must be >= 1")
        if self.max_body_bytes < 0:
            raise ValueError("SimulatorConfig: max_body_bytes must be >= 0")
        if self.feed_queue < 1:
            raise ValueError("SimulatorConfig: feed_queue must be >= 1")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server TLS context to serve with (``web.TCPSite(..., ssl_context=)``); None: HTTP.

        Raises OSError / ssl.SSLError when a file cannot be read or the key does not match.
        """
        if self.tls_cert is None or self.tls_key is None:
            return None
        return server_ssl_context(
            self.tls_cert,
            self.tls_key,
            client_ca=self.client_ca,
            require_client_cert=self.require_client_cert,
        )

    @property
    def is_strict(self) -> bool:
        return self.persona.strict if self.strict is None else self.strict


@dataclass
class _Answer:
    """What one MM7 request is answered with, before faults that mangle the bytes."""

    http_status: int
    body: bytes
    content_type: str
    status_code: int | None
    message_id: str | None = None
    status_text: str | None = None
    problems: tuple[str, ...] = ()
    #: extra headers (a list: one WWW-Authenticate per challenge)
    headers: list[tuple[str, str]] = field(default_factory=list)


class Simulator:
    """One simulated MMSC: persona, traffic store, faults, outbound sender and DLR scheduler."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.persona = self.config.persona
        rng = random.Random(self.config.seed)
        self.store = TrafficStore(
            self.config.max_exchanges,
            self.config.max_messages,
            self.config.max_body_bytes,
            self.config.limits,
        )
        self.traffic = TrafficApi(
            self.store, self.config.control_path, queue=self.config.feed_queue
        )
        self.faults = FaultInjector(rng=rng, clock=self.config.clock, baseline=self.persona.auth)
        self.faults.configure(self.config.faults)
        self.outbound = Outbound(
            self.config.vasp_url,
            self.persona.dialect,
            self.config.retry,
            self.store,
            auth=self.config.vasp_auth,
            sleep=self.config.sleep,
        )
        self.dlr = DlrScheduler(
            self.config.dlr,
            self.outbound,
            rng=rng,
            sleep=self.config.sleep,
            default_sender=self.config.mmsc_address,
        )
        #: MessageID -> the submit it was given to (Cancel/Replace/report lookups), bounded
        self.submitted: collections.OrderedDict[str, SubmitReq] = collections.OrderedDict()
        self.cancelled: set[str] = set()
        #: SubmitReqs accepted since the start, and the MessageID of the last (scenarios)
        self.accepted_submits = 0
        self.last_accepted: str | None = None
        #: the scenario running or run last
        self.scenario: ScenarioRun | None = None
        #: a worker of ``mm7 simulate --workers`` (mm7.simulator.cluster): where the requests
        #: only the parent can answer go (any but a SubmitReq; all while ``forward_all``)
        self.upstream: Upstream | None = None
        #: the parent of workers: requests come from them, their X-MM7-Sim-* headers are true
        self.behind_workers = False
        # responses are written leniently so any version pair the peer used can be echoed
        self._dialect = dataclasses.replace(
            self.persona.dialect, strict=False, allow_any_mm7_version=True
        )

    # -- wiring ----------------------------------------------------------------------------------
    def application(self) -> web.Application:
        """A new aiohttp application with the MM7 endpoint and the control API."""
        app = web.Application(client_max_size=self.config.limits.max_total_bytes)
        app[SIMULATOR] = self
        app.router.add_post(self.config.path, self.handle)
        c = self.config.control_path.rstrip("/")
        app.router.add_get(f"{c}/messages", self.c_messages)
        app.router.add_get(f"{c}/messages/{{id}}", self.c_message)
        app.router.add_get(f"{c}/messages/{{id}}/parts/{{index}}", self.c_part)
        self.traffic.add_routes(app)
        app.router.add_get(f"{c}/persona", self.c_persona)
        app.router.add_put(f"{c}/persona", self.c_persona_set)
        app.router.add_get(f"{c}/personas", self.c_personas)
        app.router.add_get(f"{c}/faults", self.c_faults_get)
        app.router.add_post(f"{c}/faults", self.c_faults_set)
        app.router.add_delete(f"{c}/faults", self.c_faults_clear)
        app.router.add_post(f"{c}/mo", self.c_mo)
        app.router.add_post(f"{c}/report", self.c_report)
        app.router.add_post(f"{c}/read-reply", self.c_read_reply)
        app.router.add_post(f"{c}/reset", self.c_reset)
        app.router.add_get(f"{c}/scenarios", self.c_scenarios)
        app.router.add_get(f"{c}/scenario", self.c_scenario)
        app.router.add_post(f"{c}/scenario", self.c_scenario_run)
        app.router.add_delete(f"{c}/scenario", self.c_scenario_stop)
        if self.config.scenario is not None:
            app.on_startup.append(self._start_scenario)
        if self.config.ui_path:
            ui = self.config.ui_path.rstrip("/")
            app.router.add_get(self.config.ui_path, self.console)
            app.router.add_get(f"{ui}/messages", self.ui)
            app.router.add_get(f"{ui}/{{asset}}", self.console_asset)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _start_scenario(self, app: web.Application) -> None:
        assert self.config.scenario is not None
        self.run_scenario(self.config.scenario)

    def run_scenario(self, scenario: Scenario) -> ScenarioRun:
        """Start ``scenario`` (ScenarioError when one is running or it needs a VASP URL)."""
        if self.scenario is not None and self.scenario.running:
            raise ScenarioError(
                f"scenario {self.scenario.scenario.name!r} is running; stop it first "
                "(DELETE /control/scenario)"
            )
        if scenario.sends and self.config.vasp_url is None:
            raise ScenarioError(
                f"scenario {scenario.name!r} sends to the VASP: start the simulator with --vasp-url"
            )
        self.scenario = ScenarioRun(scenario, self)
        self.scenario.start()
        return self.scenario

    async def _cleanup(self, app: web.Application) -> None:
        if self.scenario is not None:
            await self.scenario.stop()
        await self.dlr.close()
        await self.outbound.close()

    @property
    def strict(self) -> bool:
        return self.persona.strict if self.config.strict is None else self.config.strict

    def set_persona(self, persona: Persona) -> None:
        """Become ``persona`` from the next request on: its dialect, acceptance rules, error
        shape and authentication (the faults and limits set since stay; the traffic too)."""
        self.persona = persona
        self._dialect = dataclasses.replace(
            persona.dialect, strict=False, allow_any_mm7_version=True
        )
        self.faults.set_baseline(persona.auth)
        self.outbound.set_dialect(persona.dialect)

    # -- the MM7 endpoint ------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one MM7 request: limits and faults first, then decode, check, route."""
        started = time.monotonic()
        persona = self.persona
        fault: FaultSpec | None = None
        answer: _Answer | None = None
        early: web.StreamResponse | None = None
        body = b""
        decoded_box: list[Decoded | None] = []
        salvaged: list[Message | None] = []
        #: why a body decoded off the loop is unreadable (not decoded again on the loop)
        unreadable: ParseError | None = None
        upstream = self.upstream
        # taken once: the parent decides authentication too while it holds Digest nonces
        forward_all = upstream is not None and upstream.forward_all
        forwarded = False

        def peek() -> Decoded | None:
            """The request decoded once, for the paths that need it before (or instead of)
            routing: refusals, faults aimed at one operation, the record of a refused one."""
            if not decoded_box:
                decoded_box.append(self._try_decode(body, request))
            return decoded_box[0]

        def echo() -> Message | None:
            """What an error answer echoes (TransactionID, namespace, MM7Version), read
            from the raw body only when an error needs it: a second MIME + XML parse of
            every request was a third of the simulator's time per SubmitReq."""
            if not salvaged:
                known = decoded_box[0] if decoded_box else None
                if known is not None:
                    salvaged.append(safe_echo(known.message))
                else:
                    content_type = request.headers.get(hdrs.CONTENT_TYPE)
                    salvaged.append(salvage_envelope(body, content_type, self.config.limits))
            return salvaged[0]

        def operation() -> str | None:
            decoded = peek()
            return None if decoded is None else decoded.operation

        try:
            if not forward_all:
                answer = self._pre_checks(request)
            if answer is None:
                body, answer = await self._read(request)
            if answer is None and not forward_all and not on_loop(body):
                # decoded in a worker thread now, not lazily on the loop below
                outcome = await decode_request(
                    body, request.headers.get(hdrs.CONTENT_TYPE), self.config.limits
                )
                if isinstance(outcome, tuple):
                    unreadable, echoed = outcome
                    decoded_box.append(None)
                    salvaged.append(echoed)
                else:
                    decoded_box.append(outcome)
            if answer is None and upstream is not None:
                decoded = None if forward_all else peek()  # kept: decoded once either way
                if forward_all or (decoded is not None and decoded.operation != "SubmitReq"):
                    forwarded = True  # Cancel/Replace need the parent's record of submits
                    return await upstream.forward(request, body)
            if answer is None and self.faults.over_tps():
                peek()
                answer = self._error(echo(), None, persona.status(4006, "TPS limit exceeded"))
            if answer is None:
                fault = self.faults.next_fault(operation)
                if fault is not None and fault.kind is FaultKind.ACCEPT:
                    fault = None  # held a place in the queue; answered normally
                early = await self._early_fault(fault, request)
                if early is not None:
                    return early
                if fault is not None and fault.kind is FaultKind.STATUS:
                    # answered as told, never routed: the message is not accepted
                    decoded = peek()
                    status = persona.status(fault.code, fault.details)
                    op = decoded.operation if decoded is not None else ""
                    answer = self._error(echo(), _rsp_type(op), status)
                elif fault is not None and fault.kind is FaultKind.UNAUTHORIZED:
                    peek()
                    answer = self._refused(self.faults.injected_refusal())
                else:
                    known = decoded_box[0] if decoded_box else None
                    answer, decoded = self._answer_body(body, request, echo, known, unreadable)
                    decoded_box[:] = [decoded]
            return await self._send(request, answer, fault)
        finally:
            if not forwarded:  # else the parent records it
                if not decoded_box and body:
                    peek()  # a refusal decided before decoding: recorded with what it was
                self._record(request, body, answer, early, fault, decoded_box, salvaged, started)

    def _record(
        self,
        request: web.Request,
        body: bytes,
        answer: _Answer | None,
        early: web.StreamResponse | None,
        fault: FaultSpec | None,
        decoded_box: list[Decoded | None],
        salvaged: list[Message | None],
        started: float,
    ) -> None:
        """Append the exchange to the traffic record: references, nothing serialised."""
        decoded = decoded_box[0] if decoded_box else None
        message = decoded.message if decoded is not None else (salvaged[0] if salvaged else None)
        if answer is not None:
            http_status: int | None = answer.http_status
            response_headers = ((hdrs.CONTENT_TYPE, answer.content_type), *answer.headers)
        else:
            http_status = early.status if early is not None and fault is not None else None
            if fault is not None and fault.kind is FaultKind.RESET:
                http_status = None
            response_headers = ()
        problems = () if answer is None else answer.problems
        if answer is None and fault is not None:
            problems = (f"fault injected: {fault.kind.value}",)
        received_headers: Any = request.headers
        worker = None
        if self.behind_workers:
            worker = int(request.headers.get(WORKER_HEADER, "0")) or None
            received_headers = tuple(
                (k, v) for k, v in request.headers.items() if k.lower() not in INTERNAL_HEADERS
            )
        self.store.add_exchange(
            direction="in",
            operation=decoded.operation if decoded is not None else "?",
            transaction_id=message.transaction_id if message is not None else "",
            namespace=message.namespace if message is not None else None,
            mm7_version=message.mm7_version if message is not None else None,
            recipients=recipients_of(message),
            subject=getattr(message, "subject", None),
            http_status=http_status,
            status_code=None if answer is None else answer.status_code,
            status_text=None if answer is None else answer.status_text,
            duration_ms=(time.monotonic() - started) * 1000,
            message_id=None if answer is None else answer.message_id,
            leniencies=() if decoded is None else tuple(str(x) for x in decoded.leniencies),
            problems=problems,
            fault=None if fault is None else fault.kind.value,
            received_headers=received_headers,
            worker=worker,
            request_content_type=request.headers.get(hdrs.CONTENT_TYPE),
            response_headers=tuple(redact_headers(response_headers)),
            response_content_type=None if answer is None else answer.content_type,
            request_body=body,
            response_body=b"" if answer is None else answer.body,
        )

    def _pre_checks(self, request: web.Request) -> _Answer | None:
        """Refusals decided on the headers alone: authentication, chunked, declared size."""
        refusal = self.faults.check_auth(
            request.headers.get(hdrs.AUTHORIZATION),
            request.method,
            request.raw_path,
            client_cert=self._client_cert(request),
        )
        if refusal is not None:
            return self._refused(refusal)
        chunked = "chunked" in request.headers.get(hdrs.TRANSFER_ENCODING, "").lower()
        if self.behind_workers:
            chunked = request.headers.get(CHUNKED_HEADER) == "1"
        if self.persona.refuse_chunked and chunked:
            return _Answer(
                411,
                b"Length Required: chunked transfer-coding is refused; send Content-Length\n",
                "text/plain; charset=utf-8",
                None,
                problems=("chunked request refused",),
            )
        limit = self.faults.max_bytes
        declared = request.content_length
        if limit is not None and declared is not None and declared > limit:
            return self._oversize(declared, limit)
        return None

    def _client_cert(self, request: web.Request) -> bool:
        """Whether the request came over TLS with a verified client certificate (TLS ends in
        the worker when there are workers: it says so)."""
        if self.behind_workers:
            return request.headers.get(CLIENT_CERT_HEADER) == "1"
        return peer_certificate(request) is not None

    def _refused(self, refusal: AuthRefusal) -> _Answer:
        """401/403 with MM7 status 4001 in the persona's error shape, and the challenges."""
        answer = self._error(None, None, self.persona.status(4001, refusal.details))
        answer.http_status = refusal.http_status
        answer.headers.extend((hdrs.WWW_AUTHENTICATE, c) for c in refusal.challenges)
        return answer

    def _oversize(self, size: int, limit: int) -> _Answer:
        details = f"message of {size} bytes is over the size limit of {limit} bytes"
        return self._error(None, None, self.persona.status(2004, details))

    async def _read(self, request: web.Request) -> tuple[bytes, _Answer | None]:
        """The body, bounded by the size fault (2004) and the parser limit."""
        limit = self.faults.max_bytes or self.config.limits.max_total_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await request.content.readany()
            if not chunk:
                return b"".join(chunks), None
            size += len(chunk)
            if size > limit:
                return b"", self._oversize(size, limit)
            chunks.append(chunk)

    async def _early_fault(
        self, fault: FaultSpec | None, request: web.Request
    ) -> web.StreamResponse | None:
        """Faults that act before the request is read as MM7: latency, HTTP error, reset."""
        if fault is None:
            return None
        if fault.kind is FaultKind.LATENCY:
            await asyncio.sleep(fault.delay)  # real time: the peer must see it
            return None
        if fault.kind is FaultKind.HTTP:
            text = f"{fault.http_status} injected by the MMSC simulator\n"
            return web.Response(status=fault.http_status, text=text)
        if fault.kind is FaultKind.RESET:
            _reset(request)
            return web.Response(status=200)
        return None

    def _try_decode(self, body: bytes, request: web.Request) -> Decoded | None:
        try:
            return decode(body, request.headers.get(hdrs.CONTENT_TYPE), self.config.limits)
        except MM7Error:
            return None

    def _answer_body(
        self,
        body: bytes,
        request: web.Request,
        salvage: Callable[[], Message | None],
        known: Decoded | None = None,
        unreadable: ParseError | None = None,
    ) -> tuple[_Answer, Decoded | None]:
        """Decode (unless ``known`` is the body decoded already, or ``unreadable`` why it cannot
        be), validate and route one request body (``salvage``: the echo of a refused body)."""
        persona = self.persona
        if unreadable is not None:
            status = persona.status(unreadable.status_code, _details(str(unreadable)))
            return self._error(salvage(), None, status), None
        if known is not None:
            decoded = known
        else:
            try:
                decoded = decode(body, request.headers.get(hdrs.CONTENT_TYPE), self.config.limits)
            except ParseError as exc:
                status = persona.status(exc.status_code, _details(str(exc)))
                return self._error(salvage(), None, status), None
        message = decoded.message
        echo = safe_echo(message)
        rsp_type = _rsp_type(decoded.operation)
        if self.strict:
            problems = self._schema_problems(decoded)
            if problems is not None:
                code, reasons = problems
                status = persona.status(code, _details("; ".join(reasons)))
                answer = self._error(echo, rsp_type, status)
                answer.problems = reasons
                return answer, decoded
        version = decoded.version
        if persona.versions and (version is None or version.token not in persona.versions):
            what = version.token if version is not None else repr(message.namespace)
            accepted = ", ".join(persona.versions)
            status = persona.status(4002, f"{what} is not accepted (accepted: {accepted})")
            return self._error(echo, rsp_type, status), decoded
        if not isinstance(message, Request) or rsp_type is None:
            what = decoded.operation
            status = persona.status(
                4003, f"{what} is not an operation a VASP sends to an MMSC (VASP -> MMSC only)"
            )
            return self._error(echo, None, status), decoded
        return self._route(message, decoded, echo), decoded

    def _schema_problems(self, decoded: Decoded) -> tuple[int, tuple[str, ...]] | None:
        """(status, reasons) when the request breaks its schema; None when it is valid."""
        if decoded.version is None:
            ns = decoded.message.namespace
            return 4002, (f"MM7 namespace {ns!r} is not a published schema",)
        # the tree decode parsed (read_envelope only reads it): a second parse of the SOAP part
        # was a tenth of the handler's time per SubmitReq
        root = decoded.root
        if root is None:
            root = parse_xml(decoded.soap, limits=self.config.limits)
        report = validate_envelope(root)
        if report.valid:
            return None
        return 4004, report.errors

    def _route(self, message: Request, decoded: Decoded, echo: Message) -> _Answer:
        persona = self.persona
        lenient = tuple(str(x) for x in decoded.leniencies)
        if isinstance(message, SubmitReq):
            limit = persona.max_recipients
            if limit is not None and len(message.recipients) > limit:
                count = len(message.recipients)
                details = f"{count} recipients; this MMSC takes at most {limit} per SubmitReq"
                return self._error(echo, SubmitRsp, persona.status(3003, details))
            if persona.require_smil:
                missing = _smil_missing(message.content)
                if missing is not None:
                    status = persona.status(persona.missing_smil_status, missing)
                    return self._error(echo, SubmitRsp, status)
            message_id = self._new_message_id()
            self.record_accepted(message, message_id, lenient)
            return self._ok(echo, SubmitRsp(message_id=message_id), message_id)
        if isinstance(message, CancelReq | ExtendedCancelReq):
            target = message.message_id if isinstance(message, CancelReq) else message.cancel_id
            if target not in self.submitted or target in self.cancelled:
                return self._unknown(echo, type(message), target)
            self.cancelled.add(target)
            self.dlr.cancel(target)
            self.store.add_message(message, target, None, lenient)
            rsp: Response = CancelRsp() if isinstance(message, CancelReq) else ExtendedCancelRsp()
            return self._ok(echo, rsp, target)
        if isinstance(message, ReplaceReq):
            if message.message_id not in self.submitted or message.message_id in self.cancelled:
                return self._unknown(echo, ReplaceReq, message.message_id)
            self.store.add_message(message, message.message_id, message.content, lenient)
            return self._ok(echo, ReplaceRsp(), message.message_id)
        if isinstance(message, ExtendedReplaceReq):
            replace_id = message.replace_id
            if replace_id is None or replace_id not in self.submitted:
                return self._unknown(echo, ExtendedReplaceReq, replace_id)
            if replace_id in self.cancelled:
                return self._unknown(echo, ExtendedReplaceReq, replace_id)
            new_id = self._new_message_id()
            self._remember(new_id, self.submitted[replace_id])
            self.store.add_message(message, new_id, message.content, lenient)
            return self._ok(echo, ExtendedReplaceRsp(message_id=new_id), new_id)
        what = message.OPERATION
        return self._error(
            echo,
            None,
            persona.status(4003, f"{what} is sent by an MMSC to a VASP, not to an MMSC"),
        )

    def record_accepted(
        self,
        message: SubmitReq,
        message_id: str,
        leniencies: tuple[str, ...],
        source: tuple[bytes, str | None] | None = None,
    ) -> None:
        """Remember a SubmitReq answered 1000 (here or by a worker: without its content, read
        from ``source`` when shown) and start its reports."""
        self._remember(message_id, message)
        self.accepted_submits += 1
        self.last_accepted = message_id
        self.store.add_message(message, message_id, message.content, leniencies, source)
        if self.config.vasp_url and self.dlr.wanted(message):
            self.dlr.schedule(message, message_id)

    def _unknown(self, echo: Message, req: type[Request], target: str | None) -> _Answer:
        status = self.persona.status(2005, f"no submitted message {target!r} to act on")
        return self._error(echo, _rsp_type(req.OPERATION), status)

    def _new_message_id(self) -> str:
        # 80 random bits as 20 hex digits: unique across runs; os.urandom costs a seventh of uuid4
        return f"{self.config.message_id_prefix}-{os.urandom(10).hex()}"

    def _remember(self, message_id: str, submit: SubmitReq) -> None:
        self.submitted[message_id] = submit
        while len(self.submitted) > MAX_SUBMITTED:
            old, _ = self.submitted.popitem(last=False)
            self.cancelled.discard(old)

    # -- answers ---------------------------------------------------------------------------------
    def _ok(self, echo: Message, rsp: Response, message_id: str | None) -> _Answer:
        answer = self._encode(reply_to(echo, rsp), 200)
        answer.status_code = rsp.status.code
        answer.status_text = rsp.status.text
        answer.message_id = message_id
        return answer

    def _error(
        self, echo: Message | None, rsp_type: type[Response] | None, status: Status
    ) -> _Answer:
        """A non-success answer in the persona's error shape."""
        shape = self.persona.fault_shape
        if shape == "in-response" and rsp_type is not None:
            rsp = rsp_type(status=status)
            answer = self._encode(rsp if echo is None else reply_to(echo, rsp), 200)
        else:
            error = RSErrorRsp(status=status)
            fault = Fault(faultcode=fault_code_for(status), faultstring=status.text, error=error)
            if echo is not None:
                fault = reply_to(echo, dataclasses.replace(fault, error=reply_to(echo, error)))
            answer = self._encode(fault, self._dialect.fault_http_status)
            if shape == "bare-status":
                answer.body = _bare_status(answer.body)
        answer.status_code = status.code
        answer.status_text = status.text
        if status.details:
            answer.problems = (status.details,)
        return answer

    def _encode(self, message: Message, http_status: int) -> _Answer:
        """Encode in the persona's dialect; an echo that cannot be written is dropped."""
        try:
            encoded = encode(message, self._dialect)
        except MM7Error:
            bare = dataclasses.replace(message, transaction_id="", namespace=None, mm7_version=None)
            if isinstance(bare, Fault) and bare.error is not None:
                bare = dataclasses.replace(bare, error=RSErrorRsp(status=bare.error.status))
            encoded = encode(bare, self._dialect)
        content_type = encoded.content_type
        wanted = self.persona.response_content_type
        if wanted and content_type.lower().startswith("text/xml"):
            content_type = wanted + content_type[len("text/xml") :]
        return _Answer(http_status, encoded.body, content_type, None)

    async def _send(
        self, request: web.Request, answer: _Answer, fault: FaultSpec | None
    ) -> web.StreamResponse:
        """Write the answer, mangled by a truncate or malformed-xml fault."""
        headers = CIMultiDict([(hdrs.CONTENT_TYPE, answer.content_type), *answer.headers])
        if fault is not None and fault.kind is FaultKind.MALFORMED_XML:
            broken = answer.body[: max(1, len(answer.body) * 2 // 3)] + b"<<&broken"
            return web.Response(status=200, body=broken, headers=headers)
        if fault is not None and fault.kind is FaultKind.TRUNCATE:
            response = web.StreamResponse(status=answer.http_status, headers=headers)
            response.content_length = len(answer.body)
            await response.prepare(request)
            await response.write(answer.body[: len(answer.body) // 2])
            if request.transport is not None:
                request.transport.close()
            return response
        response = web.Response(status=answer.http_status, body=answer.body, headers=headers)
        if answer.http_status in (401, 403, 411) or answer.status_code == 2004:
            response.force_close()  # the rest of the body is not wanted
        return response

    async def console(self, request: web.Request) -> web.Response:
        """GET: the console page (every exchange, live; detail; persona, faults, scenarios)."""
        ui = (self.config.ui_path or "").rstrip("/")
        page = console_page(self.config.control_path, ui, self.persona.name)
        return web.Response(
            text=page,
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": CONSOLE_CSP, "X-Content-Type-Options": "nosniff"},
        )

    async def console_asset(self, request: web.Request) -> web.Response:
        """GET: the console's script or style sheet (served from the package, no CDN)."""
        found = console_asset(request.match_info["asset"])
        if found is None:
            raise web.HTTPNotFound(text="no such file")
        body, content_type = found
        return web.Response(
            body=body,
            content_type=content_type,
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
        )

    async def ui(self, request: web.Request) -> web.Response:
        """GET: the web page of received messages, slides in order."""
        messages = self.store.shown_messages()
        page = render_page(messages, self.config.control_path, self.persona.name)
        return web.Response(
            text=page,
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff"},
        )

    # -- control API -----------------------------------------------------------------------------
    async def c_messages(self, request: web.Request) -> web.Response:
        """GET: every received message (newest last) with parts and slides."""
        shown = self.store.shown_messages()
        return web.json_response({"messages": [self.message_json(m) for m in shown]})

    async def c_message(self, request: web.Request) -> web.Response:
        """GET: one message with all its fields."""
        received = self._find(request)
        out = self.message_json(received)
        out["fields"] = message_fields(received.message)
        return web.json_response(out)

    async def c_part(self, request: web.Request) -> web.Response:
        """GET: the bytes of a message's part (index as listed), with its Content-Type."""
        received = self._find(request)
        parts = leaf_parts(received.content) if received.content is not None else []
        try:
            part = parts[int(request.match_info["index"])]
        except (ValueError, IndexError):
            raise web.HTTPNotFound(text="no such part") from None
        headers = {
            hdrs.CONTENT_TYPE: part.content_type.header_value(),
            # a peer's bytes: never run as a page of ours, never re-typed by the browser
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "X-Content-Type-Options": "nosniff",
        }
        return web.Response(body=part.body, headers=headers)

    async def c_persona(self, request: web.Request) -> web.Response:
        p = self.persona
        return web.json_response(
            {
                "name": p.name,
                "description": p.description,
                "strict": self.strict,
                "namespace": p.dialect.namespace,
                "mm7_version": p.dialect.effective_mm7_version,
                "fault_shape": p.fault_shape,
                "fault_http_status": p.dialect.fault_http_status,
                "require_smil": p.require_smil,
                "refuse_chunked": p.refuse_chunked,
            }
        )

    async def c_persona_set(self, request: web.Request) -> web.Response:
        """PUT {name}: become another persona (a name ``GET personas`` lists); 400 naming the
        known ones otherwise, and nothing changes."""
        data = await _json_object(request)
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("name: the persona's name is required (GET personas lists them)")
        known = persona_names()
        if name not in known:  # a name, never a path
            raise _bad(f"name: unknown persona {name!r}; known: {', '.join(known)}")
        try:
            persona = load_persona(name)
        except PersonaError as exc:
            raise _bad(f"name: {exc}") from None
        self.set_persona(persona)
        return await self.c_persona(request)

    async def c_personas(self, request: web.Request) -> web.Response:
        """GET: the personas this simulator can become, and the one it is."""
        listed = []
        for name in persona_names():
            try:
                description = load_persona(name).description
            except PersonaError as exc:
                description = f"(cannot be used: {exc})"
            listed.append({"name": name, "description": description})
        return web.json_response({"current": self.persona.name, "personas": listed})

    async def c_faults_get(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_json())

    async def c_faults_set(self, request: web.Request) -> web.Response:
        """POST: add one-shot faults, replace rates and limits (FaultInjector.configure)."""
        data = await _json_object(request)
        try:
            self.faults.configure(data)
        except FaultConfigError as exc:
            raise _bad(str(exc)) from None
        return web.json_response(self.faults.to_json())

    async def c_faults_clear(self, request: web.Request) -> web.Response:
        self.faults.reset()
        return web.json_response(self.faults.to_json())

    async def c_mo(self, request: web.Request) -> web.Response:
        """POST {to, from, text?, subject?, linked_id?, media?: [{data (base64), filename?,
        content_type?}]}: send a DeliverReq to the VASP; answers with the delivery outcome."""
        data = await _json_object(request)
        to = data.get("to")
        recipients = [to] if isinstance(to, str) else to
        sender = data.get("from")
        if not recipients or not all(isinstance(x, str) and x for x in recipients):
            raise _bad("to: a recipient address (or a list of them) is required")
        if not isinstance(sender, str) or not sender:
            raise _bad("from: the sender's address is required")
        media: list[Source] = []
        for index, item in enumerate(data.get("media") or [], start=1):
            if not isinstance(item, Mapping) or not isinstance(item.get("data"), str):
                raise _bad(f"media[{index}]: an object with base64 'data'")
            try:
                raw = base64.b64decode(item["data"], validate=True)
            except binascii.Error:
                raise _bad(f"media[{index}]: data is not base64") from None
            filename = _opt_str(item, "filename")
            media.append(Source(raw, filename=filename, media_type=_opt_str(item, "content_type")))
        try:
            req = deliver_req(
                to=recipients,
                sender=sender,
                text=_opt_str(data, "text"),
                media=media,
                subject=_opt_str(data, "subject"),
                linked_id=_opt_str(data, "linked_id"),
            )
        except ContentError as exc:
            raise _bad(f"media: {exc}") from None
        return await self._originate(req)

    async def c_report(self, request: web.Request) -> web.Response:
        """POST {message_id, recipient, sender?, status?}: send a DeliveryReportReq."""
        data = await _json_object(request)
        message_id, recipient, sender = self._report_addresses(data)
        try:
            status = MMStatus(data.get("status", "Retrieved"))
        except ValueError:
            raise _bad(f"status: one of {', '.join(MMStatus)}") from None
        req = delivery_report_req(
            message_id=message_id,
            recipient=recipient,
            sender=sender,
            status=status,
            status_text=_opt_str(data, "status_text"),
        )
        return await self._originate(self._as_submitted(req, message_id))

    async def c_read_reply(self, request: web.Request) -> web.Response:
        """POST {message_id, recipient, sender?, status?}: send a ReadReplyReq."""
        data = await _json_object(request)
        message_id, recipient, sender = self._report_addresses(data)
        try:
            status = ReadStatus(data.get("status", "Read"))
        except ValueError:
            raise _bad(f"status: one of {', '.join(ReadStatus)}") from None
        req = read_reply_req(
            message_id=message_id, recipient=recipient, sender=sender, status=status
        )
        return await self._originate(self._as_submitted(req, message_id))

    def _as_submitted(self, req: Request, message_id: str) -> Request:
        """``req`` in the namespace and MM7Version of the SubmitReq it reports on, if known."""
        submit = self.submitted.get(message_id)
        if submit is None:
            return req
        return dataclasses.replace(req, namespace=submit.namespace, mm7_version=submit.mm7_version)

    def _report_addresses(self, data: Mapping[str, Any]) -> tuple[str, str, str]:
        message_id = _opt_str(data, "message_id")
        recipient = _opt_str(data, "recipient")
        if not message_id or not recipient:
            raise _bad("message_id and recipient are required")
        sender = _opt_str(data, "sender")
        if sender is None:
            submit = self.submitted.get(message_id)
            address = submit.sender_address if submit is not None else None
            sender = address.value if address is not None else self.config.mmsc_address
        return message_id, recipient, sender

    async def _originate(self, req: Request) -> web.Response:
        if self.config.vasp_url is None:
            raise web.HTTPConflict(
                text='{"error": "no VASP URL configured (--vasp-url)"}',
                content_type="application/json",
            )
        try:
            delivery: Delivery = await self.outbound.deliver(req)
        except ContentError as exc:
            raise _bad(str(exc)) from None
        return web.json_response(delivery.to_json())

    async def c_scenarios(self, request: web.Request) -> web.Response:
        """GET: the scenarios known by name (shipped, conf/scenarios, $MM7_SCENARIOS_DIR)."""
        listed = []
        for name in scenario_names():
            try:
                described = load_scenario(name).to_json()
            except ScenarioError as exc:
                described = {"name": name, "description": f"(cannot be used: {exc})", "steps": []}
            listed.append(described)
        return web.json_response({"scenarios": listed})

    async def c_scenario(self, request: web.Request) -> web.Response:
        """GET: the scenario running (or run last): its state and each step's."""
        if self.scenario is None:
            return web.json_response({"name": None, "state": None, "steps": []})
        return web.json_response(self.scenario.to_json())

    async def c_scenario_run(self, request: web.Request) -> web.Response:
        """POST a scenario as TOML (Content-Type application/toml or text/plain), or JSON
        {"name": ...} for a known one; 400 naming the step and key when it is wrong, 409 when
        one is running. Answers the run's state."""
        content_type = request.content_type
        try:
            if content_type == "application/json":
                data = await _json_object(request)
                name = data.get("name")
                if not isinstance(name, str) or not name:
                    raise _bad("name: a scenario's name (GET scenarios lists them)")
                known = scenario_names()
                if name not in known:  # a name, never a path
                    raise _bad(f"name: unknown scenario {name!r}; known: {', '.join(known)}")
                scenario = load_scenario(name)
            elif content_type in ("application/toml", "text/plain", "text/x-toml"):
                text = (await request.read()).decode("utf-8", "replace")
                scenario = scenario_from_text(text, request.query.get("name", "posted"))
            else:
                raise _bad(
                    "send the scenario as TOML (Content-Type: application/toml) or JSON "
                    '{"name": ...}'
                )
        except ScenarioError as exc:
            raise _bad(str(exc)) from None
        try:
            run = self.run_scenario(scenario)
        except ScenarioError as exc:
            raise web.HTTPConflict(
                text=json.dumps({"error": str(exc)}), content_type="application/json"
            ) from None
        return web.json_response(run.to_json(), status=201)

    async def c_scenario_stop(self, request: web.Request) -> web.Response:
        """DELETE: stop the running scenario (a no-op when none runs)."""
        if self.scenario is not None:
            await self.scenario.stop()
        return await self.c_scenario(request)

    async def c_reset(self, request: web.Request) -> web.Response:
        """POST: forget traffic, messages and faults; stop pending reports and the scenario."""
        if self.scenario is not None:
            await self.scenario.stop()
            self.scenario = None
        await self.dlr.close()
        self.store.clear()
        self.faults.reset()
        self.submitted.clear()
        self.cancelled.clear()
        return web.json_response({"reset": True})

    def _find(self, request: web.Request) -> Received:
        try:
            received = self.store.message(int(request.match_info["id"]))
        except ValueError:
            received = None
        if received is None:
            raise web.HTTPNotFound(text="no such message")
        return received

    def message_json(self, received: Received) -> dict[str, Any]:
        """A received message for the control API: envelope, parts (leaves) and slides."""
        message = received.message
        base = self.config.control_path.rstrip("/")
        out: dict[str, Any] = {
            "id": received.id,
            "at": received.at.isoformat(),
            "operation": received.operation,
            "transaction_id": message.transaction_id,
            "namespace": message.namespace,
            "mm7_version": message.mm7_version,
            "message_id": received.message_id,
            "leniencies": list(received.leniencies),
        }
        fields = message_fields(message)
        for name in ("subject", "sender_address", "sender", "recipients"):
            if name in fields:
                out[name] = fields[name]
        content = received.content
        parts = leaf_parts(content) if content is not None else []
        out["parts"] = [
            {
                "index": index,
                "content_type": p.content_type.mime_type,
                "content_id": p.content_id,
                "content_location": p.content_location,
                "size": len(p.body),
                "url": f"{base}/messages/{received.id}/parts/{index}",
            }
            for index, p in enumerate(parts)
        ]
        if content is not None and find_smil(content) is not None:
            out["slides"] = slides(content, parts)
        return out


def _smil_missing(content: Part | None) -> str | None:
    """Why a submit's content has no SMIL presentation; None when it has one."""
    if content is None:
        return "SMIL presentation required: the SubmitReq has no content"
    if find_smil(content) is None:
        return "SMIL presentation required: no application/smil part in the content"
    return None


_RSP_BY_REQUEST: dict[str, type[Response]] = {
    "SubmitReq": SubmitRsp,
    "CancelReq": CancelRsp,
    "ReplaceReq": ReplaceRsp,
    "extendedCancelReq": ExtendedCancelRsp,
    "extendedReplaceReq": ExtendedReplaceRsp,
}


def _rsp_type(operation: str) -> type[Response] | None:
    """The response type of a VASP -> MMSC request; None for everything else."""
    return _RSP_BY_REQUEST.get(operation)


def _bare_status(envelope: bytes) -> bytes:
    """The Fault with its detail holding the RSErrorRsp's Status directly (ALU mock style)."""
    root = parse_xml(envelope)
    for detail in root.iter("detail", f"{{{SOAP_ENV_NS}}}detail"):
        for error in list(detail):
            status = next((c for c in error if local(c) == "Status"), None)
            if status is not None:
                detail.replace(error, status)
    declaration = envelope.lstrip().startswith(b"<?xml")
    return bytes(etree.tostring(root, xml_declaration=declaration, encoding="UTF-8"))


def _reset(request: web.Request) -> None:
    """Drop the connection with a TCP reset (SO_LINGER 0, then abort)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _details(text: str) -> str:
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean[:MAX_DETAILS]


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"{key}: expected a string")
    return value


def _bad(text: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": text}), content_type="application/json")


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise _bad("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise _bad("the body must be a JSON object")
    return data


#: where the Simulator serving an application is kept (``app[SIMULATOR]``)
SIMULATOR = web.AppKey("mm7_simulator", Simulator)


def create_simulator_app(config: SimulatorConfig | None = None) -> web.Application:
    """An aiohttp application serving a simulated MMSC (see ``Simulator``)."""
    return Simulator(config).application()
