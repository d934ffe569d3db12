"""Reliability with real processes: `mm7 serve` as a subprocess, the bundled simulator as the MMSC
on a loopback socket, real SQLite in tmp_path.

* Transient faults (about 30%: injected 4006 and HTTP 503) and a TPS limit at the simulator:
  every acknowledged message is accepted exactly once, the link keeps below its TPS (no TPS
  refusal, and the requests per one-second window counted at the simulator), a permanent error
  (2002) ends ``failed`` after one request.
* Bad API input gets a 4xx JSON naming the field and writes nothing to the store.

Waits are on conditions, each bounded by a deadline that only guards against a hang."""

from __future__ import annotations

import asyncio
import collections
import json
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from mm7.simulator.app import SIMULATOR, SimulatorConfig, create_simulator_app
from mm7.simulator.dlr import DlrPlan
from mm7.simulator.personas import load_persona
from mm7.simulator.store import Exchange
from tests.helpers.runtime import (
    AUTH,
    accepted,
    bound_socket,
    clean_env,
    drain,
    jpeg,
    message,
    read_until,
    serve,
    stop,
    wait_for,
    write_config,
)

BATCH = 40
#: the gateway's link: TPS and burst (the simulator allows twice that)
LINK_TPS = 10
LINK_BURST = 1
SIM_TPS = 2 * LINK_TPS
TPS_REFUSAL = "TPS limit exceeded"


async def start_faulty_simulator(
    sock: Any, faults: dict[str, Any]
) -> tuple[web.Application, web.AppRunner]:
    app = create_simulator_app(
        SimulatorConfig(
            persona=load_persona("strict-3gpp"),
            dlr=DlrPlan(when="never"),
            faults=faults,
            ui_path=None,
            max_exchanges=10_000,
            seed=7,
        )
    )
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return app, runner


async def start_gateway(config: Path, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    """`mm7 serve` with the default lease TTL (longer than the worst submit: no process dies
    here, and a lease shorter than the wait for a TPS token would let the dispatcher lease an
    item again while it is still in flight)."""
    proc = serve(config, cwd, clean_env(), "--poll-interval", "0.1")
    found = await asyncio.to_thread(read_until, proc, r"sending API on (\S+)/v1/messages")
    drain(proc)  # read on: a full pipe would stop the gateway mid-test
    return proc, found[1]


def inbound(app: web.Application) -> list[Exchange]:
    return [e for e in app[SIMULATOR].store.exchanges if e.direction == "in"]


def tps_refusals(app: web.Application) -> list[Exchange]:
    """4006 answers of the simulator's TPS limit (an injected 4006 carries ``fault="status"``
    and other Details)."""
    return [
        e
        for e in inbound(app)
        if e.fault is None and (e.status_code == 4006 or TPS_REFUSAL.encode() in e.response_body)
    ]


def busiest_second(app: web.Application) -> int:
    """The most requests that arrived at the simulator within any one second (arrival: the
    exchange's record time minus its handling time)."""
    arrivals = sorted(e.at - timedelta(milliseconds=e.duration_ms) for e in inbound(app))
    best = 0
    first = 0
    for last, at in enumerate(arrivals):
        while at - arrivals[first] >= timedelta(seconds=1):
            first += 1
        best = max(best, last - first + 1)
    return best


async def view(http: aiohttp.ClientSession, api: str, message_id: str) -> dict[str, Any]:
    async with http.get(f"{api}/v1/messages/{message_id}") as rsp:
        assert rsp.status == 200, await rsp.text()
        result: dict[str, Any] = await rsp.json()
        return result


async def test_transient_faults_and_tps_limit_lose_nothing(tmp_path: Path) -> None:
    faults = {
        # the first request (the lone message sent first) is refused for good
        "once": [{"kind": "status", "code": 2002, "details": "unknown subscriber (injected)"}],
        # then about 30% transient faults: P(none) = 0.83 * 0.83
        "rates": [
            {"kind": "status", "code": 4006, "details": "busy (injected)", "rate": 0.17},
            {"kind": "http", "http_status": 503, "rate": 0.17},
        ],
        "tps": SIM_TPS,
    }
    with bound_socket() as mmsc:
        path = write_config(tmp_path, mmsc.getsockname()[1])
        path.write_text(
            path.read_text().replace(
                "tps = 100\n",
                f"tps = {LINK_TPS}\nburst = {LINK_BURST}\n"
                # a run of transient faults may open the breaker: keep its cool-down short
                'breaker = { threshold = 5, cooldown = "0.2s" }\n',
            )
        )
        sim_app, sim_runner = await start_faulty_simulator(mmsc, faults)
        proc: subprocess.Popen[str] | None = None
        try:
            proc, api = await start_gateway(path, tmp_path)
            async with aiohttp.ClientSession(headers=AUTH) as http:
                body = message(to="+12025559999", idempotency_key="permanent")
                async with http.post(f"{api}/v1/messages", json=body) as rsp:
                    assert rsp.status == 202, await rsp.text()
                    permanent = (await rsp.json())["id"]

                async def permanent_failed() -> dict[str, Any] | None:
                    got = await view(http, api, permanent)
                    return got if got["recipients"][0]["status"] == "failed" else None

                failed_view = await wait_for(permanent_failed)

                acknowledged: list[str] = []
                for n in range(BATCH):
                    body = message(to=f"+1202555{n:04d}", idempotency_key=f"batch-{n}")
                    async with http.post(f"{api}/v1/messages", json=body) as rsp:
                        assert rsp.status == 202, await rsp.text()
                        acknowledged.append((await rsp.json())["id"])

                wanted = {f"{message_id}.0" for message_id in acknowledged}

                async def all_accepted() -> bool:
                    return wanted <= set(accepted(sim_app))

                # watched at the simulator first: polling the API would load both processes
                await wait_for(all_accepted, deadline=30)

                async def all_submitted() -> bool:
                    for message_id in acknowledged:
                        got = await view(http, api, message_id)
                        if got["recipients"][0]["status"] != "submitted":
                            return False
                    return True

                await wait_for(all_submitted)
                # the permanent one: still failed, after one attempt
                again = await view(http, api, permanent)

            recipient = again["recipients"][0]
            assert recipient["status"] == "failed"
            assert recipient["attempts"] == 1
            assert recipient["last_status_code"] == 2002
            assert failed_view["recipients"][0]["last_status_code"] == 2002

            exchanges = inbound(sim_app)
            # the faults really happened (else the test proves nothing)
            injected = collections.Counter(e.fault for e in exchanges if e.fault is not None)
            assert injected["status"] >= 5 and injected["http"] >= 5, injected

            # every acknowledged message accepted exactly once, nothing else accepted
            counts = accepted(sim_app)
            assert set(counts) == wanted
            assert all(c == 1 for c in counts.values()), counts.most_common(3)

            # the permanent error: one request, never retried
            tried = [e for e in exchanges if e.transaction_id == f"{permanent}.0"]
            assert [(e.status_code, e.fault) for e in tried] == [(2002, "status")]

            # the link kept below its TPS: no refusal by the simulator's limit, and no
            # one-second window with more than the token bucket lets through
            assert tps_refusals(sim_app) == []
            assert busiest_second(sim_app) <= LINK_TPS + LINK_BURST

            proc.terminate()
            await asyncio.to_thread(proc.wait, 30)
            assert proc.returncode == 0
        finally:
            if proc is not None:
                stop(proc)
            await sim_runner.cleanup()


def store_rows(db: Path) -> dict[str, int]:
    """Row counts of the tables an accepted message writes, read through a read-only handle."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("messages", "recipients", "media", "message_media", "events")
        }
    finally:
        conn.close()


async def test_bad_api_input_changes_nothing_in_a_running_gateway(tmp_path: Path) -> None:
    media_hits: list[str] = []

    async def media(request: web.Request) -> web.Response:
        media_hits.append(request.path)
        return web.Response(body=jpeg(), content_type="image/jpeg")

    media_app = web.Application()
    media_app.router.add_get("/{name}", media)
    media_runner = web.AppRunner(media_app, handle_signals=False)
    with bound_socket() as mmsc, bound_socket() as media_sock:
        path = write_config(tmp_path, mmsc.getsockname()[1])
        db = tmp_path / "var" / "mm7.sqlite"
        sim_app, sim_runner = await start_faulty_simulator(mmsc, {})
        await media_runner.setup()
        await web.SockSite(media_runner, media_sock).start()
        media_url = f"http://127.0.0.1:{media_sock.getsockname()[1]}/photo.jpg"
        proc: subprocess.Popen[str] | None = None
        try:
            proc, api = await start_gateway(path, tmp_path)
            ten_mb = {"to": "+12025550001", "text": "x" * (10 * 1024 * 1024)}
            cases: list[tuple[str, dict[str, Any], int, str | None]] = [
                ("missing to", {"text": "hello"}, 400, "to"),
                ("wrong type", {"to": "+12025550001", "text": "hi", "delivery_report": "yes"},
                 400, "delivery_report"),
                ("wrong type of to", {"to": 12025550001, "text": "hi"}, 400, "to"),
                ("unknown field", {"to": "+12025550001", "text": "hi", "delivery_reprot": True},
                 400, "delivery_reprot"),
                ("10 MB of JSON", ten_mb, 413, None),
                ("media URL to 127.0.0.1", {"to": "+12025550001", "media": [{"url": media_url}]},
                 422, "media[0].url"),
                ("unknown link", {"to": "+12025550001", "text": "hi", "link": "nope"},
                 422, "link"),
            ]  # fmt: skip
            async with aiohttp.ClientSession(headers=AUTH) as http:
                for name, body, status, field in cases:
                    async with http.post(f"{api}/v1/messages", json=body) as rsp:
                        text = await rsp.text()
                        assert rsp.status == status, (name, rsp.status, text)
                        assert rsp.content_type == "application/json", (name, text)
                        error = (await rsp.json())["error"]
                    assert error["field"] == field, (name, error)
                    assert error["message"], (name, error)
                    if status == 413:
                        assert "10000000" in error["message"], error  # [api] max_request_bytes

                # the same 10 MB streamed without Content-Length: refused while reading
                big = json.dumps(ten_mb).encode()

                async def chunks() -> AsyncIterator[bytes]:
                    for start in range(0, len(big), 64 * 1024):
                        yield big[start : start + 64 * 1024]

                headers = {"Content-Type": "application/json"}
                async with http.post(f"{api}/v1/messages", data=chunks(), headers=headers) as rsp:
                    text = await rsp.text()
                    assert rsp.status == 413, text
                    error = (await rsp.json())["error"]
                assert error["field"] is None and "10000000" in error["message"], error

                # the gateway still runs and nothing was written or fetched
                assert proc.poll() is None
                assert media_hits == []
                rows = store_rows(db)
                assert rows == dict.fromkeys(rows, 0), rows
                assert inbound(sim_app) == []

                # a good request afterwards is stored (the store was live all along) and sent
                async with http.post(f"{api}/v1/messages", json=message()) as rsp:
                    assert rsp.status == 202, await rsp.text()
                    good = (await rsp.json())["id"]

                async def submitted() -> bool:
                    got = await view(http, api, good)
                    return bool(got["recipients"][0]["status"] == "submitted")

                await wait_for(submitted)
            rows = store_rows(db)
            assert rows["messages"] == 1 and rows["recipients"] == 1
            assert set(accepted(sim_app)) == {f"{good}.0"}
            proc.terminate()
            await asyncio.to_thread(proc.wait, 30)
            assert proc.returncode == 0
        finally:
            if proc is not None:
                stop(proc)
            await sim_runner.cleanup()
            await media_runner.cleanup()
