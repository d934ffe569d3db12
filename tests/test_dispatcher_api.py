"""The MT path in one process, wired from a gateway TOML file as ``mm7 serve`` will wire it: the
sending API commits a message, the link's dispatcher submits it to the MMSC simulator, the
simulator's delivery report comes back through the inbound endpoint (peer -> link from the
config) and the API shows the recipient delivered. Real SQLite, real loopback sockets."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from mm7.core.model import Priority
from mm7.service.api.app import create_api_app
from mm7.service.config.loader import load_config
from mm7.service.mt.dispatcher import Dispatcher
from mm7.service.mt.reports import DeliveryReports
from mm7.service.store.sqlite.store import SqliteStore
from mm7.simulator.app import SIMULATOR, SimulatorConfig, create_simulator_app
from mm7.simulator.dlr import DlrPlan, RetryPolicy
from mm7.simulator.personas import load_persona
from mm7.transport.server import create_inbound_app

Server = Callable[..., Awaitable[Any]]
KEY = "test-key-dispatch-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}

CONFIG = """
[links.main]
url = "{mmsc}"
default = true
vasp_id = "vasp"
vas_id = "vas"
sender_address = "12345"
tps = 50
profile = "mms-300k"

[inbound]
listen = "127.0.0.1:0"
[inbound.peers.simulator]
link = "main"
allow = ["127.0.0.1/32"]

[api]
listen = "127.0.0.1:0"
[[api.keys]]
name = "app"
key = "{key}"

[store]
path = "{db}"
"""


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 160, 90)).save(out, "PNG")
    return out.getvalue()


async def test_api_message_is_submitted_and_reported_delivered(
    aiohttp_server: Server, tmp_path: Path
) -> None:
    # the inbound endpoint first (the simulator needs its URL), on a placeholder config
    path = tmp_path / "gateway.toml"
    db = (tmp_path / "mm7.sqlite").as_posix()
    path.write_text(CONFIG.format(mmsc="http://127.0.0.1:9/mm7", key=KEY, db=db))
    config = load_config(path, env={})
    store = await SqliteStore.open(config.store.path)
    reports = DeliveryReports(store, link_for_peer=config.peer_link)
    inbound = await aiohttp_server(create_inbound_app(config.inbound_config(), reports.handlers()))
    sim_app = create_simulator_app(
        SimulatorConfig(
            persona=load_persona("strict-3gpp"),
            vasp_url=str(inbound.make_url("/mm7")),
            dlr=DlrPlan(delay=0.0, final_delay=0.0),
            retry=RetryPolicy(max_attempts=3, backoff=0.0, timeout=5.0),
            seed=1,
        )
    )
    sim_server = await aiohttp_server(sim_app)
    path.write_text(CONFIG.format(mmsc=sim_server.make_url("/mm7"), key=KEY, db=db))
    config = load_config(path, env={})

    api = TestClient(TestServer(create_api_app(config, store), host="127.0.0.1", port=0))
    await api.start_server()
    dispatcher = Dispatcher(store, config.link("main"), poll_interval=0.05)
    try:
        await dispatcher.start()
        rsp = await api.post(
            "/v1/messages",
            json={
                "to": "+12025550001",
                "subject": "through the API",
                "text": "Hello",
                "media": [
                    {
                        "content_base64": base64.b64encode(png()).decode(),
                        "content_type": "image/png",
                        "filename": "a.png",
                    }
                ],
                "delivery_report": True,
                "priority": "high",
                "expiry": "P1D",
            },
            headers=AUTH,
        )
        assert rsp.status == 202, await rsp.text()
        message_id = (await rsp.json())["id"]
        dispatcher.wake()

        async with asyncio.timeout(20):  # a guard only: the loop waits for the condition
            while True:
                view = await (await api.get(f"/v1/messages/{message_id}", headers=AUTH)).json()
                if view["recipients"][0]["status"] == "delivered":
                    break
                await asyncio.sleep(0.01)
        record = await store.get_message(message_id)
        assert record is not None
        mm7_id = record.recipients[0].mm7_message_id
        assert mm7_id is not None
        submitted = sim_app[SIMULATOR].submitted[mm7_id]
        assert submitted.priority is Priority.HIGH and submitted.subject == "through the API"
        assert submitted.content is not None
        types = [c.content_type.mime_type for c in submitted.content.children]
        assert types == ["application/smil", "image/png", "text/plain"]  # the text once
        kinds = [e.kind for e in record.events]
        assert "submitted" in kinds and "delivery_report" in kinds
    finally:
        await dispatcher.stop()
        await api.close()
        await sim_app[SIMULATOR].dlr.idle()
        await store.close()
