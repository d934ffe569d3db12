"""Each shipped scenario (mm7/conf/scenarios) run by the simulator as the MMSC of mm7's own
gateway (``Gateway`` from a TOML file: API, dispatcher, inbound endpoint, SQLite store, relay to
an application's hook, all on loopback), and what the traffic record and the gateway then show:
throttled submits retried with one TransactionID, duplicate and late reports counted once,
recycled TransactionIDs not taken for duplicates, a timed-out submit accepted twice."""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mm7.service.config.loader import load_config
from mm7.service.runtime import Gateway
from mm7.simulator.app import SIMULATOR, Simulator, SimulatorConfig, create_simulator_app
from mm7.simulator.dlr import DlrPlan, RetryPolicy
from mm7.simulator.personas import load_persona
from mm7.simulator.scenario import load_scenario
from mm7.simulator.store import Exchange
from tests.helpers.runtime import AUTH, bound_socket, message, wait_for, write_config

RELAY = """
[relay]
initial_backoff = "0.05s"
max_backoff = "0.1s"
[relay.hooks.app]
url = "{hook}"
secret = "hook-secret-0123456789"
[relay.default_route]
hook = "app"
"""


@dataclass
class Hook:
    """The application: every event the relay POSTs."""

    events: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.events.append(await request.json())
        return web.Response(status=204)


@dataclass
class Rig:
    gateway: Gateway
    sim: Simulator
    hook: Hook
    http: aiohttp.ClientSession

    async def send(self, to: str = "+12025550001") -> str:
        async with self.http.post(f"{self.gateway.api_url}/v1/messages", json=message(to)) as r:
            assert r.status == 202, await r.text()
            message_id: str = (await r.json())["id"]
            return message_id

    async def view(self, message_id: str) -> dict[str, Any]:
        async with self.http.get(f"{self.gateway.api_url}/v1/messages/{message_id}") as r:
            view: dict[str, Any] = await r.json()
            return view

    async def status_is(self, message_id: str, *wanted: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            view = await self.view(message_id)
            return view if view["status"] in wanted else None

        found: dict[str, Any] = await wait_for(check)
        return found

    def submits(self) -> list[Exchange]:
        return [e for e in self.sim.store.exchanges if e.direction == "in"]

    def sent(self) -> list[Exchange]:
        return [e for e in self.sim.store.exchanges if e.direction == "out"]

    async def scenario_done(self) -> dict[str, Any]:
        assert self.sim.scenario is not None
        async with asyncio.timeout(40):  # a guard against a hang, not a timing check
            await self.sim.scenario.wait()
        return self.sim.scenario.to_json()


Start = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """``await start(scenario, dlr=...)``: the gateway, then the simulator as its MMSC running
    the shipped ``scenario`` from its start."""
    cleanups: list[Callable[[], Awaitable[None]]] = []
    held = bound_socket()
    mmsc: socket.socket = held.__enter__()

    async def go(name: str, dlr: DlrPlan | None = None) -> Rig:
        hook = Hook()
        hook_app = web.Application()
        hook_app.router.add_post("/hook", hook.handle)
        hook_server = TestServer(hook_app, host="127.0.0.1", port=0)
        await hook_server.start_server()
        cleanups.append(hook_server.close)
        extra = RELAY.format(hook=hook_server.make_url("/hook"))
        config = load_config(write_config(tmp_path, mmsc.getsockname()[1], extra=extra), env={})
        gateway = Gateway(config, configure_logs=False, poll_interval=0.05, announce=lambda x: None)
        await gateway.start()
        cleanups.append(gateway.stop)
        app = create_simulator_app(
            SimulatorConfig(
                persona=load_persona("strict-3gpp"),
                vasp_url=gateway.inbound_url,
                dlr=dlr or DlrPlan(when="always", delay=0.0, final_delay=0.0),
                retry=RetryPolicy(max_attempts=3, backoff=0.0, timeout=5.0),
                scenario=load_scenario(name),
                seed=1,
            )
        )
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, mmsc).start()
        cleanups.append(runner.cleanup)
        http = aiohttp.ClientSession(headers=AUTH)
        cleanups.append(http.close)
        return Rig(gateway, app[SIMULATOR], hook, http)

    try:
        yield go
    finally:
        for cleanup in reversed(cleanups):
            await cleanup()
        held.__exit__(None, None, None)


async def test_carrier_throttling_is_retried_with_one_transaction_id(start: Start) -> None:
    rig = await start("carrier-throttling")
    message_id = await rig.send()
    view = await rig.status_is(message_id, "delivered")
    state = await rig.scenario_done()
    assert state["state"] == "passed", state
    submits = rig.submits()
    assert [e.status_code for e in submits] == [4006, 4006, 4006, 1000]
    assert all(e.fault == "status" for e in submits[:3]) and submits[3].fault is None
    assert len({e.transaction_id for e in submits}) == 1  # the retries are the same request
    (recipient,) = view["recipients"]
    assert recipient["attempts"] == 4 and recipient["status"] == "delivered"
    assert recipient["mm7_message_id"] == submits[3].message_id
    (report,) = rig.sent()
    assert report.operation == "DeliveryReportReq" and report.status_code == 1000
    assert not report.problems  # the gateway echoed the TransactionID


async def test_duplicate_reports_are_answered_and_counted_once(start: Start) -> None:
    rig = await start("duplicate-reports")
    message_id = await rig.send()
    state = await rig.scenario_done()
    assert state["state"] == "passed", state
    view = await rig.status_is(message_id, "delivered")
    reports = rig.sent()
    assert len(reports) == 3 and all(e.status_code == 1000 and not e.problems for e in reports)
    assert len({e.transaction_id for e in reports}) == 2  # the third re-sent the second's
    kinds = collections.Counter(e["kind"] for e in view["events"])
    recorded = [e for e in view["events"] if e.get("status") == "Retrieved"]
    assert len(recorded) == 1, (kinds, view["events"])


async def test_late_reports_do_not_undo_the_final_one(start: Start) -> None:
    rig = await start("late-reports")
    message_id = await rig.send()
    state = await rig.scenario_done()
    assert state["state"] == "passed", state
    reports = rig.sent()
    assert [e.mm_status for e in reports] == ["Forwarded", "Retrieved", "Forwarded"]
    assert all(e.status_code == 1000 and not e.problems for e in reports)
    view = await rig.status_is(message_id, "delivered")
    assert view["recipients"][0]["status"] == "delivered"  # the stale Forwarded changed nothing
    statuses = [e.get("status") for e in view["events"] if e.get("status")]
    assert "Forwarded" in statuses and "Retrieved" in statuses


async def test_recycled_transaction_ids_are_not_taken_for_duplicates(start: Start) -> None:
    rig = await start("recycled-transaction-ids", dlr=DlrPlan(when="never"))

    async def two_mos() -> list[dict[str, Any]] | None:
        mos = [e for e in rig.hook.events if e["type"] == "mo"]
        return mos if len(mos) == 2 else None

    mos = await wait_for(two_mos)
    assert {m["text"] for m in mos} == {"first message", "second message, same TransactionID"}
    with_photo = next(m for m in mos if m["subject"] == "a photo")
    assert any(p["content_type"] == "image/jpeg" for p in with_photo["media"]), with_photo
    message_id = await rig.send()
    state = await rig.scenario_done()
    assert state["state"] == "passed", state
    await rig.status_is(message_id, "delivered")
    sent = rig.sent()
    assert [e.operation for e in sent] == ["DeliverReq", "DeliverReq", "DeliveryReportReq"]
    assert {e.transaction_id for e in sent} == {"mmsc-0001"}
    assert all(e.status_code == 1000 and not e.problems for e in sent)


async def test_slow_answers_time_out_and_the_mmsc_accepts_twice(start: Start) -> None:
    # the test gateway gives the MMSC 5 s (request_timeout): 3 s is slow, 12 s is too slow
    rig = await start("slow-answers", dlr=DlrPlan(when="never"))
    first, second = await rig.send("+12025550001"), await rig.send("+12025550002")
    views = [await rig.status_is(m, "submitted") for m in (first, second)]
    attempts = sorted(v["recipients"][0]["attempts"] for v in views)
    assert attempts == [1, 2]  # the one that timed out was sent again
    await rig.sim.store.wait_for(lambda: rig.sim.accepted_submits == 3, timeout=30)
    submits = rig.submits()
    assert sorted(e.fault or "" for e in submits) == ["", "latency", "latency"]
    assert all(e.status_code == 1000 for e in submits)
    tids = collections.Counter(e.transaction_id for e in submits)
    assert sorted(tids.values()) == [1, 2]  # one TransactionID accepted twice
    state = await rig.scenario_done()
    assert state["state"] == "passed", state
