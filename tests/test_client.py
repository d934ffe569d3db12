"""The MM7 client against fake MMSCs on loopback: what goes on the wire, and every answer shape
(success, RSErrorRsp in a Fault, error status in a 200, bare 5xx, reset, timeout, malformed,
application/xml, blank 200)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from mm7.core.dialect import STRICT_3GPP, get_dialect
from mm7.core.limits import Limits
from mm7.core.mime import parse_content_type
from mm7.core.model import (
    Address,
    CancelReq,
    CancelRsp,
    DeliverReq,
    DeliverRsp,
    ExtendedCancelReq,
    ExtendedReplaceReq,
    Fault,
    ReplaceReq,
    RSErrorRsp,
    SubmitReq,
    SubmitRsp,
)
from mm7.core.versions import get_version
from mm7.transport.classify import Outcome, Overrides, Verdict
from mm7.transport.client import BLANK_200, MM7Client
from mm7.transport.errors import MM7ClientError
from mm7.transport.link import LinkConfig
from tests.helpers.fake_mmsc import (
    PATH,
    FakeMMSC,
    Seen,
    fault,
    free_port,
    hold,
    ok,
    raw,
    reset,
    submit_req,
    xml_response,
)

Server = Callable[..., Awaitable[Any]]


@pytest.fixture
async def mmsc(aiohttp_server: Server) -> AsyncIterator[tuple[FakeMMSC, str]]:
    fake = FakeMMSC()
    server = await aiohttp_server(fake.app())
    yield fake, str(server.make_url(PATH))
    fake.release.set()


def link(url: str, **kwargs: Any) -> LinkConfig:
    return LinkConfig(name="test", url=url, **kwargs)


async def fails(client: MM7Client, request: Any = None) -> MM7ClientError:
    with pytest.raises(MM7ClientError) as info:
        await client.send(request or submit_req())
    return info.value


# --- success and the wire --------------------------------------------------------------------


async def test_submit_success_and_the_wire(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    async with MM7Client(link(url)) as client:
        rsp = await client.submit(submit_req(tid="tx-1"))
    assert isinstance(rsp, SubmitRsp)
    assert rsp.status.code == 1000 and rsp.message_id == "msg-1-tx-1"
    assert rsp.transaction_id == "tx-1"
    (seen,) = fake.seen
    assert seen.headers["SOAPAction"] == '""'
    assert "Transfer-Encoding" not in seen.headers
    assert int(seen.headers["Content-Length"]) == len(seen.body)
    ctype = parse_content_type(seen.headers["Content-Type"])
    assert ctype.mime_type == "multipart/related"
    assert ctype.params["type"] == "text/xml"
    assert ctype.params["start"] == "<mm7-soap>"
    assert "Authorization" not in seen.headers
    assert isinstance(seen.message, SubmitReq) and seen.message.transaction_id == "tx-1"


async def test_transaction_id_generated_when_missing(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    async with MM7Client(link(url)) as client:
        result = await client.send(submit_req())
    tid = result.request.transaction_id
    assert len(tid) == 32 and tid.isalnum()
    assert fake.seen[0].message is not None and fake.seen[0].message.transaction_id == tid
    assert result.verdict is Verdict.SUCCESS and result.http_status == 200


async def test_dialect_http_knobs_soapaction_chunked_extra_headers(
    mmsc: tuple[FakeMMSC, str],
) -> None:
    fake, url = mmsc
    dialect = dataclasses.replace(
        get_dialect("aggregator"),
        chunked=True,
        extra_headers=(("X-Carrier-Id", "42"),),
    )
    async with MM7Client(link(url, dialect=dialect)) as client:
        await client.submit(submit_req())
    seen = fake.seen[0]
    assert seen.headers["SOAPAction"] == f'"{dialect.namespace}"'
    assert seen.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in seen.headers
    assert seen.headers["X-Carrier-Id"] == "42"

    none = dataclasses.replace(STRICT_3GPP, soap_action="none")
    async with MM7Client(link(url, dialect=none)) as client:
        await client.submit(submit_req())
    assert "SOAPAction" not in fake.seen[1].headers


async def test_chunk_refusing_peer_gets_content_length(mmsc: tuple[FakeMMSC, str]) -> None:
    """mBlox/NowSMS refuse chunked requests: the default link never chunks."""
    fake, url = mmsc

    async def refuse_chunked(seen: Seen, request: web.Request) -> web.StreamResponse:
        if "chunked" in seen.headers.get("Transfer-Encoding", ""):
            return web.Response(status=411, text="Length Required")
        return await ok()(seen, request)

    fake.default = refuse_chunked
    async with MM7Client(link(url)) as client:
        assert (await client.submit(submit_req())).status.code == 1000
    chunky = dataclasses.replace(STRICT_3GPP, chunked=True)
    async with MM7Client(link(url, dialect=chunky)) as client:
        error = await fails(client)
    assert error.http_status == 411 and not error.transient


async def test_cancel_replace_and_extended_operations(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    async with MM7Client(link(url)) as client:
        c = await client.cancel(CancelReq(vasp_id="v", message_id="m-9"))
        r = await client.replace(ReplaceReq(vasp_id="v", message_id="m-9"))
        ec = await client.extended_cancel(ExtendedCancelReq(vasp_id="v", cancel_id="m-9"))
        er = await client.extended_replace(ExtendedReplaceReq(vasp_id="v", replace_id="m-9"))
    assert isinstance(c, CancelRsp) and c.status.code == 1000
    assert r.OPERATION == "ReplaceRsp" and ec.OPERATION == "extendedCancelRsp"
    assert er.OPERATION == "extendedReplaceRsp"
    assert [s.message.OPERATION for s in fake.seen if s.message] == [
        "CancelReq",
        "ReplaceReq",
        "extendedCancelReq",
        "extendedReplaceReq",
    ]


async def test_extended_operation_under_an_old_version_is_refused_locally(
    mmsc: tuple[FakeMMSC, str],
) -> None:
    fake, url = mmsc
    old = STRICT_3GPP.with_version(get_version("REL-5-MM7-1-0"))
    async with MM7Client(link(url, dialect=old)) as client:
        error = await fails(client, ExtendedCancelReq(vasp_id="v", cancel_id="m"))
    assert error.outcome is Outcome.INVALID_REQUEST and not error.transient
    assert fake.seen == []


async def test_the_client_speaks_the_mmsc_half_too(mmsc: tuple[FakeMMSC, str]) -> None:
    """A simulator can send DeliverReq to a VASP with the same client."""
    fake, url = mmsc
    async with MM7Client(link(url)) as client:
        result = await client.send(
            DeliverReq(sender=Address("+15551230009"), transaction_id="mo-1")
        )
    assert isinstance(result.message, DeliverRsp)


# --- error shapes ------------------------------------------------------------------------------


async def test_rserrorrsp_fault_in_http_500_is_permanent_2002(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.default = fault(2002, http=500, details="bad address +1555")
    async with MM7Client(link(url)) as client:
        error = await fails(client)
    assert error.code == 2002 and error.text == "Address Error"
    assert error.details == "bad address +1555"
    assert error.http_status == 500
    assert error.outcome is Outcome.MM7_STATUS
    assert error.verdict is Verdict.PERMANENT and not error.transient
    assert isinstance(error.response, Fault)
    assert isinstance(error.response.error, RSErrorRsp)
    assert "2002" in str(error) and "HTTP 500" in str(error)


async def test_error_status_in_http_200_response_is_transient_4006(
    mmsc: tuple[FakeMMSC, str],
) -> None:
    fake, url = mmsc
    fake.default = ok(4006)
    async with MM7Client(link(url)) as client:
        error = await fails(client)
    assert error.code == 4006 and error.http_status == 200 and error.transient
    assert isinstance(error.response, SubmitRsp)


async def test_bare_http_503_is_transient_with_retry_after(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.default = raw(503, b"Service Unavailable", "text/html", headers={"Retry-After": "7"})
    async with MM7Client(link(url)) as client:
        error = await fails(client)
    assert error.outcome is Outcome.HTTP_STATUS and error.http_status == 503
    assert error.transient and error.status is None and error.retry_after == 7.0


async def test_bare_http_400_and_401_are_permanent(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.script = [raw(400, b""), raw(401, b"<html>no</html>", "text/html")]
    async with MM7Client(link(url)) as client:
        first, second = await fails(client), await fails(client)
    assert (first.http_status, first.transient) == (400, False)
    assert (second.http_status, second.transient) == (401, False)


async def test_fault_without_status_takes_the_x_mm7_status_code_header(
    mmsc: tuple[FakeMMSC, str],
) -> None:
    """VectorCore: a Fault with no detail and the status in X-MM7-Status-Code."""
    fake, url = mmsc
    body = (
        b'<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
        b'envelope/"><soap:Body><soap:Fault><faultcode>Client.Auth</faultcode><faultstring>'
        b"authentication failed</faultstring></soap:Fault></soap:Body></soap:Envelope>"
    )
    fake.default = raw(401, body, headers={"X-MM7-Status-Code": "4006"})
    async with MM7Client(link(url)) as client:
        error = await fails(client)
    assert error.code == 4006 and error.outcome is Outcome.MM7_STATUS and error.transient
    assert isinstance(error.response, Fault)


async def test_fault_without_any_status_is_judged_by_faultcode(
    mmsc: tuple[FakeMMSC, str],
) -> None:
    fake, url = mmsc

    def envelope(code: str) -> bytes:
        return (
            '<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault>'
            f"<faultcode>e:{code}</faultcode><faultstring>oops</faultstring>"
            "</e:Fault></e:Body></e:Envelope>"
        ).encode()

    fake.script = [raw(500, envelope("Server")), raw(500, envelope("Client"))]
    async with MM7Client(link(url)) as client:
        server, client_fault = await fails(client), await fails(client)
    assert server.outcome is Outcome.FAULT_SERVER and server.transient
    assert client_fault.outcome is Outcome.FAULT_CLIENT and not client_fault.transient
    assert server.status is None


async def test_redirects_are_not_followed(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.default = raw(307, b"", None, headers={"Location": "http://elsewhere.invalid/mm7"})
    async with MM7Client(link(url)) as client:
        error = await fails(client)
    assert error.http_status == 307 and not error.transient and len(fake.seen) == 1


async def test_connection_reset_is_transient(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.script = [reset()]
    async with MM7Client(link(url)) as client:
        error = await fails(client)
        assert error.outcome is Outcome.CONNECTION_RESET and error.transient
        # the pool recovers: the next request gets a fresh connection
        assert (await client.submit(submit_req())).status.code == 1000


async def test_connection_refused_is_transient() -> None:
    async with MM7Client(link(f"http://127.0.0.1:{free_port()}{PATH}")) as client:
        error = await fails(client)
    assert error.outcome is Outcome.CONNECT_ERROR and error.transient


async def test_slow_response_times_out_transient(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.default = hold(fake.release)
    async with MM7Client(link(url, request_timeout=0.3)) as client:
        error = await fails(client)
    fake.release.set()
    assert error.outcome is Outcome.TIMEOUT and error.transient
    assert len(fake.seen) == 1


async def test_malformed_xml_in_200_is_permanent(mmsc: tuple[FakeMMSC, str]) -> None:
    """A 200 we cannot read: the MMSC most likely took the message, a resend could duplicate."""
    fake, url = mmsc
    fake.default = raw(200, b"<env:Envelope><unclosed>")
    async with MM7Client(link(url)) as client:
        error = await fails(client)
    assert error.outcome is Outcome.MALFORMED and not error.transient
    assert error.http_status == 200


async def test_malformed_body_in_502_is_judged_by_http_status(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.default = raw(502, b"<html><body>Bad gateway</body></html>", "text/html")
    async with MM7Client(link(url)) as client:
        error = await fails(client)
    assert error.outcome is Outcome.HTTP_STATUS and error.transient


async def test_application_xml_response_is_accepted(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.default = ok(content_type="application/xml")
    async with MM7Client(link(url)) as client:
        result = await client.send(submit_req())
    assert result.status.code == 1000


async def test_multipart_response_is_accepted(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    soap = (
        b'<?xml version="1.0"?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">'
        b'<env:Header><mm7:TransactionID xmlns:mm7="http://www.3gpp.org/ftp/Specs/archive/'
        b'23_series/23.140/schema/REL-6-MM7-1-4">tx-m</mm7:TransactionID></env:Header>'
        b'<env:Body><mm7:SubmitRsp xmlns:mm7="http://www.3gpp.org/ftp/Specs/archive/23_series/'
        b'23.140/schema/REL-6-MM7-1-4"><mm7:MM7Version>6.8.0</mm7:MM7Version><mm7:Status>'
        b"<mm7:StatusCode>1000</mm7:StatusCode><mm7:StatusText>Success</mm7:StatusText>"
        b"</mm7:Status><mm7:MessageID>m-77</mm7:MessageID></mm7:SubmitRsp></env:Body>"
        b"</env:Envelope>"
    )
    body = (
        b"--b1\r\nContent-Type: text/xml; charset=utf-8\r\nContent-ID: <soap>\r\n\r\n"
        + soap
        + b"\r\n--b1--\r\n"
    )
    fake.default = raw(200, body, 'multipart/related; boundary=b1; type="text/xml"; start="<soap>"')
    async with MM7Client(link(url)) as client:
        rsp = await client.submit(submit_req(tid="tx-m"))
    assert rsp.message_id == "m-77"


async def test_blank_200_refused_unless_the_dialect_allows_it(
    mmsc: tuple[FakeMMSC, str],
) -> None:
    fake, url = mmsc
    fake.default = raw(200, b"", None)
    async with MM7Client(link(url)) as client:
        error = await fails(client)
    assert error.outcome is Outcome.BLANK_200 and not error.transient

    lenient = dataclasses.replace(STRICT_3GPP, accept_blank_200=True)
    async with MM7Client(link(url, dialect=lenient)) as client:
        result = await client.send(submit_req(tid="tx-b"))
    assert BLANK_200 in result.leniencies
    assert isinstance(result.message, SubmitRsp) and result.status.code == 1000
    assert result.message.transaction_id == "tx-b" and result.message.message_id is None


async def test_blank_503_stays_transient_even_when_blank_200_is_allowed(
    mmsc: tuple[FakeMMSC, str],
) -> None:
    fake, url = mmsc
    fake.default = raw(503, b"", None)
    lenient = dataclasses.replace(STRICT_3GPP, accept_blank_200=True)
    async with MM7Client(link(url, dialect=lenient)) as client:
        error = await fails(client)
    assert error.http_status == 503 and error.transient


async def test_wrong_response_type_is_unexpected(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc

    async def cancel_rsp(seen: Seen, request: web.Request) -> web.StreamResponse:
        return xml_response(CancelRsp(transaction_id="x"))

    fake.default = cancel_rsp
    async with MM7Client(link(url)) as client:
        error = await fails(client)
    assert error.outcome is Outcome.UNEXPECTED_RESPONSE and not error.transient


async def test_partial_success_1100_is_returned_not_raised(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.default = ok(1100, details="+15551230002")
    async with MM7Client(link(url)) as client:
        result = await client.send(submit_req("+15551230001", "+15551230002"))
    assert result.verdict is Verdict.PARTIAL and result.status.code == 1100


async def test_link_overrides_change_the_verdict(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.script = [ok(4101), ok(4006), ok(2101), raw(503, b"")]
    overrides = Overrides.from_mapping(
        {"permanent": ["4101", 4006], "transient": ["2101-2104"], "http_permanent": [503]}
    )
    async with MM7Client(link(url, classification=overrides)) as client:
        errors = [await fails(client) for _ in range(4)]
    assert [e.transient for e in errors] == [False, False, True, False]


async def test_too_many_recipients_is_refused_before_sending(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    async with MM7Client(link(url, max_recipients=2)) as client:
        error = await fails(client, submit_req("+1", "+2", "+3"))
    assert error.outcome is Outcome.INVALID_REQUEST and "fanout" in str(error)
    assert fake.seen == []


async def test_response_over_the_size_limit_is_refused(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.default = raw(200, b"<x>" + b" " * 5000 + b"</x>")
    async with MM7Client(link(url, limits=Limits(max_total_bytes=1024))) as client:
        error = await fails(client)
    assert error.outcome is Outcome.MALFORMED and not error.transient


async def test_not_started_client_says_so() -> None:
    client = MM7Client(link("http://127.0.0.1:1/mm7"))
    with pytest.raises(RuntimeError, match="not started"):
        await client.send(submit_req())


async def test_concurrent_callers_share_one_session_and_pool(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    peers: set[object] = set()

    async def note_peer(seen: Seen, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        return await ok()(seen, request)

    fake.default = note_peer
    async with MM7Client(link(url, max_in_flight=2)) as client:
        for _ in range(3):
            await asyncio.gather(*(client.submit(submit_req()) for _ in range(2)))
    assert len(fake.seen) == 6
    assert len(peers) <= 2  # keep-alive: connections reused, never more than the pool
