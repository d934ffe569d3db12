"""The SMS fallback over SMPP end to end: a real Gateway, the simulator's handset that cannot
take MMS, and the test SMSC in its own process (smpp34's server side, tests/helpers/smsc.py):
the SMS is submitted to the SMSC (international number without '+', the text and the hosted
page's link) and its deliver_sm receipt settles the fallback (delivered, or failed for a
handset the SMSC cannot reach). A long text's parts each get their receipt, and the store
settles the row from all of them, also when the gateway restarts between them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mm7.service.config.loader import load_config
from mm7.service.fallback.worker import FallbackWorker
from mm7.service.hosting.links import HostedLinks
from mm7.service.runtime import Gateway
from mm7.service.sms import SmppSettings
from mm7.service.store import ManualClock, NewMessage, Store
from mm7.service.store.records import FallbackStatus
from mm7.transport.link import Secret
from tests.helpers.fallback import NO_MMS, start_simulator
from tests.helpers.runtime import AUTH, bound_socket, message, wait_for, write_config
from tests.helpers.smsc import Smsc, free_port
from tests.helpers.stores import Backend

pytest.importorskip("smpp34")
from mm7.service.sms.smpp import SmppLink  # noqa: E402  (needs smpp34)

HOSTING = HostedLinks(b"k" * 32, "http://gw.example", 86400.0)
TTL = timedelta(seconds=30)

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


class Running:
    """One run of the gateway's SMS fallback: a store handle, an SMPP link and a worker."""

    def __init__(
        self, store: Store, port: int, clock: ManualClock, send_timeout: float = 30.0
    ) -> None:
        settings = SmppSettings(
            name="smsc1", host="127.0.0.1", port=port, system_id="mm7gw",
            password=Secret("s3cret"), source_addr="MM7", reconnect_initial=0.05,
            reconnect_max=0.2, send_timeout=send_timeout, throttle_delay=0.05,
        )  # fmt: skip
        self.store = store
        self.link = SmppLink(settings)
        self.worker = FallbackWorker(store, {"smsc1": self.link}, HOSTING, lease_ttl=TTL,
                                     clock=clock)  # fmt: skip

    async def start(self) -> Running:
        await self.link.start(self.worker.on_receipt)
        await self.link.wait_bound(20)
        return self

    async def stop(self) -> None:
        await self.worker.stop(grace=0)
        await self.link.close()

    async def receipts(self, count: int) -> None:
        async def enough() -> bool:
            return self.worker.counts.get("receipts", 0) >= count

        await wait_for(enough)

    async def status(self, message_id: str) -> FallbackStatus:
        (row,) = await self.store.fallback_sms(message_id)
        return row.status


async def failed_recipient(store: Store) -> str:
    """A recipient whose MMS failed, its fallback a 3-part UCS-2 text on smsc1; the message."""
    fields: dict[str, Any] = {"text": "Фото " * 40,
                              "fallback": {"sms_link": "smsc1", "text_max": 160}}  # fmt: skip
    result = await store.enqueue_message(NewMessage(link="l", fields=fields), ["+15550001"])
    (item,) = await store.lease("l", "d", 1, TTL)
    assert await store.fail(item, 4004, "refused")
    return result.message_id


async def test_a_long_text_cut_short_after_its_first_part_is_failed_never_sent_again(
    store: Store, clock: ManualClock
) -> None:
    """Part 2 throttled past the send_timeout: part 1 went out, so the row is failed, naming
    it, and not queued again (a retry would send part 1 twice)."""
    smsc = Smsc(free_port(), SMSC_THROTTLE_FROM="2")
    smsc.start()
    try:
        message_id = await failed_recipient(store)
        run = await Running(store, smsc.port, clock, send_timeout=0.3).start()
        try:
            assert await run.worker.run_once() == 1
            await run.worker.idle()
            clock.advance(timedelta(hours=2))
            assert await run.worker.run_once() == 0
        finally:
            await run.stop()
    finally:
        smsc.stop()
    (row,) = await store.fallback_sms(message_id)
    assert row.status is FallbackStatus.FAILED and row.attempts == 1
    assert row.error is not None and "1 of 3 parts sent" in row.error
    assert len(smsc.events("submit")) == 1 and smsc.events("throttled")


@pytest.mark.parametrize(
    ("stats", "final"),
    [
        (("DELIVRD", "DELIVRD", "DELIVRD"), FallbackStatus.DELIVERED),
        (("DELIVRD", "DELIVRD", "UNDELIV"), FallbackStatus.FAILED),
    ],
)
async def test_a_long_text_is_settled_by_all_its_parts_across_a_restart(
    backend: Backend, clock: ManualClock, stats: tuple[str, ...], final: FallbackStatus
) -> None:
    """UCS-2 at the default fallback_text_max of 160 is three SMS; part 1's receipt comes
    before a restart, parts 2 and 3 after it: delivered only once every part is, failed when
    one part is, never left submitted."""
    smsc = Smsc(free_port(), SMSC_RECEIPTS="manual")
    smsc.start()
    try:
        store = await backend.open(clock=clock)
        message_id = await failed_recipient(store)
        first = await Running(store, smsc.port, clock).start()
        try:
            assert await first.worker.run_once() == 1
            await first.worker.idle()
            parts = [e["id"] for e in smsc.events("submit")]
            assert len(parts) == 3 and all(e["esm_class"] == 0x40 for e in smsc.events("submit"))
            assert await first.status(message_id) is FallbackStatus.SUBMITTED
            smsc.receipt(parts[0], stats[0])
            await first.receipts(1)
            assert await first.status(message_id) is FallbackStatus.SUBMITTED
        finally:
            await first.stop()
        # the restart: a new store handle, link and worker; part 1's receipt is in the store
        second = await Running(await backend.open(clock=clock), smsc.port, clock).start()
        try:
            await smsc.wait_events("bound", 2)
            smsc.receipt(parts[1], stats[1])
            await second.receipts(1)
            assert await second.status(message_id) is FallbackStatus.SUBMITTED
            smsc.receipt(parts[2], stats[2])
            await second.receipts(2)
            (row,) = await second.store.fallback_sms(message_id)
        finally:
            await second.stop()
    finally:
        smsc.stop()
    assert (row.status, row.sms_id) == (final, parts[0])
    assert (row.error is None) == (final is FallbackStatus.DELIVERED)
    assert [e["id"] for e in smsc.events("receipt")] == parts
