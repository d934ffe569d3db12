"""The HTTP SMS link through a real Kannel (Debian's bearerbox and smsbox, run by the test) to the
SMPP SMSC process: sendsms with the URL template, Kannel's own SMPP client submitting to the
SMSC, and the SMSC's receipt coming back through Kannel's dlr-url as a correlated receipt."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mm7.service.sms import HttpSmsSettings, Receipt, ReceiptState, SmsUnavailable
from mm7.service.sms.http import DLR_PATH, HttpSmsLink
from mm7.transport.link import Secret
from tests.helpers.smsc import Smsc, free_port

pytestmark = pytest.mark.skipif(
    shutil.which("bearerbox") is None or shutil.which("smsbox") is None,
    reason="Kannel is not installed (Debian package kannel; .ci/run installs it)",
)

CONF = """
group = core
admin-port = {admin}
admin-password = adm
admin-allow-ip = 127.0.0.1
smsbox-port = {box}
box-allow-ip = 127.0.0.1
log-file = {dir}/bearerbox.log
dlr-storage = internal

group = smsc
smsc = smpp
smsc-id = test
host = 127.0.0.1
port = {smsc}
transceiver-mode = true
smsc-username = kannel
smsc-password = pw
system-type = VMA

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {box}
sendsms-port = {sendsms}
log-file = {dir}/smsbox.log

group = sendsms-user
username = gw
password = s3cret
"""


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"{proc.args} never listened on {port}")


@pytest.fixture
def kannel(tmp_path: Path) -> Iterator[tuple[Smsc, int]]:
    smsc = Smsc(free_port(), SMSC_RECEIPT_DELAY="0.5")
    smsc.start()
    sendsms, box_port = free_port(), free_port()
    conf = tmp_path / "kannel.conf"
    conf.write_text(
        CONF.format(
            admin=free_port(), box=box_port, smsc=smsc.port, sendsms=sendsms, dir=tmp_path
        )  # fmt: skip
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for box, port in (("bearerbox", box_port), ("smsbox", sendsms)):
            procs.append(subprocess.Popen([box, str(conf)], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))  # fmt: skip
            _wait_listening(port, procs[-1])  # smsbox gives up if bearerbox is not there yet
        yield smsc, sendsms
    finally:
        for proc in reversed(procs):
            proc.kill()
            proc.wait()
        smsc.stop()


async def test_sms_through_kannel_to_the_smsc_and_back(
    kannel: tuple[Smsc, int], aiohttp_server: Callable[..., Awaitable[Any]]
) -> None:
    smsc, sendsms = kannel
    got: list[Receipt] = []
    arrived = asyncio.Event()

    async def on_receipt(receipt: Receipt) -> None:
        got.append(receipt)
        arrived.set()

    links: list[HttpSmsLink] = []

    async def dlr(request: web.Request) -> web.Response:
        return await links[0].dlr_handler(request)

    app = web.Application()
    app.router.add_get(DLR_PATH, dlr)
    dlr_server = await aiohttp_server(app)
    url = (
        f"http://127.0.0.1:{sendsms}/cgi-bin/sendsms?username={{username}}&password={{password}}"
        "&to={to}&from={from}&text={text}&coding={coding}&charset={charset}"
        "&dlr-mask=3&dlr-url={dlr_url}"
    )
    link = HttpSmsLink(
        HttpSmsSettings(
            name="kannel",
            url=url,
            username="gw",
            password=Secret("s3cret"),
            source_addr="MM7",
            dlr_url_base=f"http://127.0.0.1:{dlr_server.port}",
        )  # fmt: skip
    )
    links.append(link)
    await link.start(on_receipt)
    text = "Ваше MMS: http://mm7.example/m/abc"
    try:
        for _ in range(200):  # smsbox takes a moment to listen; nothing is sent until it does
            try:
                sms_id = (await link.send("447700900001", text)).sms_id
                break
            except SmsUnavailable:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("Kannel's sendsms never answered")
        await asyncio.wait_for(arrived.wait(), 30)
    finally:
        await link.close()
    assert got == [Receipt("kannel", sms_id, ReceiptState.DELIVERED)]
    smsc.stop()
    (submit,) = smsc.events("submit")
    assert (submit["to"], submit["from"], submit["data_coding"]) == ("447700900001", "MM7", 8)
    assert bytes.fromhex(submit["short_message"]).decode("utf-16-be") == text
    assert [e["system_id"] for e in smsc.events("bound")] == ["kannel"]
