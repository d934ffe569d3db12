"""The client against this project's own inbound endpoint (the MMSC's half, as a simulator
would send it): success echoes, handler refusals as VASPErrorRsp faults, auth refusals, 4003."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from mm7.core.model import (
    Address,
    DeliverReq,
    DeliverRsp,
    DeliveryReportReq,
    DeliveryReportRsp,
    Fault,
    Status,
    VASPErrorRsp,
)
from mm7.core.status import MMStatus
from mm7.transport.classify import Outcome
from mm7.transport.client import MM7Client
from mm7.transport.errors import MM7ClientError
from mm7.transport.inbound_auth import PeerAuth
from mm7.transport.link import BasicAuth, LinkConfig, Secret
from mm7.transport.server import (
    HandlerError,
    InboundConfig,
    InboundContext,
    InboundHandlers,
    Peer,
    create_inbound_app,
)
from tests.helpers.fake_mmsc import submit_req

Server = Callable[..., Awaitable[Any]]
PASSWORD = "inbound-pw"


def deliver(tid: str) -> DeliverReq:
    return DeliverReq(transaction_id=tid, sender=Address("+15551230009"))


@pytest.fixture
async def vasp(aiohttp_server: Server) -> AsyncIterator[str]:
    async def on_deliver(ctx: InboundContext[DeliverReq]) -> Status:
        tid = ctx.message.transaction_id
        if tid == "busy":
            raise HandlerError(4006)
        if tid == "unknown":
            raise HandlerError(2005, "no such message")
        return Status.of(1000)

    async def on_report(ctx: InboundContext[DeliveryReportReq]) -> Status:
        return Status.of(1000)

    config = InboundConfig(peers=(Peer("mmsc", PeerAuth.of(basic=("mmsc", PASSWORD))),))
    app = create_inbound_app(
        config, InboundHandlers(on_deliver=on_deliver, on_delivery_report=on_report)
    )
    server = await aiohttp_server(app)
    yield str(server.make_url("/mm7"))


def link(url: str, password: str = PASSWORD) -> LinkConfig:
    return LinkConfig(name="to-vasp", url=url, auth=BasicAuth("mmsc", Secret(password)))


async def test_deliver_and_report_are_answered_with_echoes(vasp: str) -> None:
    async with MM7Client(link(vasp)) as client:
        result = await client.send(deliver("mo-1"))
        report = await client.send(
            DeliveryReportReq(
                transaction_id="dr-1",
                message_id="m-1",
                recipient=Address("+15551230001"),
                sender=Address("12345"),
                date=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                mm_status=MMStatus.RETRIEVED,
            )
        )
    assert isinstance(result.message, DeliverRsp) and result.message.transaction_id == "mo-1"
    assert isinstance(report.message, DeliveryReportRsp) and report.status.code == 1000


@pytest.mark.parametrize(
    ("tid", "code", "transient"), [("busy", 4006, True), ("unknown", 2005, False)]
)
async def test_handler_refusals_arrive_as_classified_errors(
    vasp: str, tid: str, code: int, transient: bool
) -> None:
    async with MM7Client(link(vasp)) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.send(deliver(tid))
    error = info.value
    assert error.code == code and error.transient is transient
    assert error.outcome is Outcome.MM7_STATUS and error.http_status == 500
    assert isinstance(error.response, Fault) and isinstance(error.response.error, VASPErrorRsp)


async def test_wrong_password_is_a_permanent_refusal(vasp: str) -> None:
    async with MM7Client(link(vasp, "Wr0ng-pw-xyz")) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.send(deliver("mo-2"))
    assert info.value.http_status == 401 and not info.value.transient
    assert PASSWORD not in str(info.value) and "Wr0ng-pw-xyz" not in str(info.value)


async def test_a_submit_to_the_vasp_endpoint_is_4003(vasp: str) -> None:
    async with MM7Client(link(vasp)) as client:
        with pytest.raises(MM7ClientError) as info:
            await client.submit(submit_req())
    assert info.value.code == 4003 and not info.value.transient
