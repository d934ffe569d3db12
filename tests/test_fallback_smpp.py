"""The SMS fallback over SMPP end to end: a real Gateway, the simulator's handset that cannot
take MMS, and the test SMSC in its own process (smpp34's server side, tests/helpers/smsc.py):
the SMS is submitted to the SMSC (international number without '+', the text and the hosted
page's link) and its deliver_sm receipt settles the fallback (delivered, or failed for a
handset the SMSC cannot reach)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mm7.service.config.loader import load_config
from mm7.service.runtime import Gateway
from tests.helpers.fallback import NO_MMS, start_simulator
from tests.helpers.runtime import AUTH, bound_socket, message, wait_for, write_config
from tests.helpers.smsc import Smsc, free_port

pytest.importorskip("smpp34")

SMPP = """
[hosting]
enabled = true

[sms_links.smsc1]
type = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "mm7gw"
password = "s3cret"
source_addr = "MM7"
source_ton = 5
"""


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    made = Smsc(free_port(), SMSC_UNDELIV="12025550003")
    made.start()
    yield made
    made.stop()


async def test_the_sms_goes_to_the_smsc_and_its_receipt_settles_it(
    tmp_path: Path, smsc: Smsc
) -> None:
    with bound_socket() as mmsc:
        path = write_config(tmp_path, mmsc.getsockname()[1], extra=SMPP.format(port=smsc.port))
        path.write_text(path.read_text().replace(
            "[links.main]\n", '[links.main]\nfallback = "sms"\nfallback_sms_link = "smsc1"\n', 1
        ))  # fmt: skip
        gateway = Gateway(load_config(path, env={}), configure_logs=False,
                          announce=lambda _: None, poll_interval=0.05)  # fmt: skip
        await gateway.start()
        runner = await start_simulator(mmsc, gateway.inbound_url, f"{NO_MMS},+12025550003")
        try:
            async with aiohttp.ClientSession(headers=AUTH) as http:
                ids = []
                for to in (NO_MMS, "+12025550003"):
                    async with http.post(
                        f"{gateway.api_url}/v1/messages", json=message(to, text="Trip photos")
                    ) as rsp:
                        assert rsp.status == 202, await rsp.text()
                        ids.append((await rsp.json())["id"])

                async def settled(message_id: str, status: str) -> dict[str, Any] | None:
                    async with http.get(f"{gateway.api_url}/v1/messages/{message_id}") as rsp:
                        view = await rsp.json()
                    sms = view["recipients"][0]["fallback_sms"]
                    return sms if sms is not None and sms["status"] == status else None

                delivered = await wait_for(lambda: settled(ids[0], "delivered"))
                failed = await wait_for(lambda: settled(ids[1], "failed"))
        finally:
            await gateway.stop()
            await runner.cleanup()
    smsc.stop()
    submits = {e["to"]: e for e in smsc.events("submit")}
    assert set(submits) == {"12025550002", "12025550003"}  # one each; no '+' with TON 1
    sent = bytes.fromhex(submits["12025550002"]["short_message"]).decode("ascii")
    assert sent.startswith("Trip photos http") and "/m/" in sent
    assert delivered["sms_id"] == submits["12025550002"]["id"]
    assert failed["sms_id"] == submits["12025550003"]["id"] and failed["error"]
    assert [e["system_id"] for e in smsc.events("bound")] == ["mm7gw"]
