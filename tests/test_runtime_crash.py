"""Nothing acknowledged is lost: `mm7 serve` (a real subprocess) is SIGKILLed mid-batch and
restarted on the same SQLite store; every message the API answered 202 reaches the simulator.

At-least-once: a SubmitReq on the wire when the process died may reach the MMSC twice, with the
same TransactionID (``<message id>.0``); duplicates are counted, never required to be zero."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
from pathlib import Path

import aiohttp
from aiohttp import web

from mm7.simulator.app import SimulatorConfig, create_simulator_app
from mm7.simulator.dlr import DlrPlan
from mm7.simulator.personas import load_persona
from tests.helpers.runtime import (
    AUTH,
    accepted,
    bound_socket,
    clean_env,
    drain,
    message,
    read_until,
    serve,
    wait_for,
    write_config,
)

BATCH = 40


async def start_slow_simulator(sock: socket.socket) -> tuple[web.Application, web.AppRunner]:
    """A simulator without reports that answers each SubmitReq after a short wait."""
    app = create_simulator_app(
        SimulatorConfig(
            persona=load_persona("strict-3gpp"),
            dlr=DlrPlan(when="never"),
            faults={"rates": [{"kind": "latency", "delay": 0.02, "rate": 1.0}]},
            ui_path=None,
            max_exchanges=10_000,
            seed=1,
        )
    )
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return app, runner


async def start_gateway(config: Path, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    proc = serve(config, cwd, clean_env(), "--lease-ttl", "1", "--poll-interval", "0.1")
    found = await asyncio.to_thread(read_until, proc, r"sending API on (\S+)/v1/messages")
    drain(proc)  # read on: a full pipe would stop the gateway mid-test
    return proc, found[1]


async def test_sigkill_mid_batch_loses_nothing_acknowledged(tmp_path: Path) -> None:
    with bound_socket() as mmsc:
        path = write_config(tmp_path, mmsc.getsockname()[1])
        # about 10 submits a second: the batch is still going when the gateway is killed
        path.write_text(
            path.read_text().replace("tps = 100\n", "tps = 10\nburst = 1\nmax_in_flight = 2\n")
        )
        sim_app, sim_runner = await start_slow_simulator(mmsc)
        procs: list[subprocess.Popen[str]] = []
        try:
            proc, api = await start_gateway(path, tmp_path)
            procs.append(proc)
            acknowledged: list[str] = []
            async with aiohttp.ClientSession(headers=AUTH) as http:
                for n in range(BATCH):
                    body = message(to=f"+1202555{n:04d}", idempotency_key=f"batch-{n}")
                    async with http.post(f"{api}/v1/messages", json=body) as rsp:
                        assert rsp.status == 202, await rsp.text()
                        acknowledged.append((await rsp.json())["id"])

            async def some_sent() -> bool:
                return len(accepted(sim_app)) >= 5

            await wait_for(some_sent)
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 30)
            sent_before = len(accepted(sim_app))
            assert sent_before < BATCH, "the batch finished before the kill: not mid-batch"

            proc, api = await start_gateway(path, tmp_path)
            procs.append(proc)
            wanted = {f"{message_id}.0" for message_id in acknowledged}

            async def all_arrived() -> bool:
                return wanted <= set(accepted(sim_app))

            await wait_for(all_arrived, deadline=60)
            counts = accepted(sim_app)
            duplicates = sum(c - 1 for c in counts.values())
            assert set(counts) == wanted  # nothing else was sent
            assert duplicates <= 2  # at most what was on the wire (max_in_flight) when killed

            async with aiohttp.ClientSession(headers=AUTH) as http:
                for message_id in acknowledged:
                    async with http.get(f"{api}/v1/messages/{message_id}") as rsp:
                        view = await rsp.json()
                    assert view["recipients"][0]["status"] == "submitted"
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 30)
            assert proc.returncode == 0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
                for stream in (p.stdout, p.stderr):
                    if stream is not None:
                        stream.close()
            await sim_runner.cleanup()
