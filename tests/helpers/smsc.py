"""An SMSC for tests, run as its own process: the smpp34 library's server side (Rust core) with
a few scripted behaviours. Prints one JSON line per submit_sm so the test can see the wire.

Environment: SMSC_PORT; SMSC_THROTTLE = how many first submits get ESME_RTHROTTLED (0x58);
SMSC_THROTTLE_FROM = the submit (1-based) from which every one gets it;
SMSC_UNDELIV = a destination whose receipts say stat:UNDELIV; SMSC_RECEIPT_DELAY = seconds
before a receipt is sent; SMSC_RECEIPTS=manual: no receipt until the test asks for one
(``Smsc.receipt``: a line ``ID STAT`` on stdin, sent on the newest bind)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from typing import Any

import smpp34


async def _receipt(esme: smpp34.Esme, ev: smpp34.SubmitSmEvent, text: bytes, delay: float) -> None:
    # a real SMSC reports after the handset answered; Kannel drops a receipt that beats its own
    # bookkeeping of the submit_sm_resp, so its test asks for a delay
    await asyncio.sleep(delay)
    await esme.deliver_sm(ev.source_addr, text, source_addr=ev.destination_addr, esm_class=0x04)


async def _manual_receipts(
    sessions: dict[str, smpp34.Esme], submitted: dict[str, tuple[str, str]]
) -> None:
    """Receipts on request: ``ID STAT`` lines on stdin, each sent on the newest bind."""
    while line := await asyncio.to_thread(sys.stdin.readline):
        msg_id, stat = line.split()
        to, sender = submitted[msg_id]
        text = (
            f"id:{msg_id} sub:001 dlvrd:001 submit date:2601010000 "
            f"done date:2601010000 stat:{stat} err:000 text:"
        )
        esme = next(reversed(sessions.values()))
        await esme.deliver_sm(to, text.encode(), source_addr=sender, esm_class=0x04)
        print(json.dumps({"event": "receipt", "id": msg_id, "stat": stat}), flush=True)


async def main() -> None:
    port = int(os.environ["SMSC_PORT"])
    throttle = int(os.environ.get("SMSC_THROTTLE", "0"))
    throttle_from = int(os.environ.get("SMSC_THROTTLE_FROM", "0"))
    undeliv = os.environ.get("SMSC_UNDELIV", "")
    delay = float(os.environ.get("SMSC_RECEIPT_DELAY", "0"))
    tasks: set[asyncio.Task[None]] = set()
    server = smpp34.Server("127.0.0.1", port, system_id="TESTSMSC")
    await server.start()
    print(json.dumps({"event": "listening"}), flush=True)
    sessions: dict[str, smpp34.Esme] = {}
    manual = os.environ.get("SMSC_RECEIPTS") == "manual"
    submitted: dict[str, tuple[str, str]] = {}  # msg_id: (its sender, its destination)
    if manual:
        tasks.add(asyncio.create_task(_manual_receipts(sessions, submitted)))
    count = 0
    while True:
        ev = await server.next()
        if isinstance(ev, smpp34.Esme):
            sessions[ev.session_id] = ev
            print(json.dumps({"event": "bound", "system_id": ev.system_id}), flush=True)
        elif isinstance(ev, smpp34.SubmitSmEvent):
            count += 1
            record = {
                "event": "submit", "to": ev.destination_addr, "from": ev.source_addr,
                "esm_class": ev.esm_class, "data_coding": ev.data_coding,
                "short_message": ev.short_message.hex(), "n": count,
            }  # fmt: skip
            if count <= throttle or 0 < throttle_from <= count:
                ev.reject(smpp34.ESME_RTHROTTLED)
                record["event"] = "throttled"
                print(json.dumps(record), flush=True)
                continue
            msg_id = f"smsc-{os.getpid()}-{count}"
            ev.accept(message_id=msg_id)
            print(json.dumps(record | {"id": msg_id}), flush=True)
            submitted[msg_id] = (ev.source_addr, ev.destination_addr)
            if ev.registered_delivery & 1 and not manual:
                stat = "UNDELIV" if ev.destination_addr == undeliv else "DELIVRD"
                text = (
                    f"id:{msg_id} sub:001 dlvrd:001 submit date:2601010000 "
                    f"done date:2601010000 stat:{stat} err:000 text:"
                )
                tasks.add(asyncio.create_task(
                    _receipt(sessions[ev.session_id], ev, text.encode(), delay)
                ))  # fmt: skip
        elif isinstance(ev, smpp34.Unbound):
            sessions.pop(ev.session_id, None)


def free_port() -> int:
    """A loopback port free right now (the smpp34 server cannot report the port of a bind to 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Smsc:
    """This SMSC as a process on loopback (``start``/``stop``, restartable on the same port) and
    the JSON lines it printed (read as they come)."""

    def __init__(self, port: int, **env: str) -> None:
        self.port = port
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[dict[str, Any]] = []
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        env = os.environ | {"SMSC_PORT": str(self.port)} | self.env
        self.proc = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        first = json.loads(self.proc.stdout.readline())
        assert first == {"event": "listening"}
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                self.lines.append(json.loads(line))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            if self._reader is not None:
                self._reader.join()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
            self.proc = None

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == kind]

    async def wait_events(self, kind: str, count: int, deadline: float = 20.0) -> list[Any]:
        """The ``kind`` lines once there are ``count`` (the deadline is only a guard)."""
        async with asyncio.timeout(deadline):
            while len(found := self.events(kind)) < count:
                await asyncio.sleep(0.02)
        return found

    def receipt(self, msg_id: str, stat: str) -> None:
        """Ask for the receipt of ``msg_id`` saying ``stat`` (SMSC_RECEIPTS=manual)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"{msg_id} {stat}\n")
        self.proc.stdin.flush()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
