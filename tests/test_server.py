"""The inbound endpoint against a real aiohttp ClientSession playing the MMSC, on 127.0.0.1.

Every accepted request type round-trips in several schema versions with the echo rule checked on
the response bytes; every refusal has its MM7 status, fault shape (VASPErrorRsp in the detail) and
HTTP status checked; handler failures leak nothing; duplicates reach the handler marked; bodies
over the limit are refused without being read whole.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from mm7.core.codec import decode, encode, salvage_envelope
from mm7.core.dialect import Dialect
from mm7.core.leniency import Leniency
from mm7.core.limits import Limits
from mm7.core.model import (
    DeliverReq,
    DeliverRsp,
    DeliveryReportReq,
    Fault,
    ReadReplyReq,
    Response,
    Status,
    VASPErrorRsp,
)
from mm7.core.status import MMStatus
from mm7.core.versions import NAMESPACE_BASE, get_version
from mm7.transport.dedupe import MemoryDedupe, dedupe_keys
from mm7.transport.inbound_auth import PeerAuth
from mm7.transport.server import (
    INBOUND,
    STATUS_MAP,
    HandlerError,
    InboundConfig,
    InboundContext,
    InboundHandlers,
    MM7Inbound,
    Peer,
    create_inbound_app,
)
from tests.helpers.inbound import (
    LAX,
    OPEN,
    Recorder,
    post,
    post_message,
    request_message,
    start,
)

ServerFactory = Callable[..., Awaitable[Any]]
#: writes requests as any peer might: any MM7Version under any namespace
ACCEPTED = ("DeliverReq", "DeliveryReportReq", "ReadReplyReq")
RESPONSE_NAME = {
    "DeliverReq": "DeliverRsp",
    "DeliveryReportReq": "DeliveryReportRsp",
    "ReadReplyReq": "ReadReplyRsp",
}
# --------------------------------------------------------------------------- round trips

VERSION_CASES = [
    pytest.param("REL-5-MM7-1-0", None, id="REL-5-MM7-1-0"),
    pytest.param("REL-5-MM7-1-2", "1.6", id="REL-5-MM7-1-2+1.6"),
    pytest.param("REL-6-MM7-1-4", None, id="REL-6-MM7-1-4"),
]


@pytest.mark.parametrize("op", ACCEPTED)
@pytest.mark.parametrize(("token", "mm7_version"), VERSION_CASES)
async def test_each_request_type_round_trips_and_echoes(
    aiohttp_server: ServerFactory, op: str, token: str, mm7_version: str | None
) -> None:
    recorder = Recorder()
    server = await start(aiohttp_server, recorder)
    message = request_message(op, token, mm7_version=mm7_version)
    reply = await post_message(server.make_url("/mm7"), message)

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/xml")
    namespace = NAMESPACE_BASE + token
    version_text = mm7_version or get_version(token).default_mm7_version
    # the echo rule, on the bytes
    assert f'xmlns:mm7="{namespace}"' in reply.text
    assert f">{message.transaction_id}</mm7:TransactionID>" in reply.text
    assert f"<mm7:MM7Version>{version_text}</mm7:MM7Version>" in reply.text
    assert f"<mm7:{RESPONSE_NAME[op]}>" in reply.text
    # and as the codec reads it
    rsp = reply.message
    assert type(rsp).__name__ == RESPONSE_NAME[op]
    assert isinstance(rsp, Response)
    assert rsp.status.code == 1000
    assert rsp.transaction_id == message.transaction_id
    assert rsp.namespace == namespace
    assert rsp.mm7_version == version_text

    (ctx,) = recorder.contexts
    assert type(ctx.message).__name__ == op
    assert ctx.message.transaction_id == message.transaction_id
    assert ctx.version == get_version(token)
    assert ctx.duplicate is False
    assert ctx.peer.name == "mmsc"
    if mm7_version == "1.6":
        assert Leniency.VERSION_NAMESPACE_MISMATCH in ctx.leniencies


async def test_deliver_media_reaches_the_handler_as_decoded_parts(
    aiohttp_server: ServerFactory,
) -> None:
    recorder = Recorder()
    server = await start(aiohttp_server, recorder)
    message = request_message("DeliverReq", "REL-6-MM7-1-4")
    assert isinstance(message, DeliverReq) and message.content is not None
    reply = await post_message(server.make_url("/mm7"), message)
    assert reply.status == 200
    ctx = recorder.contexts[0]
    assert isinstance(ctx.message, DeliverReq)
    content = ctx.message.content
    assert content is not None
    assert [c.content_type.mime_type for c in content.children] == [
        "application/smil",
        "image/jpeg",
        "text/plain",
    ]
    assert content.children == message.content.children
    # the media part the handler gets is the one in Decoded.parts, not a copy
    assert ctx.parts and ctx.parts[0] is content


async def test_unknown_namespace_is_echoed_by_a_lenient_peer(
    aiohttp_server: ServerFactory,
) -> None:
    recorder = Recorder()
    server = await start(aiohttp_server, recorder)
    odd = NAMESPACE_BASE + "REL-6-MM7-6-7"
    message = dataclasses.replace(
        request_message("DeliveryReportReq", "REL-6-MM7-1-4"), namespace=odd, mm7_version="6.7.0"
    )
    reply = await post_message(server.make_url("/mm7"), message)
    assert reply.status == 200
    assert f'xmlns:mm7="{odd}"' in reply.text
    assert "<mm7:MM7Version>6.7.0</mm7:MM7Version>" in reply.text
    assert recorder.contexts[0].version is None
    assert Leniency.NAMESPACE_UNKNOWN in recorder.contexts[0].leniencies


async def test_handler_may_return_the_full_response(aiohttp_server: ServerFactory) -> None:
    recorder = Recorder(DeliverRsp(service_code="svc-42"))
    server = await start(aiohttp_server, recorder)
    message = request_message("DeliverReq", "REL-6-MM7-1-4")
    reply = await post_message(server.make_url("/mm7"), message)
    assert reply.status == 200
    rsp = reply.message
    assert isinstance(rsp, DeliverRsp)
    assert rsp.service_code == "svc-42"
    assert rsp.status == Status(1000, "Success")  # text filled in from the code
    assert rsp.transaction_id == message.transaction_id  # echoed even so


async def test_on_answer_sees_each_operation_and_the_status_answered(
    aiohttp_server: ServerFactory,
) -> None:
    seen: list[tuple[str, int]] = []
    recorder = Recorder()
    config = InboundConfig(peers=OPEN, on_answer=lambda op, code: seen.append((op, code)))
    server = await start(aiohttp_server, recorder, config=config)
    url = server.make_url("/mm7")
    await post_message(url, request_message("DeliverReq", "REL-6-MM7-1-4"))
    recorder.answer = HandlerError(4006, "busy")
    await post_message(url, request_message("DeliveryReportReq", "REL-6-MM7-1-4", tid="t2"))
    await post(url, b"<not-xml", "text/xml")
    assert seen == [("DeliverReq", 1000), ("DeliveryReportReq", 4006), ("unreadable", 2007)]


async def test_health_route(aiohttp_server: ServerFactory) -> None:
    server = await start(aiohttp_server)
    async with aiohttp.ClientSession() as s, s.get(server.make_url("/healthz")) as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}


async def test_configurable_path_and_app_key(aiohttp_server: ServerFactory) -> None:
    inbound = MM7Inbound(InboundConfig(path="/vasp/in", peers=OPEN), Recorder().handlers())
    app = inbound.application()
    assert app[INBOUND] is inbound
    server = await aiohttp_server(app)
    message = request_message("ReadReplyReq", "REL-6-MM7-1-0")
    assert (await post_message(server.make_url("/vasp/in"), message)).status == 200
    async with aiohttp.ClientSession() as s, s.post(server.make_url("/mm7")) as resp:
        assert resp.status == 404


async def test_context_carries_headers_without_secrets_and_carrier_id(
    aiohttp_server: ServerFactory,
) -> None:
    recorder = Recorder()
    server = await start(aiohttp_server, recorder)
    message = request_message("DeliveryReportReq", "REL-6-MM7-1-4")
    headers = {
        "X-OpenMarket-Carrier-Id": "383",
        "Authorization": "Bearer very-secret",
        "Cookie": "session=secret",
        "X-Other": "kept",
    }
    await post_message(server.make_url("/mm7"), message, headers=headers)
    ctx = recorder.contexts[0]
    assert ctx.carrier_id == "383"
    assert ctx.headers["X-Other"] == "kept"
    assert "Authorization" not in ctx.headers and "Cookie" not in ctx.headers


# --------------------------------------------------------------------------- handler decides


async def test_handler_error_becomes_a_vasperrorrsp_fault(aiohttp_server: ServerFactory) -> None:
    recorder = Recorder(HandlerError(4006))
    server = await start(aiohttp_server, recorder)
    message = request_message("DeliverReq", "REL-5-MM7-1-2", mm7_version="1.6")
    reply = await post_message(server.make_url("/mm7"), message)
    assert reply.status == 500
    fault = reply.message
    assert isinstance(fault, Fault)
    assert fault.faultcode == "env:Server"
    assert reply.fault_status() == Status(4006, "Service unavailable")
    # the fault echoes the request as well
    assert fault.transaction_id == message.transaction_id
    assert f'xmlns:mm7="{NAMESPACE_BASE}REL-5-MM7-1-2"' in reply.text
    assert "<mm7:MM7Version>1.6</mm7:MM7Version>" in reply.text
    assert "<env:Fault><faultcode>env:Server</faultcode>" in reply.text
    assert "<detail><mm7:VASPErrorRsp>" in reply.text


async def test_handler_error_with_details_is_a_client_fault(
    aiohttp_server: ServerFactory,
) -> None:
    recorder = Recorder(HandlerError(2005, "unknown MessageID"))
    server = await start(aiohttp_server, recorder)
    reply = await post_message(
        server.make_url("/mm7"), request_message("DeliveryReportReq", "REL-6-MM7-1-4")
    )
    assert reply.status == 500
    assert isinstance(reply.message, Fault) and reply.message.faultcode == "env:Client"
    assert reply.fault_status() == Status(2005, "Message ID Not found", "unknown MessageID")


async def test_returned_error_status_goes_in_the_rsp_when_the_peer_wants_it(
    aiohttp_server: ServerFactory,
) -> None:
    recorder = Recorder(Status(4006))  # no text: the spec's is filled in
    config = InboundConfig(peers=(Peer("mmsc", errors_as_fault=False),))
    server = await start(aiohttp_server, recorder, config=config)
    reply = await post_message(
        server.make_url("/mm7"), request_message("DeliverReq", "REL-6-MM7-1-4")
    )
    assert reply.status == 200
    assert isinstance(reply.message, DeliverRsp)
    assert reply.message.status == Status(4006, "Service unavailable")


async def test_fault_http_status_follows_the_peer_dialect(aiohttp_server: ServerFactory) -> None:
    config = InboundConfig(peers=(Peer("mbuni", dialect=Dialect(fault_http_status=200)),))
    server = await start(aiohttp_server, Recorder(HandlerError(3000)), config=config)
    reply = await post_message(
        server.make_url("/mm7"), request_message("DeliverReq", "REL-6-MM7-1-4")
    )
    assert reply.status == 200
    assert reply.fault_status().code == 3000


async def test_peer_dialect_shapes_the_response(aiohttp_server: ServerFactory) -> None:
    dialect = Dialect(envelope_prefix="SOAP-ENV", mm7_prefix="")
    config = InboundConfig(peers=(Peer("mmsc", dialect=dialect),))
    server = await start(aiohttp_server, config=config)
    message = request_message("DeliverReq", "REL-5-MM7-1-0")
    reply = await post_message(server.make_url("/mm7"), message)
    assert reply.status == 200
    assert "<SOAP-ENV:Envelope" in reply.text
    assert f'<DeliverRsp xmlns="{NAMESPACE_BASE}REL-5-MM7-1-0">' in reply.text


SECRET = "db-password=hunter2 at /srv/internal/relay.py"


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(RuntimeError(SECRET), id="exception"),
        pytest.param(KeyError(SECRET), id="keyerror"),
        pytest.param("not a status", id="wrong-type"),
        pytest.param(VASPErrorRsp, id="a-class"),
    ],
)
async def test_handler_failure_is_3000_without_details(
    aiohttp_server: ServerFactory, answer: Any
) -> None:
    async def misbehave(ctx: InboundContext[Any]) -> Any:
        if isinstance(answer, BaseException):
            raise answer
        return answer

    recorder = Recorder(misbehave)
    server = await start(aiohttp_server, recorder)
    message = request_message("DeliverReq", "REL-6-MM7-1-4")
    with capture_logs() as logs:
        reply = await post_message(server.make_url("/mm7"), message)
    assert reply.status == 500
    assert reply.fault_status() == Status(3000, "Server Error")
    for leak in ("hunter2", "relay.py", "Traceback", "Error'", "Details", "not a status"):
        assert leak not in reply.text
    failed = [e for e in logs if e["event"] == "mm7.inbound.handler_failed"]
    assert len(failed) == 1
    assert failed[0]["transaction_id"] == message.transaction_id
    assert failed[0]["peer"] == "mmsc"
    if isinstance(answer, BaseException):
        assert failed[0]["exc_info"] is True  # the traceback goes to the server log


async def test_handler_returning_none_is_not_an_acknowledgement(
    aiohttp_server: ServerFactory,
) -> None:
    async def forgot(ctx: InboundContext[Any]) -> None:
        return None

    server = await start(aiohttp_server, Recorder(forgot))
    reply = await post_message(
        server.make_url("/mm7"), request_message("DeliverReq", "REL-6-MM7-1-4")
    )
    assert reply.fault_status().code == 3000


# --------------------------------------------------------------------------- refusals


def envelope(body: str, *, ns: str = NAMESPACE_BASE + "REL-6-MM7-1-4", tid: str = "t-1") -> bytes:
    return (
        '<?xml version="1.0"?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"'
        f' xmlns:mm7="{ns}"><env:Header><mm7:TransactionID env:mustUnderstand="1">{tid}'
        f"</mm7:TransactionID></env:Header><env:Body>{body}</env:Body></env:Envelope>"
    ).encode()


REFUSALS = [
    pytest.param(b"this is not xml", "text/xml", 2007, None, id="not-xml"),
    pytest.param(b"<env:Envelope><broken", "text/xml", 2007, None, id="malformed-xml"),
    pytest.param(
        b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n",
        'multipart/related; boundary="b"',
        2007,
        None,
        id="mime-without-soap",
    ),
    pytest.param(b"", "text/xml", 2007, None, id="empty-body"),
    pytest.param(
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
        "text/xml",
        2007,
        None,
        id="dtd-refused",
    ),
    pytest.param(
        envelope(
            "<mm7:DeliveryReportReq><mm7:MM7Version>6.8.0</mm7:MM7Version></mm7:DeliveryReportReq>"
        ),
        "text/xml",
        4004,
        "t-1",
        id="validation-missing-elements",
    ),
    pytest.param(
        envelope("<mm7:FrobnicateReq><mm7:MM7Version>6.8.0</mm7:MM7Version></mm7:FrobnicateReq>"),
        "text/xml",
        4003,
        "t-1",
        id="unknown-operation",
    ),
    pytest.param(
        envelope(
            "<mm7:SubmitRsp><mm7:MM7Version>6.8.0</mm7:MM7Version><mm7:Status>"
            "<mm7:StatusCode>1000</mm7:StatusCode></mm7:Status>"
            "<mm7:MessageID>m</mm7:MessageID></mm7:SubmitRsp>"
        ),
        "text/xml",
        4003,
        "t-1",
        id="a-response-posted",
    ),
]


@pytest.mark.parametrize(("body", "content_type", "code", "echo"), REFUSALS)
async def test_malformed_requests_get_the_core_status_in_a_fault(
    aiohttp_server: ServerFactory, body: bytes, content_type: str, code: int, echo: str | None
) -> None:
    recorder = Recorder()
    server = await start(aiohttp_server, recorder)
    reply = await post(server.make_url("/mm7"), body, content_type)
    assert reply.status == 500
    status = reply.fault_status()
    assert status.code == code
    assert reply.message.transaction_id == (echo or "")
    fault = reply.message
    assert isinstance(fault, Fault)
    assert fault.faultcode == "env:Client"
    assert "<detail><mm7:VASPErrorRsp>" in reply.text
    if code != 4003:
        assert status.details  # says where it failed
    assert recorder.contexts == []


@pytest.mark.parametrize(
    ("op", "token"),
    [
        ("SubmitReq", "REL-5-MM7-1-0"),
        ("CancelReq", "REL-6-MM7-1-4"),
        ("ReplaceReq", "REL-5-MM7-1-2"),
        ("extendedCancelReq", "REL-6-MM7-1-4"),
        ("extendedReplaceReq", "REL-6-MM7-1-4"),
    ],
)
async def test_requests_a_vasp_must_not_receive_are_4003(
    aiohttp_server: ServerFactory, op: str, token: str
) -> None:
    recorder = Recorder()
    server = await start(aiohttp_server, recorder)
    message = request_message(op, token)
    reply = await post_message(server.make_url("/mm7"), message)
    assert reply.status == 500
    assert reply.fault_status().code == 4003
    assert reply.message.transaction_id == message.transaction_id
    assert reply.message.namespace == NAMESPACE_BASE + token
    assert recorder.contexts == []


async def test_request_without_a_handler_is_4003(aiohttp_server: ServerFactory) -> None:
    recorder = Recorder()
    handlers = InboundHandlers(on_deliver=recorder)
    server = await start(aiohttp_server, handlers=handlers)
    reply = await post_message(
        server.make_url("/mm7"), request_message("ReadReplyReq", "REL-6-MM7-1-4")
    )
    assert reply.fault_status().code == 4003


async def test_version_outside_the_allow_list_is_4002(aiohttp_server: ServerFactory) -> None:
    config = InboundConfig(peers=(Peer("mmsc", versions=frozenset({"REL-6-MM7-1-4"})),))
    recorder = Recorder()
    server = await start(aiohttp_server, recorder, config=config)
    old = request_message("DeliverReq", "REL-5-MM7-1-0")
    reply = await post_message(server.make_url("/mm7"), old)
    assert reply.status == 500
    status = reply.fault_status()
    assert status.code == 4002 and "REL-5-MM7-1-0" in (status.details or "")
    assert reply.message.namespace == NAMESPACE_BASE + "REL-5-MM7-1-0"  # echoed anyway
    new = request_message("DeliverReq", "REL-6-MM7-1-4")
    assert (await post_message(server.make_url("/mm7"), new)).status == 200
    assert len(recorder.contexts) == 1


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"namespace": NAMESPACE_BASE + "REL-6-MM7-6-7"}, id="unknown-namespace"),
        pytest.param({"mm7_version": "1.6"}, id="version-not-in-namespace"),
    ],
)
async def test_strict_peer_refuses_odd_versions_with_4002(
    aiohttp_server: ServerFactory, changes: dict[str, Any]
) -> None:
    config = InboundConfig(peers=(Peer("mmsc", strict=True),))
    server = await start(aiohttp_server, config=config)
    message = dataclasses.replace(request_message("DeliverReq", "REL-5-MM7-1-2"), **changes)
    reply = await post_message(server.make_url("/mm7"), message)
    assert reply.fault_status().code == 4002
    assert reply.message.transaction_id == message.transaction_id


async def test_an_unsafe_namespace_is_not_echoed(aiohttp_server: ServerFactory) -> None:
    recorder = Recorder()
    server = await start(aiohttp_server, recorder)
    encoded = encode(request_message("DeliveryReportReq", "REL-6-MM7-1-4"), LAX)
    namespace = (NAMESPACE_BASE + "REL-6-MM7-1-4").encode()
    body = encoded.body.replace(namespace, b"urn:x&amp;y")  # a legal URI with an '&' in it
    reply = await post(server.make_url("/mm7"), body, encoded.content_type)
    assert recorder.contexts[0].message.namespace == "urn:x&y"
    assert reply.status == 200  # a well-formed answer, in the peer dialect's namespace
    assert reply.message.namespace == NAMESPACE_BASE + "REL-6-MM7-1-4"


def test_salvage_reads_what_it_can() -> None:
    body = envelope("<mm7:DeliverReq><mm7:MM7Version>5.3.0</mm7:MM7Version></mm7:DeliverReq>")
    echo = salvage_envelope(body, "text/xml", Limits())
    assert echo is not None
    assert (echo.transaction_id, echo.namespace, echo.mm7_version) == (
        "t-1",
        NAMESPACE_BASE + "REL-6-MM7-1-4",
        "5.3.0",
    )
    assert salvage_envelope(b"garbage", "text/xml", Limits()) is None


def test_status_map_names_every_refusal() -> None:
    codes = {code for _, code, _ in STATUS_MAP}
    assert {2004, 2007, 3000, 4001, 4002, 4003, 4004} <= codes


# --------------------------------------------------------------------------- size bound

LIMIT = 64 * 1024


def small_config(**kwargs: Any) -> InboundConfig:
    return InboundConfig(peers=OPEN, limits=Limits(max_total_bytes=LIMIT), **kwargs)


async def test_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    aiohttp_server: ServerFactory,
) -> None:
    recorder = Recorder()
    server = await start(aiohttp_server, recorder, config=small_config())
    never = asyncio.Event()  # the body stops after its first bytes and never continues

    async def body() -> AsyncIterator[bytes]:
        yield b"<" * 100
        await never.wait()
        yield b"never sent"

    headers = {"Content-Type": "text/xml", "Content-Length": str(LIMIT + 1)}
    async with (
        aiohttp.ClientSession() as s,
        s.post(server.make_url("/mm7"), data=body(), headers=headers) as resp,
    ):
        raw = await resp.read()
        assert resp.status == 413
        assert resp.headers["Connection"] == "close"
        reply = decode(raw, resp.headers["Content-Type"])
    assert isinstance(reply.message, Fault) and isinstance(reply.message.error, VASPErrorRsp)
    assert reply.message.error.status.code == 2004
    assert str(LIMIT) in (reply.message.error.status.details or "")
    assert not never.is_set() and recorder.contexts == []


async def test_chunked_upload_over_the_limit_is_cut(aiohttp_server: ServerFactory) -> None:
    recorder = Recorder()
    server = await start(aiohttp_server, recorder, config=small_config())
    produced = 0

    async def endless() -> AsyncIterator[bytes]:  # no Content-Length: chunked, never ends
        nonlocal produced
        while True:
            produced += 1
            yield b"x" * 4096

    async with (
        aiohttp.ClientSession() as s,
        s.post(server.make_url("/mm7"), data=endless(), headers={"Content-Type": "text/xml"}) as r,
    ):
        raw = await r.read()
        assert r.status == 413
    reply = decode(raw, "text/xml")
    assert isinstance(reply.message, Fault) and reply.message.status is not None
    assert reply.message.status.code == 2004
    assert recorder.contexts == []
    assert produced > LIMIT // 4096  # it did pass the limit: the server cut it, not the client


async def test_expect_100_continue_is_refused_before_the_body(
    aiohttp_server: ServerFactory,
) -> None:
    server = await start(aiohttp_server, config=small_config(oversize_http_status=400))
    reply = await post(server.make_url("/mm7"), b"<" * (LIMIT + 1), "text/xml", expect100=True)
    assert reply.status == 400  # the configured status
    assert reply.fault_status().code == 2004


async def test_expect_100_continue_within_the_limit_is_served(
    aiohttp_server: ServerFactory,
) -> None:
    server = await start(aiohttp_server, config=small_config())
    encoded = encode(request_message("DeliveryReportReq", "REL-6-MM7-1-4"), LAX)
    reply = await post(server.make_url("/mm7"), encoded.body, encoded.content_type, expect100=True)
    assert reply.status == 200


async def test_body_just_at_the_limit_is_read(aiohttp_server: ServerFactory) -> None:
    encoded = encode(request_message("DeliverReq", "REL-6-MM7-1-4"), LAX)
    config = InboundConfig(peers=OPEN, limits=Limits(max_total_bytes=len(encoded.body)))
    server = await start(aiohttp_server, config=config)
    reply = await post(server.make_url("/mm7"), encoded.body, encoded.content_type)
    assert reply.status == 200


# --------------------------------------------------------------------------- duplicates


async def test_a_retry_reaches_the_handler_marked_duplicate(
    aiohttp_server: ServerFactory,
) -> None:
    recorder = Recorder()
    server = await start(aiohttp_server, recorder)
    message = request_message("DeliverReq", "REL-6-MM7-1-4")
    first = await post_message(server.make_url("/mm7"), message)
    again = await post_message(server.make_url("/mm7"), message)
    assert first.status == again.status == 200
    assert [c.duplicate for c in recorder.contexts] == [False, True]
    other = dataclasses.replace(message, transaction_id="another")
    await post_message(server.make_url("/mm7"), other)
    assert recorder.contexts[-1].duplicate is False


async def test_a_failed_first_attempt_does_not_make_the_retry_a_duplicate(
    aiohttp_server: ServerFactory,
) -> None:
    answers: list[Any] = [HandlerError(4006), RuntimeError("db down"), Status.of(1000)]

    async def flaky(ctx: InboundContext[Any]) -> Any:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    recorder = Recorder(flaky)
    server = await start(aiohttp_server, recorder)
    message = request_message("DeliveryReportReq", "REL-6-MM7-1-4")
    codes = []
    for _ in range(4):
        reply = await post_message(server.make_url("/mm7"), message)
        msg = reply.message
        codes.append(reply.fault_status().code if isinstance(msg, Fault) else 1000)
        answers.append(Status.of(1000))
    assert codes == [4006, 3000, 1000, 1000]
    assert [c.duplicate for c in recorder.contexts] == [False, False, False, True]


async def test_a_report_retried_with_a_new_transaction_id_is_a_duplicate(
    aiohttp_server: ServerFactory,
) -> None:
    recorder = Recorder()
    server = await start(aiohttp_server, recorder)
    report = request_message("DeliveryReportReq", "REL-6-MM7-1-4")
    assert isinstance(report, DeliveryReportReq)
    await post_message(server.make_url("/mm7"), report)
    retry = dataclasses.replace(report, transaction_id="fresh-id")
    later = dataclasses.replace(report, transaction_id="later-id", mm_status=MMStatus.RETRIEVED)
    await post_message(server.make_url("/mm7"), retry)
    await post_message(server.make_url("/mm7"), later)  # the next report: not a duplicate
    assert [c.duplicate for c in recorder.contexts] == [False, True, False]


async def test_duplicates_are_per_peer(aiohttp_server: ServerFactory) -> None:
    peers = (
        Peer("a", PeerAuth.of(basic=("a", "pa"))),
        Peer("b", PeerAuth.of(basic=("b", "pb"))),
    )
    recorder = Recorder()
    server = await start(aiohttp_server, recorder, config=InboundConfig(peers=peers))
    message = request_message("DeliverReq", "REL-6-MM7-1-4")
    for user, password in (("a", "pa"), ("b", "pb"), ("a", "pa")):
        auth = {"Authorization": aiohttp.encode_basic_auth(user, password)}
        assert (await post_message(server.make_url("/mm7"), message, headers=auth)).status == 200
    assert [(c.peer.name, c.duplicate) for c in recorder.contexts] == [
        ("a", False),
        ("b", False),
        ("a", True),
    ]


async def test_concurrent_retry_waits_for_the_first_attempt(
    aiohttp_server: ServerFactory,
) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(ctx: InboundContext[Any]) -> Status:
        entered.set()
        await release.wait()
        return Status.of(1000)

    recorder = Recorder(slow)
    store = MemoryDedupe()
    inbound = MM7Inbound(InboundConfig(peers=OPEN), recorder.handlers(), dedupe=store)
    server = await aiohttp_server(inbound.application())
    message = request_message("DeliverReq", "REL-6-MM7-1-4")
    url = server.make_url("/mm7")
    first = asyncio.ensure_future(post_message(url, message))
    await entered.wait()
    second = asyncio.ensure_future(post_message(url, message))
    (tid_key,) = dedupe_keys("mmsc", message)
    while inbound._locks.users(tid_key) < 2:  # the retry is queued behind the first attempt
        await asyncio.sleep(0)
    assert len(recorder.contexts) == 1
    release.set()
    replies = await asyncio.gather(first, second)
    assert [r.status for r in replies] == [200, 200]
    assert [c.duplicate for c in recorder.contexts] == [False, True]
    assert len(inbound._locks) == 0


class BrokenStore:
    """A duplicate store whose backend is down."""

    async def seen(self, key: str) -> bool:
        raise ConnectionError("store down")

    async def record(self, key: str) -> None:
        raise ConnectionError("store down")


async def test_a_broken_duplicate_store_does_not_stop_traffic(
    aiohttp_server: ServerFactory,
) -> None:
    recorder = Recorder()
    server = await start(aiohttp_server, recorder, dedupe=BrokenStore())
    message = request_message("DeliverReq", "REL-6-MM7-1-4")
    with capture_logs() as logs:
        reply = await post_message(server.make_url("/mm7"), message)
    assert reply.status == 200 and isinstance(reply.message, DeliverRsp)
    assert recorder.contexts[0].duplicate is False
    steps = [e["step"] for e in logs if e["event"] == "mm7.inbound.dedupe_failed"]
    assert steps == ["seen", "record"]


# --------------------------------------------------------------------------- logging


async def test_logs_are_bound_and_the_wire_log_masks_secrets(
    aiohttp_server: ServerFactory,
) -> None:
    peers = (Peer("carrier", PeerAuth.of(basic=("vasp", "s3cret-pw")), wire_log=True),)
    server = await start(aiohttp_server, config=InboundConfig(peers=peers))
    message = request_message("DeliverReq", "REL-6-MM7-1-4")
    with capture_logs() as logs:
        reply = await post_message(
            server.make_url("/mm7"),
            message,
            headers={"Authorization": aiohttp.encode_basic_auth("vasp", "s3cret-pw")},
        )
    assert reply.status == 200
    answered = next(e for e in logs if e["event"] == "mm7.inbound.answered")
    assert answered["peer"] == "carrier"
    assert answered["transaction_id"] == message.transaction_id
    assert answered["status"] == 1000
    wires = [e for e in logs if e["event"] == "mm7.inbound.wire"]
    assert [w["direction"] for w in wires] == ["inbound-request", "inbound-response"]
    assert "DeliverReq" in wires[0]["body"]["soap"]
    assert any("image/jpeg" in m for m in wires[0]["body"]["media"])  # described, not dumped
    text = repr(logs)
    assert "s3cret-pw" not in text
    assert aiohttp.encode_basic_auth("vasp", "s3cret-pw").split()[1] not in text


async def test_message_id_is_bound_for_reports(aiohttp_server: ServerFactory) -> None:
    server = await start(aiohttp_server)
    report = request_message("ReadReplyReq", "REL-6-MM7-1-4")
    assert isinstance(report, ReadReplyReq)
    with capture_logs() as logs:
        await post_message(server.make_url("/mm7"), report)
    answered = next(e for e in logs if e["event"] == "mm7.inbound.answered")
    assert answered["message_id"] == report.message_id


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="path"):
        InboundConfig(path="mm7")
    with pytest.raises(ValueError, match="duplicate"):
        InboundConfig(peers=(Peer("a"), Peer("a")))
    with pytest.raises(ValueError):
        InboundConfig(peers=())
    with pytest.raises(KeyError):
        Peer("a", versions=frozenset({"REL-9-MM7-1-0"}))
    assert Peer("a", versions=frozenset({NAMESPACE_BASE + "REL-6-MM7-1-4"})).versions == {
        "REL-6-MM7-1-4"
    }


def test_app_factory_returns_an_application() -> None:
    assert isinstance(create_inbound_app(), web.Application)


async def test_a_large_request_is_decoded_off_the_event_loop(
    aiohttp_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import mm7.transport.decode_off_loop as off_loop

    threads: list[int] = []
    real_decode = off_loop.decode

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(off_loop, "decode", spy)
    recorder = Recorder()
    server = await start(aiohttp_server, recorder)
    loop_thread = threading.get_ident()
    small = request_message("DeliverReq", "REL-6-MM7-1-4", tid="tx-small")
    # a hostile Subject: 8,000 encoded words, about 140 KB of SOAP
    large = dataclasses.replace(
        request_message("DeliverReq", "REL-6-MM7-1-4", tid="tx-large"),
        subject="=?utf-8?B?w6k=?=" * 8_000,
    )
    assert (await post_message(server.make_url("/mm7"), small)).status == 200
    assert (await post_message(server.make_url("/mm7"), large)).status == 200
    assert threads[0] == loop_thread  # a small body is cheaper to decode than to hand over
    assert threads[1] != loop_thread
    assert recorder.contexts[1].message.subject == "é" * 8_000
    assert len(encode(large).body) >= off_loop.DECODE_OFF_LOOP_BYTES
