"""The MM7 client against fake MMSCs on loopback: what goes on the wire, and what only a real
exchange shows (redirects, reset, refused connection, timeout, size limit, the shared pool).
What each answer shape means is in test_client_judge.py, without a network."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
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
    ReplaceReq,
    SubmitReq,
    SubmitRsp,
)
from mm7.core.versions import get_version
from mm7.transport.classify import Outcome, Verdict
from mm7.transport.client import MM7Client
from mm7.transport.errors import MM7ClientError
from mm7.transport.link import LinkConfig
from tests.helpers.fake_mmsc import (
    PATH,
    FakeMMSC,
    Seen,
    free_port,
    hold,
    ok,
    raw,
    reset,
    submit_req,
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


# --- failures on the way ---------------------------------------------------------------------


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


async def test_a_connect_timeout_is_a_connect_error() -> None:
    """A peer whose SYNs go unanswered (its accept queue full, as behind a dropping firewall)
    never saw the request: a connect error, not a timeout that may have reached it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: once the queue is full, SYNs are dropped
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            config = link(f"http://127.0.0.1:{port}{PATH}", connect_timeout=0.3)
            async with MM7Client(config) as client:
                error = await fails(client)
        finally:
            for filler in fillers:
                filler.close()
    assert error.outcome is Outcome.CONNECT_ERROR and error.transient, error
    assert "could not connect within 0.3s" in str(error)


async def test_slow_response_times_out_transient(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.default = hold(fake.release)
    async with MM7Client(link(url, request_timeout=0.3)) as client:
        error = await fails(client)
    fake.release.set()
    assert error.outcome is Outcome.TIMEOUT and error.transient
    assert len(fake.seen) == 1


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
