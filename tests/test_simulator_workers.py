"""`mm7 simulate --workers 2` as real processes: SubmitReqs from many connections are answered by
both workers, the one control API lists every exchange (with the worker that answered it), faults
set through it apply on either worker, reports reach the VASP, Cancel finds a submit another
worker accepted, the console and its live feed work through a worker, a killed worker is
replaced; and the channel's bound."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mm7.cli.main import main
from mm7.core.codec import decode, encode
from mm7.core.model import CancelReq, CancelRsp, DeliverReq, Fault, SubmitRsp
from mm7.simulator.channel import HIGH_WATER, Channel
from tests.helpers.simulator import Vasp, submit

Server = Callable[..., Awaitable[Any]]
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Workers:
    """A running ``mm7 simulate --workers 2``: its base URL, process and stderr file."""

    base: str
    proc: asyncio.subprocess.Process
    stderr: Path
    vasp: Vasp

    @property
    def url(self) -> str:
        return self.base + "/mm7"

    def pids(self) -> set[int]:
        """The worker processes now (the parent's children)."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(p) for p in path.read_text().split()}

    async def post(self, body: bytes, content_type: str) -> tuple[int, Any]:
        """POST on a new connection (the kernel picks the worker per connection)."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=body, headers={"Content-Type": content_type}) as r,
        ):
            raw = await r.read()
            if r.content_type == "text/plain":  # an injected HTTP error: no SOAP
                return r.status, raw
            return r.status, decode(raw, r.headers["Content-Type"]).message

    async def submits(self, count: int, **kw: Any) -> list[tuple[int, Any]]:
        encoded = encode(submit(**kw))
        return await asyncio.gather(
            *(self.post(encoded.body, encoded.content_type) for _ in range(count))
        )

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.base + "/control" + path, json=body) as r,
        ):
            assert r.status < 300, await r.text()
            return await r.json()

    async def inbound(self) -> list[dict[str, Any]]:
        listed = await self.control("GET", "/traffic?limit=1000")
        return [e for e in listed["exchanges"] if e["direction"] == "in"]


@pytest.fixture
async def workers(aiohttp_server: Server, tmp_path: Path) -> AsyncIterator[Workers]:
    vasp = Vasp()
    vasp_server = await aiohttp_server(vasp.app())
    conf = tmp_path / "sim.toml"
    conf.write_text("[retry]\nbackoff = 0\n")
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mm7.cli.main", "simulate", "--listen", "127.0.0.1:0",
            "--workers", "2", "--vasp-url", str(vasp_server.make_url("/vasp")),
            "--dlr", "always", "--dlr-delay", "0", "--config", str(conf),
            stdout=asyncio.subprocess.PIPE, stderr=err,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
            assert " on http://" in line, line + stderr.read_text()
            assert (await proc.stdout.readline()).decode().startswith("mm7 simulator: 2 workers")
        base = line.split(" on ", 1)[1].split(";", 1)[0].removesuffix("/mm7")
        yield Workers(base, proc, stderr, vasp)
    finally:
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(30):
            await proc.wait()
    assert proc.returncode == 0, stderr.read_text()
    assert workers_gone(proc.pid)


def workers_gone(parent: int) -> bool:
    """No process is left whose parent was ``parent``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                return False
    return True


async def test_both_workers_answer_and_the_control_api_shows_everything(
    workers: Workers,
) -> None:
    answers = await workers.submits(40, tid="tx-w")
    assert all(status == 200 and isinstance(m, SubmitRsp) for status, m in answers)
    ids = {m.message_id for _, m in answers}
    assert len(ids) == 40
    inbound = await workers.inbound()
    assert {e["message_id"] for e in inbound} == ids
    # both workers answered some (40 connections; the kernel spreads them by address hash)
    assert {e["worker"] for e in inbound} == workers.pids()
    messages = await workers.control("GET", "/messages")
    assert {m["message_id"] for m in messages["messages"]} == ids
    # the content came without the message, read again in the parent when shown
    assert all(m["parts"][0]["content_type"] == "text/plain" for m in messages["messages"])
    one = await workers.control("GET", f"/messages/{messages['messages'][0]['id']}")
    assert one["fields"]["subject"] == "hi" and one["parts"][0]["size"] == len(b"Hello")
    # a report per accepted recipient, sent by the parent, in the record too
    hits = await workers.vasp.wait(40)
    assert {r.message_id for r in workers.vasp.reports()} == ids
    listed = await workers.control("GET", "/traffic?limit=1000")
    out = [e for e in listed["exchanges"] if e["direction"] == "out"]
    assert len(out) >= len(hits) and {e["message_id"] for e in out} == ids


async def test_a_cancel_finds_a_submit_whichever_worker_accepted_it(workers: Workers) -> None:
    await workers.control("POST", "/faults", {})  # nothing set: a no-op, answered after sync
    answers = await workers.submits(6, tid="tx-c")
    for _, accepted in answers:
        cancel = encode(CancelReq(transaction_id="tx-cancel", message_id=accepted.message_id))
        status, message = await workers.post(cancel.body, cancel.content_type)
        assert status == 200 and isinstance(message, CancelRsp), message
        assert message.status.code == 1000
    inbound = await workers.inbound()
    cancels = [e for e in inbound if e["operation"] == "CancelReq"]
    assert len(cancels) == 6 and all(e["status_code"] == 1000 for e in cancels)
    assert {e["worker"] for e in cancels} <= workers.pids()


async def test_faults_set_through_the_control_api_apply_on_every_worker(
    workers: Workers,
) -> None:
    # a rate: each worker applies it to the requests it answers
    rate = {"kind": "status", "code": 4006, "details": "busy", "rate": 1.0}
    await workers.control("POST", "/faults", {"rates": [rate]})
    answers = await workers.submits(30, tid="tx-f")
    assert all(isinstance(m, Fault) and m.error.status.code == 4006 for _, m in answers)
    refused = [e for e in await workers.inbound() if e["transaction_id"] == "tx-f"]
    assert len(refused) == 30 and {e["worker"] for e in refused} == workers.pids()
    # one-shot faults: each taken once, whichever worker the request reaches
    await workers.control(
        "POST", "/faults", {"rates": [], "once": [{"kind": "http", "http_status": 503}] * 3}
    )
    answers = await workers.submits(20, tid="tx-once")
    assert sorted(status for status, _ in answers) == [200] * 17 + [503] * 3
    assert (await workers.control("GET", "/faults"))["once"] == []
    # and once they are used up, the workers answer by themselves again
    await workers.control("DELETE", "/faults")
    answers = await workers.submits(20, tid="tx-after")
    assert all(status == 200 for status, _ in answers)
    after = [e for e in await workers.inbound() if e["transaction_id"] == "tx-after"]
    assert {e["worker"] for e in after} == workers.pids()


async def test_a_persona_switch_reaches_every_worker_before_the_answer(
    workers: Workers,
) -> None:
    # aggregator: a SubmitReq without SMIL is refused
    await workers.control("PUT", "/persona", {"name": "aggregator"})
    answers = await workers.submits(30, tid="tx-agg")
    assert all(status != 200 or not isinstance(m, SubmitRsp) for status, m in answers)
    refused = [e for e in await workers.inbound() if e["transaction_id"] == "tx-agg"]
    assert {e["worker"] for e in refused} == workers.pids()
    assert all(e["status_code"] != 1000 for e in refused)
    # Digest nonces are kept by the parent: every request goes to it, and is refused there
    await workers.control("PUT", "/persona", {"name": "mbuni-digest"})
    encoded = encode(submit(tid="tx-digest"))
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            workers.url, data=encoded.body, headers={"Content-Type": encoded.content_type}
        ) as r,
    ):
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Digest ")
    await workers.control("PUT", "/persona", {"name": "strict-3gpp"})
    answers = await workers.submits(10, tid="tx-back")
    assert all(isinstance(m, SubmitRsp) for _, m in answers)


async def test_mo_through_the_control_api_of_a_worker(workers: Workers) -> None:
    answer = await workers.control(
        "POST", "/mo", {"to": "12345", "from": "+15551230009", "text": "hi"}
    )
    assert answer["ok"] is True
    hits = await workers.vasp.wait(1)
    assert isinstance(hits[0].message, DeliverReq)


async def test_the_console_and_its_feed_through_a_worker(workers: Workers) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(workers.base + "/ui") as r:
            assert r.status == 200 and "text/html" in r.headers["Content-Type"]
        async with session.get(workers.base + "/control/traffic/stream") as stream:
            assert stream.status == 200
            await workers.submits(1, tid="tx-live")
            async with asyncio.timeout(20):
                while True:
                    line = (await stream.content.readline()).decode()
                    if line.startswith("data:") and "tx-live" in line:
                        break
    event = json.loads(line.removeprefix("data:"))
    assert event["worker"] in workers.pids()


async def test_a_killed_worker_is_replaced(workers: Workers) -> None:
    before = workers.pids()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    async with asyncio.timeout(30):
        while "restarted" not in workers.stderr.read_text():
            await asyncio.sleep(0.1)
    text = workers.stderr.read_text()
    assert f"(pid {victim}) exited (status -9)" in text
    now = workers.pids()
    assert len(now) == 2 and victim not in now and before - {victim} <= now
    answers = await workers.submits(40, tid="tx-again")
    assert all(status == 200 for status, _ in answers)
    again = [e for e in await workers.inbound() if e["transaction_id"] == "tx-again"]
    assert {e["worker"] for e in again} == now


def test_workers_must_be_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--listen", "127.0.0.1:0", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--workers" in err


async def test_the_channel_holds_a_worker_back_while_the_parent_does_not_read() -> None:
    ours, theirs = socket.socketpair()
    sender, receiver = await Channel.open(ours), await Channel.open(theirs)
    chunk = b"x" * (1024 * 1024)
    sent = 0
    while sent <= 2 * HIGH_WATER:
        sender.send(("exchange", chunk))
        sent += len(chunk)
    settling = asyncio.create_task(sender.settle())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not settling.done()  # over the bound: the worker's answer waits
    for _ in range(sent // len(chunk)):
        frame = await receiver.receive()
        assert frame == ("exchange", chunk)
    await settling
    await sender.close()
    assert await receiver.receive() is None
    await receiver.close()
