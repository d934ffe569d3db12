"""The SMPP SMS link against an SMSC process on loopback (the smpp34 library's server side, see
tests/helpers/smsc.py): bind, short and long GSM / UCS-2 texts with UDH, receipts per part,
throttling retried, and the SMSC going away and coming back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from mm7.service.sms import Receipt, ReceiptState, SmppSettings
from mm7.service.sms.smpp import SmppLink
from mm7.transport.link import Secret
from tests.helpers.smsc import Smsc, free_port


@pytest.fixture
def smsc_factory() -> Iterator[Any]:
    started: list[Smsc] = []

    def make(**env: str) -> Smsc:
        smsc = Smsc(free_port(), **env)
        smsc.start()
        started.append(smsc)
        return smsc

    yield make
    for smsc in started:
        smsc.stop()


class Receipts:
    def __init__(self) -> None:
        self.got: list[Receipt] = []
        self.changed = asyncio.Event()

    async def __call__(self, receipt: Receipt) -> None:
        self.got.append(receipt)
        self.changed.set()

    async def wait_for(self, count: int) -> list[Receipt]:
        while len(self.got) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 20)
        return self.got


@pytest.fixture
async def receipts() -> AsyncIterator[Receipts]:
    yield Receipts()


def _settings(port: int, **kw: Any) -> SmppSettings:
    base: dict[str, Any] = dict(
        name="smsc1", host="127.0.0.1", port=port, system_id="mm7gw", password=Secret("s3cret"),
        source_addr="12345", tps=200.0, throttle_delay=0.05, reconnect_initial=0.05,
        reconnect_max=0.2,
    )  # fmt: skip
    return SmppSettings(**(base | kw))


async def test_short_gsm_and_ucs2_with_receipts(smsc_factory: Any, receipts: Receipts) -> None:
    smsc = smsc_factory()
    link = SmppLink(_settings(smsc.port))
    await link.start(receipts)
    try:
        (gsm_id,) = (await link.send("447700900001", "Hello {world} €5")).part_ids
        (ucs_id,) = (await link.send("447700900002", "Привет 👋", sender="MM7")).part_ids
        got = await receipts.wait_for(2)
    finally:
        await link.close()
    smsc.stop()
    assert {(r.sms_id, r.state) for r in got} == {
        (gsm_id, ReceiptState.DELIVERED),
        (ucs_id, ReceiptState.DELIVERED),
    }
    gsm, ucs = smsc.events("submit")
    assert (gsm["data_coding"], gsm["esm_class"], gsm["from"]) == (0, 0, "12345")
    # GSM 03.38 unpacked: H e l l o space, then ESC ( for '{', ESC e for the euro sign
    assert bytes.fromhex(gsm["short_message"]).startswith(b"Hello \x1b(world\x1b)")
    assert bytes.fromhex(gsm["short_message"]).endswith(b"\x1be5")
    assert (ucs["data_coding"], ucs["from"]) == (8, "MM7")
    assert bytes.fromhex(ucs["short_message"]).decode("utf-16-be") == "Привет 👋"
    assert [e["system_id"] for e in smsc.events("bound")] == ["mm7gw"]


async def test_long_texts_split_with_udh(smsc_factory: Any, receipts: Receipts) -> None:
    smsc = smsc_factory(SMSC_UNDELIV="447700900009")
    link = SmppLink(_settings(smsc.port))
    await link.start(receipts)
    gsm_text = "".join(chr(ord("a") + i % 26) for i in range(400))
    ucs_text = "Ж" * 150
    try:
        gsm = await link.send("447700900001", gsm_text)
        ucs = await link.send("447700900009", ucs_text)
        got = await receipts.wait_for(6)
    finally:
        await link.close()
    smsc.stop()
    # every part's id, the first as the SMS's; one receipt per part, handed on under its id
    submits = smsc.events("submit")
    assert len(submits) == 3 + 3  # 400 GSM chars: 153+153+94; 150 UCS-2 chars: 67+67+16
    assert gsm.part_ids + ucs.part_ids == tuple(s["id"] for s in submits)
    assert gsm.sms_id == gsm.part_ids[0]
    assert sorted((r.sms_id, r.state) for r in got) == sorted(
        [(part, ReceiptState.DELIVERED) for part in gsm.part_ids]
        + [(part, ReceiptState.UNDELIVERABLE) for part in ucs.part_ids]
    )
    gsm_parts = [bytes.fromhex(s["short_message"]) for s in submits[:3]]
    ucs_parts = [bytes.fromhex(s["short_message"]) for s in submits[3:]]
    assert all(s["esm_class"] == 0x40 for s in submits)
    for parts in (gsm_parts, ucs_parts):
        refs = {p[3] for p in parts}
        assert len(refs) == 1
        assert [p[:3] + p[4:6] for p in parts] == [bytes((5, 0, 3, 3, n)) for n in (1, 2, 3)]
    assert b"".join(p[6:] for p in gsm_parts).decode("ascii") == gsm_text
    assert [len(p) - 6 for p in gsm_parts] == [153, 153, 94]
    assert b"".join(p[6:] for p in ucs_parts).decode("utf-16-be") == ucs_text
    assert gsm_parts[0][3] != ucs_parts[0][3]


async def test_throttled_submit_is_retried(smsc_factory: Any, receipts: Receipts) -> None:
    smsc = smsc_factory(SMSC_THROTTLE="2")
    link = SmppLink(_settings(smsc.port))
    await link.start(receipts)
    try:
        sms_id = (await link.send("447700900001", "after the throttle")).sms_id
        got = await receipts.wait_for(1)
    finally:
        await link.close()
    smsc.stop()
    assert [e["n"] for e in smsc.events("throttled")] == [1, 2]
    (accepted,) = smsc.events("submit")
    assert accepted["id"] == sms_id and accepted["n"] == 3
    assert got == [Receipt("smsc1", sms_id, ReceiptState.DELIVERED, "000")]  # err: as sent


async def test_rebinds_when_the_smsc_comes_back(smsc_factory: Any, receipts: Receipts) -> None:
    smsc = smsc_factory()
    link = SmppLink(_settings(smsc.port))
    await link.start(receipts)
    try:
        first = (await link.send("447700900001", "before")).sms_id
        await receipts.wait_for(1)
        smsc.stop()
        # the link notices the closed socket and keeps trying; a send waits for the new bind
        sending = asyncio.create_task(link.send("447700900001", "after"))
        await asyncio.sleep(0.3)
        assert not sending.done()
        smsc.start()
        second = (await asyncio.wait_for(sending, 20)).sms_id
        got = await receipts.wait_for(2)
    finally:
        await link.close()
    smsc.stop()
    assert first != second
    assert [r.sms_id for r in got] == [first, second]
    assert link.binds == 2
    assert [bytes.fromhex(e["short_message"]) for e in smsc.events("submit")] == [
        b"before",
        b"after",
    ]


async def test_send_without_smsc_gives_up_at_send_timeout(receipts: Receipts) -> None:
    from mm7.service.sms import SmsUnavailable

    link = SmppLink(_settings(free_port(), send_timeout=0.3))
    await link.start(receipts)
    try:
        with pytest.raises(SmsUnavailable, match="smsc1"):
            await link.send("447700900001", "nobody there")
    finally:
        await link.close()
