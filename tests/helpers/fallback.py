"""The SMS fallback tests' MMSC: the bundled simulator with handsets that cannot take MMS."""

from __future__ import annotations

import socket

from aiohttp import web

from mm7.simulator.app import SimulatorConfig, create_simulator_app
from mm7.simulator.dlr import DlrPlan, RetryPolicy
from mm7.simulator.personas import load_persona

#: the handset that cannot take MMS (its delivery report is Rejected)
NO_MMS = "+12025550002"


async def start_simulator(
    sock: socket.socket, vasp_url: str | None, no_mms: str = NO_MMS
) -> web.AppRunner:
    """The strict-3gpp simulator: reports every message at once; the report of a ``no_mms``
    handset is Rejected."""
    app = create_simulator_app(
        SimulatorConfig(
            persona=load_persona("strict-3gpp"),
            vasp_url=vasp_url,
            dlr=DlrPlan(when="always", delay=0.0, final_delay=0.0, no_mms=no_mms),
            retry=RetryPolicy(max_attempts=3, backoff=0.0, timeout=5.0),
            ui_path=None,
            seed=1,
        )
    )
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner
